//! `sluice plugin new` end to end: scaffold a plugin in each language into a
//! temporary directory, build it with its own `build.sh`, and run the
//! component through `sluice plugin run`. Also: a taken directory and a bad
//! name are refused, and the in-repo plugins build with the same recipe as
//! the templates.
//!
//! The toolchains must be installed (`just toolchains`); a missing one fails
//! the build step with a message saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sluice(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Scaffolds NAME in LANG, builds it, runs it; panics with the reason.
fn scaffold_build_run(lang: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("hello-{lang}");
    let dir = tmp.path().join(&name);
    let o = sluice(
        &[
            "plugin",
            "new",
            &name,
            "--lang",
            lang,
            "--dir",
            tmp.path().to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "plugin new: {}", text(&o.stderr));
    let printed = text(&o.stdout);
    assert!(printed.contains("Next steps"), "{printed}");
    assert!(printed.contains("./build.sh"), "{printed}");

    // The Rust scaffold shares one target dir across runs to stay warm.
    let mut build = Command::new("bash");
    build.arg(dir.join("build.sh")).current_dir(&dir);
    let home = std::env::var("HOME").unwrap();
    build.env(
        "CARGO_TARGET_DIR",
        format!("{home}/.cache/sluice/scaffold-target"),
    );
    let o = build.output().unwrap();
    assert!(
        o.status.success(),
        "{lang}: build.sh failed (toolchains: `just toolchains`):\n{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(
        wasm.exists(),
        "{lang}: build.sh wrote no {}",
        wasm.display()
    );

    let o = sluice(
        &["plugin", "run", wasm.to_str().unwrap(), "--format", "jsonl"],
        "{\"key\":\"k\",\"value\":\"hello\"}\n{\"key\":\"k2\",\"value\":\"\"}\n",
    );
    assert!(
        o.status.success(),
        "{lang}: plugin run: {}",
        text(&o.stderr)
    );
    let lines: Vec<Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lang}: {lines:?}");
    assert_eq!(lines[0]["value"], "hello", "{lang}: {lines:?}");
    assert_eq!(lines[0]["key"], "k", "{lang}: {lines:?}");
    assert_eq!(
        lines[1]["error"],
        json!({"kind": "invalid", "message": "empty record"}),
        "{lang}: {lines:?}"
    );

    let o = sluice(
        &[
            "plugin",
            "run",
            wasm.to_str().unwrap(),
            "--format",
            "jsonl",
            "--config",
            "colour=red",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(2), "{lang}");
    assert!(
        text(&o.stderr).contains(&format!("{name}: unknown parameter `colour`")),
        "{lang}: {}",
        text(&o.stderr)
    );
}

#[test]
fn rust_scaffold_builds_and_runs() {
    scaffold_build_run("rust");
}

#[test]
fn python_scaffold_builds_and_runs() {
    scaffold_build_run("python");
}

#[test]
fn js_scaffold_builds_and_runs() {
    scaffold_build_run("js");
}

#[test]
fn c_scaffold_builds_and_runs() {
    scaffold_build_run("c");
}

#[test]
fn zig_scaffold_builds_and_runs() {
    scaffold_build_run("zig");
}

#[test]
fn a_taken_directory_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("taken")).unwrap();
    std::fs::write(tmp.path().join("taken/mine.txt"), "keep").unwrap();
    let o = sluice(
        &[
            "plugin",
            "new",
            "taken",
            "--lang",
            "c",
            "--dir",
            tmp.path().to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("already exists"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("taken")).unwrap().count(),
        1
    );
}

#[test]
fn a_bad_name_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let o = sluice(
        &[
            "plugin",
            "new",
            "My_Plugin",
            "--lang",
            "rust",
            "--dir",
            tmp.path().to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("contains 'M'"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// The in-repo ports build with the templates' own `build.sh` (the file
/// `plugin new` ships and the tests above prove), not with copies of it.
#[test]
fn in_repo_plugins_build_with_the_templates() {
    for (template, plugin) in [
        ("python", "calorie-alert-py"),
        ("js", "calorie-alert-js"),
        ("c", "calorie-alert-c"),
        ("zig", "calorie-alert-zig"),
    ] {
        let p = std::fs::read_to_string(root().join(format!("plugins/{plugin}/build.sh"))).unwrap();
        let call = format!("host/templates/{template}/build.sh");
        assert!(
            p.contains(&call),
            "plugins/{plugin}/build.sh does not run {call}"
        );
        let code = p
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count();
        assert!(
            code <= 3,
            "plugins/{plugin}/build.sh has a build of its own ({code} lines)"
        );
    }
}

/// docs/plugins.md shows each template exactly as `plugin new hello` writes
/// it, so the guide's examples are the ones built above.
#[test]
fn the_guide_shows_the_templates_unchanged() {
    let guide = std::fs::read_to_string(root().join("docs/plugins.md")).unwrap();
    for t in [
        "rust/Cargo.toml.tmpl",
        "rust/lib.rs.tmpl",
        "python/app.py",
        "js/app.js",
        "c/plugin.c",
        "zig/main.zig",
    ] {
        let body = std::fs::read_to_string(root().join("host/templates").join(t))
            .unwrap()
            .replace("__NAME__", "hello");
        assert!(
            guide.contains(&body),
            "docs/plugins.md does not show host/templates/{t} as `plugin new hello` writes it"
        );
    }
}
