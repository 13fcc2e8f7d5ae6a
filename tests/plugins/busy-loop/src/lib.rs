//! Test fixture `busy-loop`: burns CPU without sleeping, to exercise the
//! host's per-call deadline.
//!
//! Promises:
//! - Value `N` (a decimal integer, UTF-8, surrounding whitespace ignored):
//!   spins busily for N milliseconds (measured with `std::time::Instant`),
//!   then returns one output on the default route echoing the input's key,
//!   value and headers.
//! - Value `forever`: spins forever; the loop cannot be optimised away.
//! - Anything else: an `invalid` error.
//! - Accepts and ignores any parameters.

use std::time::{Duration, Instant};

/// Bindings generated from the WIT contract (`wit/0.1.0/plugin.wit`: this fixture stays on 0.1.0, so the host is tested against a 0.1.0 build).
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "transform", path: "../../../wit/0.1.0" });
}

use crate::bindings::{Guest, Input, Output, ProcessError};

use crate::bindings::sluice::plugin::types::ErrorKind;

/// What a record asks the fixture to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Spin for this long, then answer.
    Spin(Duration),
    /// Spin forever.
    Forever,
}

/// Reads the command from a record value.
pub fn parse_command(value: &[u8]) -> Result<Command, String> {
    let text = std::str::from_utf8(value)
        .map_err(|_| "value is not UTF-8".to_string())?
        .trim();
    if text == "forever" {
        return Ok(Command::Forever);
    }
    text.parse::<u64>()
        .map(|ms| Command::Spin(Duration::from_millis(ms)))
        .map_err(|_| format!("value {text:?} is neither a number of milliseconds nor `forever`"))
}

/// Spins (no sleeping) until `duration` has passed.
pub fn spin_for(duration: Duration) {
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < duration {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Spins forever.
pub fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// The fixture's export implementation.
struct BusyLoop;

impl Guest for BusyLoop {
    fn init(_params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        match parse_command(&rec.value) {
            Ok(Command::Spin(duration)) => spin_for(duration),
            Ok(Command::Forever) => spin_forever(),
            Err(message) => {
                return Err(ProcessError {
                    kind: ErrorKind::Invalid,
                    message,
                });
            }
        }
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value: rec.value,
            headers: rec.headers,
        }])
    }
}

bindings::export!(BusyLoop with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(
            parse_command(b"20"),
            Ok(Command::Spin(Duration::from_millis(20)))
        );
        assert_eq!(parse_command(b" 0\n"), Ok(Command::Spin(Duration::ZERO)));
        assert_eq!(parse_command(b"forever"), Ok(Command::Forever));
        assert!(parse_command(b"soon").is_err());
        assert!(parse_command(b"-1").is_err());
        assert!(parse_command(&[0xff]).is_err());
    }

    #[test]
    fn spins_for_at_least_the_duration() {
        let start = Instant::now();
        spin_for(Duration::from_millis(30));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn echoes_the_record() {
        let rec = Input {
            topic: String::new(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: Some(b"k".to_vec()),
            value: b"1".to_vec(),
            headers: vec![],
        };
        let out = <BusyLoop as Guest>::process(rec).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value, b"1");
        assert_eq!(out[0].key.as_deref(), Some(&b"k"[..]));
    }
}
