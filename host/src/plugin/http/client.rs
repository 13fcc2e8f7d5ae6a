//! The HTTP client behind the `http` import: fetches made on a plugin's
//! behalf with reqwest's blocking client, under its [`HttpPolicy`].
//!
//! Promises:
//! - Nothing is sent to a destination the policy refuses. The first URL and
//!   every redirect target pass [`HttpPolicy::vet_url`] /
//!   [`HttpPolicy::vet_hop`] before they are requested, and every
//!   connection goes to an address the [`VettingResolver`] vetted in the
//!   same lookup. A refusal reaches the plugin as `denied`, saying why, and
//!   is never retried.
//! - Redirects are followed here, not by reqwest, one vetted hop at a time:
//!   at most `max_redirects`, never from https to http, and on a hop to
//!   another origin (scheme, host or port) every header the plugin set is
//!   dropped. 301/302/303 turn into a bodiless GET as in browsers; 307/308
//!   resend the method and body.
//! - Environment proxies (`HTTP_PROXY`, `ALL_PROXY`, ...) are ignored. Only
//!   the config's `proxy` is used; through a proxy, names and ports are
//!   still vetted, but the address the proxy connects to cannot be.
//! - One fetch takes at most [`HttpClient::budget`] in total: its attempts,
//!   the backoff pauses between them, its redirects and reading the body
//!   share that budget. A retry whose pause would not fit is not made.
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
//! - A fetch ends by its `timeout` or by the plugin call's deadline,
//!   whichever comes first ([`HttpClient::fetch`]'s `call_deadline`): epochs
//!   only interrupt guest code, so without this a fetch could stretch a call
//!   past its deadline. A fetch cut short by the call's deadline returns
//!   `timeout`, and the call then ends with a deadline error.

use std::io::Read as _;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use reqwest::blocking::Client;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::allow::normalize;
use super::error::Refused;
use super::policy::HttpPolicy;
use super::resolve::{Lookup, SystemLookup, VettingResolver};
use crate::plugin::bindings::Header;
use crate::plugin::bindings::sluice::plugin::http::{FetchError, Request, Response};

/// Headers the host sets itself; a plugin that supplies one gets
/// `invalid-request`. `host` would make the allow-list check a different
/// name from the one the server sees; `user-agent` belongs to the config;
/// the proxy headers belong to the config's proxy.
const HOST_OWNED: [HeaderName; 7] = [
    header::HOST,
    header::USER_AGENT,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
];

/// Headers that describe a body; dropped with it when a redirect turns the
/// request into a GET.
const BODY_HEADERS: [HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
];

/// One plugin instance's HTTP capability: its policy and its (lazily built)
/// client.
pub struct HttpClient {
    plugin: Arc<str>,
    policy: HttpPolicy,
    lookup: Arc<dyn Lookup>,
    /// Built on the first fetch that passes the policy. A build failure is
    /// kept too: it would fail the same way again.
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

/// One request of a fetch: the first, or a redirect hop.
#[derive(Clone)]
struct Prepared {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
}

impl Prepared {
    /// The request to make next when the answer to `self` is a `status`
    /// redirect to `to`, which passed the policy.
    fn redirected(&self, status: StatusCode, to: Url) -> Prepared {
        let mut next = self.clone();
        if matches!(
            status,
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER
        ) {
            next.body = None;
            for name in &BODY_HEADERS {
                next.headers.remove(name);
            }
            if next.method != Method::HEAD {
                next.method = Method::GET;
            }
        }
        // The plugin's headers were meant for the origin it named; another
        // origin (even the same host over another scheme or port) gets none
        // of them.
        if self.url.origin() != to.origin() {
            next.headers.clear();
        }
        next.url = to;
        next
    }
}

impl HttpClient {
    /// The capability of the plugin named `plugin` (for logs): fetches under
    /// `policy`, names resolved by the system resolver. The reqwest client is
    /// built on the first fetch the policy lets through.
    pub fn new(plugin: Arc<str>, policy: HttpPolicy) -> Self {
        Self::with_lookup(plugin, policy, Arc::new(SystemLookup))
    }

