//! The `http` import: outbound HTTP that the host fetches on a plugin's
//! behalf, with reqwest's blocking client, bounded by the plugin's `http`
//! config ([`HttpConfig`]).
//!
//! Promises:
//! - Deny by default. A plugin without an `http` config reaches no host; with
//!   one, only hosts its allow-list matches. The request URL's host is checked
//!   before anything is sent, and every redirect target before it is
//!   followed, so a denied host never receives a request from the plugin.
//! - One fetch takes at most `timeout` in total: its attempts, the backoff
//!   pauses between them, its redirects and reading the body share that
//!   budget. A retry whose pause would not fit is not made.
//! - A response body is never buffered past `max_bytes + 1` bytes, and a
//!   declared `Content-Length` above the cap is refused before any of the
//!   body is read.
//! - Connection errors and 5xx responses are retried up to `retries` times,
//!   pausing `backoff`, then twice that, and so on. When the retries are used
//!   up a 5xx is returned as a normal response with its status.
//! - Every failure reaches the plugin as a typed `fetch-error`; no fetch
//!   traps the plugin.
//! - One reqwest client (one connection pool, one runtime thread) per plugin
//!   instance, built on its first fetch and reused by every later one, also
//!   across rebuilds after a trap. It is built lazily, on the worker thread,
//!   because reqwest's blocking client must not be built inside an async
//!   runtime, and pipelines create their instances inside one.
//!
//! The per-call `deadline` is enforced by epoch interruption, which only
//! fires while guest code runs: a fetch in progress is not interrupted, and a
//! call whose fetch outlasts the deadline traps with a deadline error as soon
//! as the fetch returns to the guest, even if it succeeded. A plugin that
//! fetches needs a `deadline` larger than its HTTP `timeout`.

use std::io::Read as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::blocking::Client;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::bindings::Header;
use super::bindings::sluice::plugin::http::{FetchError, Host, Request, Response};
use super::host::HostState;
use crate::config::http::HttpConfig;

/// Headers the host sets itself; a plugin that supplies one gets
/// `invalid-request`. `host` would make the allow-list check a different
/// name from the one the server sees; `user-agent` belongs to the config.
const HOST_OWNED: [HeaderName; 5] = [
    header::HOST,
    header::USER_AGENT,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// Why an `http` config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("http.allow entry {pattern:?} is not a host pattern: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("http.user_agent {0:?} is not a valid header value")]
    BadUserAgent(String),
}

/// The hosts a plugin may reach: exact names, and `*.suffix` wildcards that
/// match any name ending in `.suffix` (but not `suffix` itself).
///
/// Patterns and hosts are both normalised by the URL parser that reqwest
/// uses (lower case, punycode, canonical IP addresses), with any trailing
/// dot removed, so the check sees the same name the connection will use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    exact: Vec<String>,
    /// Each stored with its leading dot: `.example.com`.
    suffixes: Vec<String>,
}

impl AllowList {
    /// Parse patterns; an empty list allows nothing.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PolicyError> {
        let mut list = AllowList::default();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let bad = |reason: &str| PolicyError::BadPattern {
                pattern: pattern.to_owned(),
                reason: reason.to_owned(),
            };
            let trimmed = pattern.trim();
            let (wildcard, name) = match trimmed.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, trimmed),
            };
            if name.is_empty() {
                return Err(bad("it names no host"));
            }
            if name.contains('*') {
                return Err(bad(
                    "`*` may only start a pattern, as in `*.example.com`; list hosts explicitly",
                ));
            }
            if name.contains(['/', '@', '?', '#']) || name.contains(char::is_whitespace) {
                return Err(bad(
                    "give a host name only, without scheme, path or credentials",
                ));
            }
            // Look for a port in the text: the URL parser drops one that
            // equals the scheme's default, so `[::1]:80` would parse clean.
            let port = match name.strip_prefix('[') {
                Some(rest) => rest
                    .split_once(']')
                    .is_none_or(|(_, after)| !after.is_empty()),
                None => name.contains(':'),
            };
            if port {
                return Err(bad(
                    "give a host without a port (every port is allowed); write IPv6 addresses in brackets",
                ));
            }
            let url = Url::parse(&format!("http://{name}/")).map_err(|e| bad(&e.to_string()))?;
            let host = normalize(url.host_str().unwrap_or_default());
            if host.is_empty() {
                return Err(bad("it names no host"));
            }
            if wildcard {
                if host.parse::<std::net::IpAddr>().is_ok() {
                    return Err(bad(
                        "a `*.` wildcard needs a domain name, not an IP address",
                    ));
                }
                list.suffixes.push(format!(".{host}"));
            } else {
                list.exact.push(host);
            }
        }
        Ok(list)
    }

    /// Whether `host` (as in a URL, e.g. `Api.Example.com`, `[::1]`) may be
    /// reached.
    pub fn allows(&self, host: &str) -> bool {
        // Run the host through the URL parser as the patterns were, so
        // `127.1` and `127.0.0.1`, or `BÜCHER.de` and `xn--bcher-kva.de`, agree.
        let host = match Url::parse(&format!("http://{host}/")) {
            Ok(url) => normalize(url.host_str().unwrap_or_default()),
            Err(_) => return false,
        };
        if host.is_empty() {
            return false;
        }
        self.exact.contains(&host)
            || self
                .suffixes
                .iter()
                .any(|s| host.len() > s.len() && host.ends_with(s.as_str()))
    }

    /// Whether the list allows nothing.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }
}

