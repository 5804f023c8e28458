//! Dispatches per second with 1, 2, … N threads (N = the machine's cores, at least 2) for native
//! drivers: the C pass-through driver and the SDK's Rust example driver (adds a header with an
//! ObjectPatch), each called directly (dlopen) and through the bridge, typical Object. Every thread
//! dispatches the same Object through the same driver instance, as a gateway's workers do.
//!
//! Criterion reports the time per dispatch and, as throughput, dispatches per second across all
//! threads; a bridge that scales like the driver it calls keeps the bridge/direct ratio flat as the
//! thread count grows. Run: `cargo bench --bench scaling`.

mod support;

use std::ffi::CString;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use coprocess_bridge::proto::{fixtures, Message};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use support::{bridge_call, build_crate, build_pass_through, load, Direct};

/// Runs `call` `iters` times on each of `threads` threads at once; returns the wall time of the
/// slowest, from a common start.
fn concurrently(threads: usize, iters: u64, call: &(dyn Fn() + Sync)) -> Duration {
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let t = Instant::now();
                    for _ in 0..iters {
                        call();
                    }
                    t.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

fn scaling_benches(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let drivers = [
        ("pass_through", build_pass_through(), "{}"),
        (
            "rust_sdk",
            build_crate("coprocess-rust-driver-example", "coprocess_rust_driver"),
            r#"{"tokens": []}"#,
        ),
    ];
    let input = fixtures::typical_object().encode_to_vec();
    for (name, path, config) in &drivers {
        load(name, path, config);
        let direct = Direct::open(path);
        let driver = CString::new(*name).unwrap();
        let mut group = c.benchmark_group(format!("scaling/{name}"));
        for threads in 1..=cores {
            // One criterion iteration = one dispatch on every thread.
            group.throughput(Throughput::Elements(threads as u64));
            group.bench_function(BenchmarkId::new("direct", threads), |b| {
                b.iter_custom(|iters| {
                    concurrently(threads, iters, &|| direct.call(black_box(&input)))
                })
            });
            group.bench_function(BenchmarkId::new("bridge", threads), |b| {
                b.iter_custom(|iters| {
                    concurrently(threads, iters, &|| bridge_call(&driver, black_box(&input)))
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = scaling_benches
}
criterion_main!(benches);
