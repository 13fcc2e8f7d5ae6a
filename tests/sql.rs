//! The SQL sink against real PostgreSQL (127.0.0.1:5432, or `SLUICE_TEST_PG`)
//! and embedded SQLite: flush by size and by time, upserts with duplicate
//! keys in one batch, poison-row isolation, and exactly-once under `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Broker, Sluice, pg_exec, pg_url, random_name};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pg_count(sql: &str) -> i64 {
    rt().block_on(async {
        let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&pool)
            .await
            .unwrap()
    })
}

fn lite_count(url: &str, sql: &str) -> i64 {
    rt().block_on(async {
        // The file may not exist yet: that counts as "no rows".
        let Ok(pool) = sqlx::SqlitePool::connect(url).await else {
            return -1;
        };
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&pool)
            .await
            .unwrap_or(-1)
    })
}

struct Setup {
    input: String,
    dlq: String,
    table: String,
    file: PathBuf,
}

/// A passthrough pipeline from a fresh topic into `table` of `url`.
fn setup(
    dir: &Path,
    b: &Broker,
    url: &str,
    sql_extra: &str,
    table_extra: &str,
    partitions: i32,
) -> Setup {
    let input = random_name("in");
    let dlq = random_name("dlq");
    let table = random_name("t").replace('-', "_");
    b.create_topic(&input, partitions);
    b.create_topic(&dlq, 1);
    let file = dir.join(format!("{table}.toml"));
    std::fs::write(
        &file,
        format!(
            r#"
[[pipeline]]
name = "sql"
source = {{ brokers = "{brokers}", topics = ["{input}"], group_id = "{group}", session_timeout = "3s" }}
dead_letter = {{ topic = "{dlq}" }}
sql = {{ url = "{url}", {sql_extra} }}
[pipeline.routes.default.table]
name = "{table}"
{table_extra}
[[pipeline.plugin]]
path = "{plugin}"
"#,
            brokers = b.addr,
            group = random_name("g"),
            plugin = common::plugin("passthrough").display(),
        ),
    )
    .unwrap();
    Setup {
        input,
        dlq,
        table,
        file,
    }
}

const COLUMNS: &str = r#"columns = { id = { type = "text" }, v = { type = "integer" } }"#;

fn rows(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| {
            (
                format!("k{i}"),
                format!(r#"{{"id":"k{i}","v":{i}}}"#).into_bytes(),
            )
        })
        .collect()
}

#[test]
fn sqlite_flushes_by_size_then_the_rest_on_shutdown() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let s = setup(
        dir.path(),
        b,
        &url,
        r#"batch_rows = 10, batch_age = "1h""#,
        &format!("create = true\n{COLUMNS}"),
        1,
    );
    let mut p = Sluice::run(&s.file, &dir.path().join("log"));
    b.produce(&s.input, &rows(0..25));
    let q = format!("SELECT count(*) FROM \"{}\"", s.table);
    common::wait_for("two full batches", Duration::from_secs(60), || {
        lite_count(&url, &q) == 20
    });
    // The last 5 rows wait for the (hour-long) age; they must not trickle in.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lite_count(&url, &q), 20);
    assert!(p.terminate(), "{}", p.log_text());
    assert_eq!(
        lite_count(&url, &q),
        25,
        "shutdown flushes the partial batch"
    );
}

#[test]
fn sqlite_rows_can_store_the_plugin_version_that_made_them() {
    use sha2::Digest;
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("v.sqlite").display());
    let s = setup(
        dir.path(),
        b,
        &url,
        r#"batch_age = "50ms""#,
        r#"create = true
columns = { id = { type = "text" }, v = { type = "integer" }, made_by = { type = "text", from = "$version" } }"#,
        1,
    );
    let mut p = Sluice::run(&s.file, &dir.path().join("log"));
    b.produce(&s.input, &rows(0..3));
    let sha = hex::encode(sha2::Sha256::digest(
        std::fs::read(common::plugin("passthrough")).unwrap(),
    ));
    let q = format!(
        "SELECT count(*) FROM \"{}\" WHERE made_by = 'passthrough@{sha}'",
        s.table
    );
    common::wait_for(
        "three rows naming their version",
        Duration::from_secs(60),
        || lite_count(&url, &q) == 3,
    );
    assert!(p.terminate(), "{}", p.log_text());
}