    /// As [`HttpClient::new`], resolving names with `lookup`.
    pub(crate) fn with_lookup(
        plugin: Arc<str>,
        policy: HttpPolicy,
        lookup: Arc<dyn Lookup>,
    ) -> Self {
        HttpClient {
            plugin,
            policy,
            lookup,
            client: OnceLock::new(),
        }
    }

    /// A client that denies everything and never builds a reqwest client.
    pub fn deny_all(plugin: Arc<str>) -> Self {
        HttpClient::new(plugin, HttpPolicy::deny_all())
    }

    /// The policy every fetch is checked against.
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// THE instant one fetch must end by: its `timeout` from now, or the
    /// plugin call's own deadline if that comes first, so a fetch never
    /// stretches a call past its deadline. Attempts, backoff, redirects and
    /// the body all come out of it; every deadline in this file derives
    /// from this one value.
    fn budget(&self, started: Instant, call_deadline: Option<Instant>) -> Instant {
        let own = started + self.policy.timeout();
        call_deadline.map_or(own, |call| own.min(call))
    }

    /// Perform one fetch under the policy, ending by `call_deadline` (the
    /// running plugin call's deadline) at the latest.
    pub fn fetch(
        &self,
        req: Request,
        call_deadline: Option<Instant>,
    ) -> Result<Response, FetchError> {
        let started = Instant::now();
        let deadline = self.budget(started, call_deadline);
        let method = req.method.clone();
        // Not the URL: its query string or userinfo may hold a token.
        let host = Url::parse(&req.url)
            .ok()
            .and_then(|u| u.host_str().map(normalize))
            .unwrap_or_default();
        let mut attempts = 0;
        let result = self
            .prepare(req)
            .and_then(|p| self.run(&p, deadline, &mut attempts));
        match &result {
            Ok(r) => tracing::debug!(
                plugin = &*self.plugin, %method, %host, status = r.status, attempts,
                elapsed = ?started.elapsed(), bytes = r.body.len(), "plugin fetch"
            ),
            Err(e) => tracing::debug!(
                plugin = &*self.plugin, %method, %host, error = ?e, attempts,
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
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(format!("url {:?} has no host", req.url)));
        }
        self.policy.vet_url(&url).map_err(refused)?;
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
            if Instant::now() >= deadline {
                return Err(FetchError::Timeout);
            }
            let retry = *attempts;
            *attempts += 1;
            // Whether another attempt is allowed after this one, and the
            // pause before it: it must fit in what is left of the budget.
            let pause = self
                .policy
                .backoff()
                .saturating_mul(2u32.saturating_pow(retry));
            let may_retry = || retry < self.policy.retries() && Instant::now() + pause < deadline;
            let outcome = match self.send(client, p, deadline) {
                Ok((resp, _)) if resp.status().is_server_error() && may_retry() => {
                    tracing::debug!(
                        plugin = &*self.plugin,
                        status = resp.status().as_u16(),
                        ?pause,
                        "retrying fetch after a server error"
                    );
                    drop(resp);
                    std::thread::sleep(pause);
                    continue;
                }
                Ok(sent) => self.read(sent, deadline),
                Err(e) => Err(e),
            };
            match outcome {
                Err(FetchError::Connection(reason)) if may_retry() => {
                    tracing::debug!(
                        plugin = &*self.plugin, %reason, ?pause,
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
            .get_or_init(|| {
                build_client(&self.policy, self.lookup.clone()).map_err(|e| error_chain(&e))
            })
            .as_ref()
            .map_err(|e| FetchError::Connection(format!("cannot start the HTTP client: {e}")))
    }

    /// One attempt: send `first`, and follow its redirects one vetted hop
    /// at a time. Returns the first response that is not a redirect to
    /// follow, with the request that got it (for the body's method).
    fn send(
        &self,
        client: &Client,
        first: &Prepared,
        deadline: Instant,
    ) -> Result<(reqwest::blocking::Response, Method), FetchError> {
        let mut hop = first.clone();
        let mut followed = 0;
        loop {
            // The per-request timeout covers connecting and the whole body,
            // so giving each request what is left keeps the total bound.
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(FetchError::Timeout);
            }
            let mut builder = client
                .request(hop.method.clone(), hop.url.clone())
                .headers(hop.headers.clone())
                .timeout(remaining);
            if let Some(body) = &hop.body {
                builder = builder.body(body.clone());
            }
            let resp = builder.send().map_err(|e| classify(&e, deadline))?;
            let Some(to) = redirect_target(&resp) else {
                return Ok((resp, hop.method));
            };
            if followed >= self.policy.max_redirects() {
                return Err(FetchError::TooManyRedirects);
            }
            followed += 1;
            self.policy.vet_hop(&hop.url, &to).map_err(refused)?;
            hop = hop.redirected(resp.status(), to);
        }
    }

    /// Read a response's body under the size cap.
    fn read(
        &self,
        (mut resp, method): (reqwest::blocking::Response, Method),
        deadline: Instant,
    ) -> Result<Response, FetchError> {
        let cap = self.policy.max_bytes();
        let declared = declared_length(&resp, &method);
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

/// Where a response redirects to, if it is a redirect that can be followed
/// (a 301, 302, 303, 307 or 308 with a usable `Location`); anything else is
/// returned to the plugin as it is.
fn redirect_target(resp: &reqwest::blocking::Response) -> Option<Url> {
    let follows = matches!(
        resp.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    if !follows {
        return None;
    }
    let location = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    resp.url().join(location).ok()
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

fn build_client(policy: &HttpPolicy, lookup: Arc<dyn Lookup>) -> reqwest::Result<Client> {
    let builder = Client::builder()
        .user_agent(policy.user_agent().clone())
        // Redirects are followed in `HttpClient::send`, which vets each hop
        // and decides which headers go along.
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .timeout(policy.timeout())
        .dns_resolver(Arc::new(VettingResolver::new(policy.clone(), lookup)));
    let builder = match policy.proxy() {
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.url().as_str())?),
        // Without this, reqwest would follow HTTP_PROXY and friends from the
        // environment, and the proxy, not the resolver, would pick the address.
        None => builder.no_proxy(),
    };
    builder.build()
}

/// A refused destination as the plugin sees it.
fn refused(why: Refused) -> FetchError {
    match why {
        Refused::Scheme(_) => FetchError::InvalidRequest(why.to_string()),
        _ => FetchError::Denied(why.to_string()),
    }
}

/// Map a reqwest error to the plugin's view of it.
fn classify(err: &reqwest::Error, deadline: Instant) -> FetchError {
    // The resolver refused every address of the name.
    if let Some(why) = find_source::<Refused>(err) {
        return refused(why.clone());
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::config::http::HttpConfig;
    use crate::plugin::http::resolve::tests::FakeLookup;

    fn policy(allow: &[&str], allow_private: bool) -> HttpPolicy {
        HttpPolicy::from_config(&HttpConfig {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            allow_private,
            retries: 0,
            timeout: Duration::from_secs(5),
            ..HttpConfig::default()
        })
        .unwrap()
    }

    fn get(url: &str) -> Request {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: None,
        }
    }

    /// A one-line HTTP server on 127.0.0.1 that counts connections.
    fn counting_server() -> (u16, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicU32::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                seen.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut stream, &mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        (port, count)
    }

    #[test]
    fn deny_all_denies_before_parsing_anything_else() {
        let c = HttpClient::deny_all("p".into());
        let err = c.fetch(get("http://localhost:1/x"), None).unwrap_err();
        assert!(
            matches!(&err, FetchError::Denied(h) if h == "localhost"),
            "{err:?}"
        );
        // No client was built for a denied fetch.
        assert!(c.client.get().is_none());
    }

    #[test]
    fn a_name_resolving_to_loopback_is_denied_by_the_resolver_and_never_contacted() {
        // `evil.test` exists only in the fake table, so the connection can
        // only have gone where the resolver said.
        let (port, hits) = counting_server();
        let lookup = FakeLookup::with(&[("evil.test", &["127.0.0.1"])]);
        let entry = format!("evil.test:{port}");
        let c = HttpClient::with_lookup("p".into(), policy(&[&entry], false), lookup.clone());
        let err = c
            .fetch(get(&format!("http://evil.test:{port}/")), None)
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::Denied(m) if m == "evil.test resolves to 127.0.0.1, \
                a loopback address; set allow_private = true to allow it"),
            "{err:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        // With allow_private the same name connects to the vetted address.
        let c = HttpClient::with_lookup("p".into(), policy(&[&entry], true), lookup);
        let ok = c
            .fetch(get(&format!("http://evil.test:{port}/")), None)
            .unwrap();
        assert_eq!(ok.body, b"ok");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_refused_destination_is_not_retried() {
        let lookup = FakeLookup::with(&[("evil.test", &["10.1.2.3"])]);
        let p = HttpPolicy::from_config(&HttpConfig {
            allow: vec!["evil.test".into()],
            retries: 5,
            backoff: Duration::from_millis(300),
            ..HttpConfig::default()
        })
        .unwrap();
        let c = HttpClient::with_lookup("p".into(), p, lookup);
        let started = Instant::now();
        let err = c.fetch(get("http://evil.test/"), None).unwrap_err();
        assert!(
            matches!(&err, FetchError::Denied(m) if m.contains("private")),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(300), "retried");
    }

    #[test]
    fn redirect_hops_drop_headers_across_origins_and_bodies_on_303() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("s3cret"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let first = Prepared {
            method: Method::POST,
            url: Url::parse("http://a.example/start").unwrap(),
            headers,
            body: Some(Bytes::from_static(b"payload")),
        };
        let same = first.redirected(
            StatusCode::TEMPORARY_REDIRECT,
            Url::parse("http://a.example/next").unwrap(),
        );
        assert_eq!(same.method, Method::POST);
        assert_eq!(same.body.as_deref(), Some(&b"payload"[..]));
        assert_eq!(same.headers.get("x-api-key").unwrap(), "s3cret");
        for other in [
            "http://b.example/next",
            "https://a.example/next",
            "http://a.example:8080/next",
        ] {
            let hop = first.redirected(StatusCode::PERMANENT_REDIRECT, Url::parse(other).unwrap());
            assert!(hop.headers.is_empty(), "{other}: {:?}", hop.headers);
            assert_eq!(hop.url.as_str(), other);
        }
        let see_other = first.redirected(
            StatusCode::SEE_OTHER,
            Url::parse("http://a.example/done").unwrap(),
        );
        assert_eq!(see_other.method, Method::GET);
        assert!(see_other.body.is_none());
        assert!(see_other.headers.get(header::CONTENT_TYPE).is_none());
        assert_eq!(see_other.headers.get("x-api-key").unwrap(), "s3cret");
    }

    #[test]
    fn requests_are_checked() {
        let c = HttpClient::new("p".into(), policy(&["localhost", "localhost:9"], false));
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
        for owned in [
            "Host",
            "user-agent",
            "Content-Length",
            "Proxy-Authorization",
        ] {
            let m = invalid(req("GET", "http://localhost/", &[(owned, b"v")]));
            assert!(m.contains("set by the host"), "{m}");
        }
        assert!(matches!(
            c.prepare(req("GET", "http://127.0.0.1/", &[])),
            Err(FetchError::Denied(h)) if h == "127.0.0.1"
        ));
        assert!(matches!(
            c.prepare(req("GET", "http://localhost:8080/", &[])),
            Err(FetchError::Denied(m)) if m.contains("localhost:8080 is not on the allow-list")
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
