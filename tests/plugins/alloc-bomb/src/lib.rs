//! Test fixture `alloc-bomb`: allocates and touches memory, to exercise the
//! host's memory limit.
//!
//! Promises:
//! - Value `N` (a decimal byte count, UTF-8, surrounding whitespace
//!   ignored): allocates N bytes, writes to every 4 KiB page of them, and
//!   returns one output on the default route with the input's key whose
//!   value is N in decimal.
//! - Value `forever`: allocates 1 MiB chunks forever, writing to every page
//!   of each and keeping them all, until the allocator fails (which aborts:
//!   a trap).
//! - Anything else: an `invalid` error. An allocation the memory limit
//!   refuses aborts (a trap), as any Rust program's would.
//! - Accepts and ignores any parameters.

/// Bindings generated from the WIT contract (`wit/0.1.0/plugin.wit`: this fixture stays on 0.1.0, so the host is tested against a 0.1.0 build).
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "transform", path: "../../../wit/0.1.0" });
}

use crate::bindings::{Guest, Input, Output, ProcessError};

use crate::bindings::sluice::plugin::types::ErrorKind;

/// Bytes between two writes: the host's (smallest common) page size.
const PAGE: usize = 4096;

/// Size of each chunk `forever` allocates.
const CHUNK: usize = 1 << 20;

/// What a record asks the fixture to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Allocate this many bytes.
    Bytes(usize),
    /// Allocate until something gives.
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
    text.parse::<usize>()
        .map(Command::Bytes)
        .map_err(|_| format!("value {text:?} is neither a byte count nor `forever`"))
}

/// Allocates `n` bytes and writes to every page of them.
pub fn allocate_touched(n: usize) -> Vec<u8> {
    let mut block = vec![0u8; n];
    for i in (0..n).step_by(PAGE) {
        block[i] = 1;
    }
    if let Some(last) = block.last_mut() {
        *last = 1;
    }
    std::hint::black_box(block)
}

/// Allocates, touches and keeps 1 MiB chunks until allocation fails.
pub fn allocate_forever() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(allocate_touched(CHUNK));
        std::hint::black_box(&kept);
    }
}

/// The fixture's export implementation.
struct AllocBomb;

impl Guest for AllocBomb {
    fn init(_params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let n = match parse_command(&rec.value) {
            Ok(Command::Bytes(n)) => n,
            Ok(Command::Forever) => allocate_forever(),
            Err(message) => {
                return Err(ProcessError {
                    kind: ErrorKind::Invalid,
                    message,
                });
            }
        };
        let block = allocate_touched(n);
        drop(block);
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value: n.to_string().into_bytes(),
            headers: Vec::new(),
        }])
    }
}

bindings::export!(AllocBomb with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse_command(b"8388608"), Ok(Command::Bytes(8_388_608)));
        assert_eq!(parse_command(b"forever\n"), Ok(Command::Forever));
        assert!(parse_command(b"lots").is_err());
    }

    #[test]
    fn allocates_and_touches() {
        let block = allocate_touched(3 * PAGE + 5);
        assert_eq!(block.len(), 3 * PAGE + 5);
        assert!(block.iter().step_by(PAGE).all(|&b| b == 1));
        assert_eq!(block.last(), Some(&1));
        assert!(allocate_touched(0).is_empty());
    }

    #[test]
    fn answers_with_the_size() {
        let rec = Input {
            topic: String::new(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: Some(b"k".to_vec()),
            value: b"1024".to_vec(),
            headers: vec![],
        };
        let out = <AllocBomb as Guest>::process(rec).unwrap();
        assert_eq!(out[0].value, b"1024");
    }
}
