//! Test fixture `fetcher`: fetches the URL a record names through the host's
//! `http` import, to exercise that capability end to end.
//!
//! Promises:
//! - The value is a URL (UTF-8, surrounding whitespace ignored). It is
//!   fetched with `GET`, no extra headers and no body.
//! - A response (any status) becomes one output on the default route with
//!   the input's key, the response body as value, and headers `status` (the
//!   decimal status code) and `final-url` (the URL after redirects).
//! - A fetch error becomes a `process-error` whose message starts with the
//!   error variant's name: `denied: HOST`, `timeout`, `too-large: CAP`,
//!   `too-many-redirects`, `connection: WHY`, `invalid-request: WHY`. The
//!   kind is `transient` for `connection` and `timeout`, `invalid` for the
//!   rest.
//! - A value that is not UTF-8 is an `invalid` error.
//! - Accepts and ignores any parameters.

/// Bindings generated from the WIT contract (`wit/plugin.wit`).
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "transform", path: "../../../wit" });
}

use crate::bindings::sluice::plugin::http::{self, FetchError};
use crate::bindings::sluice::plugin::types::{ErrorKind, Header};
use crate::bindings::{Guest, Input, Output, ProcessError};

/// How a fetch error reaches the pipeline: its kind and message.
pub fn describe(err: &FetchError) -> (ErrorKind, String) {
    match err {
        FetchError::Denied(host) => (ErrorKind::Invalid, format!("denied: {host}")),
        FetchError::Timeout => (ErrorKind::Transient, "timeout".to_owned()),
        FetchError::TooLarge(cap) => (ErrorKind::Invalid, format!("too-large: {cap}")),
        FetchError::TooManyRedirects => (ErrorKind::Invalid, "too-many-redirects".to_owned()),
        FetchError::Connection(why) => (ErrorKind::Transient, format!("connection: {why}")),
        FetchError::InvalidRequest(why) => (ErrorKind::Invalid, format!("invalid-request: {why}")),
    }
}

/// The fixture's export implementation.
struct Fetcher;

impl Guest for Fetcher {
    fn init(_params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let url = std::str::from_utf8(&rec.value)
            .map_err(|_| ProcessError {
                kind: ErrorKind::Invalid,
                message: "value is not a UTF-8 URL".to_owned(),
            })?
            .trim()
            .to_owned();
        let request = http::Request {
            method: "GET".to_owned(),
            url,
            headers: Vec::new(),
            body: None,
        };
        match http::fetch(&request) {
            Ok(resp) => Ok(vec![Output {
                route: None,
                key: rec.key,
                value: resp.body,
                headers: vec![
                    Header {
                        name: "status".to_owned(),
                        value: resp.status.to_string().into_bytes(),
                    },
                    Header {
                        name: "final-url".to_owned(),
                        value: resp.final_url.into_bytes(),
                    },
                ],
            }]),
            Err(err) => {
                let (kind, message) = describe(&err);
                Err(ProcessError { kind, message })
            }
        }
    }
}

bindings::export!(Fetcher with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_start_with_the_variant_name() {
        let cases = [
            (
                FetchError::Denied("h".into()),
                "denied: h",
                ErrorKind::Invalid,
            ),
            (FetchError::Timeout, "timeout", ErrorKind::Transient),
            (
                FetchError::TooLarge(10),
                "too-large: 10",
                ErrorKind::Invalid,
            ),
            (
                FetchError::TooManyRedirects,
                "too-many-redirects",
                ErrorKind::Invalid,
            ),
            (
                FetchError::Connection("refused".into()),
                "connection: refused",
                ErrorKind::Transient,
            ),
            (
                FetchError::InvalidRequest("bad".into()),
                "invalid-request: bad",
                ErrorKind::Invalid,
            ),
        ];
        for (err, message, kind) in cases {
            let (k, m) = describe(&err);
            assert_eq!(m, message);
            assert_eq!(k, kind, "{message}");
        }
    }
}