#[test]
fn postgres_flushes_by_time() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let s = setup(
        dir.path(),
        b,
        &pg_url(),
        r#"batch_rows = 100000, batch_age = "300ms""#,
        &format!("create = true\n{COLUMNS}"),
        1,
    );
    let mut p = Sluice::run(&s.file, &dir.path().join("log"));
    b.produce(&s.input, &rows(0..5));
    let q = format!("SELECT count(*) FROM \"{}\"", s.table);
    common::wait_for("the batch to age out", Duration::from_secs(60), || {
        pg_count(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = '{}'",
            s.table
        )) == 1
            && pg_count(&q) == 5
    });
    assert!(p.terminate(), "{}", p.log_text());
}

#[test]
fn postgres_upsert_collapses_duplicate_keys_in_one_batch() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let s = setup(
        dir.path(),
        b,
        &pg_url(),
        r#"batch_rows = 1000, batch_age = "2s""#,
        &format!("create = true\nkey = [\"id\"]\n{COLUMNS}"),
        1,
    );
    let mut p = Sluice::run(&s.file, &dir.path().join("log"));
    let recs: Vec<(String, Vec<u8>)> = [
        r#"{"id":"a","v":1}"#,
        r#"{"id":"b","v":1}"#,
        r#"{"id":"a","v":2}"#,
        r#"{"id":"a","v":3}"#,
    ]
    .iter()
    .map(|v| ("k".to_string(), v.as_bytes().to_vec()))
    .collect();
    b.produce(&s.input, &recs);
    let t = &s.table;
    common::wait_for("the upserted rows", Duration::from_secs(60), || {
        pg_count(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = '{t}'"
        )) == 1
            && pg_count(&format!("SELECT count(*) FROM \"{t}\"")) == 2
    });
    assert_eq!(
        pg_count(&format!("SELECT v FROM \"{t}\" WHERE id = 'a'")),
        3,
        "last write wins"
    );
    // A later batch updates the existing row.
    b.produce(&s.input, &[("k".into(), br#"{"id":"b","v":7}"#.to_vec())]);
    common::wait_for("the update", Duration::from_secs(30), || {
        pg_count(&format!("SELECT v FROM \"{t}\" WHERE id = 'b'")) == 7
    });
    assert!(p.terminate(), "{}", p.log_text());
    assert!(
        !p.log_text().contains("finding the refused rows"),
        "the batch should not have needed isolation"
    );
}

#[test]
fn postgres_poison_rows_are_isolated_and_dead_lettered() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let s = setup(
        dir.path(),
        b,
        &pg_url(),
        r#"batch_rows = 1000, batch_age = "500ms""#,
        COLUMNS,
        1,
    );
    pg_exec(&format!(
        "CREATE TABLE \"{}\" (id TEXT PRIMARY KEY, v BIGINT CHECK (v >= 0))",
        s.table
    ));
    let mut p = Sluice::run(&s.file, &dir.path().join("log"));
    let recs: Vec<(String, Vec<u8>)> = [
        ("ok1", r#"{"id":"ok1","v":1}"#),
        ("neg", r#"{"id":"neg","v":-5}"#),
        ("ok2", r#"{"id":"ok2","v":2}"#),
        ("word", r#"{"id":"word","v":"many"}"#),
        ("ok3", r#"{"id":"ok3","v":3}"#),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    b.produce(&s.input, &recs);
    let dl = common::collect(
        &b.consumer(&s.dlq),
        Duration::from_secs(60),
        Duration::from_secs(1),
        |g| g.len() >= 2,
    );
    let mut kinds: Vec<(String, String, String)> = dl
        .iter()
        .map(|g| {
            (
                g.key.clone().unwrap(),
                g.header("sluice.error.kind").unwrap().to_owned(),
                g.header("sluice.error.message").unwrap().to_owned(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!((kinds[0].0.as_str(), kinds[0].1.as_str()), ("neg", "sql"));
    assert!(
        kinds[0].2.contains("check constraint"),
        "the database's error: {}",
        kinds[0].2
    );
    assert_eq!((kinds[1].0.as_str(), kinds[1].1.as_str()), ("word", "sql"));
    assert!(kinds[1].2.contains("column v"), "{}", kinds[1].2);
    assert_eq!(
        pg_count(&format!("SELECT count(*) FROM \"{}\"", s.table)),
        3
    );
    assert!(p.terminate(), "{}", p.log_text());
}

#[test]
fn postgres_exactly_once_under_kill_9() {
    const N: usize = 20_000;
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let offsets = random_name("offsets").replace('-', "_");
    let s = setup(
        dir.path(),
        b,
        &pg_url(),
        &format!(
            r#"exactly_once = true, batch_rows = 500, batch_age = "50ms", offsets_table = "{offsets}""#
        ),
        // No primary key: a duplicate would show as an extra row.
        &format!("create = true\n{COLUMNS}"),
        4,
    );
    let t = s.table.clone();
    let count = || {
        let exists = pg_count(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = '{t}'"
        ));
        if exists == 1 {
            pg_count(&format!("SELECT count(*) FROM \"{t}\""))
        } else {
            0
        }
    };
    let producer = {
        let (addr, input) = (b.addr.clone(), s.input.clone());
        std::thread::spawn(move || common::produce_to(&addr, &input, &rows(0..N)))
    };
    for (i, at) in [2_000i64, 8_000, 14_000].into_iter().enumerate() {
        let mut p = Sluice::run(&s.file, &dir.path().join(format!("log{i}")));
        common::wait_for(&format!("{at} rows"), Duration::from_secs(120), || {
            count() >= at
        });
        p.kill9();
    }
    producer.join().unwrap();
    let mut p = Sluice::run(&s.file, &dir.path().join("log-final"));
    common::wait_for("every row", Duration::from_secs(180), || {
        count() >= N as i64
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(p.terminate(), "{}", p.log_text());
    let rows = pg_count(&format!("SELECT count(*) FROM \"{t}\""));
    let distinct = pg_count(&format!("SELECT count(DISTINCT id) FROM \"{t}\""));
    eprintln!("exactly-once: 3 kill -9s, {N} records, {rows} rows, {distinct} distinct");
    assert_eq!(distinct, N as i64, "rows lost");
    assert_eq!(rows, N as i64, "duplicate rows");
    // The offsets table accounts for every record: next offsets sum to N.
    let next = pg_count(&format!(
        "SELECT sum(next_offset)::bigint FROM \"{offsets}\" WHERE topic = '{}'",
        s.input
    ));
    assert_eq!(next, N as i64);
}

#[test]
fn sqlite_exactly_once_resumes_from_the_offsets_table() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eo.sqlite").display());
    let s = setup(
        dir.path(),
        b,
        &url,
        r#"exactly_once = true, batch_rows = 100, batch_age = "50ms""#,
        &format!("create = true\n{COLUMNS}"),
        2,
    );
    let q = format!("SELECT count(*) FROM \"{}\"", s.table);
    b.produce(&s.input, &rows(0..3000));
    let mut p = Sluice::run(&s.file, &dir.path().join("log0"));
    common::wait_for("some rows", Duration::from_secs(60), || {
        lite_count(&url, &q) >= 500
    });
    p.kill9();
    let mut p = Sluice::run(&s.file, &dir.path().join("log1"));
    common::wait_for("every row", Duration::from_secs(120), || {
        lite_count(&url, &q) >= 3000
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(p.terminate(), "{}", p.log_text());
    assert_eq!(lite_count(&url, &q), 3000);
    assert_eq!(
        lite_count(
            &url,
            &format!("SELECT count(DISTINCT id) FROM \"{}\"", s.table)
        ),
        3000
    );
    assert_eq!(
        lite_count(&url, "SELECT sum(next_offset) FROM sluice_offsets"),
        3000
    );
}

#[test]
fn sql_source_publishes_unprocessed_rows_once_and_survives_restart() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let urls = random_name("urls").replace('-', "_");
    let pages = random_name("pages").replace('-', "_");
    let topic = random_name("urls");
    b.create_topic(&topic, 2);
    pg_exec(&format!(
        "CREATE TABLE \"{urls}\" (url TEXT PRIMARY KEY, depth INT); CREATE TABLE \"{pages}\" (url TEXT PRIMARY KEY);
         INSERT INTO \"{urls}\" VALUES ('u1', 0), ('u2', 1), ('u3', 1), ('u4', 2), ('u5', 2);"
    ));
    let file = dir.path().join("source.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[sql_source]]
name = "urls"
url = "{pg}"
query = 'SELECT u.url, u.depth FROM "{urls}" u WHERE NOT EXISTS (SELECT 1 FROM "{pages}" p WHERE p.url = u.url)'
key = "url"
topic = "{topic}"
brokers = "{brokers}"
interval = "200ms"
retry_after = "1h"
"#,
            pg = pg_url(),
            brokers = b.addr,
        ),
    )
    .unwrap();
    let mut p = Sluice::run(&file, &dir.path().join("log"));
    let c = b.consumer(&topic);
    let got = common::collect(&c, Duration::from_secs(30), Duration::from_secs(2), |g| {
        g.len() >= 5
    });
    assert_eq!(
        got.len(),
        5,
        "each unprocessed row once, even after several polls"
    );
    let v: serde_json::Value = serde_json::from_slice(&got[0].value).unwrap();
    assert!(v["url"].is_string() && v["depth"].is_number(), "{v}");

    // Two rows get processed; a new one appears: only the new one is published.
    pg_exec(&format!(
        "INSERT INTO \"{pages}\" VALUES ('u1'), ('u2'); INSERT INTO \"{urls}\" VALUES ('u6', 3);"
    ));
    let more = common::collect(&c, Duration::from_secs(30), Duration::from_secs(2), |g| {
        !g.is_empty()
    });
    let keys: Vec<_> = more.iter().filter_map(|g| g.key.clone()).collect();
    assert_eq!(keys, ["u6"]);

    // After a crash, every still-unprocessed row is published again: none lost.
    p.kill9();
    let mut p = Sluice::run(&file, &dir.path().join("log2"));
    let again = common::collect(&c, Duration::from_secs(30), Duration::from_secs(2), |g| {
        g.len() >= 4
    });
    let mut keys: Vec<_> = again.iter().filter_map(|g| g.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["u3", "u4", "u5", "u6"]);
    assert!(p.terminate(), "{}", p.log_text());
}

/// Kafka's murmur2, as the Java client partitions keyed records.
fn murmur2(data: &[u8]) -> u32 {
    let m: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> 24;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h
}

#[test]
fn sql_source_skips_keyless_rows_and_partitions_keys_like_the_java_client() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let urls = random_name("urls").replace('-', "_");
    let topic = random_name("urls");
    b.create_topic(&topic, 4);
    let keys: Vec<String> = (0..20)
        .map(|i| format!("https://example.com/{i}"))
        .collect();
    let values: Vec<String> = keys.iter().map(|k| format!("('{k}')")).collect();
    pg_exec(&format!(
        "CREATE TABLE \"{urls}\" (url TEXT); INSERT INTO \"{urls}\" VALUES {}, (NULL);",
        values.join(", ")
    ));
    let file = dir.path().join("source.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[sql_source]]
name = "urls"
url = "{pg}"
query = 'SELECT url FROM "{urls}"'
key = "url"
topic = "{topic}"
brokers = "{brokers}"
interval = "200ms"
retry_after = "1h"
"#,
            pg = pg_url(),
            brokers = b.addr,
        ),
    )
    .unwrap();
    let mut p = Sluice::run(&file, &dir.path().join("log"));
    let c = b.consumer(&topic);
    let got = common::collect(&c, Duration::from_secs(30), Duration::from_secs(1), |g| {
        g.len() >= keys.len()
    });
    assert!(p.child.try_wait().unwrap().is_none(), "{}", p.log_text());
    assert!(
        p.log_text().contains("NULL or missing key"),
        "{}",
        p.log_text()
    );
    assert!(p.terminate(), "{}", p.log_text());
    assert_eq!(got.len(), keys.len(), "{}", p.log_text());
    for g in &got {
        let k = g.key.as_deref().unwrap();
        let want = (murmur2(k.as_bytes()) & 0x7fff_ffff) % 4;
        assert_eq!(g.partition as u32, want, "key {k}");
    }
}

/// Two rows with one key in a batch, the last refused by a CHECK: the
/// first is stored and only the refused one is dead-lettered, as if they
/// had come one at a time. With `on_conflict = "ignore"` the first row of a
/// key wins inside a batch too, as it does across batches.
#[test]
fn postgres_duplicate_keys_in_a_batch_behave_as_if_written_one_at_a_time() {
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let s = setup(
        dir.path(),
        b,
        &pg_url(),
        r#"batch_rows = 1000, batch_age = "500ms""#,
        &format!("key = [\"id\"]\n{COLUMNS}"),
        1,
    );
    pg_exec(&format!(
        "CREATE TABLE \"{}\" (id TEXT PRIMARY KEY, v BIGINT CHECK (v >= 0))",
        s.table
    ));
    let ignore = setup(
        dir.path(),
        b,
        &pg_url(),
        r#"batch_rows = 1000, batch_age = "500ms""#,
        &format!("key = [\"id\"]\non_conflict = \"ignore\"\ncreate = true\n{COLUMNS}"),
        1,
    );
    let mut p = Sluice::run(&s.file, &dir.path().join("log"));
    let mut q = Sluice::run(&ignore.file, &dir.path().join("log-ignore"));
    let recs = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    b.produce(
        &s.input,
        &recs(&[
            ("a", r#"{"id":"a","v":1}"#),
            ("a", r#"{"id":"a","v":-1}"#),
            ("b", r#"{"id":"b","v":2}"#),
        ]),
    );
    b.produce(
        &ignore.input,
        &recs(&[("c", r#"{"id":"c","v":1}"#), ("c", r#"{"id":"c","v":2}"#)]),
    );
    let dl = common::collect(
        &b.consumer(&s.dlq),
        Duration::from_secs(60),
        Duration::from_secs(1),
        |g| !g.is_empty(),
    );
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(
        String::from_utf8_lossy(&dl[0].value),
        r#"{"id":"a","v":-1}"#
    );
    common::wait_for("rows a and b", Duration::from_secs(30), || {
        pg_count(&format!("SELECT count(*) FROM \"{}\"", s.table)) == 2
    });
    assert_eq!(
        pg_count(&format!("SELECT v FROM \"{}\" WHERE id = 'a'", s.table)),
        1,
        "the earlier row of key a was lost with the refused one"
    );
    common::wait_for("row c", Duration::from_secs(30), || {
        pg_count(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = '{}'",
            ignore.table
        )) == 1
            && pg_count(&format!("SELECT count(*) FROM \"{}\"", ignore.table)) == 1
    });
    assert_eq!(
        pg_count(&format!(
            "SELECT v FROM \"{}\" WHERE id = 'c'",
            ignore.table
        )),
        1,
        "ignore: the first row of a key wins"
    );
    assert!(p.terminate(), "{}", p.log_text());
    assert!(q.terminate(), "{}", q.log_text());
}

/// `url` with `param` added to its query.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// `sql` (a count) on the database at `url`; -1 while it fails.
fn count_on(url: &str, sql: &str) -> i64 {
    rt().block_on(async {
        let Ok(pool) = sqlx::PgPool::connect(url).await else {
            return -1;
        };
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&pool)
            .await
            .unwrap_or(-1)
    })
}

#[test]
fn postgres_sslmode_require_refuses_a_server_without_tls_and_disable_connects() {
    // A fresh server speaks no TLS (the shared one may: Debian turns it on).
    let pg = common::fault::PrivatePg::start();
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let table = format!("create = true\n{COLUMNS}");
    // `require` stops sluice with a TLS error instead of waiting forever
    // or falling back to plaintext.
    let url = with_param(&pg.url(), "sslmode=require");
    let s = setup(dir.path(), b, &url, r#"batch_age = "100ms""#, &table, 1);
    let mut p = Sluice::run(&s.file, &dir.path().join("require.log"));
    common::wait_for("sluice to stop", Duration::from_secs(60), || {
        p.child.try_wait().unwrap().is_some()
    });
    let log = p.log_text();
    assert!(!p.child.wait().unwrap().success(), "{log}");
    assert!(
        log.contains("sslmode") && log.contains("server does not support TLS"),
        "{log}"
    );
    let tables = format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = '{}'",
        s.table
    );
    assert_eq!(count_on(&pg.url(), &tables), 0, "nothing was written");

    // `disable` connects in plaintext, as asked.
    let url = with_param(&pg.url(), "sslmode=disable");
    let s = setup(dir.path(), b, &url, r#"batch_age = "100ms""#, &table, 1);
    let mut p = Sluice::run(&s.file, &dir.path().join("disable.log"));
    b.produce(&s.input, &rows(0..3));
    let q = format!("SELECT count(*) FROM \"{}\"", s.table);
    common::wait_for("the rows", Duration::from_secs(60), || {
        count_on(&pg.url(), &q) == 3
    });
    assert!(p.terminate(), "{}", p.log_text());
}

#[test]
fn postgres_sslmode_require_connects_over_tls() {
    let pg = common::fault::PrivatePg::start();
    pg.enable_tls();
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let table = format!("create = true\n{COLUMNS}");
    let url = with_param(&pg.url(), "sslmode=require");
    let s = setup(dir.path(), b, &url, r#"batch_age = "100ms""#, &table, 1);
    let mut p = Sluice::run(&s.file, &dir.path().join("log"));
    b.produce(&s.input, &rows(0..3));
    // Counted over a plaintext connection of our own (the server takes
    // both), which also sees whether sluice's connections use TLS.
    let plain = with_param(&pg.url(), "sslmode=disable");
    let q = format!("SELECT count(*) FROM \"{}\"", s.table);
    common::wait_for("the rows", Duration::from_secs(60), || {
        count_on(&plain, &q) == 3
    });
    let tls = count_on(
        &plain,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE s.ssl AND a.backend_type = 'client backend'",
    );
    assert!(tls >= 1, "sluice's connections use TLS ({tls})");
    assert!(p.terminate(), "{}", p.log_text());
}

/// `sql` (one text value) on the test PostgreSQL.
fn pg_text(sql: &str) -> String {
    rt().block_on(async {
        let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
        sqlx::query_scalar::<_, String>(sql)
            .fetch_one(&pool)
            .await
            .unwrap()
    })
}

#[test]
fn postgres_rows_round_trip_exactly() {
    // Values that trip encoders: escapes, tabs and newlines, non-ASCII,
    // integers past f64's precision, tiny floats, nested JSON, NULLs.
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let s = setup(
        dir.path(),
        b,
        &pg_url(),
        r#"batch_rows = 1000, batch_age = "300ms""#,
        r#"create = true
columns = { id = { type = "integer" }, name = { type = "text" }, n = { type = "integer", from = "/deep/n" }, f = { type = "float" }, ok = { type = "boolean" }, doc = { type = "json" } }"#,
        1,
    );
    let mut p = Sluice::run(&s.file, &dir.path().join("log"));
    let recs: Vec<(String, Vec<u8>)> = [
        r#"{"id":1,"name":"tab\there\nnew \\ back \"q\" é 中 😀","deep":{"n":9007199254740993},"f":-5e-300,"ok":true,"doc":{"a":[1,{"b":null}],"t":"x\ty"}}"#,
        r#"{"id":2,"name":"\\N","deep":{"n":"-42"},"f":"2.5","ok":"false","doc":"just a string"}"#,
        r#"{"id":3,"name":"","deep":{},"f":null}"#,
        r#"{"id":"4","name":12.5,"deep":{"n":-9223372036854775808},"f":1e300,"ok":false,"doc":[]}"#,
    ]
    .iter()
    .map(|v| ("k".to_string(), v.as_bytes().to_vec()))
    .collect();
    b.produce(&s.input, &recs);
    let t = &s.table;
    common::wait_for("four rows", Duration::from_secs(60), || {
        pg_count(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = '{t}'"
        )) == 1
            && pg_count(&format!("SELECT count(*) FROM \"{t}\"")) == 4
    });
    let got = pg_text(&format!(
        "SELECT string_agg(format('%s|%s|%s|%s|%s|%s', id, name, coalesce(n::text, 'NULL'), \
         coalesce(f::text, 'NULL'), coalesce(ok::text, 'NULL'), coalesce(doc::text, 'NULL')), E'\\n' ORDER BY id) \
         FROM \"{t}\""
    ));
    let want = [
        "1|tab\there\nnew \\ back \"q\" é 中 😀|9007199254740993|-5e-300|true|{\"a\": [1, {\"b\": null}], \"t\": \"x\\ty\"}",
        "2|\\N|-42|2.5|false|\"just a string\"",
        "3||NULL|NULL|NULL|NULL",
        "4|12.5|-9223372036854775808|1e+300|false|[]",
    ]
    .join("\n");
    assert_eq!(got, want);
    assert!(p.terminate(), "{}", p.log_text());
}

#[test]
fn postgres_existing_tables_of_other_types_take_their_values() {
    // A table made by hand, with types sluice's columns only name loosely:
    // int4, numeric, timestamptz, varchar, json, real. Values go in as the
    // database would parse them from text.
    let b = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let s = setup(
        dir.path(),
        b,
        &pg_url(),
        r#"batch_rows = 1000, batch_age = "300ms""#,
        r#"key = ["id"]
columns = { id = { type = "integer" }, amount = { type = "float" }, at = { type = "text" }, label = { type = "text" }, doc = { type = "json" }, r = { type = "float" } }"#,
        1,
    );
    pg_exec(&format!(
        "CREATE TABLE \"{}\" (id INTEGER PRIMARY KEY, amount NUMERIC(12, 2), at TIMESTAMPTZ, \
         label VARCHAR(8), doc JSON, r REAL, extra TEXT NOT NULL DEFAULT 'd')",
        s.table
    ));
    let mut p = Sluice::run(&s.file, &dir.path().join("log"));
    let recs: Vec<(String, Vec<u8>)> = [
        r#"{"id":1,"amount":12.5,"at":"2026-12-03T10:00:00Z","label":"first","doc":{"k":1},"r":0.5}"#,
        r#"{"id":2,"amount":"7","at":"2026-12-03T11:00:00+01:00","label":"second","doc":null,"r":2}"#,
        r#"{"id":1,"amount":13,"at":"2026-12-04T10:00:00Z","label":"again","doc":{"k":2},"r":1.5}"#,
        r#"{"id":3000000000,"amount":1,"at":"2026-12-03T10:00:00Z","label":"big","doc":{},"r":1}"#,
        r#"{"id":4,"amount":1,"at":"2026-12-03T10:00:00Z","label":"far too long","doc":{},"r":1}"#,
    ]
    .iter()
    .map(|v| ("k".to_string(), v.as_bytes().to_vec()))
    .collect();
    b.produce(&s.input, &recs);
    let dl = common::collect(
        &b.consumer(&s.dlq),
        Duration::from_secs(60),
        Duration::from_secs(1),
        |g| g.len() >= 2,
    );
    let mut errors: Vec<String> = dl
        .iter()
        .map(|g| g.header("sluice.error.message").unwrap().to_owned())
        .collect();
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("out of range")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("too long")), "{errors:?}");
    let t = &s.table;
    common::wait_for("two rows", Duration::from_secs(30), || {
        pg_count(&format!("SELECT count(*) FROM \"{t}\"")) == 2
    });
    let got = pg_text(&format!(
        "SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s', id, amount, \
         to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), label, coalesce(doc::text, 'NULL'), r, extra), \
         E'\\n' ORDER BY id) FROM \"{t}\""
    ));
    assert_eq!(
        got,
        "1|13.00|2026-12-04 10:00|again|{\"k\":2}|1.5|d\n2|7.00|2026-12-03 10:00|second|NULL|2|d"
    );
    assert!(p.terminate(), "{}", p.log_text());
}
