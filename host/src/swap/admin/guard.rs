//! Who may use the admin API: the `Host` check and the bearer token.
//!
//! Promises:
//! - A request whose `Host` header is not one of this listener's names
//!   (the listen address, `localhost`, `127.0.0.1` and `[::1]` with its
//!   port, and the `[admin] hosts`) gets 421 before anything else: a page
//!   that rebinds its DNS name to 127.0.0.1 still sends its own name.
//! - With a token configured, every request needs `Authorization: Bearer
//!   <token>`; the comparison takes the same time whatever the guess
//!   (SHA-256 of both, compared with `subtle`), and a miss gets 401.
//! - Without a token, reads pass and anything else gets 403, saying how
//!   to set one. A browser cannot forge the `Authorization` header cross
//!   origin without a CORS preflight, which this API never grants.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::admin::AdminConfig;

/// What [`check`] lets through.
pub struct Guard {
    /// SHA-256 of the token, when one is set.
    token: Option<[u8; 32]>,
    /// Accepted `Host` values, lower case.
    hosts: Vec<String>,
}

impl Guard {
    /// The guard of a listener bound to `addr` with `cfg`.
    pub fn new(cfg: &AdminConfig, addr: SocketAddr) -> Guard {
        let port = addr.port();
        let mut hosts = vec![
            addr.to_string(),
            cfg.listen.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        for h in &cfg.hosts {
            hosts.push(h.clone());
            if !has_port(h) {
                hosts.push(format!("{h}:{port}"));
            }
        }
        let mut hosts: Vec<String> = hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        hosts.sort();
        hosts.dedup();
        Guard {
            token: cfg.token().map(digest),
            hosts,
        }
    }

    /// Whether `host` (the `Host` header) names this listener.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        host.is_some_and(|h| {
            let h = h.trim().to_ascii_lowercase();
            self.hosts.contains(&h)
        })
    }

    /// Whether `given` is the token (false when none is set).
    pub fn token_ok(&self, given: &str) -> bool {
        self.token
            .is_some_and(|t| bool::from(t.ct_eq(&digest(given))))
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Whether a host name already carries a port (`name:1`, `[::1]:1`; a
/// bare IPv6 address has colons but no port).
fn has_port(h: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once("]:").is_some_and(|(_, p)| digits(p));
    }
    match h.split_once(':') {
        Some((_, p)) => !p.contains(':') && digits(p),
        None => false,
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn refuse(status: StatusCode, error: &str) -> Response {
    let body = serde_json::json!({ "status": "refused", "error": error });
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"sluice admin\""),
        );
    }
    resp
}

/// The middleware in front of every admin route.
pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !guard.host_ok(host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header does not name this admin listener; add the name to `[admin] hosts` to use it",
        );
    }
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    match (guard.token.is_some(), bearer(req.headers())) {
        (false, _) if reads => {}
        (false, _) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "reload and rollback are off because no admin token is set: add \
                 `token = \"${SLUICE_ADMIN_TOKEN}\"` to [admin], set SLUICE_ADMIN_TOKEN, \
                 and send `Authorization: Bearer <token>`",
            );
        }
        (true, None) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "send the admin token as `Authorization: Bearer <token>`",
            );
        }
        (true, Some(given)) if !guard.token_ok(given) => {
            return refuse(StatusCode::UNAUTHORIZED, "wrong admin token");
        }
        (true, Some(_)) => {}
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, token: Option<&str>, hosts: &[&str]) -> Guard {
        let cfg = AdminConfig {
            listen: listen.parse().unwrap(),
            token: token.map(Into::into),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        Guard::new(&cfg, cfg.listen)
    }

    #[test]
    fn hosts_are_the_listeners_names() {
        let g = guard("127.0.0.1:9465", None, &["Sluice.internal", "proxy:8080"]);
        for ok in [
            "127.0.0.1:9465",
            "localhost:9465",
            "LOCALHOST:9465",
            "[::1]:9465",
            "sluice.internal",
            "sluice.internal:9465",
            "proxy:8080",
        ] {
            assert!(g.host_ok(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9465",
            "localhost",
            "localhost:9464",
            "127.0.0.1",
            "proxy:9465",
            "",
        ] {
            assert!(!g.host_ok(Some(bad)), "{bad}");
        }
        assert!(!g.host_ok(None));
        let g = guard("[::1]:7", None, &["fd00::1"]);
        assert!(g.host_ok(Some("[::1]:7")));
        assert!(!has_port("fd00::1"));
        assert!(has_port("[fd00::1]:7") && has_port("a:1") && !has_port("a"));
    }

    #[test]
    fn tokens_compare_whole() {
        let g = guard("127.0.0.1:1", Some("s3cret-token"), &[]);
        assert!(g.token_ok("s3cret-token"));
        for bad in ["", "s3cret", "s3cret-token ", "S3CRET-TOKEN"] {
            assert!(!g.token_ok(bad), "{bad:?}");
        }
        assert!(!guard("127.0.0.1:1", None, &[]).token_ok(""));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
