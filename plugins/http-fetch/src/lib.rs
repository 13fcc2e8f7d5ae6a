//! `http-fetch`: fetch the URL a record names through the host's `http`
//! capability, and emit the page — the crawler example's fetch step.
//!
//! Promises:
//! - The value is a URL (UTF-8, surrounding whitespace ignored), or a JSON
//!   object with a `url` field (as the SQL source publishes rows). It is
//!   fetched with `GET`. The host's allow-list, timeout, size cap, redirect
//!   limit and retries apply.
//! - A response becomes one output on the default route with the input's
//!   key, the body as value, and headers `url` (the URL asked for),
//!   `final-url` (after redirects) and `status`.
//! - With `fail_on_status = true` (the default), a 5xx status is a
//!   `transient` error (retried later) and any other non-2xx status is
//!   `invalid`; with `false`, every status is returned as an output.
//! - A fetch error becomes a `process-error` whose message starts with the
//!   error variant's name: `denied: HOST`, `timeout`, `too-large: CAP`,
//!   `too-many-redirects`, `connection: WHY`, `invalid-request: WHY`. The
//!   kind is `transient` for `connection` and `timeout`, `invalid` for the
//!   rest.
//! - A parameter `header.NAME = VALUE` sends the request header `NAME:
//!   VALUE` with every fetch (e.g. an API key); the host drops it on a
//!   redirect to another origin.
//! - An unknown parameter makes `init` fail, naming it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_plugin::http::{self, FetchError};
use sluice_plugin::{ErrorKind, Header};
use sluice_plugin::{Guest, Input, Output, ProcessError};

static FAIL_ON_STATUS: AtomicBool = AtomicBool::new(true);
/// Request headers from `header.*` parameters, in the order given.
static HEADERS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

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

/// The URL a record names: the value itself, or its JSON `url` field.
pub fn url_of(value: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(value)
        .map_err(|_| "value is not a UTF-8 URL".to_owned())?
        .trim();
    if text.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("value is not valid JSON: {e}"))?;
        return match v.get("url") {
            Some(serde_json::Value::String(u)) => Ok(u.trim().to_owned()),
            _ => Err("JSON value has no string field `url`".to_owned()),
        };
    }
    Ok(text.to_owned())
}

/// What a status means when `fail_on_status` is on.
pub fn status_error(status: u16) -> Option<(ErrorKind, String)> {
    match status {
        200..=299 => None,
        500..=599 => Some((ErrorKind::Transient, format!("status {status}"))),
        _ => Some((ErrorKind::Invalid, format!("status {status}"))),
    }
}

struct HttpFetch;

impl Guest for HttpFetch {
    /// Each record exactly as `process` would answer it alone.
    fn process_batch(records: Vec<Input>) -> Vec<Result<Vec<Output>, ProcessError>> {
        sluice_plugin::each(records, Self::process)
    }

    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        let params =
            sluice_plugin::Params::new("http-fetch", &["fail_on_status", "header."], params)?;
        FAIL_ON_STATUS.store(true, Ordering::Relaxed);
        let mut headers = Vec::new();
        for (k, v) in params.iter() {
            if let Some(name) = k.strip_prefix("header.") {
                headers.push((name.to_owned(), v.to_owned()));
                continue;
            }
            // The only other name Params admits.
            let on = v
                .parse::<bool>()
                .map_err(|_| format!("fail_on_status must be true or false, not {v:?}"))?;
            FAIL_ON_STATUS.store(on, Ordering::Relaxed);
        }
        *HEADERS
            .lock()
            .map_err(|_| "header table poisoned".to_owned())? = headers;
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let url = url_of(&rec.value).map_err(|message| ProcessError {
            kind: ErrorKind::Invalid,
            message,
        })?;
        let headers = HEADERS
            .lock()
            .map(|h| {
                h.iter()
                    .map(|(name, value)| Header {
                        name: name.clone(),
                        value: value.clone().into_bytes(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = http::Request {
            method: "GET".to_owned(),
            url: url.clone(),
            headers,
            body: None,
        };
        let resp = http::fetch(&request).map_err(|err| {
            let (kind, message) = describe(&err);
            ProcessError { kind, message }
        })?;
        if FAIL_ON_STATUS.load(Ordering::Relaxed)
            && let Some((kind, message)) = status_error(resp.status)
        {
            return Err(ProcessError { kind, message });
        }
        let header = |name: &str, value: String| Header {
            name: name.to_owned(),
            value: value.into_bytes(),
        };
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value: resp.body,
            headers: vec![
                header("url", url),
                header("final-url", resp.final_url),
                header("status", resp.status.to_string()),
            ],
        }])
    }
}

sluice_plugin::export!(HttpFetch);

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

    #[test]
    fn urls_from_text_or_json() {
        assert_eq!(url_of(b" http://a/b \n").unwrap(), "http://a/b");
        assert_eq!(
            url_of(br#"{"url":"http://a/c","depth":1}"#).unwrap(),
            "http://a/c"
        );
        assert!(url_of(br#"{"href":"x"}"#).unwrap_err().contains("`url`"));
        assert!(url_of(&[0xff]).is_err());
    }

    #[test]
    fn statuses() {
        assert!(status_error(200).is_none());
        assert!(matches!(status_error(503), Some((ErrorKind::Transient, _))));
        assert!(matches!(status_error(404), Some((ErrorKind::Invalid, _))));
    }
}
