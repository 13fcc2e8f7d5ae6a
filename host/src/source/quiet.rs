//! librdkafka's log lines and global errors, forwarded to sluice's log at
//! most once a minute per kind.
//!
//! Promise: while a broker is unreachable, every client would otherwise
//! repeat the same "connection refused" and "all brokers down" lines many
//! times a second and bury everything else. Here the first line of each
//! kind (facility, or error code) is logged at once; repeats within a
//! minute are counted and reported with the next line of that kind.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// How long repeats of one kind are held back.
const QUIET: Duration = Duration::from_secs(60);

/// Per-kind: when it was last logged, and how many repeats since.
#[derive(Debug, Default)]
pub struct QuietLog {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl QuietLog {
    /// Whether a line of `kind` should be logged now, and how many were
    /// held back since the last one.
    fn admit(&self, kind: &str) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match seen.get_mut(kind) {
            Some((at, held)) if now.duration_since(*at) < QUIET => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let n = *held;
                *at = now;
                *held = 0;
                Some(n)
            }
            None => {
                seen.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }

    /// Forward a librdkafka log line at its level, unless one of facility `fac`
    /// was logged less than a minute ago (then it is only counted).
    pub fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let Some(held) = self.admit(fac) else { return };
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, held, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", fac, held, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, held, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, held, "{message}"),
        }
    }

    /// Log a client-wide error as a warning, unless one with the same error
    /// code was logged less than a minute ago (then it is only counted).
    pub fn error(&self, error: &KafkaError, reason: &str) {
        let kind = format!("{:?}", error.rdkafka_error_code());
        if let Some(held) = self.admit(&kind) {
            tracing::warn!(target: "librdkafka", %error, held, "{reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_held_back_and_counted() {
        let q = QuietLog::default();
        assert_eq!(q.admit("FAIL"), Some(0));
        assert_eq!(q.admit("FAIL"), None);
        assert_eq!(q.admit("FAIL"), None);
        // Another kind is logged at once.
        assert_eq!(q.admit("SESSTMOUT"), Some(0));
        // A minute later the next one reports the two held back.
        let mut seen = q.seen.lock().unwrap();
        let at = &mut seen.get_mut("FAIL").unwrap().0;
        *at = at.checked_sub(QUIET).unwrap();
        drop(seen);
        assert_eq!(q.admit("FAIL"), Some(2));
    }
}
