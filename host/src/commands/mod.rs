//! The CLI's commands. Each returns `anyhow::Result`; an error wrapped in
//! [`Usage`] means "bad input from the user" and exits with status 2.

pub mod consume;
pub mod dlq;
pub mod pipeline;
pub mod plugin;
pub mod produce;
pub mod scaffold;

/// Marks an error as a usage, config or plugin-loading error (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Usage(pub anyhow::Error);

/// Wrap any error as a usage error.
pub fn usage(err: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Usage(err.into()))
}

/// JSON for bytes: a string when UTF-8, else base64 (the bool says which).
pub fn bytes_to_json(bytes: &[u8]) -> (serde_json::Value, bool) {
    use base64::Engine as _;
    match std::str::from_utf8(bytes) {
        Ok(s) => (serde_json::Value::String(s.to_owned()), false),
        Err(_) => (
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            true,
        ),
    }
}
