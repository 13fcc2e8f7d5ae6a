//! Test fixture `big-output`: returns one very large output, to exercise
//! the host's memory limit on results.
//!
//! Promises:
//! - Value `N` (a decimal byte count, UTF-8, surrounding whitespace
//!   ignored): one output on the default route with the input's key whose
//!   value is N bytes of `b'x'`.
//! - An empty or non-numeric value means N = 52428800 (50 MiB).
//! - Accepts and ignores any parameters.

/// Bindings generated from the WIT contract (`wit/0.1.0/plugin.wit`: this fixture stays on 0.1.0, so the host is tested against a 0.1.0 build).
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "transform", path: "../../../wit/0.1.0" });
}

use crate::bindings::{Guest, Input, Output, ProcessError};

/// Output size when the value does not give one: 50 MiB.
pub const DEFAULT_SIZE: usize = 50 * 1024 * 1024;

/// The output size a record value asks for.
pub fn requested_size(value: &[u8]) -> usize {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_SIZE)
}

/// The fixture's export implementation.
struct BigOutput;

impl Guest for BigOutput {
    fn init(_params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let value = vec![b'x'; requested_size(&rec.value)];
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value,
            headers: Vec::new(),
        }])
    }
}

bindings::export!(BigOutput with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(requested_size(b""), 52_428_800);
        assert_eq!(requested_size(b"abc"), DEFAULT_SIZE);
        assert_eq!(requested_size(b"10"), 10);
        assert_eq!(requested_size(b" 0 "), 0);
        assert_eq!(requested_size(&[0xff]), DEFAULT_SIZE);
    }

    #[test]
    fn output_is_all_x() {
        let rec = Input {
            topic: String::new(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: Some(b"k".to_vec()),
            value: b"1000".to_vec(),
            headers: vec![],
        };
        let out = <BigOutput as Guest>::process(rec).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value.len(), 1000);
        assert!(out[0].value.iter().all(|&b| b == b'x'));
        assert_eq!(out[0].route, None);
    }
}
