//! The `http` capability through the real runtime: the `http-fetch` plugin
//! component fetching from a local fixture server, with each rule of the
//! plugin's `http` config obeyed and violated (allow-list, ports, private
//! addresses, size cap, timeout, redirects, retries, user agent, proxies),
//! and `sluice plugin run` flags.
//!
//! The fixture server listens on 127.0.0.1 (and on [::1] where the machine
//! has IPv6), so every test that means to reach it sets `allow_private` and
//! names the server's port; the tests of the address rule are the ones that
//! leave it off. Tests allow `localhost:PORT` and use `127.0.0.1` as the host
//! that is not on the list: both reach the same server, so a per-key hit
//! counter proves whether a denied request was sent.
//!
//! The machine has no internet and no DNS of its own, so a public host
//! cannot be fetched for real. What needs one is tested at the unit level
//! (the address classifier, the resolver with a fake DNS table, the
//! redirect-hop rules, in `host/src/plugin/http/`), or here through a
//! configured proxy: the fixture server plays the proxy, so the plugin can
//! fetch `http://public.example/` and the test controls the answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use sluice::config::http::HttpConfig;
use sluice::plugin::{
    InitError, Input, Instance, Limits, Output, PluginError, Runtime, RuntimeOptions,
};

// ---------------------------------------------------------------------------
// The fixture server.

/// Counts requests per key, so a test can tell how often (if ever) the
/// server was reached.
#[derive(Clone, Default)]
struct Hits(Arc<Mutex<HashMap<String, u32>>>);

impl Hits {
    /// Count one more hit on `key` and return the new total.
    fn hit(&self, key: &str) -> u32 {
        let mut m = self.0.lock().unwrap();
        let n = m.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    }

    fn get(&self, key: &str) -> u32 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

#[derive(Clone)]
struct AppState {
    port: u16,
    hits: Hits,
}

struct Server {
    port: u16,
    /// The same app on [::1], if the machine has IPv6 loopback.
    port6: Option<u16>,
    hits: Hits,
}

/// One fixture server per test binary, on its own thread and runtime (the
/// fetches under test must not run inside a tokio runtime).
fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let hits = Hits::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let listener6 = std::net::TcpListener::bind("[::1]:0").ok();
        let port6 = listener6.as_ref().map(|l| l.local_addr().unwrap().port());
        let state = AppState {
            port,
            hits: hits.clone(),
        };
        std::thread::Builder::new()
            .name("fixture-http".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Some(l6) = listener6 {
                        l6.set_nonblocking(true).unwrap();
                        let l6 = tokio::net::TcpListener::from_std(l6).unwrap();
                        tokio::spawn(axum::serve(l6, app(state.clone())).into_future());
                    }
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(listener, app(state)).await.unwrap();
                });
            })
            .unwrap();
        Server { port, port6, hits }
    })
}

/// A bare TCP listener that counts connections and answers each with a
/// 502: stands in for a proxy or a service that must never be reached.
struct Recorder {
    port: u16,
    hits: Arc<std::sync::atomic::AtomicU32>,
}

impl Recorder {
    fn start() -> Recorder {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 8\r\nconnection: close\r\n\r\nrecorder",
                );
            }
        });
        Recorder { port, hits }
    }

    fn hits(&self) -> u32 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn app(state: AppState) -> Router {
    Router::new()
        .route("/page", get(|| async { "hello from the fixture" }))
        .route("/hit/{key}", get(hit))
        .route("/slow/{ms}", get(slow))
        .route("/slow-body/{ms}", get(slow_body))
        .route("/status/{code}/{key}", get(status))
        .route("/flaky/{fails}/{key}", get(flaky))
        .route("/redirect/{n}/{key}", get(redirect))
        .route("/away/{key}", get(away))
        .route("/big/{n}", get(big))
        .route("/stream/{n}", get(stream))
        .route("/declared/{n}", get(declared))
        .route("/ua", get(user_agent))
        .route("/api-key", get(api_key))
        .route(
            "/same-origin",
            get(|| async { redirect_to("/api-key".into()) }),
        )
        .route("/cross-origin", get(cross_origin))
        .route("/to-port/{port}/{key}", get(to_port))
        .route("/to-loopback/{key}", get(to_loopback))
        .with_state(state)
}