/// A host name for comparison and for `denied` messages: no IPv6 brackets,
/// no trailing dot, lower case.
fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// A checked `http` config, ready to build a client from.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    allow: Arc<AllowList>,
    timeout: Duration,
    max_bytes: u64,
    max_redirects: u32,
    retries: u32,
    backoff: Duration,
    user_agent: HeaderValue,
}

impl HttpPolicy {
    /// Check a config: every allow pattern and the user agent.
    pub fn from_config(config: &HttpConfig) -> Result<Self, PolicyError> {
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| PolicyError::BadUserAgent(config.user_agent.clone()))?;
        Ok(HttpPolicy {
            allow: Arc::new(AllowList::new(&config.allow)?),
            timeout: config.timeout,
            max_bytes: config.max_bytes,
            max_redirects: config.max_redirects,
            retries: config.retries,
            backoff: config.backoff,
            user_agent,
        })
    }

    /// The policy of a plugin without an `http` config: every fetch is
    /// denied.
    pub fn deny_all() -> Self {
        let defaults = HttpConfig::default();
        HttpPolicy {
            allow: Arc::new(AllowList::default()),
            timeout: defaults.timeout,
            max_bytes: defaults.max_bytes,
            max_redirects: defaults.max_redirects,
            retries: defaults.retries,
            backoff: defaults.backoff,
            user_agent: HeaderValue::from_static("sluice"),
        }
    }

    pub fn allow(&self) -> &AllowList {
        &self.allow
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// One plugin instance's HTTP capability: its policy and its (lazily built)
/// client.
pub struct HttpClient {
    plugin: Arc<str>,
    policy: HttpPolicy,
    /// Built on the first fetch that passes the allow-list. A build failure
    /// is kept too: it would fail the same way again.
    client: OnceLock<Result<Client, String>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("plugin", &self.plugin)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Why a redirect was not followed; carried through reqwest's error so the
/// fetch can report it as the right `fetch-error`.
#[derive(Debug, thiserror::Error)]
enum RedirectRefused {
    #[error("redirect to {0} refused: host not on the allow-list")]
    Denied(String),
    #[error("too many redirects")]
    TooMany,
    #[error("redirect to a {0}: URL refused: only http and https are fetched")]
    Scheme(String),
}

/// A request that passed every check, ready to send (again, on a retry).
struct Prepared {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
}

impl HttpClient {
    pub fn new(plugin: Arc<str>, policy: HttpPolicy) -> Self {
        HttpClient {
            plugin,
            policy,
            client: OnceLock::new(),
        }
    }

    /// A client that denies everything and never builds a reqwest client.
    pub fn deny_all(plugin: Arc<str>) -> Self {
        HttpClient::new(plugin, HttpPolicy::deny_all())
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Perform one fetch under the policy.
    pub fn fetch(&self, req: Request) -> Result<Response, FetchError> {
        let started = Instant::now();
        let deadline = started + self.policy.timeout;
        let method = req.method.clone();
        let url = req.url.clone();
        let mut attempts = 0;
        let result = self
            .prepare(req)
            .and_then(|p| self.run(&p, deadline, &mut attempts));
        match &result {
            Ok(r) => tracing::debug!(
                plugin = &*self.plugin, %method, %url, status = r.status, attempts,
                elapsed = ?started.elapsed(), bytes = r.body.len(), "plugin fetch"
            ),
            Err(e) => tracing::debug!(
                plugin = &*self.plugin, %method, %url, error = ?e, attempts,
                elapsed = ?started.elapsed(), "plugin fetch failed"
            ),
        }
        result
    }

    /// Check the request against the policy and turn it into reqwest types.
    fn prepare(&self, req: Request) -> Result<Prepared, FetchError> {
        let invalid = FetchError::InvalidRequest;
        let url = Url::parse(&req.url).map_err(|e| invalid(format!("url {:?}: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "url {:?}: scheme {:?} is not http or https",
                req.url,
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid(format!("url {:?} has no host", req.url)))?;
        if !self.policy.allow.allows(host) {
            return Err(FetchError::Denied(normalize(host)));
        }
        let method = Method::from_bytes(req.method.as_bytes())
            .map_err(|_| invalid(format!("method {:?} is not an HTTP method", req.method)))?;
        let mut headers = HeaderMap::new();
        for Header { name, value } in req.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("header name {name:?} is not valid")))?;
            if HOST_OWNED.contains(&name) {
                return Err(invalid(format!("header {name} is set by the host")));
            }
            let value = HeaderValue::from_bytes(&value)
                .map_err(|_| invalid(format!("header {name} has an invalid value")))?;
            headers.append(name, value);
        }
        Ok(Prepared {
            method,
            url,
            headers,
            body: req.body.map(Bytes::from),
        })
    }

    /// Send `p`, retrying as configured, and read the final response.
    fn run(
        &self,
        p: &Prepared,
        deadline: Instant,
        attempts: &mut u32,
    ) -> Result<Response, FetchError> {
        let client = self.client()?;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(FetchError::Timeout);
            }
            let retry = *attempts;
            *attempts += 1;
            // Whether another attempt is allowed after this one, and the
            // pause before it: it must fit in what is left of the budget.
            let pause = self
                .policy
                .backoff
                .saturating_mul(2u32.saturating_pow(retry));
            let may_retry = || retry < self.policy.retries && Instant::now() + pause < deadline;
            let outcome = match self.send(client, p, remaining, deadline) {
                Ok(resp) if resp.status().is_server_error() && may_retry() => {
                    tracing::debug!(
                        plugin = &*self.plugin, url = %p.url, status = resp.status().as_u16(),
                        ?pause, "retrying fetch after a server error"
                    );
                    drop(resp);
                    std::thread::sleep(pause);
                    continue;
                }
                Ok(resp) => self.read(resp, &p.method, deadline),
                Err(e) => Err(e),
            };
            match outcome {
                Err(FetchError::Connection(reason)) if may_retry() => {
                    tracing::debug!(
                        plugin = &*self.plugin, url = %p.url, %reason, ?pause,
                        "retrying fetch after a connection error"
                    );
                    std::thread::sleep(pause);
                }
                other => return other,
            }
        }
    }

    fn client(&self) -> Result<&Client, FetchError> {
        self.client
            .get_or_init(|| build_client(&self.policy).map_err(|e| error_chain(&e)))
            .as_ref()
            .map_err(|e| FetchError::Connection(format!("cannot start the HTTP client: {e}")))
    }

    fn send(
        &self,
        client: &Client,
        p: &Prepared,
        remaining: Duration,
        deadline: Instant,
    ) -> Result<reqwest::blocking::Response, FetchError> {
        // The per-request timeout covers connecting, redirects and the whole
        // body, so giving each attempt what is left keeps the total bound.
        let mut builder = client
            .request(p.method.clone(), p.url.clone())
            .headers(p.headers.clone())
            .timeout(remaining);
        if let Some(body) = &p.body {
            builder = builder.body(body.clone());
        }
        builder.send().map_err(|e| classify(&e, deadline))
    }

    /// Read a response's body under the size cap.
    fn read(
        &self,
        mut resp: reqwest::blocking::Response,
        method: &Method,
        deadline: Instant,
    ) -> Result<Response, FetchError> {
        let cap = self.policy.max_bytes;
        let declared = declared_length(&resp, method);
        if declared.is_some_and(|len| len > cap) {
            return Err(FetchError::TooLarge(cap));
        }
        let status = resp.status().as_u16();
        let final_url = resp.url().to_string();
        let headers = resp
            .headers()
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_owned(),
                value: value.as_bytes().to_vec(),
            })
            .collect();
        let mut body =
            Vec::with_capacity(usize::try_from(declared.unwrap_or(0).min(cap)).unwrap_or_default());
        // One byte past the cap is enough to know the body is too large;
        // the rest is never read.
        (&mut resp)
            .take(cap.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| classify_io(&e, deadline))?;
        if u64::try_from(body.len()).unwrap_or(u64::MAX) > cap {
            return Err(FetchError::TooLarge(cap));
        }
        Ok(Response {
            status,
            headers,
            body,
            final_url,
        })
    }
}

