//! The guest SDK for sluice plugins written in Rust.
//!
//! Every Rust plugin needs the same few things, and this crate holds the one
//! copy of each:
//! - [`bindings`]: the types and traits generated from `wit/plugin.wit`
//!   (world `transform`, package `sluice:plugin`), re-exported at the root
//!   ([`Guest`], [`Input`], [`Output`], [`ProcessError`], ...);
//! - [`export!`]: makes a type implementing [`Guest`] the component's export;
//! - [`Params`]: checks `init`'s parameters, naming an unknown one the same
//!   way in every plugin;
//! - [`each`]: `process-batch` as a loop over `process`, the answer every
//!   per-record plugin gives;
//! - `html` (feature `html`): whitespace, character references, the
//!   visible-text walker over a scraper DOM and a streaming tokenizer.
//!
//! ```ignore
//! use sluice_plugin::{Guest, Input, Output, Params, ProcessError};
//!
//! struct Upper;
//! impl Guest for Upper {
//!     fn init(params: Vec<(String, String)>) -> Result<(), String> {
//!         Params::new("upper", &[], params).map(drop)
//!     }
//!     fn process(rec: Input) -> Result<Vec<Output>, ProcessError> { todo!() }
//!     fn process_batch(records: Vec<Input>) -> Vec<Result<Vec<Output>, ProcessError>> {
//!         sluice_plugin::each(records, Self::process)
//!     }
//! }
//! sluice_plugin::export!(Upper);
//! ```
//!
//! Promises: the bindings are generated once, here, from the repository's
//! current WIT; a plugin that needs the 0.1.0 contract generates its own.

// The export macro names this crate by its external name, also from inside.
extern crate self as sluice_plugin;

#[cfg(feature = "html")]
pub mod html;
mod params;

pub use params::Params;

/// Bindings generated from the WIT contract (`wit/plugin.wit`).
#[allow(clippy::too_many_arguments, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "transform",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "sluice_plugin::bindings",
    });
}

pub use bindings::sluice::plugin::types::{ErrorKind, Header};
pub use bindings::sluice::plugin::{http, log};
pub use bindings::{Guest, Input, Output, ProcessError, export};

/// Answers a batch one record at a time, in order: what `process-batch`
/// means for a plugin whose records do not depend on each other.
pub fn each(
    records: Vec<Input>,
    process: impl FnMut(Input) -> Result<Vec<Output>, ProcessError>,
) -> Vec<Result<Vec<Output>, ProcessError>> {
    records.into_iter().map(process).collect()
}

/// An `invalid` error: the record will never succeed and is dead-lettered.
pub fn invalid(message: impl Into<String>) -> ProcessError {
    ProcessError {
        kind: ErrorKind::Invalid,
        message: message.into(),
    }
}

/// A `transient` error: the host retries the record with backoff.
pub fn transient(message: impl Into<String>) -> ProcessError {
    ProcessError {
        kind: ErrorKind::Transient,
        message: message.into(),
    }
}
