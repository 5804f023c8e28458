//! Per-call cost of a Python hook through the bridge: `DispatchWithDriver` into the Python driver
//! (drivers/python), which takes the GIL, parses the Object with the `protobuf` package, calls the
//! hook and serializes the result. Hooks: a no-op `return request, session`, and one that adds a
//! header; small (~700 B) and typical (~3.3 KB) Objects. The SDK's Rust example driver (adds a header
//! with an ObjectPatch) is the baseline.
//!
//! Run: `cargo bench --bench python` (builds both drivers in release first). Needs python3 with the
//! `protobuf` package; without it the bench says so and measures nothing.
//!
//! `PYTHON_DRIVER_BASELINE=/path/to/libcoprocess_python.so` also loads that build of the driver (e.g.
//! one of an earlier commit, copied aside) as `python_baseline` and measures it in the same run, for
//! before/after ratios on a busy machine.

mod support;

use std::ffi::CString;
use std::hint::black_box;
use std::process::Command;

use coprocess_bridge::proto::{fixtures, HookType, Message, Object};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use support::{bridge_call, build_crate, load, target_dir};

const MIDDLEWARE: &str = r#"
from tyk.decorators import *

@Hook
def Noop(request, session, spec):
    return request, session

@Hook
def AddHeader(request, session, spec):
    request.add_header("X-Python", "1")
    return request, session
"#;

fn object(base: Object, hook: &str, bundle: &str) -> Vec<u8> {
    let mut o = base;
    o.hook_type = HookType::Pre as i32;
    o.hook_name = hook.into();
    o.spec.insert("bundle_hash".into(), bundle.into());
    o.encode_to_vec()
}

/// A bundle root holding the bench bundle as `name` (each driver copy gets its own: bundle module
/// names are shared by every copy of the driver in the process).
fn bundle_root(name: &str) -> std::path::PathBuf {
    let root = target_dir().join("bench-python-bundles").join(name);
    let bundle = root.join(name);
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(
        bundle.join("manifest.json"),
        r#"{"file_list": ["middleware.py"], "custom_middleware": {"driver": "python", "pre": [{"name": "Noop"}, {"name": "AddHeader"}]}}"#,
    )
    .unwrap();
    std::fs::write(bundle.join("middleware.py"), MIDDLEWARE).unwrap();
    root
}

fn python_benches(c: &mut Criterion) {
    let has_protobuf = Command::new("python3")
        .args(["-c", "import google.protobuf"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_protobuf {
        eprintln!("\nSKIPPED: bench python: python3 with the protobuf package not installed\n");
        return;
    }
    let python = build_crate("coprocess-python-driver", "coprocess_python");
    load(
        "python",
        &python,
        &serde_json::json!({ "bundle_root": bundle_root("bench") }).to_string(),
    );
    let baseline = std::env::var_os("PYTHON_DRIVER_BASELINE").map(|path| {
        load(
            "python_baseline",
            std::path::Path::new(&path),
            &serde_json::json!({ "bundle_root": bundle_root("bench_baseline") }).to_string(),
        );
        CString::new("python_baseline").unwrap()
    });
    let rust = build_crate("coprocess-rust-driver-example", "coprocess_rust_driver");
    load("rust", &rust, r#"{"tokens": []}"#);
    let (python, rust) = (
        CString::new("python").unwrap(),
        CString::new("rust").unwrap(),
    );
    let mut drivers = vec![("python", &python, "bench")];
    if let Some(baseline) = &baseline {
        drivers.push(("python_baseline", baseline, "bench_baseline"));
    }

    for (size, base) in [
        ("small", fixtures::small_object()),
        ("typical", fixtures::typical_object()),
    ] {
        let mut group = c.benchmark_group(format!("python/{size}"));
        // Interleaved by hook, so that a busy machine skews every driver alike.
        for hook in ["Noop", "AddHeader"] {
            for &(label, driver, bundle) in &drivers {
                let input = object(base.clone(), hook, bundle);
                bridge_call(driver, &input);
                group.bench_function(BenchmarkId::new(label, hook), |b| {
                    b.iter(|| bridge_call(driver, black_box(&input)))
                });
            }
        }
        // A gateway calls from its own worker threads, not from the thread that started Python.
        for &(label, driver, bundle) in &drivers {
            let input = object(base.clone(), "Noop", bundle);
            group.bench_function(BenchmarkId::new(label, "Noop_worker_thread"), |b| {
                b.iter_custom(|iters| {
                    let input = &input;
                    std::thread::scope(|s| {
                        s.spawn(move || {
                            bridge_call(driver, input);
                            let start = std::time::Instant::now();
                            for _ in 0..iters {
                                bridge_call(driver, black_box(input));
                            }
                            start.elapsed()
                        })
                        .join()
                        .unwrap()
                    })
                })
            });
        }
        let input = object(base.clone(), "AddHeader", "bench");
        group.bench_function(BenchmarkId::new("rust_sdk", "AddHeader"), |b| {
            b.iter(|| bridge_call(&rust, black_box(&input)))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = python_benches
}
criterion_main!(benches);
