//! The crawler example (`examples/crawler/pipeline.toml`) end to end: a
//! PostgreSQL table of URLs, a fixture web server on loopback, the real
//! broker, and the pages table. Every good URL ends as exactly one row; the
//! slow, failing and oversized ones are dead-lettered, never silently lost;
//! the banned one is retried later until it gets through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use common::{Broker, pg_exec, pg_url, random_name};

fn pg<T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    sql: &str,
) -> Vec<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
        sqlx::query_scalar::<_, T>(sql)
            .fetch_all(&pool)
            .await
            .unwrap_or_default()
    })
}

#[derive(Clone, Default)]
struct Site {
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Site {
    fn hit(&self, path: &str) -> usize {
        let mut h = self.hits.lock().unwrap();
        let n = h.entry(path.to_owned()).or_default();
        *n += 1;
        *n
    }
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn page(State(site): State<Site>, Path(n): Path<String>) -> Html<String> {
    site.hit(&format!("page/{n}"));
    Html(format!(
        "<html><head><title>Page {n}</title></head><body><h1>Page {n}</h1><p>Body of page {n}.</p></body></html>"
    ))
}

async fn slow(State(site): State<Site>) -> Html<&'static str> {
    site.hit("slow");
    tokio::time::sleep(Duration::from_secs(3)).await;
    Html("<html><body>too late</body></html>")
}

async fn error(State(site): State<Site>) -> Response {
    site.hit("error");
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
}

async fn banned(State(site): State<Site>) -> Html<&'static str> {
    // Banned for the first four fetches: more than one round of retries, so
    // only a later re-publication gets it through.
    if site.hit("banned") <= 4 {
        Html("<html><body>Sorry, your IP banned</body></html>")
    } else {
        Html("<html><head><title>Finally</title></head><body>Unbanned content</body></html>")
    }
}

async fn redirect(State(site): State<Site>) -> Redirect {
    site.hit("redirect");
    Redirect::temporary("/page/target")
}

async fn big(State(site): State<Site>) -> Html<String> {
    site.hit("big");
    Html(format!(
        "<html><body>{}</body></html>",
        "x".repeat(300 * 1024)
    ))
}

fn serve(site: Site) -> u16 {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/page/{n}", get(page))
        .route("/slow", get(slow))
        .route("/error", get(error))
        .route("/banned", get(banned))
        .route("/redirect", get(redirect))
        .route("/big", get(big))
        .with_state(site);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    port
}

#[test]
fn crawler_example_end_to_end() {
    let site = Site::default();
    let port = serve(site.clone());
    let b = Broker::shared();
    let (urls_topic, pages_topic, dlq) = (
        random_name("urls"),
        random_name("pages"),
        random_name("dlq"),
    );
    b.create_topic(&urls_topic, 4);
    b.create_topic(&pages_topic, 4);
    b.create_topic(&dlq, 1);
    let urls = random_name("urls").replace('-', "_");
    let pages = random_name("pages").replace('-', "_");
    let base = format!("http://localhost:{port}");
    let good = ["/page/1", "/page/2", "/page/3", "/redirect", "/banned"];
    let bad = ["/slow", "/error", "/big"];
    let values: Vec<String> = good
        .iter()
        .chain(bad.iter())
        .map(|p| format!("('{base}{p}')"))
        .collect();
    pg_exec(&format!(
        "CREATE TABLE \"{urls}\" (url TEXT PRIMARY KEY); INSERT INTO \"{urls}\" VALUES {};",
        values.join(", ")
    ));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crawler.toml");
    let text = std::fs::read_to_string(common::root().join("examples/crawler/pipeline.toml"))
        .unwrap()
        .replace(
            "../../dist",
            &common::root().join("dist").display().to_string(),
        );
    std::fs::write(&file, text).unwrap();
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&file)
        .env("KAFKA_BROKERS", &b.addr)
        // The fixture site is on localhost: opt in to private addresses
        // and name its port, as the example's README says.
        .env("CRAWL_HOST", format!("localhost:{port}"))
        .env("CRAWL_ALLOW_PRIVATE", "true")
        .env("CRAWL_DB", pg_url())
        .env("URLS_TABLE", &urls)
        .env("PAGES_TABLE", &pages)
        .env("URLS_TOPIC", &urls_topic)
        .env("PAGES_TOPIC", &pages_topic)
        .env("DLQ_TOPIC", &dlq)
        .env("GROUP_PREFIX", random_name("crawl"))
        .env("FETCH_TIMEOUT", "1s")
        .env("MAX_PAGE", "100KiB")
        .env("RETRY_AFTER", "2s")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let rows = || pg::<String>(&format!("SELECT url FROM \"{pages}\" ORDER BY url"));
    let done = common::poll_until(Duration::from_secs(120), || {
        rows().len() >= good.len() || child.try_wait().unwrap().is_some()
    }) && rows().len() >= good.len();
    let got = rows();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(
        done,
        "pages so far: {got:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let mut want: Vec<String> = good.iter().map(|p| format!("{base}{p}")).collect();
    want.sort();
    assert_eq!(got, want, "every good URL is exactly one row");
    let titles = pg::<String>(&format!(
        "SELECT title FROM \"{pages}\" WHERE url = '{base}/banned'"
    ));
    assert_eq!(
        titles,
        ["Finally"],
        "the banned page was retried later until it got through"
    );
    assert!(site.hits("banned") >= 5);
    let redirected = pg::<String>(&format!(
        "SELECT title FROM \"{pages}\" WHERE url = '{base}/redirect'"
    ));
    assert_eq!(redirected, ["Page target"]);

    // The failures were not skipped silently: each is in the dead-letter
    // topic with the reason.
    let dl = common::collect(
        &b.consumer(&dlq),
        Duration::from_secs(30),
        Duration::from_secs(1),
        |g| {
            bad.iter().all(|p| {
                g.iter()
                    .any(|d| d.key.as_deref() == Some(&format!("{base}{p}")))
            })
        },
    );
    let reason = |p: &str| {
        dl.iter()
            .find(|d| d.key.as_deref() == Some(&format!("{base}{p}")))
            .map(|d| {
                d.header("sluice.error.message")
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_else(|| panic!("{p} was never dead-lettered"))
    };
    assert!(
        reason("/slow").starts_with("timeout"),
        "{}",
        reason("/slow")
    );
    assert!(
        reason("/error").contains("status 500"),
        "{}",
        reason("/error")
    );
    assert!(
        reason("/big").starts_with("too-large"),
        "{}",
        reason("/big")
    );
    assert!(site.hits("error") >= 2, "the 500 was retried");
}
