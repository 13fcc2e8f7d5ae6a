//! Hot swap against a real broker (tansu) and real components: a swap
//! under load that loses and repeats nothing, broken builds that are
//! refused while the old version keeps running, and rollback through the
//! admin API. Every test uses its own topics, group and plugin directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Broker, Got, Sluice, collect, random_name, wait_for};
use serde_json::Value;
use sha2::Digest;

const HEADER: &str = "sluice.plugin.version";

struct Setup {
    dir: tempfile::TempDir,
    input: String,
    output: String,
    dlq: String,
    /// The plugin file the pipeline runs and sluice watches.
    plugin: PathBuf,
    file: PathBuf,
    group: String,
    /// The `[metrics]` port (open).
    metrics: u16,
    /// The `[admin]` port (needs [`TOKEN`]).
    admin: u16,
}

/// The admin token the pipelines of these tests run with.
const TOKEN: &str = "hotswap-admin-token";

/// Topics with `partitions` partitions, `alert.wasm` (a copy of the Rust
/// calorie-alert) in a fresh directory, and a pipeline file running it.
fn setup(b: &Broker, partitions: i32, plugin_extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (input, output, dlq) = (random_name("in"), random_name("out"), random_name("dlq"));
    for t in [&input, &output, &dlq] {
        b.create_topic(t, partitions);
    }
    let plugin = dir.path().join("alert.wasm");
    std::fs::copy(common::plugin("calorie-alert"), &plugin).unwrap();
    let (metrics, admin) = (common::free_port(), common::free_port());
    let file = dir.path().join("pipeline.toml");
    let s = Setup {
        dir,
        input,
        output,
        dlq,
        plugin,
        file,
        group: random_name("group"),
        metrics,
        admin,
    };
    write_pipeline(b, &s, &s.group, plugin_extra);
    s
}

