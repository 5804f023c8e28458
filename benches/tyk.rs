//! Tyk semantics on the API path (CoProcessLoadApi + Dispatch), with the SDK's example driver:
//! - a CustomKeyCheck answered from the ID extractor's cache vs one that calls the driver
//!   (same API, same typical ~3.3 KB Object, same bearer token);
//! - a Pre chain of 1, 2 and 3 hooks, against a Pre hook dispatched without an API (no chain logic).
//!   A chain of one hook has nothing to apply between hooks; from two on, the request is read and
//!   each answer applied, so 3 − 2 hooks is the marginal cost of a hook and (3 − 1) / 2 also carries
//!   that setup.
//!
//! Run: `cargo bench --bench tyk` (builds the example driver first). With `TYK_BENCH_THREAD_CPU=1`
//! the benches measure the calling thread's CPU time instead of wall time (the driver runs on that
//! thread): time the thread spends descheduled on a loaded machine is left out, so side-by-side
//! ratios stay meaningful there (cache and core sharing still slow it).

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;

use coprocess_bridge::ffi::host::{
    CoProcessLoadApi, CoProcessLoadDriver, CoProcessMessageFree, Dispatch,
};
use coprocess_bridge::message::CoProcessMessage;
use coprocess_bridge::proto::{fixtures, HookType, Message, Object, ReturnOverrides};
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, Criterion, Throughput};

fn example_driver() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "coprocess-rust-driver-example"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the example driver failed");
    // target/release/deps/tyk-<hash> → target/release
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libcoprocess_rust_driver.so")
}

fn setup() {
    let lib = example_driver();
    let name = c"native";
    let path = std::ffi::CString::new(lib.to_str().unwrap()).unwrap();
    let config = cr#"{"tokens": ["tok"], "cache_seconds": 3600}"#;
    assert_eq!(
        CoProcessLoadDriver(name.as_ptr(), path.as_ptr(), config.as_ptr()),
        0
    );
    let apis = [
        // CustomKeyCheck without an ID extractor: every call reaches the driver.
        r#"{"api_id": "nocache", "org_id": "o", "enable_coprocess_auth": true,
            "custom_middleware": {"driver": "native", "auth_check": {"name": "Auth"}}}"#,
        // The same with the extractor: after the first call, sessions come from the cache.
        r#"{"api_id": "cache", "org_id": "o", "enable_coprocess_auth": true,
            "custom_middleware": {"driver": "native", "auth_check": {"name": "Auth"},
              "id_extractor": {"extract_from": "header", "extract_with": "value",
                               "extractor_config": {"header_name": "Authorization"}}}}"#,
        r#"{"api_id": "pre1", "org_id": "o",
            "custom_middleware": {"driver": "native", "pre": [{"name": "A"}]}}"#,
        r#"{"api_id": "pre2", "org_id": "o",
            "custom_middleware": {"driver": "native", "pre": [{"name": "A"}, {"name": "B"}]}}"#,
        r#"{"api_id": "pre3", "org_id": "o",
            "custom_middleware": {"driver": "native", "pre": [{"name": "A"}, {"name": "B"}, {"name": "C"}]}}"#,
    ];
    for api in apis {
        let text = std::ffi::CString::new(api).unwrap();
        assert_eq!(CoProcessLoadApi(text.as_ptr()), 0);
    }
}

/// The typical fixture as Tyk's gateway sends it to an API's hooks.
fn object(api_id: &str, hook: HookType) -> Vec<u8> {
    let mut o: Object = fixtures::typical_object();
    o.hook_type = hook as i32;
    o.hook_name.clear();
    o.session = None;
    let request = o.request.get_or_insert_with(Default::default);
    request
        .headers
        .insert("Authorization".into(), "Bearer tok".into());
    request.return_overrides = Some(ReturnOverrides {
        response_code: -1,
        ..Default::default()
    });
    o.spec.insert("APIID".into(), api_id.into());
    o.encode_to_vec()
}

fn run(input: &[u8]) -> usize {
    let msg = CoProcessMessage {
        p_data: input.as_ptr() as *mut _,
        length: input.len() as i32,
    };
    let mut out = CoProcessMessage::empty();
    assert_eq!(Dispatch(&msg, &mut out), 0);
    let n = out.length as usize;
    CoProcessMessageFree(&mut out);
    n
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    setup();
    let mut g = c.benchmark_group("custom_key_check");
    for (label, api) in [("driver_call", "nocache"), ("cache_hit", "cache")] {
        let input = object(api, HookType::CustomKeyCheck);
        run(&input); // fills the cache for "cache"
        g.bench_function(label, |b| b.iter(|| black_box(run(black_box(&input)))));
    }
    g.finish();

    let mut g = c.benchmark_group("pre_chain");
    for (label, api) in [
        ("no_api", "unknown"),
        ("1_hook", "pre1"),
        ("2_hooks", "pre2"),
        ("3_hooks", "pre3"),
    ] {
        let input = object(api, HookType::Pre);
        g.bench_function(label, |b| b.iter(|| black_box(run(black_box(&input)))));
    }
    g.finish();
}

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpu;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, started: Duration) -> Duration {
        thread_cpu_now().saturating_sub(started)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuNanos
    }
}

/// CPU time in ns, printed as is (the benches here measure no throughput).
struct CpuNanos;

impl ValueFormatter for CpuNanos {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "ns (thread CPU)"
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        _: &Throughput,
        _values: &mut [f64],
    ) -> &'static str {
        "ns (thread CPU)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall_time, bench::<WallTime>);
criterion_group! {
    name = thread_cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench::<ThreadCpu>
}

fn main() {
    if std::env::var_os("TYK_BENCH_THREAD_CPU").is_some() {
        thread_cpu();
    } else {
        wall_time();
    }
    Criterion::default().configure_from_args().final_summary();
}
