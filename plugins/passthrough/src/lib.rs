//! Passthrough plugin: returns exactly one output carrying the input's key,
//! value and headers on the default route.
//!
//! Promises: never fails, never copies the record (the key, value and header
//! vectors are moved into the output), takes no parameters (any parameter is
//! rejected by `init` with a message naming it). Used by the per-call
//! benchmark, so it is kept as lean as possible.

use sluice_plugin::{Guest, Input, Output, ProcessError};

/// The plugin's export implementation.
struct Passthrough;

impl Guest for Passthrough {
    /// Each record exactly as `process` would answer it alone.
    fn process_batch(records: Vec<Input>) -> Vec<Result<Vec<Output>, ProcessError>> {
        sluice_plugin::each(records, Self::process)
    }

    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        check_params(&params)
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

/// Passthrough takes no parameters: the first one given is an error.
fn check_params(params: &[(String, String)]) -> Result<(), String> {
    sluice_plugin::Params::new("passthrough", &[], params.to_vec()).map(drop)
}

sluice_plugin::export!(Passthrough);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::Header;

    #[test]
    fn no_params_is_ok() {
        assert_eq!(check_params(&[]), Ok(()));
    }

    #[test]
    fn unknown_param_is_named() {
        let err = check_params(&[("foo".into(), "1".into())]).unwrap_err();
        assert!(err.contains("`foo`"), "{err}");
    }

    #[test]
    fn moves_record_unchanged() {
        let rec = Input {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            timestamp: None,
            key: Some(b"k".to_vec()),
            value: b"v".to_vec(),
            headers: vec![Header {
                name: "h".into(),
                value: b"x".to_vec(),
            }],
        };
        let out = <Passthrough as Guest>::process(rec).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].route, None);
        assert_eq!(out[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(out[0].value, b"v");
        assert_eq!(out[0].headers[0].name, "h");
    }
}
