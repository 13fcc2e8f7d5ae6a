//! Test fixture `sleeper`: blocks in WASI clock waits (`std::thread::sleep`),
//! where epoch interruption alone cannot stop it, to exercise the host's
//! wall-clock deadline.
//!
//! Promises:
//! - Value `N` (decimal milliseconds): sleeps N ms, then echoes the record.
//! - Value `forever`: sleeps forever, one hour at a time.
//! - Anything else: an `invalid` error.
//! - Param `init_sleep` (`N` or `forever`): sleeps that long in `init`.
//! - Param `fail_init_between` (`T1,T2`, milliseconds since the Unix epoch):
//!   `init` refuses while the wall clock is in [T1, T2), so a test can make
//!   a rebuild fail where the first start succeeded.

use std::time::Duration;

/// Bindings generated from the WIT contract (`wit/0.1.0/plugin.wit`: this fixture stays on 0.1.0, so the host is tested against a 0.1.0 build).
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "transform", path: "../../../wit/0.1.0" });
}

use crate::bindings::sluice::plugin::types::ErrorKind;
use crate::bindings::{Guest, Input, Output, ProcessError};

/// How long to sleep: `Some(ms)`, or `None` for forever.
pub fn parse(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "forever" => Ok(None),
        t => t
            .parse()
            .map(Some)
            .map_err(|_| format!("{t:?} is neither milliseconds nor `forever`")),
    }
}

/// Sleep as `parse` said.
pub fn sleep(ms: Option<u64>) {
    match ms {
        Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}

struct Sleeper;

impl Guest for Sleeper {
    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        for (k, v) in params {
            match k.as_str() {
                "init_sleep" => sleep(parse(&v)?),
                "fail_init_between" => {
                    let (from, to) = v
                        .split_once(',')
                        .and_then(|(a, b)| Some((a.parse::<u128>().ok()?, b.parse::<u128>().ok()?)))
                        .ok_or_else(|| format!("fail_init_between: {v:?} is not T1,T2"))?;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_err(|e| e.to_string())?
                        .as_millis();
                    if (from..to).contains(&now) {
                        return Err(format!("init refused at {now} (inside {from}..{to})"));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let text = String::from_utf8_lossy(&rec.value);
        let ms = parse(&text).map_err(|message| ProcessError {
            kind: ErrorKind::Invalid,
            message,
        })?;
        sleep(ms);
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value: rec.value,
            headers: rec.headers,
        }])
    }
}

bindings::export!(Sleeper with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse("20"), Ok(Some(20)));
        assert_eq!(parse(" forever\n"), Ok(None));
        assert!(parse("soon").is_err());
    }
}