fn write_pipeline(b: &Broker, s: &Setup, group: &str, plugin_extra: &str) {
    let text = format!(
        r#"
metrics = {{ listen = "127.0.0.1:{metrics}" }}
admin = {{ listen = "127.0.0.1:{admin}", token = "${{SLUICE_ADMIN_TOKEN}}" }}
reload = {{ settle = "200ms" }}

[[pipeline]]
name = "alerts"
source = {{ brokers = "{brokers}", topics = ["{input}"], group_id = "{group}", session_timeout = "3s" }}
routes.default = {{ topic = "{output}", partitioning = "source" }}
dead_letter = {{ topic = "{dlq}" }}

[[pipeline.plugin]]
path = "alert.wasm"
workers = 2
{plugin_extra}
"#,
        metrics = s.metrics,
        admin = s.admin,
        brokers = b.addr,
        input = s.input,
        output = s.output,
        dlq = s.dlq,
    );
    std::fs::write(&s.file, text).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// How `GET /plugins` shows a param value.
fn fingerprint(value: &str) -> String {
    format!("sha256:{}", &sha256(value.as_bytes())[..12])
}

fn sha256_of(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

/// A request to `port`, with the admin token.
fn http(method: reqwest::Method, port: u16, path: &str) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    let resp = client
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The value of metric `name` on the line that has every one of `labels`.
fn metric(port: u16, name: &str, labels: &[&str]) -> Option<u64> {
    let (_, metrics) = http(reqwest::Method::GET, port, "/metrics");
    metrics.as_str()?.lines().find_map(|l| {
        (l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
            .then(|| l.rsplit(' ').next()?.parse().ok())
            .flatten()
    })
}

/// `sluice run` of the setup's pipeline, with the admin token set.
fn run(s: &Setup) -> Sluice {
    let log = s.dir.path().join("log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&s.file)
        .env("SLUICE_LOG", "info")
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Sluice { child, log }
}

/// `sluice_plugin_reloads_total{result}` of the `alerts/alert` plugin.
fn reloads(port: u16, result: &str) -> Option<u64> {
    let result = format!("result=\"{result}\"");
    metric(
        port,
        "sluice_plugin_reloads_total",
        &["plugin=\"alert\"", &result],
    )
}

/// The `alerts/alert` entry of `GET /plugins`.
fn plugin_info(port: u16) -> Value {
    let (status, body) = http(reqwest::Method::GET, port, "/plugins");
    assert_eq!(status, 200, "{body}");
    let all = body.as_array().expect("a list").clone();
    assert_eq!(all.len(), 1, "{body}");
    assert_eq!(all[0]["pipeline"], "alerts");
    assert_eq!(all[0]["plugin"], "alert");
    all[0].clone()
}

fn wait_for_admin(s: &Setup, sluice: &Sluice) {
    wait_for("the admin API", Duration::from_secs(60), || {
        assert!(
            !sluice.log_text().contains("Error"),
            "sluice failed: {}",
            sluice.log_text()
        );
        std::net::TcpStream::connect(("127.0.0.1", s.admin)).is_ok()
    });
}

fn recipe(name: &str, calories: u32) -> Vec<u8> {
    format!(r#"{{"name":"{name}","calories":{calories}}}"#).into_bytes()
}

fn value(g: &Got) -> Value {
    serde_json::from_slice(&g.value).unwrap()
}

/// Write `bytes` over `path` the way `cp` does, in two halves with a pause
/// between them (shorter than the settle interval, so only the waiting for
/// a stable file keeps the half-written one from being loaded).
fn write_slowly(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let half = bytes.len() / 2;
    f.write_all(&bytes[..half]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(120));
    f.write_all(&bytes[half..]).unwrap();
    f.flush().unwrap();
}

#[test]
fn swap_under_load_loses_nothing_repeats_nothing_and_switches_once_per_partition() {
    const N: usize = 100_000;
    const PARTITIONS: i32 = 4;
    let b = Broker::shared();
    let s = setup(b, PARTITIONS, "");
    let v1 = sha256_of(&s.plugin);
    let v2_bytes = std::fs::read(common::plugin("calorie-alert-300")).unwrap();
    let v2 = sha256(&v2_bytes);
    assert_ne!(v1, v2, "the two builds must differ");
    let tag1 = format!("alert@{v1}");
    let tag2 = format!("alert@{v2}");

    let sluice = run(&s);
    wait_for_admin(&s, &sluice);

    // Records flow for several seconds: 20 batches of 5,000, each key
    // (and so each partition) in sequence order.
    let addr = b.addr.clone();
    let input = s.input.clone();
    let producer = std::thread::spawn(move || {
        for batch in 0..20 {
            let recs: Vec<(String, Vec<u8>)> = (batch * 5_000..(batch + 1) * 5_000)
                .map(|i| (format!("k{}", i % 64), recipe(&format!("r{i}"), 900)))
                .collect();
            common::produce_to(&addr, &input, &recs);
            std::thread::sleep(Duration::from_millis(200));
        }
    });

    // Swap once records are flowing.
    wait_for("records to flow", Duration::from_secs(120), || {
        plugin_info(s.admin)["calls"].as_u64().unwrap() >= 15_000
    });
    write_slowly(&s.plugin, &v2_bytes);
    wait_for(
        "the new version to be published",
        Duration::from_secs(30),
        || plugin_info(s.admin)["version"] == v2.as_str(),
    );
    producer.join().unwrap();

    let out = collect(
        &b.consumer(&s.output),
        Duration::from_secs(180),
        Duration::from_secs(2),
        |g| g.len() >= N,
    );
    // Zero lost, zero twice.
    let mut names = HashSet::new();
    for g in &out {
        let v = value(g);
        assert!(
            names.insert(v["name"].as_str().unwrap().to_owned()),
            "{v} was produced twice"
        );
    }
    assert_eq!(names.len(), N, "every record is processed exactly once");

    // Every output names exactly one version, and its content is that
    // version's rule.
    let mut by_version: HashMap<&str, usize> = HashMap::new();
    for g in &out {
        let versions: Vec<&str> = g
            .headers
            .iter()
            .filter(|(k, _)| k == HEADER)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(versions.len(), 1, "one provenance header: {g:?}");
        let threshold = value(g)["threshold"].as_u64().unwrap();
        match versions[0] {
            t if t == tag1 => assert_eq!(threshold, 500, "{g:?}"),
            t if t == tag2 => assert_eq!(threshold, 300, "{g:?}"),
            other => panic!("unknown version {other}"),
        }
        *by_version.entry(versions[0]).or_default() += 1;
    }
    assert!(
        by_version.len() == 2,
        "the swap happened mid-stream: {by_version:?}"
    );

    // Within each partition: input order kept, and the version switches
    // once, from old to new.
    let mut last: HashMap<(i32, String), usize> = HashMap::new();
    let mut switched: HashMap<i32, bool> = HashMap::new();
    for g in &out {
        let name = value(g)["name"].as_str().unwrap().to_owned();
        let seq: usize = name[1..].parse().unwrap();
        let key = g.key.clone().unwrap();
        if let Some(prev) = last.insert((g.partition, key.clone()), seq) {
            assert!(prev < seq, "order kept for key {key}: {prev} then {seq}");
        }
        let is_new = g.header(HEADER) == Some(tag2.as_str());
        let was_new = switched.entry(g.partition).or_insert(false);
        assert!(
            is_new || !*was_new,
            "partition {} went back to the old version at {name}",
            g.partition
        );
        *was_new |= is_new;
    }

    // The admin API agrees: every call was made once, by one version.
    let info = plugin_info(s.admin);
    assert_eq!(info["version"], v2.as_str());
    assert_eq!(info["previous"]["version"], v1.as_str());
    assert_eq!(info["swaps"], 1);
    let calls = info["calls"].as_u64().unwrap() + info["previous"]["calls"].as_u64().unwrap();
    assert_eq!(calls as usize, N, "{info}");
    assert_eq!(info["errors"], 0);
    assert_eq!(
        info["calls"].as_u64().unwrap() as usize,
        by_version[tag2.as_str()]
    );
    assert_eq!(reloads(s.metrics, "ok"), Some(1));
    assert!(sluice.log_text().contains("plugin swapped"));
}

#[test]
fn broken_builds_are_refused_and_the_running_version_keeps_processing() {
    let b = Broker::shared();
    // The smoke record: a recipe of 400 kcal is not an alert. The variant
    // build (threshold 300) would alert on it, so it is refused too.
    let smoke = r#"smoke = [{ value = '{"name":"smoke","calories":400}', expect = [] }, { value = "not json", expect_error = "invalid" }]"#;
    let s = setup(b, 2, smoke);
    let v1 = sha256_of(&s.plugin);
    let sluice = run(&s);
    wait_for_admin(&s, &sluice);

    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let candidates: [(&str, Vec<u8>, &str); 4] = [
        (
            "traps in init",
            std::fs::read(common::plugin("init-trap")).unwrap(),
            "trapped during init",
        ),
        (
            "wrong world",
            wat::parse_str("(component)").unwrap(),
            "does not implement the sluice plugin world",
        ),
        ("garbage bytes", garbage, "not a WebAssembly file"),
        (
            "fails its smoke record",
            std::fs::read(common::plugin("calorie-alert-300")).unwrap(),
            "smoke record 0 failed",
        ),
    ];
    for (i, (what, bytes, why)) in candidates.iter().enumerate() {
        let sha = sha256(bytes);
        std::fs::write(&s.plugin, bytes).unwrap();
        wait_for(
            &format!("the build that {what} to be refused"),
            Duration::from_secs(30),
            || plugin_info(s.admin)["last_rejected"]["version"] == sha.as_str(),
        );
        let info = plugin_info(s.admin);
        assert_eq!(info["version"], v1.as_str(), "{what}: old version runs");
        assert_eq!(info["swaps"], 0);
        let error = info["last_rejected"]["error"].as_str().unwrap();
        assert!(error.contains(why), "{what}: {error}");

        // Processing goes on, on the old version.
        let recs: Vec<(String, Vec<u8>)> = (0..10)
            .map(|j| (format!("k{j}"), recipe(&format!("c{i}-{j}"), 900)))
            .collect();
        b.produce(&s.input, &recs);
    }
    let out = collect(
        &b.consumer(&s.output),
        Duration::from_secs(60),
        Duration::from_secs(1),
        |g| g.len() >= 40,
    );
    assert_eq!(out.len(), 40);
    for g in &out {
        assert_eq!(g.header(HEADER), Some(format!("alert@{v1}").as_str()));
        assert_eq!(value(g)["threshold"], 500);
    }
    let log = sluice.log_text();
    assert_eq!(
        log.matches("new plugin version rejected").count(),
        4,
        "one clear log line per refused build: {log}"
    );
    assert_eq!(reloads(s.metrics, "rejected"), Some(4));
}

#[test]
fn rollback_and_reload_through_the_admin_api_and_params_from_the_pipeline_file() {
    use reqwest::Method;
    let b = Broker::shared();
    let s = setup(b, 1, "");
    let v1 = sha256_of(&s.plugin);
    let v2_bytes = std::fs::read(common::plugin("calorie-alert-300")).unwrap();
    let v2 = sha256(&v2_bytes);
    let (tag1, tag2) = (format!("alert@{v1}"), format!("alert@{v2}"));
    let sluice = run(&s);
    wait_for_admin(&s, &sluice);

    let (status, body) = http(Method::POST, s.admin, "/plugins/alerts/alert/rollback");
    assert_eq!(status, 409, "nothing to roll back to: {body}");
    let (status, body) = http(Method::POST, s.admin, "/plugins/alerts/nope/reload");
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let (status, body) = http(Method::POST, s.admin, "/plugins/alerts/alert/reload");
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("unchanged")),
        "{body}"
    );

    let consumer = b.consumer(&s.output);
    let mut seq = 0;
    // Send five recipes of 900 kcal; return their alerts.
    let mut round = || -> Vec<Got> {
        let recs: Vec<(String, Vec<u8>)> = (0..5)
            .map(|_| {
                seq += 1;
                ("k".to_string(), recipe(&format!("r{seq}"), 900))
            })
            .collect();
        b.produce(&s.input, &recs);
        let got = collect(
            &consumer,
            Duration::from_secs(60),
            Duration::from_millis(500),
            |g| g.len() >= 5,
        );
        assert_eq!(got.len(), 5, "{got:?}");
        got
    };
    let check = |got: &[Got], tag: &str, threshold: u64| {
        for g in got {
            assert_eq!(g.header(HEADER), Some(tag), "{g:?}");
            assert_eq!(value(g)["threshold"], threshold, "{g:?}");
        }
    };
    check(&round(), &tag1, 500);

    // A new build: the watcher swaps it in.
    std::fs::write(&s.plugin, &v2_bytes).unwrap();
    wait_for("v2 to run", Duration::from_secs(30), || {
        plugin_info(s.admin)["version"] == v2.as_str()
    });
    check(&round(), &tag2, 300);

    // Roll back through the admin API.
    let (status, body) = http(Method::POST, s.admin, "/plugins/alerts/alert/rollback");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "swapped");
    assert_eq!(body["version"], v1.as_str());
    let info = plugin_info(s.admin);
    assert_eq!(info["version"], v1.as_str());
    assert_eq!(info["previous"]["version"], v2.as_str());
    assert_eq!(reloads(s.metrics, "rollback"), Some(1));
    check(&round(), &tag1, 500);

    // A param change in the pipeline file makes a new version: the file on
    // disk (v2) with threshold 700.
    write_pipeline(b, &s, &s.group, "params = { threshold = 700 }");
    wait_for("threshold 700 to run", Duration::from_secs(30), || {
        plugin_info(s.admin)["params"]["threshold"] == fingerprint("700")
    });
    assert_eq!(plugin_info(s.admin)["version"], v2.as_str());
    check(&round(), &tag2, 700);

    // A bad param is refused; threshold 700 keeps running.
    write_pipeline(b, &s, &s.group, "params = { threshold = \"lots\" }");
    wait_for(
        "the bad param to be refused",
        Duration::from_secs(30),
        || {
            plugin_info(s.admin)["last_rejected"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("threshold"))
        },
    );
    assert_eq!(
        plugin_info(s.admin)["params"]["threshold"],
        fingerprint("700")
    );
    check(&round(), &tag2, 700);
    let (status, body) = http(Method::POST, s.admin, "/plugins/alerts/alert/reload");
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("threshold"),
        "{body}"
    );

    // A pipeline file that does not parse changes nothing.
    std::fs::write(&s.file, "this = = is not TOML").unwrap();
    wait_for(
        "the broken pipeline file to be refused",
        Duration::from_secs(30),
        || {
            metric(
                s.metrics,
                "sluice_pipeline_file_reloads_total",
                &["result=\"rejected\""],
            ) == Some(1)
        },
    );
    check(&round(), &tag2, 700);

    // Dead letters carry the version that refused them.
    b.produce(&s.input, &[("bad".to_string(), b"not json".to_vec())]);
    let dl = collect(
        &b.consumer(&s.dlq),
        Duration::from_secs(60),
        Duration::from_millis(500),
        |g| !g.is_empty(),
    );
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0].header(HEADER), Some(tag2.as_str()));
    assert_eq!(dl[0].header("sluice.error.kind"), Some("invalid"));
}

