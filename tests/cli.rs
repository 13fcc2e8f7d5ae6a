//! The `sluice` command line: exit codes, error lines, output format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn recipe_parser_prints_one_recipe_per_page() {
    let plugin = common::plugin("recipe-parser");
    let pages = common::root().join("examples/recipes/pages");
    let mut files: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| !p.contains("not-a-recipe"))
        .collect();
    files.sort();
    let mut args = vec!["plugin", "run", plugin.to_str().unwrap(), "--format", "raw"];
    args.extend(files.iter().map(String::as_str));
    let o = sluice(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), files.len());
    for (line, file) in lines.iter().zip(&files) {
        assert_eq!(line["input"], file.as_str());
        assert!(line["route"].is_null());
        let recipe: serde_json::Value =
            serde_json::from_str(line["value"].as_str().unwrap()).unwrap();
        assert!(
            recipe["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{line}"
        );
    }
}

#[test]
fn failed_records_are_error_lines_and_processing_goes_on() {
    let plugin = common::plugin("calorie-alert");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"key":"a","value":{"name":"Pie","calories":900}}"#,
            "\n",
            r#"{"key":"b","value":"not json"}"#,
            "\n",
            r#"{"key":"c","value":{"name":"Tea","calories":2}}"#,
            "\n",
            r#"{"key":"d","value":{"name":"Cake","calories":650}}"#,
            "\n",
        ),
    )
    .unwrap();
    let o = sluice(&[
        "plugin",
        "run",
        plugin.to_str().unwrap(),
        "--format",
        "jsonl",
        "--config",
        "threshold=600",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["input"], 1);
    assert_eq!(lines[0]["key"], "a");
    assert_eq!(lines[1]["input"], 2);
    assert_eq!(lines[1]["error"]["kind"], "invalid");
    assert_eq!(lines[2]["input"], 4);
}

#[test]
fn traps_are_error_lines_with_their_kind() {
    let plugin = common::plugin("busy-loop");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "1\nforever\n2\n").unwrap();
    let o = sluice(&[
        "plugin",
        "run",
        plugin.to_str().unwrap(),
        "--format",
        "lines",
        "--deadline",
        "50ms",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["error"]["kind"], "deadline");
    assert_eq!(lines[2]["value"], "2");
}

