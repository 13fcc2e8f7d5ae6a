//! Per-call cost of the calorie-alert plugin in each language (Rust,
//! Python, JavaScript, C, Zig, C++), each with a reused Store and instance, on
//! one recipe over the threshold (so every call parses the JSON and writes
//! an alert). `.ci/bench-polyglot` turns the report into the table in
//! BENCHMARKS.md and docs/plugins.md.
//!
//! Needs `just plugins` first. Speed is read off the report, never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::plugin::{Input, Instance, Limits, Runtime, RuntimeOptions};

/// (language, component file stem under dist/plugins)
const LANGS: &[(&str, &str)] = &[
    ("rust", "calorie-alert"),
    ("c", "calorie-alert-c"),
    ("zig", "calorie-alert-zig"),
    ("cpp", "calorie-alert-cpp"),
    ("python", "calorie-alert-py"),
    ("js", "calorie-alert-js"),
];

const RECIPE: &[u8] = br#"{"name":"Baked Mac & Cheese","calories":1050,"ingredients":["macaroni","cheddar","milk","butter","breadcrumbs"],"servings":"6","url":"https://example.com/mac"}"#;

fn plugin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/plugins")
        .join(format!("{name}.wasm"));
    assert!(p.exists(), "{} missing: run `just plugins`", p.display());
    p
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let rec = Input {
        topic: "bench".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: Some(b"recipe-1".to_vec()),
        value: RECIPE.to_vec(),
        headers: vec![],
    };
    let mut g = c.benchmark_group("calorie_alert");
    for (lang, file) in LANGS {
        let p = rt.load(&plugin(file), file).unwrap();
        // 128 MiB: StarlingMonkey's GC needs more than the default 64 MiB
        // under a long run of calls (see docs/plugins.md).
        let limits = Limits {
            memory: 128 << 20,
            ..Limits::default()
        };
        let mut inst = Instance::new(p, vec![], limits).unwrap();
        // Every language must give the same answer before it is timed.
        let out = inst.process(&rec).unwrap();
        assert_eq!(
            out[0].value,
            br#"{"name":"Baked Mac & Cheese","calories":1050,"threshold":500,"url":"https://example.com/mac"}"#,
            "{lang}"
        );
        g.bench_function(*lang, |b| {
            b.iter(|| black_box(inst.process(black_box(&rec)).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(polyglot, benches);
criterion_main!(polyglot);
