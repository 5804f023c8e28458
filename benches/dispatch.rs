//! Per-call cost of Dispatch through the bridge vs calling the same driver's CoProcessDriverDispatch
//! directly (dlopen), for a small (~700 B), typical (~3.3 KB) and large (64 KiB raw_body) Object, with a
//! pass-through C driver and a Rust driver that decodes, sets a header and encodes with prost.
//! `bridge_no_metrics` is `bridge` with the per-hook metrics off, in the same run.
//! Also: the zero-allocation wire check the bridge runs on input and output vs a prost decode.
//!
//! Run: `cargo bench --bench dispatch` (builds the two drivers first).

mod support;

use std::ffi::CString;
use std::hint::black_box;

use coprocess_bridge::metrics;
use coprocess_bridge::proto::{fixtures, wire, Message, Object};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use support::{bridge_call, build_crate, build_pass_through, load, Direct};

fn objects() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("small", fixtures::small_object().encode_to_vec()),
        ("typical", fixtures::typical_object().encode_to_vec()),
        ("large", fixtures::large_object().encode_to_vec()),
    ]
}

fn dispatch_benches(c: &mut Criterion) {
    let drivers = [
        ("pass_through", build_pass_through()),
        (
            "prost",
            build_crate("coprocess-prost-driver", "coprocess_prost_driver"),
        ),
    ];
    for (name, path) in &drivers {
        load(name, path, "{}");
    }
    for (size, bytes) in objects() {
        let mut group = c.benchmark_group(format!("dispatch/{size}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        for (name, path) in &drivers {
            let direct = Direct::open(path);
            group.bench_function(BenchmarkId::new(*name, "direct"), |b| {
                b.iter(|| direct.call(black_box(&bytes)))
            });
            let driver = CString::new(*name).unwrap();
            group.bench_function(BenchmarkId::new(*name, "bridge"), |b| {
                b.iter(|| bridge_call(&driver, black_box(&bytes)))
            });
            // The same with per-hook metrics off (CoProcessInit's "hook_metrics": false): their cost.
            metrics::set_per_call_enabled(false);
            group.bench_function(BenchmarkId::new(*name, "bridge_no_metrics"), |b| {
                b.iter(|| bridge_call(&driver, black_box(&bytes)))
            });
            metrics::set_per_call_enabled(true);
        }
        group.finish();
    }
}

/// What checking an Object costs: the bridge's zero-allocation walk vs a full prost decode.
fn check_benches(c: &mut Criterion) {
    for (size, bytes) in objects() {
        let mut group = c.benchmark_group(format!("check/{size}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("wire_walk", |b| {
            b.iter(|| wire::validate_object(black_box(&bytes)).unwrap())
        });
        group.bench_function("prost_decode", |b| {
            b.iter(|| Object::decode(black_box(bytes.as_slice())).unwrap())
        });
        group.finish();
    }
}

/// What the per-hook metrics add to one call, alone: two clock reads and the thread's own cell.
fn metrics_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    group.bench_function("timed_call", |b| {
        b.iter(|| metrics::timed("", "Pre", "bench", || Ok(black_box(1))))
    });
    metrics::set_per_call_enabled(false);
    group.bench_function("timed_call_off", |b| {
        b.iter(|| metrics::timed("", "Pre", "bench", || Ok(black_box(1))))
    });
    metrics::set_per_call_enabled(true);
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = dispatch_benches, check_benches, metrics_benches
}
criterion_main!(benches);
