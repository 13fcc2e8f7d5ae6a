//! The admin API against a real `sluice run` and a real broker (tansu): its
//! own listener, its bearer token, its `Host` check, params shown only as
//! fingerprints, and no secret in any body or log line, even when the
//! pipeline file breaks on the line that holds one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Broker, Sluice, random_name, wait_for};
use sha2::Digest as _;

/// A param value no body, error or log line may show.
const SENTINEL: &str = "0000731.0424242";

struct Run {
    _dir: tempfile::TempDir,
    file: PathBuf,
    metrics: u16,
    admin: u16,
    sluice: Sluice,
}

/// The pipeline file: calorie-alert with `threshold` from the environment,
/// and `admin` as the `[admin]` table (or none).
fn pipeline(b: &Broker, metrics: u16, admin: Option<String>, params_line: &str) -> String {
    let (input, output, dlq) = (random_name("in"), random_name("out"), random_name("dlq"));
    for t in [&input, &output, &dlq] {
        b.create_topic(t, 1);
    }
    format!(
        r#"
metrics = {{ listen = "127.0.0.1:{metrics}" }}
{admin}
[[pipeline]]
name = "alerts"
source = {{ brokers = "{brokers}", topics = ["{input}"], group_id = "{group}" }}
routes.default = {{ topic = "{output}" }}
dead_letter = {{ topic = "{dlq}" }}

[[pipeline.plugin]]
path = "{plugin}"
name = "alert"
{params_line}
"#,
        admin = admin.map(|a| format!("admin = {a}")).unwrap_or_default(),
        brokers = b.addr,
        group = random_name("group"),
        plugin = common::plugin("calorie-alert").display(),
    )
}

const PARAMS: &str = r#"params = { threshold = "${ALERT_THRESHOLD}" }"#;

/// Start `sluice run` with `admin` as its `[admin]` table and `env` set.
fn start(b: &Broker, admin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (metrics, port) = (common::free_port(), common::free_port());
    let admin = admin.map(|a| a.replace("PORT", &port.to_string()));
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, pipeline(b, metrics, admin, PARAMS)).unwrap();
    let log = dir.path().join("log");
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&file)
        .env("SLUICE_LOG", "info")
        .env("ALERT_THRESHOLD", SENTINEL)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let sluice = Sluice { child, log };
    wait_for("the metrics endpoint", Duration::from_secs(60), || {
        assert!(
            !sluice.log_text().contains("Error"),
            "sluice failed: {}",
            sluice.log_text()
        );
        std::net::TcpStream::connect(("127.0.0.1", metrics)).is_ok()
    });
    Run {
        _dir: dir,
        file,
        metrics,
        admin: port,
        sluice,
    }
}

