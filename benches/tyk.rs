//! Tyk semantics on the API path (CoProcessLoadApi + Dispatch), with the SDK's example driver:
//! - a CustomKeyCheck answered from the ID extractor's cache vs one that calls the driver
//!   (same API, same typical ~3.3 KB Object, same bearer token);
//! - a Pre chain of 1 and of 3 hooks, against a Pre hook dispatched without an API (no chain logic).
//!
//! Run: `cargo bench --bench tyk` (builds the example driver first).

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;

use coprocess_bridge::ffi::host::{
    CoProcessLoadApi, CoProcessLoadDriver, CoProcessMessageFree, Dispatch,
};
use coprocess_bridge::message::CoProcessMessage;
use coprocess_bridge::proto::{fixtures, HookType, Message, Object, ReturnOverrides};
use criterion::{criterion_group, criterion_main, Criterion};

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

fn bench(c: &mut Criterion) {
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
        ("3_hooks", "pre3"),
    ] {
        let input = object(api, HookType::Pre);
        g.bench_function(label, |b| b.iter(|| black_box(run(black_box(&input)))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
