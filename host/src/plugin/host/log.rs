//! The `log` import and guest stdout/stderr, both into the host's log,
//! tagged with the plugin's name.
//!
//! Promises:
//! - A plugin cannot forge host log lines: newlines and other control
//!   characters in its messages, field names and values are escaped
//!   (`\n`, `\u{1b}`), and every line carries `plugin=<name>`.
//! - A plugin cannot flood the log or grow host memory through it: a line is
//!   cut at [`MAX_LINE`] bytes (marked `…[cut]`), a message has at most
//!   [`MAX_FIELDS`] fields, and an instance emits at most
//!   [`MAX_LINES_PER_CALL`] lines per call and [`MAX_LINES_PER_SECOND`] per
//!   second. Lines over budget are dropped and counted; the count is logged
//!   once per second while dropping goes on.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::HostState;
use crate::plugin::bindings::{self, Level};

/// Longest line kept, in bytes; the rest is cut.
pub const MAX_LINE: usize = 8 * 1024;
/// Most structured fields kept per `log` call.
pub const MAX_FIELDS: usize = 32;
/// Most lines one call may log.
pub const MAX_LINES_PER_CALL: u32 = 100;
/// Most lines one instance may log per second.
pub const MAX_LINES_PER_SECOND: u32 = 1000;

impl bindings::sluice::plugin::log::Host for HostState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        if !self.log.admit() {
            return;
        }
        let plugin = &*self.plugin;
        let message = clean(&message);
        let fields = FieldList(&fields);
        match level {
            Level::Trace => tracing::trace!(plugin, %fields, "{message}"),
            Level::Debug => tracing::debug!(plugin, %fields, "{message}"),
            Level::Info => tracing::info!(plugin, %fields, "{message}"),
            Level::Warn => tracing::warn!(plugin, %fields, "{message}"),
            Level::Error => tracing::error!(plugin, %fields, "{message}"),
        }
    }
}

/// `text` cut to [`MAX_LINE`] bytes (on a character boundary) with control
/// characters escaped, so it prints as exactly one line.
pub fn clean(text: &str) -> Cow<'_, str> {
    let cut = text.len() > MAX_LINE;
    let text = if cut {
        &text[..text.floor_char_boundary(MAX_LINE)]
    } else {
        text
    };
    if !cut && !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        out.push_str("…[cut]");
    }
    Cow::Owned(out)
}

/// Renders plugin-supplied fields as `k="v" k="v"`, cleaned and capped.
struct FieldList<'a>(&'a [(String, String)]);

impl std::fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().take(MAX_FIELDS).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={:?}", clean(k), clean(v))?;
        }
        if self.0.len() > MAX_FIELDS {
            write!(f, " …[{} more fields cut]", self.0.len() - MAX_FIELDS)?;
        }
        Ok(())
    }
}

/// One instance's log budget, shared by the `log` import and its
/// stdout/stderr streams.
pub struct LogBudget {
    plugin: Arc<str>,
    in_call: AtomicU32,
    window: Mutex<Window>,
}

struct Window {
    start: Instant,
    lines: u32,
    dropped: u64,
}

impl LogBudget {
    /// A budget for the plugin named `plugin` (the name its warnings give),
    /// with nothing logged yet.
    pub fn new(plugin: Arc<str>) -> Self {
        LogBudget {
            plugin,
            in_call: AtomicU32::new(0),
            window: Mutex::new(Window {
                start: Instant::now(),
                lines: 0,
                dropped: 0,
            }),
        }
    }

    /// A new call starts with a fresh per-call allowance.
    pub fn begin_call(&self) {
        self.in_call.store(0, Ordering::Relaxed);
    }

    /// Whether one more line may be logged now; counts it if so.
    pub fn admit(&self) -> bool {
        let in_call = self.in_call.fetch_add(1, Ordering::Relaxed);
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            if w.dropped > 0 {
                tracing::warn!(
                    plugin = &*self.plugin,
                    dropped = w.dropped,
                    "plugin log over budget: lines dropped (at most {MAX_LINES_PER_CALL} \
                     per call and {MAX_LINES_PER_SECOND} per second are kept)"
                );
            }
            *w = Window {
                start: now,
                lines: 0,
                dropped: 0,
            };
        }
        if in_call >= MAX_LINES_PER_CALL || w.lines >= MAX_LINES_PER_SECOND {
            w.dropped += 1;
            return false;
        }
        w.lines += 1;
        true
    }
}

/// A guest output stream that logs complete lines.
#[derive(Clone)]
pub struct GuestLog {
    budget: Arc<LogBudget>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestLog {
    /// A stream named `stream` (`stdout` or `stderr`, as its log lines say),
    /// spending `budget`.
    pub fn new(budget: Arc<LogBudget>, stream: &'static str) -> Self {
        GuestLog {
            budget,
            stream,
            pending: Arc::default(),
        }
    }

    fn emit(&self, line: &[u8]) {
        if !self.budget.admit() {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let line = clean(line.trim_end_matches('\r'));
        tracing::info!(
            plugin = &*self.budget.plugin,
            stream = self.stream,
            "{line}"
        );
    }

    fn push(&self, mut bytes: &[u8]) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        // One byte past the cap is kept, so `clean` sees the line is long.
        let cap = MAX_LINE + 1;
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let room = cap.saturating_sub(pending.len());
            pending.extend_from_slice(&bytes[..nl.min(room)]);
            self.emit(&pending);
            pending.clear();
            bytes = &bytes[nl + 1..];
        }
        let room = cap.saturating_sub(pending.len());
        pending.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn flush_partial(&self) {
        if let Ok(mut pending) = self.pending.lock()
            && !pending.is_empty()
        {
            self.emit(&pending);
            pending.clear();
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        self.flush_partial();
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.flush_partial();
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("plain"), "plain");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
        let forged = "ok\n2026-12-01T00:00:00Z ERROR sluice: forged";
        let got = clean(forged);
        assert!(!got.contains('\n'), "{got}");
        assert!(got.starts_with("ok\\n2026"), "{got}");
        assert_eq!(clean("a\r\u{1b}[31mb"), "a\\r\\u{1b}[31mb");
        assert_eq!(clean("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_LINE);
        let got = clean(&long);
        assert!(got.len() <= MAX_LINE + "…[cut]".len(), "{}", got.len());
        assert!(got.ends_with("…[cut]"));
    }

    #[test]
    fn a_call_logs_at_most_its_allowance() {
        let budget = LogBudget::new("p".into());
        let admitted = (0..MAX_LINES_PER_CALL + 50)
            .filter(|_| budget.admit())
            .count();
        assert_eq!(admitted, MAX_LINES_PER_CALL as usize);
        budget.begin_call();
        assert!(budget.admit(), "a new call has a fresh allowance");
    }

    #[test]
    fn an_instance_logs_at_most_its_rate() {
        let budget = LogBudget::new("p".into());
        let mut admitted = 0;
        for _ in 0..(MAX_LINES_PER_SECOND / MAX_LINES_PER_CALL + 2) {
            budget.begin_call();
            admitted += (0..MAX_LINES_PER_CALL).filter(|_| budget.admit()).count();
        }
        assert_eq!(admitted, MAX_LINES_PER_SECOND as usize);
    }
}
