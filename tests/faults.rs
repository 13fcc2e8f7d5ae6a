//! Fault tests: sluice's delivery guarantees under the faults real
//! pipelines meet. A shutdown during a retry backoff, a `COMMIT` whose
//! acknowledgement is lost, a database that goes read-only or away, a
//! restart in the same group. Everything runs against the real broker, a
//! real PostgreSQL (a private instance where the test stops it) and SQLite,
//! through the fault proxy of `common::fault` where a connection must fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fault::{FaultProxy, Mode, PrivatePg};
use common::{Broker, Sluice, random_name};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `SELECT` one number; `None` when the database or table is not there.
fn scalar(url: &str, sql: &str) -> Option<i64> {
    rt().block_on(async {
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await.ok()?;
            let v = sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .ok();
            pool.close().await;
            v
        } else {
            let pool = sqlx::PgPool::connect(url).await.ok()?;
            let v = sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .ok();
            pool.close().await;
            v
        }
    })
}

/// Run statements on a PostgreSQL or SQLite database.
fn exec(url: &str, sql: &str) {
    rt().block_on(async {
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    })
}

/// The value of a counter on a sluice metrics endpoint (summed over the
/// label sets that match `name{pipeline="..."` and the extra filter).
fn metric(port: u16, name: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET path` on a sluice metrics endpoint: (status code, body).
fn http(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

/// A pipeline file: `plugin` with `params`, into `table` of `url`.
struct Spec<'a> {
    broker: &'a str,
    input: &'a str,
    dlq: &'a str,
    group: &'a str,
    url: &'a str,
    table: &'a str,
    sql_extra: &'a str,
    plugin: &'a str,
    params: &'a str,
    retry: &'a str,
    metrics_port: u16,
}

fn write_file(path: &Path, s: &Spec<'_>) -> PathBuf {
    let text = format!(
        r#"
[metrics]
listen = "127.0.0.1:{port}"
[reload]
watch = false
[[pipeline]]
name = "f"
source = {{ brokers = "{broker}", topics = ["{input}"], group_id = "{group}", session_timeout = "3s" }}
dead_letter = {{ topic = "{dlq}" }}
retry = {{ {retry} }}
sql = {{ url = "{url}", batch_rows = 100, batch_age = "50ms"{sql_extra} }}
[pipeline.routes.default.table]
name = "{table}"
create = true
columns = {{ id = {{ type = "text" }}, v = {{ type = "integer" }} }}
[[pipeline.plugin]]
path = "{plugin}"
params = {{ {params} }}
"#,
        port = s.metrics_port,
        broker = s.broker,
        input = s.input,
        dlq = s.dlq,
        group = s.group,
        url = s.url,
        table = s.table,
        sql_extra = if s.sql_extra.is_empty() {
            String::new()
        } else {
            format!(", {}", s.sql_extra)
        },
        plugin = common::plugin(s.plugin).display(),
        params = s.params,
        retry = s.retry,
    );
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

fn row(i: usize, extra: &str) -> (String, Vec<u8>) {
    (
        format!("k{i}"),
        format!(r#"{{"id":"k{i}","v":{i}{extra}}}"#).into_bytes(),
    )
}

fn rows(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    range.map(|i| row(i, "")).collect()
}

/// Wait for `cond`; on a timeout, fail with the logs of `procs`.
fn wait(procs: &[&Sluice], what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    if !common::poll_until(timeout, &mut cond) {
        let logs: Vec<String> = procs.iter().map(|p| p.log_text()).collect();
        panic!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            logs.join("\n----\n")
        );
    }
}

fn table_name() -> String {
    random_name("t").replace('-', "_")
}

/// The dead-letter topic's records: until `want` have come (then 2 s more),
/// or, for `want == 0`, everything that comes in 10 s (a new consumer
/// takes a few seconds to join its group).
fn dead_letters(b: &Broker, dlq: &str, want: usize) -> Vec<common::Got> {
    let c = b.consumer(dlq);
    if want == 0 {
        common::collect(&c, Duration::from_secs(10), Duration::ZERO, |_| false)
    } else {
        common::collect(&c, Duration::from_secs(30), Duration::from_secs(2), |g| {
            g.len() >= want
        })
    }
}

/// Exactly-once: a record in a retry backoff when SIGTERM arrives is
/// abandoned; records after it in its partition must not move the offsets
/// table past it, so after a restart it is written, once.
#[test]
fn eo_sigterm_during_a_retry_backoff_skips_no_record() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eo.sqlite").display());
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    b.create_topic(&input, 1);
    b.create_topic(&dlq, 1);
    let port = common::free_port();
    let spec = |params| Spec {
        broker: &b.addr,
        input: &input,
        dlq: &dlq,
        group: &group,
        url: &url,
        table: &table,
        sql_extra: "exactly_once = true",
        plugin: "flaky",
        params,
        retry: r#"max_attempts = 1000, initial_backoff = "100ms", max_backoff = "100ms""#,
        metrics_port: port,
    };
    let file = write_file(&dir.path().join("p.toml"), &spec(r#"transient = "BAD""#));
    let mut records = rows(0..5);
    records.push(row(5, r#","m":"BAD""#));
    records.extend(rows(6..26));
    b.produce(&input, &records);

    let count = format!("SELECT count(*) FROM \"{table}\"");
    let next = "SELECT coalesce(max(next_offset), 0) FROM sluice_offsets";
    let mut p = Sluice::run(&file, &dir.path().join("log0"));
    wait(
        &[&p],
        "the rows before the bad one",
        Duration::from_secs(60),
        || scalar(&url, &count) == Some(5),
    );
    wait(
        &[&p],
        "retries of the bad one",
        Duration::from_secs(30),
        || metric(port, "sluice_retries_total") >= 3.0,
    );
    p.terminate();
    let stored = scalar(&url, next).unwrap();
    assert!(
        stored <= 5,
        "the offsets table moved past the abandoned record 5 to {stored}\n{}",
        p.log_text()
    );

    // The dependency is back: the record goes through.
    write_file(&dir.path().join("p.toml"), &spec(""));
    let mut p = Sluice::run(&file, &dir.path().join("log1"));
    wait(&[&p], "every row", Duration::from_secs(60), || {
        scalar(&url, next) == Some(26)
    });
    assert!(p.terminate(), "{}", p.log_text());
    assert_eq!(
        scalar(&url, &count),
        Some(26),
        "a record was skipped or doubled"
    );
    let distinct = format!("SELECT count(DISTINCT id) FROM \"{table}\"");
    assert_eq!(scalar(&url, &distinct), Some(26));
}

/// Exactly-once into PostgreSQL: the connection drops right after `COMMIT`
/// reached the server, so sluice cannot know whether the batch committed.
/// It must find out from the offsets table rather than write it again.
#[test]
fn eo_a_commit_whose_answer_is_lost_writes_no_duplicate() {
    const N: usize = 3000;
    let b = Broker::shared();
    let pg = PrivatePg::start();
    let proxy = FaultProxy::start(pg.addr());
    let dir = tempfile::tempdir().unwrap();
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    b.create_topic(&input, 2);
    b.create_topic(&dlq, 1);
    let url = pg.url_via(&proxy.addr());
    let file = write_file(
        &dir.path().join("p.toml"),
        &Spec {
            broker: &b.addr,
            input: &input,
            dlq: &dlq,
            group: &group,
            url: &url,
            table: &table,
            sql_extra: "exactly_once = true",
            plugin: "passthrough",
            params: "",
            retry: "",
            metrics_port: common::free_port(),
        },
    );
    let direct = pg.url();
    let count = format!("SELECT count(*) FROM \"{table}\"");
    let mut p = Sluice::run(&file, &dir.path().join("log"));
    b.produce(&input, &rows(0..N / 2));
    wait(&[&p], "some rows", Duration::from_secs(60), || {
        scalar(&direct, &count).is_some_and(|c| c > 0)
    });
    // The next COMMIT reaches the server; its answer never comes back.
    proxy.close_after(b"COMMIT");
    b.produce(&input, &rows(N / 2..N));
    wait(
        &[&p],
        "the commit to be cut",
        Duration::from_secs(60),
        || proxy.fired() == 1,
    );
    wait(&[&p], "every row", Duration::from_secs(120), || {
        scalar(&direct, &count).is_some_and(|c| c >= N as i64)
    });
    assert!(p.terminate(), "{}", p.log_text());
    let rows = scalar(&direct, &count).unwrap();
    let distinct = scalar(
        &direct,
        &format!("SELECT count(DISTINCT id) FROM \"{table}\""),
    )
    .unwrap();
    assert_eq!(distinct, N as i64, "rows lost");
    assert_eq!(
        rows, N as i64,
        "duplicate rows after the lost COMMIT answer"
    );
    let next = scalar(
        &direct,
        "SELECT sum(next_offset)::bigint FROM sluice_offsets",
    );
    assert_eq!(next, Some(N as i64));
}

/// The database goes read-only mid-stream (as a failed-over standby does).
/// Its refusals are not the rows' fault: nothing is dead-lettered, and
/// every row arrives once it is writable again.
#[test]
fn a_read_only_database_dead_letters_nothing_and_loses_nothing() {
    const N: usize = 600;
    let b = Broker::shared();
    let admin = common::pg_url();
    let db = random_name("ro").replace('-', "_");
    exec(&admin, &format!("CREATE DATABASE {db}"));
    let url = admin.rsplit_once('/').unwrap().0.to_owned() + "/" + &db;
    let dir = tempfile::tempdir().unwrap();
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    b.create_topic(&input, 2);
    b.create_topic(&dlq, 1);
    let port = common::free_port();
    let file = write_file(
        &dir.path().join("p.toml"),
        &Spec {
            broker: &b.addr,
            input: &input,
            dlq: &dlq,
            group: &group,
            url: &url,
            table: &table,
            sql_extra: "",
            plugin: "passthrough",
            params: "",
            retry: "",
            metrics_port: port,
        },
    );
    let count = format!("SELECT count(*) FROM \"{table}\"");
    let mut p = Sluice::run(&file, &dir.path().join("log"));
    b.produce(&input, &rows(0..N / 2));
    wait(&[&p], "the first half", Duration::from_secs(60), || {
        scalar(&url, &count) == Some(N as i64 / 2)
    });
    let read_only = |on: bool| {
        exec(
            &admin,
            &format!("ALTER DATABASE {db} SET default_transaction_read_only = {on}"),
        );
        // Sessions pick the setting up when they start.
        exec(
            &admin,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        );
    };
    read_only(true);
    b.produce(&input, &rows(N / 2..N));
    wait(&[&p], "a refused write", Duration::from_secs(60), || {
        let log = p.log_text();
        log.contains("read-only") || log.contains("dead-lettering")
    });
    // /readyz says what is wrong while it is; /healthz (liveness) stays ok.
    wait(
        &[&p],
        "/readyz to report the database",
        Duration::from_secs(30),
        || {
            let (code, body) = http(port, "/readyz");
            code == 503 && body.contains("pipeline `f`: database")
        },
    );
    assert_eq!(http(port, "/healthz").0, 200);
    // The outage lasts 10 s, with sluice retrying through it.
    std::thread::sleep(Duration::from_secs(10));
    read_only(false);
    wait(&[&p], "every row", Duration::from_secs(60), || {
        scalar(&url, &count) == Some(N as i64)
    });
    wait(
        &[&p],
        "/readyz to be ready again",
        Duration::from_secs(30),
        || http(port, "/readyz").0 == 200,
    );
    let dead = dead_letters(b, &dlq, 0);
    assert!(p.terminate(), "{}", p.log_text());
    assert!(
        dead.is_empty(),
        "{} rows dead-lettered for a read-only database: {:?}",
        dead.len(),
        dead.first().and_then(|d| d.header("sluice.error.message"))
    );
    exec(&admin, &format!("DROP DATABASE {db} WITH (FORCE)"));
}

/// The database is down when sluice starts, and down again when the
/// partitions of a member that died are assigned to the one left. sluice
/// waits for it both times, and every row arrives once.
#[test]
fn a_database_down_at_start_and_at_an_assignment_is_waited_for() {
    let b = Broker::shared();
    let pg = PrivatePg::start();
    pg.stop();
    let dir = tempfile::tempdir().unwrap();
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    b.create_topic(&input, 4);
    b.create_topic(&dlq, 1);
    let url = pg.url();
    let spec = |port| Spec {
        broker: &b.addr,
        input: &input,
        dlq: &dlq,
        group: &group,
        url: &url,
        table: &table,
        sql_extra: "exactly_once = true",
        plugin: "passthrough",
        params: "",
        retry: "",
        metrics_port: port,
    };
    let f1 = write_file(&dir.path().join("p1.toml"), &spec(common::free_port()));
    let f2 = write_file(&dir.path().join("p2.toml"), &spec(common::free_port()));
    let count = format!("SELECT count(*) FROM \"{table}\"");
    let mut p1 = Sluice::run(&f1, &dir.path().join("log1"));
    b.produce(&input, &rows(0..200));
    wait(&[&p1], "sluice to notice", Duration::from_secs(30), || {
        p1.log_text().contains("database unavailable")
    });
    assert!(p1.child.try_wait().unwrap().is_none(), "{}", p1.log_text());
    pg.start_again();
    wait(&[&p1], "the first rows", Duration::from_secs(60), || {
        scalar(&url, &count) == Some(200)
    });

    // A second member takes some partitions and writes.
    let assigned = |s: &Sluice| s.log_text().matches("partition assigned").count();
    let mut p2 = Sluice::run(&f2, &dir.path().join("log2"));
    wait(
        &[&p1, &p2],
        "the second member's partitions",
        Duration::from_secs(60),
        || assigned(&p2) > 0,
    );
    b.produce(&input, &rows(200..300));
    wait(
        &[&p1, &p2],
        "rows from both",
        Duration::from_secs(60),
        || scalar(&url, &count) == Some(300),
    );

    // The database goes down and the second member dies: the first is
    // assigned its partitions while it cannot claim them.
    pg.stop();
    let before = assigned(&p1);
    p2.kill9();
    b.produce(&input, &rows(300..400));
    wait(&[&p1], "the reassignment", Duration::from_secs(60), || {
        assigned(&p1) > before
    });
    wait(
        &[&p1],
        "a claim to wait for the database",
        Duration::from_secs(60),
        || {
            let log = p1.log_text();
            log.contains("cannot claim the partition") || log.contains("database write failed")
        },
    );
    assert!(p1.child.try_wait().unwrap().is_none(), "{}", p1.log_text());
    pg.start_again();
    wait(&[&p1], "every row", Duration::from_secs(90), || {
        scalar(&url, &count) == Some(400)
    });
    assert!(p1.terminate(), "{}", p1.log_text());
    let distinct = format!("SELECT count(DISTINCT id) FROM \"{table}\"");
    assert_eq!(scalar(&url, &count), Some(400));
    assert_eq!(scalar(&url, &distinct), Some(400));
}

/// At-least-once to Kafka: SIGTERM commits what finished, synchronously, so
/// a restart in the same group replays nothing.
#[test]
fn sigterm_then_a_restart_in_the_same_group_replays_nothing() {
    const N: usize = 2000;
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (input, output, dlq, group) = (
        random_name("in"),
        random_name("out"),
        random_name("dlq"),
        random_name("g"),
    );
    b.create_topic(&input, 4);
    b.create_topic(&output, 4);
    b.create_topic(&dlq, 1);
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[pipeline]]
name = "k"
source = {{ brokers = "{broker}", topics = ["{input}"], group_id = "{group}", session_timeout = "3s", commit_interval = "60s" }}
dead_letter = {{ topic = "{dlq}" }}
routes.default = {{ topic = "{output}" }}
[[pipeline.plugin]]
path = "{plugin}"
"#,
            broker = b.addr,
            plugin = common::plugin("passthrough").display(),
        ),
    )
    .unwrap();
    let out = b.consumer(&output);
    let mut p = Sluice::run(&file, &dir.path().join("log0"));
    b.produce(&input, &rows(0..N));
    let got = common::collect(&out, Duration::from_secs(60), Duration::ZERO, |g| {
        g.len() >= N
    });
    assert_eq!(got.len(), N);
    // The commit interval is a minute: only the final commit can save us.
    assert!(p.terminate(), "{}", p.log_text());
    let mut p = Sluice::run(&file, &dir.path().join("log1"));
    b.produce(&input, &[("sentinel".into(), b"{}".to_vec())]);
    let got = common::collect(&out, Duration::from_secs(60), Duration::from_secs(1), |g| {
        g.iter().any(|g| g.key.as_deref() == Some("sentinel"))
    });
    assert!(p.terminate(), "{}", p.log_text());
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for g in &got {
        *by_key.entry(g.key.clone().unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(
        got.len(),
        1,
        "the restart replayed {} records",
        got.len().saturating_sub(1)
    );
    assert_eq!(by_key.get("sentinel"), Some(&1));
}

/// Exactly-once into PostgreSQL: twenty `kill -9`s, each after a random
/// amount of progress, give no lost and no duplicate row.
#[test]
fn eo_twenty_kill_9s_at_random_points_lose_and_double_nothing() {
    use rand::Rng;
    // Enough rows that fifteen runs cannot finish them: each run overshoots
    // its step by what commits between two polls of the table (about
    // 2,000 rows with batches written on four connections at once).
    const N: usize = 100_000;
    let b = Broker::shared();
    let url = common::pg_url();
    let dir = tempfile::tempdir().unwrap();
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    let offsets = random_name("offsets").replace('-', "_");
    b.create_topic(&input, 4);
    b.create_topic(&dlq, 1);
    let sql_extra = format!(r#"exactly_once = true, offsets_table = "{offsets}""#);
    let file = write_file(
        &dir.path().join("p.toml"),
        &Spec {
            broker: &b.addr,
            input: &input,
            dlq: &dlq,
            group: &group,
            url: &url,
            table: &table,
            sql_extra: &sql_extra,
            plugin: "passthrough",
            params: "",
            retry: "",
            metrics_port: common::free_port(),
        },
    );
    let count = || scalar(&url, &format!("SELECT count(*) FROM \"{table}\"")).unwrap_or(0);
    let producer = {
        let (addr, input) = (b.addr.clone(), input.clone());
        std::thread::spawn(move || common::produce_to(&addr, &input, &rows(0..N)))
    };
    let mut mid_stream = 0;
    for i in 0..20 {
        let mut p = Sluice::run(&file, &dir.path().join(format!("log{i}")));
        let before = count();
        let step = rand::rng().random_range(100..1500);
        wait(&[&p], "progress", Duration::from_secs(120), || {
            let c = count();
            c >= before + step || c >= N as i64
        });
        p.kill9();
        if count() < N as i64 {
            mid_stream += 1;
        }
    }
    producer.join().unwrap();
    let mut p = Sluice::run(&file, &dir.path().join("log-final"));
    wait(&[&p], "every row", Duration::from_secs(180), || {
        count() >= N as i64 && p.log_text().contains("partition assigned")
    });
    assert!(p.terminate(), "{}", p.log_text());
    let rows = count();
    let distinct = scalar(&url, &format!("SELECT count(DISTINCT id) FROM \"{table}\"")).unwrap();
    eprintln!("20 kill -9s ({mid_stream} mid-stream): {rows} rows, {distinct} distinct of {N}");
    assert!(
        mid_stream >= 15,
        "only {mid_stream} kills landed mid-stream"
    );
    assert_eq!(distinct, N as i64, "rows lost");
    assert_eq!(rows, N as i64, "duplicate rows");
    let next = scalar(
        &url,
        &format!("SELECT sum(next_offset)::bigint FROM \"{offsets}\" WHERE topic = '{input}'"),
    );
    assert_eq!(next, Some(N as i64));
}

/// Exactly-once with two members: the database stalls (every byte held)
/// for longer than `max.poll.interval.ms`, the group rebalances while
/// batches are still pending, then the database comes back. Claims fence
/// the member that lost a partition: no duplicate, no loss, and the
/// offsets table never moves backward.
#[test]
fn eo_two_members_and_a_stalled_database_past_the_poll_interval() {
    const N: usize = 4000;
    let b = Broker::shared();
    let pg = PrivatePg::start();
    let proxy = FaultProxy::start(pg.addr());
    let dir = tempfile::tempdir().unwrap();
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    b.create_topic(&input, 4);
    b.create_topic(&dlq, 1);
    let url = pg.url_via(&proxy.addr());
    let direct = pg.url();
    let spec = |port| Spec {
        broker: &b.addr,
        input: &input,
        dlq: &dlq,
        group: &group,
        url: &url,
        table: &table,
        sql_extra: "exactly_once = true",
        plugin: "passthrough",
        params: "",
        retry: "",
        metrics_port: port,
    };
    let f1 = write_file(&dir.path().join("p1.toml"), &spec(common::free_port()));
    let f2 = write_file(&dir.path().join("p2.toml"), &spec(common::free_port()));
    for f in [&f1, &f2] {
        let text = std::fs::read_to_string(f).unwrap().replace(
            r#"session_timeout = "3s" }"#,
            r#"session_timeout = "3s", properties = { "max.poll.interval.ms" = "8000" } }"#,
        );
        std::fs::write(f, text).unwrap();
    }
    let count = format!("SELECT count(*) FROM \"{table}\"");
    let mut p1 = Sluice::run(&f1, &dir.path().join("log1"));
    b.produce(&input, &rows(0..N / 4));
    wait(&[&p1], "the first rows", Duration::from_secs(60), || {
        scalar(&direct, &count) == Some(N as i64 / 4)
    });
    let mut p2 = Sluice::run(&f2, &dir.path().join("log2"));
    wait(
        &[&p1, &p2],
        "the second member's partitions",
        Duration::from_secs(60),
        || p2.log_text().contains("partition assigned"),
    );

    // Watch the offsets table: it must never move backward.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (direct, stop) = (direct.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last: HashMap<i64, i64> = HashMap::new();
            let mut backward = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let got: Vec<(i32, i64)> = rt().block_on(async {
                    let Ok(pool) = sqlx::PgPool::connect(&direct).await else {
                        return Vec::new();
                    };
                    let v = sqlx::query_as("SELECT \"partition\", next_offset FROM sluice_offsets")
                        .fetch_all(&pool)
                        .await
                        .unwrap_or_default();
                    pool.close().await;
                    v
                });
                for (p, n) in got {
                    let prev = last.insert(i64::from(p), n).unwrap_or(i64::MIN);
                    if n < prev {
                        backward.push((p, prev, n));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            backward
        })
    };
    proxy.set(Mode::Stall);
    b.produce(&input, &rows(N / 4..N));
    // Stalled past max.poll.interval.ms: the group moves partitions while
    // both members hold unwritten batches.
    std::thread::sleep(Duration::from_secs(15));
    proxy.set(Mode::Pass);
    wait(&[&p1, &p2], "every row", Duration::from_secs(120), || {
        scalar(&direct, &count).is_some_and(|c| c >= N as i64)
    });
    // Let late, fenced batches try their luck before counting.
    assert!(p1.terminate(), "{}", p1.log_text());
    assert!(p2.terminate(), "{}", p2.log_text());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let backward = watcher.join().unwrap();
    let rows = scalar(&direct, &count).unwrap();
    let distinct = scalar(
        &direct,
        &format!("SELECT count(DISTINCT id) FROM \"{table}\""),
    )
    .unwrap();
    assert_eq!(distinct, N as i64, "rows lost");
    assert_eq!(rows, N as i64, "duplicate rows");
    assert!(backward.is_empty(), "offsets moved backward: {backward:?}");
    assert_eq!(
        scalar(
            &direct,
            "SELECT sum(next_offset)::bigint FROM sluice_offsets"
        ),
        Some(N as i64)
    );
}

/// A shutdown that cannot finish (the database holds every byte) ends at
/// `shutdown_timeout` with a non-zero exit that names what was abandoned,
/// and nothing of it was committed: a restart writes every row once.
#[test]
fn a_stuck_shutdown_ends_at_the_timeout_and_commits_nothing_unwritten() {
    const N: usize = 500;
    let b = Broker::shared();
    let pg = PrivatePg::start();
    let proxy = FaultProxy::start(pg.addr());
    let dir = tempfile::tempdir().unwrap();
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    b.create_topic(&input, 2);
    b.create_topic(&dlq, 1);
    let url = pg.url_via(&proxy.addr());
    let direct = pg.url();
    let port = common::free_port();
    let file = write_file(
        &dir.path().join("p.toml"),
        &Spec {
            broker: &b.addr,
            input: &input,
            dlq: &dlq,
            group: &group,
            url: &url,
            table: &table,
            sql_extra: "exactly_once = true",
            plugin: "passthrough",
            params: "",
            retry: "",
            metrics_port: port,
        },
    );
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("shutdown_timeout = \"3s\"\n{text}")).unwrap();
    let count = format!("SELECT count(*) FROM \"{table}\"");
    let mut p = Sluice::run(&file, &dir.path().join("log0"));
    b.produce(&input, &rows(0..N / 2));
    wait(&[&p], "the first rows", Duration::from_secs(60), || {
        scalar(&direct, &count) == Some(N as i64 / 2)
    });
    proxy.set(Mode::Stall);
    b.produce(&input, &rows(N / 2..N));
    wait(&[&p], "records in flight", Duration::from_secs(30), || {
        metric(port, "sluice_records_in_total") > (N / 2) as f64
    });
    let started = std::time::Instant::now();
    assert!(!p.terminate(), "a stuck shutdown must exit non-zero");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let log = p.log_text();
    assert!(log.contains("shutdown timed out"), "{log}");
    assert!(
        log.contains(&input),
        "the log names no abandoned partition: {log}"
    );
    proxy.set(Mode::Pass);
    proxy.cut();
    assert_eq!(scalar(&direct, &count), Some(N as i64 / 2));
    let mut p = Sluice::run(&file, &dir.path().join("log1"));
    wait(&[&p], "every row", Duration::from_secs(60), || {
        scalar(&direct, &count) == Some(N as i64)
    });
    assert!(p.terminate(), "{}", p.log_text());
    let distinct = scalar(
        &direct,
        &format!("SELECT count(DISTINCT id) FROM \"{table}\""),
    )
    .unwrap();
    assert_eq!(distinct, N as i64);
}

/// The broker is unreachable for 60 s mid-stream (every connection of
/// sluice's, bootstrap or not, passes a proxy that refuses them). sluice
/// neither exits nor floods its log, resumes by itself, and loses nothing.
#[test]
fn a_broker_unreachable_for_a_minute_is_waited_out_and_loses_nothing() {
    const N: usize = 2000;
    let (real, front) = (common::free_port(), common::free_port());
    let proxy = FaultProxy::start_on(front, ([127, 0, 0, 1], real).into());
    let b = Broker::start_on(real, front);
    let dir = tempfile::tempdir().unwrap();
    let (input, output, dlq, group) = (
        random_name("in"),
        random_name("out"),
        random_name("dlq"),
        random_name("g"),
    );
    b.create_topic(&input, 4);
    b.create_topic(&output, 4);
    b.create_topic(&dlq, 1);
    let port = common::free_port();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[metrics]
listen = "127.0.0.1:{port}"
[[pipeline]]
name = "k"
source = {{ brokers = "127.0.0.1:{front}", topics = ["{input}"], group_id = "{group}", session_timeout = "6s" }}
dead_letter = {{ topic = "{dlq}" }}
routes.default = {{ topic = "{output}" }}
[[pipeline.plugin]]
path = "{plugin}"
"#,
            plugin = common::plugin("passthrough").display(),
        ),
    )
    .unwrap();
    let mut p = Sluice::run(&file, &dir.path().join("log"));
    b.produce(&input, &rows(0..N / 2));
    let out = b.consumer(&output);
    let mut got = common::collect(&out, Duration::from_secs(60), Duration::ZERO, |g| {
        g.len() >= N / 2
    });
    assert_eq!(got.len(), N / 2, "{}", p.log_text());

    proxy.set(Mode::Refuse);
    proxy.cut();
    let lines_before = p.log_text().lines().count();
    wait(
        &[&p],
        "sluice to see the outage",
        Duration::from_secs(60),
        || metric(port, "sluice_brokers_up") == 0.0 && p.log_text().contains("no broker reachable"),
    );
    // The outage lasts a minute.
    std::thread::sleep(Duration::from_secs(60));
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "sluice exited during the outage:\n{}",
        p.log_text()
    );
    let outage_lines = p.log_text().lines().count() - lines_before;
    proxy.set(Mode::Pass);

    b.produce(&input, &rows(N / 2..N));
    // The test's own consumer may read the first half again after the
    // outage (it commits nothing): count distinct keys.
    let mut keys: std::collections::HashSet<String> =
        got.iter().filter_map(|g| g.key.clone()).collect();
    let first = keys.clone();
    got.extend(common::collect(
        &out,
        Duration::from_secs(120),
        Duration::from_secs(1),
        |g| {
            let more: std::collections::HashSet<_> = g
                .iter()
                .filter_map(|g| g.key.as_deref())
                .filter(|k| !first.contains(*k))
                .collect();
            first.len() + more.len() >= N
        },
    ));
    keys.extend(got.iter().filter_map(|g| g.key.clone()));
    wait(
        &[&p],
        "sluice to see the broker again",
        Duration::from_secs(30),
        || metric(port, "sluice_brokers_up") == 1.0,
    );
    assert!(p.terminate(), "{}", p.log_text());
    eprintln!(
        "broker outage: {outage_lines} log lines in 60 s; {} outputs",
        got.len()
    );
    assert_eq!(keys.len(), N, "records lost across the outage");
    assert!(
        outage_lines <= 60,
        "{outage_lines} log lines during a 60 s outage:\n{}",
        p.log_text()
    );
}

/// Exactly-once: a record whose dead-letter copy is too large for the
/// producer. The copy goes without its value (the size is in
/// `sluice.value.omitted`), the pipeline keeps running, and no offset
/// passes a record that is not written or dead-lettered.
#[test]
fn eo_a_dead_letter_too_large_for_the_producer_goes_without_its_value() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eo.sqlite").display());
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    b.create_topic(&input, 1);
    b.create_topic(&dlq, 1);
    let file = write_file(
        &dir.path().join("p.toml"),
        &Spec {
            broker: &b.addr,
            input: &input,
            dlq: &dlq,
            group: &group,
            url: &url,
            table: &table,
            sql_extra: "exactly_once = true",
            plugin: "flaky",
            params: r#"invalid = "POISON""#,
            retry: "",
            metrics_port: common::free_port(),
        },
    );
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "dead_letter = {",
        "producer = { properties = { \"message.max.bytes\" = \"3000\" } }\ndead_letter = {",
    );
    std::fs::write(&file, text).unwrap();
    let mut records = rows(0..10);
    let big = format!(r#","m":"POISON","pad":"{}""#, "x".repeat(3200));
    records.push(row(10, &big));
    records.extend(rows(11..21));
    b.produce(&input, &records);
    let mut p = Sluice::run(&file, &dir.path().join("log"));
    let next = "SELECT coalesce(max(next_offset), 0) FROM sluice_offsets";
    wait(&[&p], "every record", Duration::from_secs(60), || {
        scalar(&url, next) == Some(21)
    });
    let dead = dead_letters(b, &dlq, 1);
    assert!(p.child.try_wait().unwrap().is_none(), "{}", p.log_text());
    assert!(p.terminate(), "{}", p.log_text());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].value.is_empty());
    let omitted = dead[0].header("sluice.value.omitted").unwrap_or_default();
    assert!(
        omitted.starts_with(&format!("{} bytes", records[10].1.len())),
        "{omitted}"
    );
    assert_eq!(dead[0].header("sluice.source.offset"), Some("10"));
    let count = format!("SELECT count(*) FROM \"{table}\"");
    assert_eq!(scalar(&url, &count), Some(20));
}

/// A record in a long retry backoff on a partition the group moves to a
/// new member: the old owner stops retrying it at once (the new owner
/// reads it again), so the revoke does not wait out its 20 s drain limit
/// and the record's side effects are not repeated by two members.
#[test]
fn a_revoked_partition_stops_its_retries_and_the_rebalance_is_not_held_up() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (input, output, dlq, group) = (
        random_name("in"),
        random_name("out"),
        random_name("dlq"),
        random_name("g"),
    );
    b.create_topic(&input, 4);
    b.create_topic(&output, 4);
    b.create_topic(&dlq, 1);
    let file = |port: u16| {
        let f = dir.path().join(format!("p{port}.toml"));
        std::fs::write(
            &f,
            format!(
                r#"
[metrics]
listen = "127.0.0.1:{port}"
[[pipeline]]
name = "r"
source = {{ brokers = "{broker}", topics = ["{input}"], group_id = "{group}", session_timeout = "3s" }}
dead_letter = {{ topic = "{dlq}" }}
routes.default = {{ topic = "{output}" }}
retry = {{ max_attempts = 100000, initial_backoff = "100ms", max_backoff = "100ms" }}
[[pipeline.plugin]]
path = "{plugin}"
params = {{ transient = "BAD" }}
"#,
                broker = b.addr,
                plugin = common::plugin("flaky").display(),
            ),
        )
        .unwrap();
        f
    };
    let (port1, port2) = (common::free_port(), common::free_port());
    let bad: Vec<_> = (0..8)
        .map(|i| (format!("bad{i}"), b"BAD".to_vec()))
        .collect();
    b.produce(&input, &bad);
    let mut p1 = Sluice::run(&file(port1), &dir.path().join("log1"));
    wait(&[&p1], "retries", Duration::from_secs(60), || {
        metric(port1, "sluice_retries_total") >= 5.0
    });
    // A second member joins: the group takes partitions from the first
    // while their records are in a backoff.
    let mut p2 = Sluice::run(&file(port2), &dir.path().join("log2"));
    wait(
        &[&p1, &p2],
        "the rebalance, well within the 20 s drain limit",
        Duration::from_secs(12),
        || p2.log_text().contains("partition assigned"),
    );
    let log1 = p1.log_text();
    assert!(log1.contains("stopped retrying this record"), "{log1}");
    assert!(!log1.contains("did not drain in time"), "{log1}");
    assert!(p1.terminate(), "{}", p1.log_text());
    assert!(p2.terminate(), "{}", p2.log_text());
}

/// At-least-once into PostgreSQL: the database stalls for twice
/// `max.poll.interval.ms`. Backpressure pauses the partitions while the
/// consume loop keeps polling, so the member is never evicted: no revoke,
/// no duplicate, and every row arrives once the database answers again.
#[test]
fn a_stalled_database_does_not_get_the_member_evicted() {
    const N: usize = 3000;
    let b = Broker::shared();
    let pg = PrivatePg::start();
    let proxy = FaultProxy::start(pg.addr());
    let dir = tempfile::tempdir().unwrap();
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    b.create_topic(&input, 4);
    b.create_topic(&dlq, 1);
    let url = pg.url_via(&proxy.addr());
    let direct = pg.url();
    let file = write_file(
        &dir.path().join("p.toml"),
        &Spec {
            broker: &b.addr,
            input: &input,
            dlq: &dlq,
            group: &group,
            url: &url,
            table: &table,
            sql_extra: "",
            plugin: "passthrough",
            params: "",
            retry: "",
            metrics_port: common::free_port(),
        },
    );
    let text = std::fs::read_to_string(&file).unwrap().replace(
        r#"session_timeout = "3s" }"#,
        r#"session_timeout = "3s", max_in_flight = 50, properties = { "max.poll.interval.ms" = "6000" } }"#,
    );
    std::fs::write(&file, text).unwrap();
    let count = format!("SELECT count(*) FROM \"{table}\"");
    let mut p = Sluice::run(&file, &dir.path().join("log"));
    b.produce(&input, &rows(0..N / 6));
    wait(&[&p], "the first rows", Duration::from_secs(60), || {
        scalar(&direct, &count) == Some(N as i64 / 6)
    });
    proxy.set(Mode::Stall);
    b.produce(&input, &rows(N / 6..N));
    // Twice max.poll.interval.ms with every write held.
    std::thread::sleep(Duration::from_secs(12));
    proxy.set(Mode::Pass);
    wait(&[&p], "every row", Duration::from_secs(60), || {
        scalar(&direct, &count).is_some_and(|c| c >= N as i64)
    });
    let log = p.log_text();
    assert!(p.terminate(), "{}", p.log_text());
    assert!(
        !log.contains("partition revoked"),
        "the member lost its partitions:\n{log}"
    );
    assert!(!log.contains("maximum poll interval"), "{log}");
    let distinct = format!("SELECT count(DISTINCT id) FROM \"{table}\"");
    assert_eq!(scalar(&direct, &distinct), Some(N as i64));
    assert_eq!(scalar(&direct, &count), Some(N as i64), "duplicate rows");
}

/// Exactly-once, Kafka ahead of the database (a database restored from an
/// older backup): on assignment sluice seeks back to the table's offset, so
/// the rows the restore lost are written again, each once.
#[test]
fn eo_kafka_ahead_of_the_database_seeks_back_to_the_table() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eo.sqlite").display());
    let (input, dlq, group, table) = (
        random_name("in"),
        random_name("dlq"),
        random_name("g"),
        table_name(),
    );
    b.create_topic(&input, 1);
    b.create_topic(&dlq, 1);
    let spec = Spec {
        broker: &b.addr,
        input: &input,
        dlq: &dlq,
        group: &group,
        url: &url,
        table: &table,
        sql_extra: "exactly_once = true",
        plugin: "passthrough",
        params: "",
        retry: "max_attempts = 1",
        metrics_port: common::free_port(),
    };
    let file = write_file(&dir.path().join("p.toml"), &spec);
    let count = format!("SELECT count(*) FROM \"{table}\"");
    let next = "SELECT coalesce(max(next_offset), 0) FROM sluice_offsets";
    b.produce(&input, &rows(0..100));
    let mut p = Sluice::run(&file, &dir.path().join("log0"));
    wait(&[&p], "every row", Duration::from_secs(60), || {
        scalar(&url, next) == Some(100)
    });
    // The final synchronous commit puts the group's offset at 100 too.
    assert!(p.terminate(), "{}", p.log_text());

    // The restore: rows from offset 60 on, and the offsets row, go back.
    exec(&url, &format!("DELETE FROM \"{table}\" WHERE v >= 60"));
    exec(&url, "UPDATE sluice_offsets SET next_offset = 60");
    let mut p = Sluice::run(&file, &dir.path().join("log1"));
    b.produce(&input, &rows(100..101));
    wait(
        &[&p],
        "the lost rows and the new one",
        Duration::from_secs(60),
        || scalar(&url, next) == Some(101),
    );
    assert!(p.terminate(), "{}", p.log_text());
    assert_eq!(scalar(&url, &count), Some(101), "{}", p.log_text());
    let distinct = format!("SELECT count(DISTINCT id) FROM \"{table}\"");
    assert_eq!(scalar(&url, &distinct), Some(101));
}

/// Exactly-once: the database's offset is beyond the end of the log (the
/// topic was deleted and created again). sluice stops and names the
/// partition; it never skips the new records in silence. tansu's memory
/// storage reports wrong watermarks and just waits at a fetch past the end,
/// so this runs against librdkafka's mock cluster, which answers such a
/// fetch as Kafka does (offset out of range, and the consumer resets).
#[test]
fn eo_a_database_offset_beyond_the_log_end_stops_and_names_the_partition() {
    use rdkafka::mocking::MockCluster;
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    for t in ["in", "dlq"] {
        cluster.create_topic(t, 1, 1).unwrap();
    }
    common::produce_to(&brokers, "in", &rows(0..5));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eo.sqlite").display());
    let table = table_name();
    // What an earlier run left: 100 records of the old topic written.
    exec(
        &format!("{url}?mode=rwc"),
        "CREATE TABLE sluice_offsets (group_id TEXT NOT NULL, topic TEXT NOT NULL, \
         \"partition\" INTEGER NOT NULL, next_offset BIGINT NOT NULL, \
         generation BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (group_id, topic, \"partition\")); \
         INSERT INTO sluice_offsets VALUES ('g', 'in', 0, 100, 1);",
    );
    let file = write_file(
        &dir.path().join("p.toml"),
        &Spec {
            broker: &brokers,
            input: "in",
            dlq: "dlq",
            group: "g",
            url: &url,
            table: &table,
            sql_extra: "exactly_once = true",
            plugin: "flaky",
            params: "",
            retry: "max_attempts = 3",
            metrics_port: common::free_port(),
        },
    );
    let mut p = Sluice::run(&file, &dir.path().join("log"));
    let mut status = None;
    let stopped = common::poll_until(Duration::from_secs(60), || {
        status = p.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(stopped, "sluice kept running:\n{}", p.log_text());
    assert!(!status.unwrap().success(), "{}", p.log_text());
    let log = p.log_text();
    assert!(
        log.contains("in/0") && log.contains("beyond the end of the log"),
        "{log}"
    );
    let next = "SELECT next_offset FROM sluice_offsets";
    assert_eq!(
        scalar(&url, next),
        Some(100),
        "the offsets row must not move"
    );
    let count = format!("SELECT count(*) FROM \"{table}\"");
    assert!(scalar(&url, &count).unwrap_or(0) == 0, "nothing is written");
}
