//! The shared calorie-alert test vectors (`tests/vectors/calorie-alert.json`)
//! run through the real `sluice plugin run` against every language's build:
//! Rust, Python, JavaScript, C, Zig and C++. One test per language, so a report
//! names the language; each test lists every vector that language got wrong.
//!
//! A plugin that was not built fails its test with the command that builds
//! it (`just plugins`, which installs the toolchains first); no language is
//! skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One vector, as read from the JSON file.
struct Case {
    name: String,
    config: Vec<(String, String)>,
    input: Input,
    expect: Expect,
}

enum Input {
    /// A JSONL record: the key and the value's text.
    Text { key: Option<String>, value: String },
    /// A raw file's bytes (no key).
    Raw(Vec<u8>),
    /// No record: the case is about `init`.
    None,
}

enum Expect {
    Outputs(Vec<String>),
    Error(String),
    ErrorPrefix(String),
    InitError(String),
}

fn load_cases() -> Vec<Case> {
    let path = root().join("tests/vectors/calorie-alert.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let str_of = |v: &Value| v.as_str().unwrap().to_owned();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let config = c
                .get("config")
                .map(|cfg| {
                    cfg.as_array()
                        .unwrap()
                        .iter()
                        .map(|kv| (str_of(&kv[0]), str_of(&kv[1])))
                        .collect()
                })
                .unwrap_or_default();
            let input = if let Some(hex) = c.get("value_hex") {
                Input::Raw(hex::decode(hex.as_str().unwrap()).unwrap())
            } else if let Some(v) = c.get("value") {
                Input::Text {
                    key: c.get("key").map(str_of),
                    value: str_of(v),
                }
            } else {
                Input::None
            };
            let expect = if let Some(o) = c.get("outputs") {
                Expect::Outputs(o.as_array().unwrap().iter().map(str_of).collect())
            } else if let Some(m) = c.get("error") {
                Expect::Error(str_of(m))
            } else if let Some(m) = c.get("error_prefix") {
                Expect::ErrorPrefix(str_of(m))
            } else if let Some(m) = c.get("init_error") {
                Expect::InitError(str_of(m))
            } else {
                panic!("vector {c} expects nothing");
            };
            Case {
                name: str_of(&c["name"]),
                config,
                input,
                expect,
            }
        })
        .collect()
}