/// Counts a hit on `key`.
async fn hit(State(s): State<AppState>, Path(key): Path<String>) -> &'static str {
    s.hits.hit(&key);
    "hit"
}

/// Answers after `ms` milliseconds.
async fn slow(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow"
}

/// Sends the status and headers at once, then stalls `ms` before the body.
async fn slow_body(Path(ms): Path<u64>) -> Response {
    let chunks = futures::stream::unfold(0, move |i| async move {
        match i {
            0 => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"start ")), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Some((Ok(Bytes::from_static(b"end")), 2))
            }
            _ => None,
        }
    });
    Body::from_stream(chunks).into_response()
}

/// Always answers `code`, counting hits on `key`.
async fn status(
    State(s): State<AppState>,
    Path((code, key)): Path<(u16, String)>,
) -> (StatusCode, String) {
    s.hits.hit(&key);
    (
        StatusCode::from_u16(code).unwrap(),
        format!("status {code}"),
    )
}

/// Fails with 500 on the first `fails` hits on `key`, then succeeds.
async fn flaky(
    State(s): State<AppState>,
    Path((fails, key)): Path<(u32, String)>,
) -> (StatusCode, &'static str) {
    if s.hits.hit(&key) <= fails {
        (StatusCode::INTERNAL_SERVER_ERROR, "not yet")
    } else {
        (StatusCode::OK, "recovered")
    }
}

/// Redirects (relatively, so on the same host) `n` more times, then lands.
async fn redirect(State(s): State<AppState>, Path((n, key)): Path<(u32, String)>) -> Response {
    s.hits.hit(&format!("redirect-{key}"));
    if n == 0 {
        return "landed".into_response();
    }
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("/redirect/{}/{key}", n - 1))],
    )
        .into_response()
}

/// Redirects to `/hit/{key}` on 127.0.0.1, a host tests do not allow.
async fn away(State(s): State<AppState>, Path(key): Path<String>) -> Response {
    s.hits.hit(&format!("away-{key}"));
    let location = format!("http://127.0.0.1:{}/hit/{key}", s.port);
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `n` bytes with a Content-Length.
async fn big(Path(n): Path<usize>) -> Vec<u8> {
    vec![b'x'; n]
}

/// `n` bytes streamed in 16 KiB chunks without a Content-Length.
async fn stream(Path(n): Path<u64>) -> Response {
    static CHUNK: [u8; 16 * 1024] = [b'y'; 16 * 1024];
    let chunks = futures::stream::unfold(n, |left| async move {
        if left == 0 {
            return None;
        }
        let len = left.min(CHUNK.len() as u64);
        let chunk = Bytes::from_static(&CHUNK[..len as usize]);
        Some((Ok::<_, std::io::Error>(chunk), left - len))
    });
    Body::from_stream(chunks).into_response()
}

/// Declares a Content-Length of `n`, sends one byte and then stalls: only a
/// client that trusts the declared length answers before its timeout.
async fn declared(Path(n): Path<u64>) -> Response {
    let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"y"))]);
    let body = Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()));
    ([(header::CONTENT_LENGTH, n.to_string())], body).into_response()
}

fn redirect_to(location: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// Echoes the request's `x-api-key` header, or `(none)`.
async fn api_key(headers: HeaderMap) -> Vec<u8> {
    headers
        .get("x-api-key")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_else(|| b"(none)".to_vec())
}

/// Redirects to `/api-key` on 127.0.0.1: another origin than `localhost`.
async fn cross_origin(State(s): State<AppState>) -> Response {
    redirect_to(format!("http://127.0.0.1:{}/api-key", s.port))
}

/// Redirects to `/hit/{key}` on localhost, on another port.
async fn to_port(Path((port, key)): Path<(u16, String)>) -> Response {
    redirect_to(format!("http://localhost:{port}/hit/{key}"))
}

/// Counts a hit on `to-loopback-{key}`, then redirects to `/hit/{key}` on
/// the loopback address 127.0.0.1.
async fn to_loopback(State(s): State<AppState>, Path(key): Path<String>) -> Response {
    s.hits.hit(&format!("to-loopback-{key}"));
    redirect_to(format!("http://127.0.0.1:{}/hit/{key}", s.port))
}

/// Echoes the request's User-Agent.
async fn user_agent(headers: HeaderMap) -> Vec<u8> {
    headers
        .get(header::USER_AGENT)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Helpers.

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(RuntimeOptions::default()).unwrap())
}