/// The body length a response declares, when it will have a body.
fn declared_length(resp: &reqwest::blocking::Response, method: &Method) -> Option<u64> {
    let bodiless = *method == Method::HEAD
        || resp.status().is_informational()
        || resp.status() == StatusCode::NO_CONTENT
        || resp.status() == StatusCode::NOT_MODIFIED;
    if bodiless {
        return None;
    }
    resp.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn build_client(policy: &HttpPolicy) -> reqwest::Result<Client> {
    let allow = policy.allow.clone();
    let max = usize::try_from(policy.max_redirects).unwrap_or(usize::MAX);
    let redirect = reqwest::redirect::Policy::custom(move |attempt| {
        // `previous` holds every URL already requested, the first included.
        if attempt.previous().len() > max {
            return attempt.error(RedirectRefused::TooMany);
        }
        let url = attempt.url();
        if !matches!(url.scheme(), "http" | "https") {
            let scheme = url.scheme().to_owned();
            return attempt.error(RedirectRefused::Scheme(scheme));
        }
        match url.host_str() {
            Some(host) if allow.allows(host) => attempt.follow(),
            host => {
                let host = normalize(host.unwrap_or_default());
                attempt.error(RedirectRefused::Denied(host))
            }
        }
    });
    Client::builder()
        .user_agent(policy.user_agent.clone())
        .redirect(redirect)
        .timeout(policy.timeout)
        .build()
}

/// Map a reqwest error to the plugin's view of it.
fn classify(err: &reqwest::Error, deadline: Instant) -> FetchError {
    if let Some(refused) = find_source::<RedirectRefused>(err) {
        return match refused {
            RedirectRefused::Denied(host) => FetchError::Denied(host.clone()),
            RedirectRefused::TooMany => FetchError::TooManyRedirects,
            RedirectRefused::Scheme(_) => FetchError::InvalidRequest(refused.to_string()),
        };
    }
    // Past the deadline, whatever went wrong last, the fetch ran out of time.
    if err.is_timeout() || Instant::now() >= deadline {
        return FetchError::Timeout;
    }
    if err.is_builder() {
        return FetchError::InvalidRequest(error_chain(err));
    }
    FetchError::Connection(error_chain(err))
}

/// Map an error from reading a body to the plugin's view of it.
fn classify_io(err: &std::io::Error, deadline: Instant) -> FetchError {
    if let Some(inner) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<reqwest::Error>())
    {
        return classify(inner, deadline);
    }
    if err.kind() == std::io::ErrorKind::TimedOut || Instant::now() >= deadline {
        return FetchError::Timeout;
    }
    FetchError::Connection(error_chain(err))
}