/// Review finding 13: a reload asked for one plugin used to take in every
/// other plugin's new section as "wanted" without reloading it, so the file
/// watcher then saw no change and those plugins kept their old config.
#[test]
fn a_reload_of_one_plugin_does_not_swallow_the_others_file_changes() {
    use sluice::swap::Reloader;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    let text = |a: &str, b: &str| {
        format!(
            r#"
[[pipeline]]
name = "p"
source = {{ brokers = "127.0.0.1:1", topics = ["in"], group_id = "g" }}
routes.default = {{ topic = "out" }}
dead_letter = {{ topic = "dlq" }}
[[pipeline.plugin]]
name = "a"
path = "{path}"
params = {{ threshold = {a} }}
[[pipeline.plugin]]
name = "b"
path = "{path}"
params = {{ threshold = {b} }}
"#,
            path = common::plugin("calorie-alert").display()
        )
    };
    std::fs::write(&file, text("100", "200")).unwrap();
    let runtime = sluice::plugin::Runtime::new(Default::default()).unwrap();
    let loaded = sluice::config::pipeline::load(&file).unwrap();
    let slots = sluice::pipeline::load_plugins(&runtime, &loaded)
        .unwrap()
        .concat();
    let reloader = Reloader::new(runtime, Some(file.clone()), slots.clone());
    let threshold = |i: usize| {
        slots[i]
            .current()
            .config
            .init_params()
            .into_iter()
            .find(|(k, _)| k == "threshold")
            .unwrap()
            .1
    };

    std::fs::write(&file, text("111", "222")).unwrap();
    reloader.reload_requested(&slots[0]);
    // What the file watcher does when it sees the same change.
    reloader.pipeline_file_changed();
    assert_eq!(threshold(0), "111");
    assert_eq!(threshold(1), "222", "plugin b never got its new params");
}

fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn sleep_until_ms(t: u128) {
    let now = epoch_ms();
    if t > now {
        std::thread::sleep(Duration::from_millis((t - now) as u64));
    }
}

/// Review finding 14, second half: a worker that could not start a newly
/// published version (its `init` failed there, after passing admission)
/// used to stay on the old one for good while `/plugins` reported the new
/// one. It now tries again, and switches once the version starts.
#[test]
fn a_worker_that_could_not_start_a_new_version_tries_again() {
    let b = Broker::shared();
    let s = setup(b, 1, "params = { v = \"1\" }");
    std::fs::copy(common::plugin("sleeper"), &s.plugin).unwrap();
    let mut sluice = run(&s);
    wait_for_admin(&s, &sluice);
    let out = b.consumer(&s.output);
    let mut seen = 0;
    let mut one_more = |what: &str| {
        b.produce(&s.input, &[(what.to_string(), b"1".to_vec())]);
        seen += 1;
        let want = seen;
        let got = collect(&out, Duration::from_secs(60), Duration::ZERO, |g| {
            !g.is_empty()
        });
        assert_eq!(got.len(), 1, "record {want} ({what}) did not arrive");
    };
    one_more("on v1");

    // v2 passes admission now, but refuses to start inside [from, to).
    let (from, to) = (epoch_ms() + 2000, epoch_ms() + 4500);
    write_pipeline(
        b,
        &s,
        &s.group,
        &format!("params = {{ v = \"2\", fail_init_between = \"{from},{to}\" }}"),
    );
    wait_for("v2 to be published", Duration::from_secs(30), || {
        plugin_info(s.admin)["generation"] == 2
    });
    assert!(
        epoch_ms() < from,
        "admission took too long for this test's window"
    );

    sleep_until_ms(from + 300);
    one_more("inside the window: still on v1");
    assert_eq!(
        plugin_info(s.admin)["calls"],
        0,
        "v2 started inside its window?"
    );

    sleep_until_ms(to + 300);
    one_more("after the window");
    let calls = plugin_info(s.admin)["calls"].as_u64().unwrap();
    assert!(
        calls >= 1,
        "the worker never switched to v2: {}",
        sluice.log_text()
    );
    assert!(sluice.terminate(), "{}", sluice.log_text());
}
