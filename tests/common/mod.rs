//! Shared test harness: paths to built plugins, a tansu broker on a free
//! port, random names, and Kafka helpers. Every test makes its own topics
//! and group, so tests never see each other's data.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fault;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A built plugin component; fails loudly if `just plugins` has not run.
pub fn plugin(name: &str) -> PathBuf {
    let p = root().join("dist/plugins").join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `just plugins` first",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn random_name(prefix: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{prefix}-{n:016x}")
}

/// Wait until `cond` holds, polling; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The PostgreSQL the SQL tests use (`SLUICE_TEST_PG` overrides).
pub fn pg_url() -> String {
    std::env::var("SLUICE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Run SQL statements against the test PostgreSQL.
pub fn pg_exec(sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    });
}

/// Poll `cond` until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A tansu broker, killed on drop.
pub struct Broker {
    pub addr: String,
    child: Child,
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SIGTERM lets the watchdog shell stop the broker it started (a
        // SIGKILL would leave the broker running).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        Broker::start_on(port, port)
    }

    /// A broker that listens on `port` and tells clients to connect to
    /// `advertised` (a fault proxy in front of it, so every connection,
    /// bootstrap or not, passes the proxy).
    pub fn start_on(port: u16, advertised: u16) -> Broker {
        let bin = std::env::var("SLUICE_TANSU")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sluice/bin/tansu")
            });
        assert!(
            bin.exists(),
            "{} is missing: run `just broker-install`",
            bin.display()
        );
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        // A watchdog shell kills the broker when this test process exits,
        // even though a shared broker's Drop never runs.
        let script = r#"bin="$1"; shift; "$bin" "$@" & c=$!; trap 'kill $c 2>/dev/null; exit 0' TERM; while kill -0 "$WATCH" 2>/dev/null && kill -0 $c 2>/dev/null; do sleep 0.5; done; kill $c 2>/dev/null"#;
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("tansu")
            .arg(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("WATCH", std::process::id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("tansu to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        Broker { addr, child }
    }

    /// One broker per test binary, shared by its tests.
    pub fn shared() -> &'static Broker {
        static B: OnceLock<Broker> = OnceLock::new();
        B.get_or_init(Broker::start)
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .create()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let res = rt
            .block_on(admin.create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            ))
            .unwrap();
        for r in res {
            r.unwrap();
        }
    }

    /// Produce `(key, value)` records and wait for every acknowledgement.
    pub fn produce(&self, topic: &str, records: &[(String, Vec<u8>)]) {
        produce_to(&self.addr, topic, records)
    }

    /// A consumer of `topic` from the beginning, in its own group.
    pub fn consumer(&self, topic: &str) -> rdkafka::consumer::BaseConsumer {
        consumer_of(&self.addr, topic)
    }
}

/// A consumer of `topic` at the brokers `addr`, from the beginning, in its
/// own group.
pub fn consumer_of(addr: &str, topic: &str) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", random_name("test"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

/// Produce `(key, value)` records to the broker at `addr` and wait for
/// every acknowledgement.
pub fn produce_to(addr: &str, topic: &str, records: &[(String, Vec<u8>)]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (k, v) in records {
        let mut rec = BaseRecord::to(topic)
            .key(k.as_bytes())
            .payload(v.as_slice());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Got {
    pub key: Option<String>,
    /// The payload; empty when it was null (see `value_is_null`).
    pub value: Vec<u8>,
    /// The payload was null (a tombstone), not merely empty.
    pub value_is_null: bool,
    /// Header values are lossy UTF-8; a null one reads as "" (see
    /// `null_headers`).
    pub headers: Vec<(String, String)>,
    /// Names of the headers whose value was null, in order.
    pub null_headers: Vec<String>,
    pub partition: i32,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Poll `c` until `done(&seen)` or `timeout`; then keep reading for `idle`
/// to catch anything extra.
pub fn collect(
    c: &rdkafka::consumer::BaseConsumer,
    timeout: Duration,
    idle: Duration,
    mut done: impl FnMut(&[Got]) -> bool,
) -> Vec<Got> {
    use rdkafka::Message;
    use rdkafka::message::Headers;
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut finished_at: Option<Instant> = None;
    loop {
        if let Some(f) = finished_at {
            if f.elapsed() >= idle {
                break;
            }
        } else if start.elapsed() > timeout {
            break;
        }
        // Errors (a broker down for a while) pass: the client reconnects.
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let null_headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .filter(|h| h.value.is_none())
                        .map(|h| h.key.to_owned())
                        .collect()
                })
                .unwrap_or_default();
            seen.push(Got {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: m.payload().unwrap_or_default().to_vec(),
                value_is_null: m.payload().is_none(),
                headers,
                null_headers,
                partition: m.partition(),
            });
        }
        if finished_at.is_none() && done(&seen) {
            finished_at = Some(Instant::now());
        }
    }
    seen
}

/// A running `sluice` process, killed on drop.
pub struct Sluice {
    pub child: Child,
    pub log: PathBuf,
}

impl Sluice {
    pub fn run(pipeline: &Path, log: &Path) -> Sluice {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg(pipeline)
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        Sluice {
            child,
            log: log.to_owned(),
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.success();
            }
            if start.elapsed() > Duration::from_secs(60) {
                self.kill9();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
