//! The one place the host generates bindings for the `sluice:plugin` WIT
//! package. Everything else in the host uses these types.
//!
//! Promise: the world named here is the world every plugin is checked against
//! when it is loaded; a component that does not export it is refused.

wasmtime::component::bindgen!({
    world: "transform",
    path: "../wit",
    // A fetch cut off by the call's deadline traps the call, as an epoch
    // interrupt would (see plugin/host/http.rs).
    imports: { "sluice:plugin/http.fetch": trappable },
});

pub use self::sluice::plugin::log::Level;
pub use self::sluice::plugin::types::{ErrorKind, Header};

/// The fully qualified name of the world plugins implement.
pub const WORLD: &str = "sluice:plugin/transform@0.1.0";
