//! The one place the host generates bindings for the `sluice:plugin` WIT
//! package. Everything else in the host uses these types.
//!
//! Two versions of the world are served side by side:
//! - `sluice:plugin/transform@0.2.0` (`wit/plugin.wit`), which exports
//!   `process-batch` beside `process`;
//! - `sluice:plugin/transform@0.1.0` (`wit/0.1.0/plugin.wit`), one record
//!   per call. Its types, `log` and `http` are the 0.2.0 ones (the WIT is
//!   the same), so the rest of the host sees one set of types whichever
//!   version a plugin was built against.
//!
//! Promise: a component that exports neither world is refused when it is
//! loaded.
#![allow(missing_docs, reason = "`bindgen!` generates items it cannot document")]

wasmtime::component::bindgen!({
    world: "transform",
    path: "../wit",
    // A fetch cut off by the call's deadline traps the call, as an epoch
    // interrupt would (see plugin/host/http.rs).
    imports: { "sluice:plugin/http.fetch": trappable },
});

/// The 0.1.0 world: only its exports are generated here; every type and
/// import comes from the 0.2.0 bindings above.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "transform",
        path: "../wit/0.1.0",
        with: {
            "sluice:plugin/types@0.1.0": super::sluice::plugin::types,
            "sluice:plugin/log@0.1.0": super::sluice::plugin::log,
            "sluice:plugin/http@0.1.0": super::sluice::plugin::http,
        },
    });
}

pub use self::sluice::plugin::log::Level;
pub use self::sluice::plugin::types::{ErrorKind, Header};

/// The fully qualified name of the world plugins implement.
pub const WORLD: &str = "sluice:plugin/transform@0.2.0";

/// The earlier world, still loaded and run (one record per call).
pub const WORLD_0_1: &str = "sluice:plugin/transform@0.1.0";