/// A deadline well above every HTTP timeout used here, so only the tests
/// about the deadline see one.
fn roomy() -> Limits {
    Limits {
        deadline: Duration::from_secs(20),
        ..Limits::default()
    }
}

/// http-fetch params that return every status as an output, so tests can
/// look at 4xx/5xx responses themselves.
fn raw() -> Vec<(String, String)> {
    vec![("fail_on_status".into(), "false".into())]
}

fn fetcher(http: Option<HttpConfig>) -> Instance {
    fetcher_with(raw(), http)
}

fn fetcher_with(params: Vec<(String, String)>, http: Option<HttpConfig>) -> Instance {
    let plugin = runtime()
        .load(&common::plugin("http-fetch"), "http-fetch")
        .unwrap();
    Instance::with_http(plugin, params, roomy(), http.as_ref()).unwrap()
}

fn allow(entries: &[String], allow_private: bool) -> HttpConfig {
    HttpConfig {
        allow: entries.to_vec(),
        allow_private,
        ..localhost()
    }
}

/// The fixture's `localhost:PORT` allowed, with private addresses (it is on
/// loopback); short backoff so retry tests are quick.
fn localhost() -> HttpConfig {
    HttpConfig {
        allow: vec![format!("localhost:{}", server().port)],
        allow_private: true,
        timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(20),
        ..HttpConfig::default()
    }
}

fn url(path: &str) -> String {
    format!("http://localhost:{}{path}", server().port)
}

fn fetch(i: &mut Instance, url: &str) -> Result<Output, PluginError> {
    let input = Input {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: Some(b"k".to_vec()),
        value: url.as_bytes().to_vec(),
        headers: vec![],
    };
    let mut out = i.process(&input)?;
    assert_eq!(out.len(), 1, "fetcher returns one output");
    Ok(out.remove(0))
}

fn header(o: &Output, name: &str) -> String {
    let h = o.headers.iter().find(|h| h.name == name).unwrap();
    String::from_utf8(h.value.clone()).unwrap()
}

fn key() -> String {
    common::random_name("k")
}

// ---------------------------------------------------------------------------
// Allow-list.

#[test]
fn allowed_host_is_fetched() {
    let mut i = fetcher(Some(localhost()));
    let o = fetch(&mut i, &url("/page")).unwrap();
    assert_eq!(o.value, b"hello from the fixture");
    assert_eq!(header(&o, "status"), "200");
    assert_eq!(header(&o, "final-url"), url("/page"));
    assert_eq!(o.key.as_deref(), Some(&b"k"[..]));
}

#[test]
fn host_not_on_the_allow_list_is_denied_and_never_contacted() {
    let mut i = fetcher(Some(localhost()));
    let k = key();
    let target = format!("http://127.0.0.1:{}/hit/{k}", server().port);
    let err = fetch(&mut i, &target).unwrap_err();
    assert_eq!(err, PluginError::Invalid("denied: 127.0.0.1".into()));
    // The same path on an allowed name does reach the server.
    fetch(&mut i, &url(&format!("/hit/{k}-control"))).unwrap();
    assert_eq!(server().hits.get(&format!("{k}-control")), 1);
    assert_eq!(server().hits.get(&k), 0, "a denied host received a request");
}

#[test]
fn no_http_config_denies_every_fetch() {
    let k = key();
    let plugin = runtime()
        .load(&common::plugin("http-fetch"), "http-fetch")
        .unwrap();
    let mut i = Instance::new(plugin, raw(), roomy()).unwrap();
    let err = fetch(&mut i, &url(&format!("/hit/{k}"))).unwrap_err();
    assert_eq!(err, PluginError::Invalid("denied: localhost".into()));
    // An `http` table with no `allow` entries denies just the same.
    let mut i = fetcher(Some(HttpConfig::default()));
    let err = fetch(&mut i, &url(&format!("/hit/{k}"))).unwrap_err();
    assert_eq!(err, PluginError::Invalid("denied: localhost".into()));
    assert_eq!(server().hits.get(&k), 0);
}

