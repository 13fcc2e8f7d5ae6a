//! What a plugin instance can reach: the per-store host state, the `log`
//! import, and guest stdout/stderr redirected into the host's log. The
//! `http` import lives in [`super::http`].
//!
//! Promise: a plugin gets no filesystem, no sockets and no environment
//! variables; its only network access is the `http` import, to the hosts its
//! config allows. Its clocks and randomness come from WASI. Anything it
//! writes to stdout or stderr is logged line by line, tagged with the
//! plugin's name.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, Level};
use super::http::HttpClient;
use super::limits::{Limiter, Limits};

mod http;

/// The data of one plugin `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    plugin: Arc<str>,
    /// Shared with the owning `Instance`, so the HTTP client and its
    /// connections outlive a rebuild of the store after a trap.
    http: Arc<HttpClient>,
}

impl HostState {
    pub fn new(plugin: Arc<str>, limits: &Limits, http: Arc<HttpClient>) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestLog::new(plugin.clone(), "stdout"))
            .stderr(GuestLog::new(plugin.clone(), "stderr"))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            plugin,
            http,
        }
    }

    /// The `http` capability granted to this plugin.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::sluice::plugin::types::Host for HostState {}

impl bindings::sluice::plugin::log::Host for HostState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let plugin = &*self.plugin;
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

/// Renders plugin-supplied fields as `k=v k=v`.
struct FieldList<'a>(&'a [(String, String)]);

impl std::fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        Ok(())
    }
}

/// Longest line kept from guest output; the rest of a longer line is cut so
/// a chatty guest cannot grow host memory without bound.
const MAX_LINE: usize = 8 * 1024;

/// A guest output stream that logs complete lines.
#[derive(Clone)]
struct GuestLog {
    plugin: Arc<str>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestLog {
    fn new(plugin: Arc<str>, stream: &'static str) -> Self {
        GuestLog {
            plugin,
            stream,
            pending: Arc::default(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        tracing::info!(plugin = &*self.plugin, stream = self.stream, "{line}");
    }

    fn push(&self, mut bytes: &[u8]) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let room = MAX_LINE.saturating_sub(pending.len());
            pending.extend_from_slice(&bytes[..nl.min(room)]);
            self.emit(&pending);
            pending.clear();
            bytes = &bytes[nl + 1..];
        }
        let room = MAX_LINE.saturating_sub(pending.len());
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
