//! Test fixture `init-trap`: a build that traps in `init`, whatever its
//! parameters. It stands for a broken new version of a plugin: the host
//! must refuse to start it (and, on a hot swap, keep the running version).
//!
//! Promises: `init` always traps (a guest panic, built with
//! `panic = "abort"`); `process` is never reached, and would echo the
//! record if it were.

/// Bindings generated from the WIT contract (`wit/0.1.0/plugin.wit`: this fixture stays on 0.1.0, so the host is tested against a 0.1.0 build).
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "transform", path: "../../../wit/0.1.0" });
}

use crate::bindings::{Guest, Input, Output, ProcessError};

/// The fixture's export implementation.
struct InitTrap;

impl Guest for InitTrap {
    fn init(_params: Vec<(String, String)>) -> Result<(), String> {
        panic!("init-trap: this build always traps in init")
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value: rec.value,
            headers: rec.headers,
        }])
    }
}

bindings::export!(InitTrap with_types_in bindings);