#[test]
fn usage_and_loading_errors_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.wasm");
    let o = sluice(&["plugin", "run", missing.to_str().unwrap(), "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.wasm"));

    let plugin = common::plugin("calorie-alert");
    let o = sluice(&[
        "plugin",
        "run",
        plugin.to_str().unwrap(),
        "--format",
        "lines",
        "--config",
        "bogus=1",
        "--input",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bogus"));

    let o = sluice(&[
        "plugin",
        "run",
        plugin.to_str().unwrap(),
        "--format",
        "raw",
        "missing-input.html",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing-input.html"));

    let o = sluice(&["plugin", "run"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn inspect_prints_world_and_hash_and_refuses_non_plugins() {
    let plugin = common::plugin("recipe-parser");
    let o = sluice(&["plugin", "inspect", plugin.to_str().unwrap()]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["world"], "sluice:plugin/transform@0.2.0");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert!(
        v["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "process")
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("empty.wasm");
    std::fs::write(&bad, wat::parse_str("(component)").unwrap()).unwrap();
    let o = sluice(&["plugin", "inspect", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not implement"));
}

#[test]
fn check_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    let plugin = common::plugin("passthrough");
    std::fs::write(
        &file,
        format!(
            r#"
[[pipeline]]
name = "p"
source = {{ brokers = "127.0.0.1:1", topics = ["in"], group_id = "g", max_inflight = 3 }}
routes.default = {{ topic = "out" }}
dead_letter = {{ topic = "dlq" }}
[[pipeline.plugin]]
path = "{}"
"#,
            plugin.display()
        ),
    )
    .unwrap();
    let o = sluice(&["check", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("max_inflight"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(", max_inflight = 3", "");
    std::fs::write(&file, &text).unwrap();
    let o = sluice(&["check", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    std::fs::write(
        &file,
        text.replace(
            r#"group_id = "g" }"#,
            r#"group_id = "g", properties = { "group.id" = "x" } }"#,
        ),
    )
    .unwrap();
    let o = sluice(&["check", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("group_id"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn check_names_a_missing_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        r#"
[[pipeline]]
name = "p"
source = { brokers = "${SLUICE_TEST_SURELY_UNSET_BROKERS}", topics = ["in"], group_id = "g" }
routes.default = { topic = "out" }
dead_letter = { topic = "dlq" }
"#,
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", file.to_str().unwrap()])
        .env_remove("SLUICE_TEST_SURELY_UNSET_BROKERS")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("SLUICE_TEST_SURELY_UNSET_BROKERS") && err.contains("line 4"),
        "{err}"
    );
}

/// A pipeline file whose source line holds `${KAFKA_PASSWORD}`, with
/// `fault` written onto that same line.
fn secret_line_file(dir: &std::path::Path, fault: &str) -> std::path::PathBuf {
    let file = dir.join("p.toml");
    let plugin = common::plugin("passthrough");
    std::fs::write(
        &file,
        format!(
            r#"
[[pipeline]]
name = "p"
source = {{ brokers = "127.0.0.1:1", topics = ["in"], group_id = "g", security = {{ protocol = "sasl_ssl", mechanism = "SCRAM-SHA-512", username = "u", password = "${{KAFKA_PASSWORD}}"{fault} }} }}
routes.default = {{ topic = "out" }}
dead_letter = {{ topic = "dlq" }}
[[pipeline.plugin]]
path = "{}"
"#,
            plugin.display()
        ),
    )
    .unwrap();
    file
}

fn with_password(args: &[&str], password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("KAFKA_PASSWORD", password)
        .env("SLUICE_LOG", "debug")
        .output()
        .unwrap()
}

#[test]
fn a_broken_line_that_holds_a_secret_never_shows_it() {
    const SECRET: &str = "Sup3r-Secret-Sentinel";
    let dir = tempfile::tempdir().unwrap();
    for (fault, names) in [
        // A TOML syntax error on the secret's line.
        (" oops", "line 4"),
        // A typo in a key, and a bad value, on that line.
        (", sasl_typo = 1", "sasl_typo"),
        (", ca_location = 42", "ca_location"),
    ] {
        let file = secret_line_file(dir.path(), fault);
        for cmd in ["check", "run"] {
            let o = with_password(&[cmd, file.to_str().unwrap()], SECRET);
            let (out, err) = (
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
            );
            assert_eq!(o.status.code(), Some(2), "{cmd} {fault:?}: {err}");
            assert!(
                err.contains(names),
                "{cmd} {fault:?} names the fault: {err}"
            );
            assert!(
                !err.contains(SECRET) && !out.contains(SECRET),
                "{cmd} {fault:?} shows the secret: {out}{err}"
            );
        }
    }
    // A bad value that *is* the secret: the error names the key and the
    // variable, not the value.
    let file = secret_line_file(dir.path(), "")
        .to_str()
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(&file).unwrap().replace(
        r#"mechanism = "SCRAM-SHA-512""#,
        r#"mechanism = "${KAFKA_PASSWORD}""#,
    );
    std::fs::write(&file, text).unwrap();
    let o = with_password(&["check", &file], SECRET);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mechanism") && err.contains("${KAFKA_PASSWORD}"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");
}

#[test]
fn a_secret_with_quotes_backslashes_and_newlines_is_taken_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_line_file(dir.path(), "");
    // Substituted into the text, this would end the string early (or be
    // unescaped); substituted into the parsed value it is just a password.
    let nasty = "a\"b\\c\nd' }, x = { \"e\\u0041";
    let o = with_password(&["check", file.to_str().unwrap()], nasty);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("e\\u0041"), "{err}");
}

/// The pipeline file the Kubernetes manifests and the container image ship
/// (`deploy/kubernetes/pipeline.toml`) passes `sluice check`, with its
/// plugin path pointed from the image's plugin folder to `dist/plugins`.
#[test]
fn the_deployed_pipeline_file_checks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.toml");
    let shipped =
        std::fs::read_to_string(common::root().join("deploy/kubernetes/pipeline.toml")).unwrap();
    assert!(shipped.contains("/usr/share/sluice/plugins/"), "{shipped}");
    let plugins = common::plugin("calorie-alert");
    let plugins = plugins.parent().unwrap().display().to_string();
    std::fs::write(
        &file,
        shipped.replace("/usr/share/sluice/plugins", &plugins),
    )
    .unwrap();
    let o = sluice(&["check", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