/// The built component for a language; fails with how to build it.
fn component(file: &str) -> PathBuf {
    let p = root().join("dist/plugins").join(format!("{file}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `just plugins` (it installs the toolchains with \
         `just toolchains`, i.e. .ci/install-toolchains, then builds every language)",
        p.display()
    );
    p
}

fn plugin_run(plugin: &Path, config: &[(String, String)], extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("plugin").arg("run").arg(plugin);
    for (k, v) in config {
        cmd.arg("--config").arg(format!("{k}={v}"));
    }
    cmd.args(extra);
    cmd.env("SLUICE_LOG", "warn");
    cmd.output().unwrap()
}

/// Runs every vector against one component; returns one line per failure.
fn run_vectors(plugin: &Path) -> Vec<String> {
    let cases = load_cases();
    assert!(cases.len() > 50, "only {} vectors", cases.len());
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let mut failures = Vec::new();

    // Cases sharing a config run in one `sluice plugin run`.
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<&Case>> = BTreeMap::new();
    for c in &cases {
        groups.entry(c.config.clone()).or_default().push(c);
    }
    for (gi, (config, group)) in groups.iter().enumerate() {
        for c in group {
            if let Expect::InitError(want) = &c.expect {
                let o = plugin_run(
                    plugin,
                    config,
                    &["--format", "jsonl", "--input", empty.to_str().unwrap()],
                );
                let stderr = String::from_utf8_lossy(&o.stderr);
                if o.status.code() != Some(2) || !stderr.contains(want.as_str()) {
                    failures.push(format!(
                        "{}: want init error {want:?} (exit 2), got exit {:?}, stderr {stderr:?}",
                        c.name,
                        o.status.code()
                    ));
                }
            }
        }
        // Text inputs as one JSONL file; the output's `input` is the line.
        let mut jsonl = String::new();
        let mut by_line: Vec<&Case> = Vec::new();
        let mut raws: Vec<(PathBuf, &Case)> = Vec::new();
        for c in group {
            match &c.input {
                Input::Text { key, value } => {
                    jsonl.push_str(&json!({"key": key, "value": value}).to_string());
                    jsonl.push('\n');
                    by_line.push(c);
                }
                Input::Raw(bytes) => {
                    let p = dir.path().join(format!("g{gi}-raw{}.bin", raws.len()));
                    std::fs::write(&p, bytes).unwrap();
                    raws.push((p, c));
                }
                Input::None => {}
            }
        }
        let mut results: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        if !by_line.is_empty() {
            let file = dir.path().join(format!("g{gi}.jsonl"));
            std::fs::write(&file, &jsonl).unwrap();
            let o = plugin_run(
                plugin,
                config,
                &["--format", "jsonl", "--input", file.to_str().unwrap()],
            );
            collect(&o, &mut results, &mut failures, config);
        }
        if !raws.is_empty() {
            let files: Vec<&str> = raws.iter().map(|(p, _)| p.to_str().unwrap()).collect();
            let mut args = vec!["--format", "raw"];
            args.extend(files);
            let o = plugin_run(plugin, config, &args);
            collect(&o, &mut results, &mut failures, config);
        }
        let mut checks: Vec<(String, &Case)> = by_line
            .iter()
            .enumerate()
            .map(|(i, c)| ((i + 1).to_string(), *c))
            .collect();
        checks.extend(raws.iter().map(|(p, c)| (p.display().to_string(), *c)));
        for (id, c) in checks {
            let got = results.remove(&id).unwrap_or_default();
            if let Err(why) = check(c, &got) {
                failures.push(format!("{}: {why}; got {}", c.name, Value::from(got)));
            }
        }
    }
    failures
}

/// Files each stdout line under its `input` id.
fn collect(
    o: &Output,
    results: &mut BTreeMap<String, Vec<Value>>,
    failures: &mut Vec<String>,
    config: &[(String, String)],
) {
    if !o.status.success() {
        failures.push(format!(
            "config {config:?}: sluice plugin run exited {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let id = match &v["input"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        results.entry(id).or_default().push(v);
    }
}

fn check(c: &Case, got: &[Value]) -> Result<(), String> {
    let key = match &c.input {
        Input::Text { key, .. } => key.clone(),
        _ => None,
    };
    match &c.expect {
        Expect::Outputs(want) => {
            if got.iter().any(|g| g.get("error").is_some()) {
                return Err(format!("want outputs {want:?}"));
            }
            let values: Vec<&str> = got.iter().map(|g| g["value"].as_str().unwrap()).collect();
            if values != *want {
                return Err(format!("want outputs {want:?}"));
            }
            for g in got {
                if g["key"] != json!(key) || g["route"] != Value::Null || g["headers"] != json!({})
                {
                    return Err(format!("want key {key:?}, route null, no headers"));
                }
            }
            Ok(())
        }
        Expect::Error(want) | Expect::ErrorPrefix(want) => {
            let exact = matches!(c.expect, Expect::Error(_));
            let ok = match got {
                [g] => {
                    let m = g["error"]["message"].as_str().unwrap_or_default();
                    g["error"]["kind"] == "invalid"
                        && if exact {
                            m == want
                        } else {
                            m.starts_with(want.as_str())
                        }
                }
                _ => false,
            };
            if ok {
                Ok(())
            } else if exact {
                Err(format!("want one invalid error {want:?}"))
            } else {
                Err(format!("want one invalid error starting {want:?}"))
            }
        }
        Expect::InitError(_) => Ok(()),
    }
}

fn vectors_pass(file: &str) {
    let failures = run_vectors(&component(file));
    assert!(
        failures.is_empty(),
        "{file}: {} vector(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rust() {
    vectors_pass("calorie-alert");
}

#[test]
fn python() {
    vectors_pass("calorie-alert-py");
}

#[test]
fn javascript() {
    vectors_pass("calorie-alert-js");
}

#[test]
fn c() {
    vectors_pass("calorie-alert-c");
}

#[test]
fn zig() {
    vectors_pass("calorie-alert-zig");
}

#[test]
fn cpp() {
    vectors_pass("calorie-alert-cpp");
}

/// The suite can fail: a plugin that filters nothing (passthrough) gets
/// most vectors wrong.
#[test]
fn a_wrong_plugin_fails_the_vectors() {
    let failures = run_vectors(&component("passthrough"));
    assert!(failures.len() > 50, "{failures:#?}");
}
