//! Per-call cost of plugins, measured side by side:
//! (a) the passthrough plugin on a 1 KiB value with a reused instance, one
//!     record per call (`process`), and per record inside `process-batch`
//!     calls of 64 and of 256 records (each iteration is one whole batch;
//!     divide by its size),
//! (b) the same logic in native Rust (the floor),
//! (c) recipe-parser on a ~100 KB page,
//! (d) loading a component from the on-disk cache versus compiling it.
//!
//! Needs `just plugins` first. Speed goals are read off the report, never
//! asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::plugin::{Header, Input, Instance, Limits, Output, Runtime, RuntimeOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plugin(name: &str) -> PathBuf {
    let p = root().join("dist/plugins").join(format!("{name}.wasm"));
    assert!(p.exists(), "{} missing: run `just plugins`", p.display());
    p
}

fn record(value: Vec<u8>) -> Input {
    Input {
        topic: "bench".into(),
        partition: 0,
        offset: 42,
        timestamp: Some(1_700_000_000_000),
        key: Some(b"key-0001".to_vec()),
        value,
        headers: vec![Header {
            name: "h".into(),
            value: b"v".to_vec(),
        }],
    }
}

/// The passthrough logic, natively: the same copies the host makes when it
/// lifts a plugin's output.
fn native_passthrough(input: &Input) -> Vec<Output> {
    vec![Output {
        route: None,
        key: input.key.clone(),
        value: input.value.clone(),
        headers: input.headers.clone(),
    }]
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let one_k = record(vec![b'x'; 1024]);

    let pass = rt.load(&plugin("passthrough"), "passthrough").unwrap();
    let mut inst = Instance::new(pass, vec![], Limits::default()).unwrap();
    c.bench_function("a_passthrough_plugin_1KiB", |b| {
        b.iter(|| black_box(inst.process(black_box(&one_k)).unwrap()))
    });
    for n in [64usize, 256] {
        let records: Vec<Input> = (0..n).map(|_| one_k.clone()).collect();
        let refs: Vec<&Input> = records.iter().collect();
        c.bench_function(&format!("a_passthrough_plugin_1KiB_batch_{n}"), |b| {
            b.iter(|| black_box(inst.process_batch(black_box(&refs)).unwrap()))
        });
    }
    c.bench_function("b_passthrough_native_1KiB", |b| {
        b.iter(|| black_box(native_passthrough(black_box(&one_k))))
    });

    let page = std::fs::read(root().join("tests/fixtures/big-recipe.html")).unwrap();
    let page = record(page);
    let parser = rt.load(&plugin("recipe-parser"), "recipe-parser").unwrap();
    let mut inst = Instance::new(parser, vec![], Limits::default()).unwrap();
    let mut g = c.benchmark_group("c");
    g.sample_size(30);
    g.bench_function("recipe_parser_100KB", |b| {
        b.iter(|| black_box(inst.process(black_box(&page)).unwrap()))
    });
    g.finish();

    let mut g = c.benchmark_group("d");
    g.sample_size(10);
    let path = plugin("recipe-parser");
    rt.load(&path, "warm").unwrap();
    g.bench_function("load_cached", |b| {
        b.iter(|| {
            let p = rt.load(&path, "cached").unwrap();
            assert!(p.from_cache());
            black_box(p)
        })
    });
    let uncached = Runtime::new(RuntimeOptions {
        cache_dir: None,
        ..RuntimeOptions::default()
    })
    .unwrap();
    g.bench_function("load_uncached", |b| {
        b.iter(|| black_box(uncached.load(&path, "uncached").unwrap()))
    });
    g.finish();
}

criterion_group!(plugin_call, benches);
criterion_main!(plugin_call);