#[test]
fn malformed_requests_are_invalid_requests() {
    let mut i = fetcher(Some(localhost()));
    let err = fetch(&mut i, "not a url").unwrap_err();
    assert!(
        matches!(&err, PluginError::Invalid(m) if m.starts_with("invalid-request: ")),
        "{err:?}"
    );
    let err = fetch(&mut i, "file:///etc/passwd").unwrap_err();
    assert!(
        matches!(&err, PluginError::Invalid(m) if m.starts_with("invalid-request: ")),
        "{err:?}"
    );
}

#[test]
fn bad_allow_pattern_fails_instantiation() {
    let plugin = runtime()
        .load(&common::plugin("http-fetch"), "http-fetch")
        .unwrap();
    let config = HttpConfig {
        allow: vec!["https://api.example.com".into()],
        ..HttpConfig::default()
    };
    let err = Instance::with_http(plugin, raw(), roomy(), Some(&config))
        .err()
        .unwrap();
    assert!(matches!(err, InitError::Http { .. }), "{err:?}");
    assert!(err.to_string().contains("https://api.example.com"), "{err}");
}

#[test]
fn plugin_without_the_http_import_still_runs_with_http_config() {
    let plugin = runtime()
        .load(&common::plugin("passthrough"), "passthrough")
        .unwrap();
    let mut i = Instance::with_http(plugin, vec![], Limits::default(), Some(&localhost())).unwrap();
    assert_eq!(fetch(&mut i, "x").unwrap().value, b"x");
}

// ---------------------------------------------------------------------------
// Destinations: private addresses, ports, over-broad entries.

/// The fixture URLs that all reach loopback, each with the allow entry that
/// names it, and the refusal expected without `allow_private`.
fn loopback_targets(k: &str) -> Vec<(String, String, String)> {
    let port = server().port;
    let loopback = |a: &str| {
        format!("denied: {a} is a loopback address; set allow_private = true to allow it")
    };
    let mut targets = vec![
        (
            format!("http://127.0.0.1:{port}/hit/{k}-v4"),
            format!("127.0.0.1:{port}"),
            loopback("127.0.0.1"),
        ),
        // 2130706433 is 127.0.0.1 written as one number.
        (
            format!("http://2130706433:{port}/hit/{k}-int"),
            format!("127.0.0.1:{port}"),
            loopback("127.0.0.1"),
        ),
        // A name: refused when it resolves, not by its spelling.
        (
            format!("http://localhost:{port}/hit/{k}-name"),
            format!("localhost:{port}"),
            "denied: localhost resolves to 127.0.0.1, a loopback address; \
             set allow_private = true to allow it"
                .to_owned(),
        ),
    ];
    match server().port6 {
        Some(port6) => targets.push((
            format!("http://[::1]:{port6}/hit/{k}-v6"),
            format!("[::1]:{port6}"),
            loopback("::1"),
        )),
        None => eprintln!("no IPv6 loopback on this machine: [::1] not tested"),
    }
    targets
}

#[test]
fn loopback_destinations_are_denied_without_allow_private_and_never_contacted() {
    let k = key();
    let targets = loopback_targets(&k);
    let entries: Vec<String> = targets.iter().map(|(_, e, _)| e.clone()).collect();
    let mut i = fetcher(Some(allow(&entries, false)));
    for (url, _, want) in &targets {
        let err = fetch(&mut i, url).unwrap_err();
        assert_eq!(err, PluginError::Invalid(want.clone()), "{url}");
    }
    for suffix in ["v4", "int", "name", "v6"] {
        assert_eq!(
            server().hits.get(&format!("{k}-{suffix}")),
            0,
            "{suffix} was contacted"
        );
    }
}

