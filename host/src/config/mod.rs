//! Configuration: the pipeline file's serde types, one file per concern,
//! plus the helpers they share (byte sizes, `${VAR}` interpolation, secrets that never print).
//!
//! Promise: every struct refuses unknown fields, so a typo is an error that
//! names the key, and every field's `///` comment is its user documentation.

pub mod admin;
pub mod bytes;
pub mod http;
pub mod interpolate;
pub mod kafka;
pub mod pipeline;
pub mod plugin;
pub mod secret;
pub mod sql;
