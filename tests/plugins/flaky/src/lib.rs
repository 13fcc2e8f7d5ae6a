//! Test fixture `flaky`: a passthrough that answers `transient` for every
//! record whose value contains the `transient` parameter's text, and
//! `invalid` for values containing the `invalid` parameter's text. It
//! stands for a plugin whose dependency is down (an HTTP 503, a banned
//! crawler): the host must retry such a record, and never commit past it
//! while it is unfinished.
//!
//! Promises: with no parameters it is a plain passthrough; any parameter
//! other than `transient` and `invalid` is refused by `init`, by name.

use std::sync::OnceLock;

use sluice_plugin::ErrorKind;
use sluice_plugin::{Guest, Input, Output, ProcessError};

/// The markers set by `init`: (transient, invalid).
static MARKERS: OnceLock<(Option<String>, Option<String>)> = OnceLock::new();

/// The fixture's export implementation.
struct Flaky;

impl Guest for Flaky {
    /// Each record exactly as `process` would answer it alone.
    fn process_batch(records: Vec<Input>) -> Vec<Result<Vec<Output>, ProcessError>> {
        sluice_plugin::each(records, Self::process)
    }

    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        let (mut transient, mut invalid) = (None, None);
        for (k, v) in params {
            match k.as_str() {
                "transient" => transient = Some(v),
                "invalid" => invalid = Some(v),
                other => return Err(format!("flaky: unknown parameter `{other}`")),
            }
        }
        let _ = MARKERS.set((transient, invalid));
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let (transient, invalid) = MARKERS.get_or_init(|| (None, None));
        let has = |m: &Option<String>| {
            m.as_deref()
                .is_some_and(|m| rec.value.windows(m.len().max(1)).any(|w| w == m.as_bytes()))
        };
        if has(transient) {
            return Err(ProcessError {
                kind: ErrorKind::Transient,
                message: "flaky: marked transient".into(),
            });
        }
        if has(invalid) {
            return Err(ProcessError {
                kind: ErrorKind::Invalid,
                message: "flaky: marked invalid".into(),
            });
        }
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value: rec.value,
            headers: rec.headers,
        }])
    }
}

sluice_plugin::export!(Flaky);