#[test]
fn loopback_destinations_are_fetched_with_allow_private() {
    let k = key();
    let targets = loopback_targets(&k);
    let entries: Vec<String> = targets.iter().map(|(_, e, _)| e.clone()).collect();
    let mut i = fetcher(Some(allow(&entries, true)));
    for (url, _, _) in &targets {
        let o = fetch(&mut i, url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(o.value, b"hit", "{url}");
    }
    // 127.0.0.1 and 2130706433 are the same address; each got its own key.
    for suffix in ["v4", "int", "name"] {
        assert_eq!(server().hits.get(&format!("{k}-{suffix}")), 1, "{suffix}");
    }
}

#[test]
fn an_entry_without_a_port_allows_only_80_and_443() {
    let port = server().port;
    let k = key();
    let mut i = fetcher(Some(allow(&["localhost".into()], true)));
    let err = fetch(&mut i, &url(&format!("/hit/{k}"))).unwrap_err();
    assert_eq!(
        err,
        PluginError::Invalid(format!(
            "denied: localhost:{port} is not on the allow-list: localhost is allowed on \
             ports 80, 443 only; add \"localhost:{port}\" to allow it"
        ))
    );
    assert_eq!(server().hits.get(&k), 0);
    // Naming the port allows it (and only it).
    let mut i = fetcher(Some(allow(&[format!("localhost:{port}")], true)));
    fetch(&mut i, &url(&format!("/hit/{k}"))).unwrap();
    assert_eq!(server().hits.get(&k), 1);
    let err = fetch(&mut i, &format!("http://localhost:{}/", port ^ 1)).unwrap_err();
    assert!(
        matches!(&err, PluginError::Invalid(m) if m.contains("is allowed on port ")),
        "{err:?}"
    );
}

#[test]
fn everything_and_top_level_wildcards_fail_instantiation() {
    for entry in ["*", "*.com", "*.co.uk", "*.localhost"] {
        let plugin = runtime()
            .load(&common::plugin("http-fetch"), "http-fetch")
            .unwrap();
        let config = HttpConfig {
            allow: vec!["api.example.com".into(), entry.into()],
            ..HttpConfig::default()
        };
        let err = Instance::with_http(plugin, raw(), roomy(), Some(&config))
            .err()
            .unwrap();
        assert!(matches!(err, InitError::Http { .. }), "{entry}: {err:?}");
        assert!(
            err.to_string().contains(&format!("{entry:?}")),
            "{entry}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------
// Size cap.

#[test]
fn body_at_the_cap_is_returned() {
    let cap = 64 * 1024;
    let mut i = fetcher(Some(HttpConfig {
        max_bytes: cap,
        ..localhost()
    }));
    let o = fetch(&mut i, &url(&format!("/big/{cap}"))).unwrap();
    assert_eq!(o.value.len() as u64, cap);
    let o = fetch(&mut i, &url(&format!("/stream/{cap}"))).unwrap();
    assert_eq!(o.value.len() as u64, cap);
}

#[test]
fn declared_length_over_the_cap_is_too_large() {
    let cap = 64 * 1024;
    let mut i = fetcher(Some(HttpConfig {
        max_bytes: cap,
        ..localhost()
    }));
    let err = fetch(&mut i, &url(&format!("/big/{}", cap + 1))).unwrap_err();
    assert_eq!(err, PluginError::Invalid(format!("too-large: {cap}")));
    // Refused on the header alone: the body never arrives, and waiting for
    // it would end in a timeout instead.
    let started = Instant::now();
    let err = fetch(&mut i, &url(&format!("/declared/{}", 1u64 << 40))).unwrap_err();
    assert_eq!(err, PluginError::Invalid(format!("too-large: {cap}")));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn streamed_body_over_the_cap_stops_reading_at_the_cap() {
    let cap = 64 * 1024;
    let mut i = fetcher(Some(HttpConfig {
        max_bytes: cap,
        ..localhost()
    }));
    let err = fetch(&mut i, &url(&format!("/stream/{}", cap + 1))).unwrap_err();
    assert_eq!(err, PluginError::Invalid(format!("too-large: {cap}")));
    // A 4 GiB body with no Content-Length: reading it all would take far
    // longer than this, and could not fit in memory besides.
    let started = Instant::now();
    let err = fetch(&mut i, &url(&format!("/stream/{}", 4u64 << 30))).unwrap_err();
    assert_eq!(err, PluginError::Invalid(format!("too-large: {cap}")));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Timeout and deadline.

#[test]
fn slow_response_times_out() {
    let mut i = fetcher(Some(HttpConfig {
        timeout: Duration::from_millis(300),
        ..localhost()
    }));
    let started = Instant::now();
    let err = fetch(&mut i, &url("/slow/5000")).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, PluginError::Transient("timeout".into()));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "took {took:?} against a 300ms timeout"
    );
    // A response inside the timeout is fine.
    assert_eq!(fetch(&mut i, &url("/slow/10")).unwrap().value, b"slow");
}

#[test]
fn timeout_covers_reading_the_body() {
    let mut i = fetcher(Some(HttpConfig {
        timeout: Duration::from_millis(300),
        ..localhost()
    }));
    let started = Instant::now();
    let err = fetch(&mut i, &url("/slow-body/5000")).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, PluginError::Transient("timeout".into()));
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}

#[test]
fn a_fetch_ends_at_the_call_deadline_not_its_own_timeout() {
    // The fetch's own timeout (5s) is far longer than the call's deadline:
    // the deadline wins, and the call ends with `deadline`, not `transient`.
    let plugin = runtime()
        .load(&common::plugin("http-fetch"), "http-fetch")
        .unwrap();
    let limits = Limits {
        deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let mut i = Instance::with_http(plugin, raw(), limits, Some(&localhost())).unwrap();
    for path in ["/slow/5000", "/slow-body/5000"] {
        let started = Instant::now();
        let err = fetch(&mut i, &url(path)).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), "deadline", "{path}: {err}");
        assert!(took < Duration::from_millis(400), "{path}: took {took:?}");
    }
    // The rebuilt instance fetches normally.
    assert_eq!(
        fetch(&mut i, &url("/page")).unwrap().value,
        b"hello from the fixture"
    );
}

// ---------------------------------------------------------------------------
// Redirects.

#[test]
fn redirects_are_followed_up_to_the_limit() {
    let mut i = fetcher(Some(HttpConfig {
        max_redirects: 3,
        ..localhost()
    }));
    let k = key();
    let o = fetch(&mut i, &url(&format!("/redirect/3/{k}"))).unwrap();
    assert_eq!(o.value, b"landed");
    assert_eq!(header(&o, "status"), "200");
    assert_eq!(header(&o, "final-url"), url(&format!("/redirect/0/{k}")));
    assert_eq!(server().hits.get(&format!("redirect-{k}")), 4);
}

#[test]
fn too_many_redirects_is_an_error() {
    let k = key();
    let mut i = fetcher(Some(HttpConfig {
        max_redirects: 2,
        ..localhost()
    }));
    let err = fetch(&mut i, &url(&format!("/redirect/3/{k}"))).unwrap_err();
    assert_eq!(err, PluginError::Invalid("too-many-redirects".into()));
    // Three requests made (two redirects followed); the third was refused.
    assert_eq!(server().hits.get(&format!("redirect-{k}")), 3);

    let mut none = fetcher(Some(HttpConfig {
        max_redirects: 0,
        ..localhost()
    }));
    let err = fetch(&mut none, &url(&format!("/redirect/1/{}", key()))).unwrap_err();
    assert_eq!(err, PluginError::Invalid("too-many-redirects".into()));
}

#[test]
fn redirect_to_a_denied_host_is_denied_and_not_followed() {
    let mut i = fetcher(Some(localhost()));
    let k = key();
    let err = fetch(&mut i, &url(&format!("/away/{k}"))).unwrap_err();
    assert_eq!(err, PluginError::Invalid("denied: 127.0.0.1".into()));
    assert_eq!(server().hits.get(&format!("away-{k}")), 1);
    assert_eq!(
        server().hits.get(&k),
        0,
        "the redirect target was contacted"
    );
}

#[test]
fn redirect_to_a_port_not_on_the_allow_list_is_denied_and_not_followed() {
    let other = Recorder::start();
    let mut i = fetcher(Some(localhost()));
    let k = key();
    let err = fetch(&mut i, &url(&format!("/to-port/{}/{k}", other.port))).unwrap_err();
    assert!(
        matches!(&err, PluginError::Invalid(m)
            if m.starts_with(&format!("denied: localhost:{} is not on the allow-list", other.port))),
        "{err:?}"
    );
    assert_eq!(other.hits(), 0, "the redirect target was contacted");
}

#[test]
fn headers_the_plugin_set_are_dropped_on_a_cross_origin_redirect() {
    let port = server().port;
    let mut params = raw();
    params.push(("header.x-api-key".into(), "s3cret".into()));
    let entries = [format!("localhost:{port}"), format!("127.0.0.1:{port}")];
    let mut i = fetcher_with(params, Some(allow(&entries, true)));
    // Sent to the origin the plugin named, and kept on a same-origin hop.
    assert_eq!(fetch(&mut i, &url("/api-key")).unwrap().value, b"s3cret");
    assert_eq!(
        fetch(&mut i, &url("/same-origin")).unwrap().value,
        b"s3cret"
    );
    // Gone once the redirect leaves for another origin (both hosts allowed).
    let o = fetch(&mut i, &url("/cross-origin")).unwrap();
    assert_eq!(
        header(&o, "final-url"),
        format!("http://127.0.0.1:{port}/api-key")
    );
    assert_eq!(o.value, b"(none)");
}

#[test]
fn redirect_from_a_public_host_to_loopback_is_denied() {
    // `public.example` cannot exist here, so the fixture plays a proxy
    // (`proxy` config): it answers the request for the public host with a
    // redirect to 127.0.0.1. That target is on the allow-list, but it is
    // loopback and allow_private is off. (A name that *resolves* to
    // loopback on a hop is refused by the resolver; that needs a DNS we
    // control, so it is a unit test in plugin/http/resolve.rs.)
    let port = server().port;
    let k = key();
    let mut i = fetcher(Some(HttpConfig {
        allow: vec!["public.example".into(), format!("127.0.0.1:{port}")],
        allow_private: false,
        proxy: Some(format!("http://127.0.0.1:{port}")),
        ..localhost()
    }));
    let err = fetch(&mut i, &format!("http://public.example/to-loopback/{k}")).unwrap_err();
    assert_eq!(
        err,
        PluginError::Invalid(
            "denied: 127.0.0.1 is a loopback address; set allow_private = true to allow it".into()
        )
    );
    assert_eq!(
        server().hits.get(&format!("to-loopback-{k}")),
        1,
        "the first hop went through the proxy"
    );
    assert_eq!(
        server().hits.get(&k),
        0,
        "the loopback target was contacted"
    );
}

// The https→http downgrade refusal is a unit test
// (`redirect_hops_are_vetted_like_first_requests` in plugin/http/policy.rs):
// an integration test would need an https server the client trusts, and
// the client trusts only the public web PKI.

// ---------------------------------------------------------------------------
// Retries.

#[test]
fn server_errors_are_retried_then_returned() {
    let mut i = fetcher(Some(HttpConfig {
        retries: 2,
        backoff: Duration::from_millis(100),
        ..localhost()
    }));
    let k = key();
    let started = Instant::now();
    let o = fetch(&mut i, &url(&format!("/status/500/{k}"))).unwrap();
    let took = started.elapsed();
    assert_eq!(header(&o, "status"), "500");
    assert_eq!(o.value, b"status 500");
    assert_eq!(server().hits.get(&k), 3, "one attempt and two retries");
    // Backoff doubles: 100ms, then 200ms.
    assert!(took >= Duration::from_millis(300), "took {took:?}");
}

#[test]
fn a_flaky_server_succeeds_on_retry() {
    let mut i = fetcher(Some(HttpConfig {
        retries: 2,
        ..localhost()
    }));
    let k = key();
    let o = fetch(&mut i, &url(&format!("/flaky/2/{k}"))).unwrap();
    assert_eq!(header(&o, "status"), "200");
    assert_eq!(o.value, b"recovered");
    assert_eq!(server().hits.get(&k), 3);
}

#[test]
fn client_errors_and_zero_retries_are_not_retried() {
    let mut i = fetcher(Some(localhost()));
    let k = key();
    let o = fetch(&mut i, &url(&format!("/status/404/{k}"))).unwrap();
    assert_eq!(header(&o, "status"), "404");
    assert_eq!(server().hits.get(&k), 1);

    let mut once = fetcher(Some(HttpConfig {
        retries: 0,
        ..localhost()
    }));
    let k = key();
    let o = fetch(&mut once, &url(&format!("/status/503/{k}"))).unwrap();
    assert_eq!(header(&o, "status"), "503");
    assert_eq!(server().hits.get(&k), 1);
}

#[test]
fn retries_stop_when_the_backoff_would_pass_the_timeout() {
    let mut i = fetcher(Some(HttpConfig {
        retries: 10,
        backoff: Duration::from_millis(200),
        timeout: Duration::from_millis(1000),
        ..localhost()
    }));
    let k = key();
    let started = Instant::now();
    let o = fetch(&mut i, &url(&format!("/status/502/{k}"))).unwrap();
    let took = started.elapsed();
    assert_eq!(header(&o, "status"), "502");
    // Pauses of 200ms and 400ms fit in the second; 800ms more would not,
    // so the fetch ends early instead of sleeping into its timeout.
    assert_eq!(server().hits.get(&k), 3);
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

#[test]
fn connection_errors_are_retried_then_transient() {
    // Nothing listens on this port (it was free a moment ago).
    let port = common::free_port();
    let mut i = fetcher(Some(HttpConfig {
        allow: vec![format!("localhost:{port}")],
        retries: 2,
        backoff: Duration::from_millis(50),
        ..localhost()
    }));
    let started = Instant::now();
    let err = fetch(&mut i, &format!("http://localhost:{port}/")).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, PluginError::Transient(m) if m.starts_with("connection: ")),
        "{err:?}"
    );
    // Two pauses: 50ms, then 100ms.
    assert!(took >= Duration::from_millis(150), "took {took:?}");
}

// ---------------------------------------------------------------------------
// User agent.

#[test]
fn user_agent_is_sent() {
    let mut i = fetcher(Some(localhost()));
    let o = fetch(&mut i, &url("/ua")).unwrap();
    assert_eq!(
        String::from_utf8(o.value).unwrap(),
        format!("sluice/{}", env!("CARGO_PKG_VERSION"))
    );
    let mut i = fetcher(Some(HttpConfig {
        user_agent: "recipe-bot/2.0 (+https://example.com/bot)".into(),
        ..localhost()
    }));
    let o = fetch(&mut i, &url("/ua")).unwrap();
    assert_eq!(o.value, b"recipe-bot/2.0 (+https://example.com/bot)");
}

// ---------------------------------------------------------------------------
// `sluice plugin run`.

/// `sluice plugin run --format lines` of http-fetch with the fixture's
/// `localhost:PORT` allowed (and private addresses), `env` set, `input` on
/// stdin; the JSON line of each record.
fn plugin_run(env: &[(&str, &str)], input: &str) -> Vec<serde_json::Value> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["plugin", "run", "--format", "lines", "--allow-private"])
        .args(["--allow-host", &format!("localhost:{}", server().port)])
        .args(["--http-timeout", "5s"])
        .arg(common::plugin("http-fetch"))
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn plugin_run_flags_grant_http() {
    let k = key();
    let denied = format!("http://127.0.0.1:{}/hit/{k}", server().port);
    let lines = plugin_run(&[], &format!("{}\n{denied}\n", url("/page")));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["value"], "hello from the fixture");
    assert_eq!(lines[0]["headers"]["status"], "200");
    assert_eq!(lines[1]["error"]["kind"], "invalid");
    assert_eq!(lines[1]["error"]["message"], "denied: 127.0.0.1");
    assert_eq!(server().hits.get(&k), 0);
}

#[test]
fn plugin_run_ignores_proxy_environment_variables() {
    let proxy = Recorder::start();
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let mut env: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .map(|var| (var, proxy_url.as_str()))
    .collect();
    // An empty NO_PROXY exempts nothing, whatever the test runner inherited.
    env.extend([("NO_PROXY", ""), ("no_proxy", "")]);
    let lines = plugin_run(&env, &format!("{}\n", url("/page")));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["value"], "hello from the fixture", "{lines:?}");
    assert_eq!(
        proxy.hits(),
        0,
        "the fetch went through the environment's proxy"
    );
}

#[test]
fn plugin_run_refuses_a_catch_all_allow_host() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "run", "--allow-host", "*.com"])
        .arg(common::plugin("http-fetch"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"*.com\""), "{stderr}");
}
