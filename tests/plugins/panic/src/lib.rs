//! Test fixture `panic`: fails the way buggy guests do, to exercise the
//! host's trap handling and instance recovery.
//!
//! Promises:
//! - Value `panic`: `panic!("guest panicked on purpose")` (plugins are
//!   built with `panic = "abort"`, so this traps with `unreachable`).
//! - Value `unreachable`: executes a WebAssembly `unreachable` instruction
//!   directly (on a native build, where there is none, it panics).
//! - Anything else: one output on the default route echoing the input's
//!   key, value and headers.
//! - Accepts and ignores any parameters.

use sluice_plugin::{Guest, Input, Output, ProcessError};

/// Traps with a WebAssembly `unreachable` instruction.
#[cfg(target_arch = "wasm32")]
pub fn trap_unreachable() -> ! {
    core::arch::wasm32::unreachable()
}

/// Stand-in for native builds (unit tests): there is no wasm `unreachable`.
#[cfg(not(target_arch = "wasm32"))]
pub fn trap_unreachable() -> ! {
    panic!("unreachable executed (native stand-in)")
}

/// The fixture's export implementation.
struct Panic;

impl Guest for Panic {
    /// Each record exactly as `process` would answer it alone.
    fn process_batch(records: Vec<Input>) -> Vec<Result<Vec<Output>, ProcessError>> {
        sluice_plugin::each(records, Self::process)
    }

    fn init(_params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        match rec.value.as_slice() {
            b"panic" => panic!("guest panicked on purpose"),
            b"unreachable" => trap_unreachable(),
            _ => Ok(vec![Output {
                route: None,
                key: rec.key,
                value: rec.value,
                headers: rec.headers,
            }]),
        }
    }
}

sluice_plugin::export!(Panic);

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: &[u8]) -> Input {
        Input {
            topic: String::new(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            value: value.to_vec(),
            headers: vec![],
        }
    }

    #[test]
    fn echoes_other_values() {
        let out = <Panic as Guest>::process(input(b"hello")).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value, b"hello");
    }

    #[test]
    #[should_panic(expected = "guest panicked on purpose")]
    fn panics_on_panic() {
        let _ = <Panic as Guest>::process(input(b"panic"));
    }

    #[test]
    #[should_panic(expected = "unreachable")]
    fn traps_on_unreachable() {
        let _ = <Panic as Guest>::process(input(b"unreachable"));
    }
}