/// The first error of type `T` in `err`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// `err` and its sources, `a: b: c`, skipping a source whose text its parent
/// already shows (hyper and reqwest often repeat each other).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = e.source();
    }
    out
}

impl Host for HostState {
    fn fetch(&mut self, req: Request) -> Result<Response, FetchError> {
        self.http().fetch(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::new(patterns).unwrap()
    }

    #[test]
    fn empty_list_allows_nothing() {
        let l = list(&[]);
        assert!(l.is_empty());
        for host in ["localhost", "127.0.0.1", "example.com", "", "[::1]"] {
            assert!(!l.allows(host), "{host}");
        }
    }

    #[test]
    fn exact_names_match_exactly() {
        let l = list(&["api.example.com", "localhost"]);
        assert!(l.allows("api.example.com"));
        assert!(l.allows("API.Example.COM"));
        assert!(l.allows("api.example.com."));
        assert!(l.allows("localhost"));
        assert!(!l.allows("example.com"));
        assert!(!l.allows("x.api.example.com"));
        assert!(!l.allows("api.example.com.evil.net"));
        assert!(!l.allows("evilapi.example.com"));
        assert!(
            !l.allows("127.0.0.1"),
            "localhost does not allow its address"
        );
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let l = list(&["*.example.com"]);
        assert!(l.allows("a.example.com"));
        assert!(l.allows("a.b.example.com"));
        assert!(l.allows("A.EXAMPLE.com"));
        assert!(!l.allows("example.com"));
        assert!(!l.allows("badexample.com"));
        assert!(!l.allows("example.com.evil.net"));
        assert!(!l.allows(".example.com"));
    }

    #[test]
    fn addresses_are_compared_canonically() {
        let l = list(&["127.0.0.1", "[::1]"]);
        assert!(l.allows("127.0.0.1"));
        assert!(l.allows("[::1]"));
        assert!(l.allows("[0:0:0:0:0:0:0:1]"));
        assert!(!l.allows("127.0.0.2"));
        assert!(!l.allows("localhost"));
        let idn = list(&["bücher.de"]);
        assert!(idn.allows("xn--bcher-kva.de"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for (pattern, why) in [
            ("", "no host"),
            ("*", "`*`"),
            ("*.", "no host"),
            ("a.*.com", "`*`"),
            ("*example.com", "`*`"),
            ("http://example.com", "without scheme"),
            ("example.com/path", "without scheme"),
            ("example.com:8080", "port"),
            ("[::1]:80", "port"),
            ("[::1]:8080", "port"),
            ("[::1", "port"),
            ("::1", "brackets"),
            ("*.127.0.0.1", "IP address"),
            ("exa mple.com", "without scheme"),
        ] {
            let err = AllowList::new(&[pattern]).unwrap_err();
            assert!(
                matches!(&err, PolicyError::BadPattern { pattern: p, .. } if p == pattern),
                "{pattern}: {err:?}"
            );
            assert!(err.to_string().contains(why), "{pattern}: {err}");
        }
    }

    #[test]
    fn policy_checks_user_agent() {
        let config = HttpConfig {
            user_agent: "bad\nagent".into(),
            ..HttpConfig::default()
        };
        assert!(matches!(
            HttpPolicy::from_config(&config),
            Err(PolicyError::BadUserAgent(_))
        ));
    }

    #[test]
    fn deny_all_denies_before_parsing_anything_else() {
        let c = HttpClient::deny_all("p".into());
        let err = c
            .fetch(Request {
                method: "GET".into(),
                url: "http://localhost:1/x".into(),
                headers: vec![],
                body: None,
            })
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::Denied(h) if h == "localhost"),
            "{err:?}"
        );
        // No client was built for a denied fetch.
        assert!(c.client.get().is_none());
    }

    #[test]
    fn requests_are_checked() {
        let policy = HttpPolicy::from_config(&HttpConfig {
            allow: vec!["localhost".into()],
            ..HttpConfig::default()
        })
        .unwrap();
        let c = HttpClient::new("p".into(), policy);
        let req = |method: &str, url: &str, headers: &[(&str, &[u8])]| Request {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).into(),
                    value: v.to_vec(),
                })
                .collect(),
            body: None,
        };
        let invalid = |r: Request| match c.prepare(r) {
            Err(FetchError::InvalidRequest(m)) => m,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(invalid(req("GET", "not a url", &[])).contains("not a url"));
        assert!(invalid(req("GET", "ftp://localhost/x", &[])).contains("ftp"));
        assert!(invalid(req("GE T", "http://localhost/", &[])).contains("method"));
        assert!(
            invalid(req("GET", "http://localhost/", &[("bad name", b"v")])).contains("bad name")
        );
        assert!(invalid(req("GET", "http://localhost/", &[("x", b"a\nb")])).contains("x"));
        for owned in ["Host", "user-agent", "Content-Length"] {
            let m = invalid(req("GET", "http://localhost/", &[(owned, b"v")]));
            assert!(m.contains("set by the host"), "{m}");
        }
        assert!(matches!(
            c.prepare(req("GET", "http://127.0.0.1/", &[])),
            Err(FetchError::Denied(h)) if h == "127.0.0.1"
        ));
        let ok = c
            .prepare(req(
                "POST",
                "http://LOCALHOST:9/p",
                &[("x-a", b"1"), ("x-a", b"2")],
            ))
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        assert_eq!(ok.method, Method::POST);
        assert_eq!(ok.headers.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn error_chain_skips_repeats() {
        let inner = std::io::Error::other("refused");
        let outer = std::io::Error::other(inner);
        // io::Error's Display already shows the inner message.
        assert_eq!(error_chain(&outer), "refused");
    }
}