/// One HTTP/1.1 request with exactly these headers; (status, body).
fn request(
    method: &str,
    port: u16,
    path: &str,
    host: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let host = host.map_or_else(|| format!("127.0.0.1:{port}"), str::to_owned);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn fingerprint(v: &str) -> String {
    format!(
        "sha256:{}",
        &hex::encode(sha2::Sha256::digest(v.as_bytes()))[..12]
    )
}

#[test]
fn the_admin_api_needs_its_token_and_its_own_names_and_shows_no_param_values() {
    let b = Broker::shared();
    let token = random_name("tok");
    let run = start(
        b,
        Some(r#"{ listen = "127.0.0.1:PORT", token = "${SLUICE_ADMIN_TOKEN}" }"#),
        &[("SLUICE_ADMIN_TOKEN", &token)],
    );
    let port = run.admin;
    wait_for("the admin API", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let reload = "/plugins/alerts/alert/reload";
    let rollback = "/plugins/alerts/alert/rollback";

    // No token, or a wrong one: 401, reads and actions alike.
    for (method, path) in [("GET", "/plugins"), ("POST", reload), ("POST", rollback)] {
        let (status, body) = request(method, port, path, None, None);
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        let (status, body) = request(method, port, path, None, Some("not-the-token"));
        assert_eq!(status, 401, "{method} {path} with a wrong token: {body}");
        let wrong = format!("{token}x");
        assert_eq!(request(method, port, path, None, Some(&wrong)).0, 401);
    }

    // The token: 200, and params by name with a fingerprint, never a value.
    let (status, body) = request("GET", port, "/plugins", None, Some(&token));
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["plugin"], "alert", "{body}");
    assert_eq!(
        list[0]["params"]["threshold"],
        fingerprint(SENTINEL).as_str(),
        "{body}"
    );
    assert!(!body.contains(SENTINEL), "a param value in {body}");
    let (status, body) = request("POST", port, reload, None, Some(&token));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("unchanged"), "{body}");
    let (status, body) = request("POST", port, rollback, None, Some(&token));
    assert_eq!(
        status, 409,
        "authorised, and nothing to roll back to: {body}"
    );

    // A Host that is not a name of this listener (DNS rebinding): 421,
    // even with the token. Its loopback names pass.
    for evil in [
        "evil.example",
        &format!("evil.example:{port}"),
        "localhost:1",
    ] {
        let (status, body) = request("GET", port, "/plugins", Some(evil), Some(&token));
        assert_eq!(status, 421, "Host {evil}: {body}");
        assert_eq!(
            request("POST", port, reload, Some(evil), Some(&token)).0,
            421
        );
    }
    for ok in [format!("localhost:{port}"), format!("[::1]:{port}")] {
        let (status, body) = request("GET", port, "/plugins", Some(&ok), Some(&token));
        assert_eq!(status, 200, "Host {ok}: {body}");
    }

    // The metrics listener: open, and without the admin routes.
    let m = run.metrics;
    let (status, body) = request("GET", m, "/metrics", None, None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("sluice_"), "{body}");
    assert_eq!(request("GET", m, "/healthz", None, None).0, 200);
    assert_eq!(request("GET", m, "/plugins", None, Some(&token)).0, 404);
    assert_eq!(request("POST", m, reload, None, Some(&token)).0, 404);

    // The pipeline file breaks on the line that holds the secret: the 422
    // body names the line, not the secret (a syntax error, then a bad
    // value on that line).
    let text = std::fs::read_to_string(&run.file).unwrap();
    for broken in [
        r#"params = { threshold = "${ALERT_THRESHOLD}" oops }"#,
        r#"params = { threshold = "${ALERT_THRESHOLD}", other = [{}] }"#,
    ] {
        std::fs::write(&run.file, text.replace(PARAMS, broken)).unwrap();
        let (status, body) = request("POST", port, reload, None, Some(&token));
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("line "), "the error is located: {body}");
        assert!(!body.contains(SENTINEL), "the secret in {body}");
        assert!(!body.contains(&token), "the token in {body}");
    }
    wait_for(
        "the watcher to refuse the broken file",
        Duration::from_secs(30),
        || {
            run.sluice
                .log_text()
                .contains("pipeline file change ignored")
        },
    );
    let log = run.sluice.log_text();
    assert!(!log.contains(SENTINEL), "the secret in the log:\n{log}");
    assert!(!log.contains(&token), "the token in the log:\n{log}");
    assert!(
        !log.contains("no token is set"),
        "a token is set, so no warning: {log}"
    );
}

#[test]
fn without_a_token_reads_pass_and_reload_and_rollback_are_refused() {
    let b = Broker::shared();
    let run = start(b, Some(r#"{ listen = "127.0.0.1:PORT" }"#), &[]);
    let port = run.admin;
    wait_for("the admin API", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (status, body) = request("GET", port, "/plugins", None, None);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(SENTINEL), "{body}");
    for path in [
        "/plugins/alerts/alert/reload",
        "/plugins/alerts/alert/rollback",
    ] {
        for token in [None, Some("anything")] {
            let (status, body) = request("POST", port, path, None, token);
            assert_eq!(status, 403, "{path}: {body}");
            assert!(body.contains("SLUICE_ADMIN_TOKEN"), "says how: {body}");
        }
    }
    assert_eq!(
        request("GET", port, "/plugins", Some("evil.example"), None).0,
        421
    );
    let log = run.sluice.log_text();
    assert_eq!(
        log.matches("no token is set").count(),
        1,
        "one line at startup says how to enable them: {log}"
    );
    assert!(log.contains("SLUICE_ADMIN_TOKEN"), "{log}");
}

#[test]
fn without_an_admin_section_there_is_no_admin_api() {
    let b = Broker::shared();
    let run = start(b, None, &[]);
    let m = run.metrics;
    assert_eq!(request("GET", m, "/metrics", None, None).0, 200);
    assert_eq!(request("GET", m, "/plugins", None, None).0, 404);
    assert_eq!(
        request("POST", m, "/plugins/alerts/alert/rollback", None, None).0,
        404
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", run.admin)).is_err(),
        "nothing listens on the admin port"
    );
    assert!(run.sluice.log_text().contains("no admin API"));
}
