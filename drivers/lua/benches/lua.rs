//! Per-call cost of a Lua hook through the bridge: `DispatchWithDriver` into the Lua driver
//! (libcoprocess_lua.so), on the small (~700 B) and typical (~3.3 KB) Objects. Hooks: a no-op
//! `return request, session`, and one that adds a header with `tyk.req.set_header`. Beside them, in the
//! same run: the SDK's Rust example driver adding a header (the floor), and the Python driver's no-op
//! when python3 with `protobuf` is installed.
//!
//! Run: `cargo bench -p coprocess-lua-driver --bench lua` (builds the drivers in release first).

// The bridge's bench helpers (building drivers in release, loading them, one bridge call).
#[path = "../../../benches/support/mod.rs"]
mod support;

use std::ffi::CString;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;

use coprocess_bridge::proto::{fixtures, HookType, Message, Object};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use support::{bridge_call, build_crate, load, target_dir};

const MIDDLEWARE_LUA: &str = r#"
function Noop(request, session, spec)
  return request, session
end

function AddHeader(request, session, spec)
  tyk.req.set_header("X-Lua", "1")
  return request, session
end
"#;

const MIDDLEWARE_PY: &str = r#"
from tyk.decorators import *

@Hook
def Noop(request, session, spec):
    return request, session
"#;

fn object(base: Object, hook: &str) -> Vec<u8> {
    let mut o = base;
    o.hook_type = HookType::Pre as i32;
    o.hook_name = hook.into();
    o.spec.insert("bundle_hash".into(), "bench".into());
    o.encode_to_vec()
}

/// A bundle root with one bundle, `bench`: the manifest and one middleware file.
fn bundle_root(kind: &str, file: &str, source: &str) -> PathBuf {
    let root = target_dir().join(format!("bench-{kind}-bundles"));
    let bundle = root.join("bench");
    std::fs::create_dir_all(&bundle).unwrap();
    let manifest = serde_json::json!({
        "file_list": [file],
        "custom_middleware": {"driver": kind, "pre": [{"name": "Noop"}, {"name": "AddHeader"}]}
    });
    std::fs::write(bundle.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(bundle.join(file), source).unwrap();
    root
}

fn lua_benches(c: &mut Criterion) {
    let lua = build_crate("coprocess-lua-driver", "coprocess_lua");
    let root = bundle_root("lua", "middleware.lua", MIDDLEWARE_LUA);
    load(
        "lua",
        &lua,
        &serde_json::json!({ "bundle_root": root }).to_string(),
    );
    let rust = build_crate("coprocess-rust-driver-example", "coprocess_rust_driver");
    load("rust", &rust, r#"{"tokens": []}"#);
    let has_protobuf = Command::new("python3")
        .args(["-c", "import google.protobuf"])
        .status()
        .is_ok_and(|s| s.success());
    if has_protobuf {
        let python = build_crate("coprocess-python-driver", "coprocess_python");
        let root = bundle_root("python", "middleware.py", MIDDLEWARE_PY);
        load(
            "python",
            &python,
            &serde_json::json!({ "bundle_root": root }).to_string(),
        );
    } else {
        eprintln!(
            "\nSKIPPED: bench lua: the python column (python3 with protobuf not installed)\n"
        );
    }
    let (lua, rust, python) = (
        CString::new("lua").unwrap(),
        CString::new("rust").unwrap(),
        CString::new("python").unwrap(),
    );

    for (size, base) in [
        ("small", fixtures::small_object()),
        ("typical", fixtures::typical_object()),
    ] {
        let mut group = c.benchmark_group(format!("lua/{size}"));
        for hook in ["Noop", "AddHeader"] {
            let input = object(base.clone(), hook);
            bridge_call(&lua, &input);
            group.bench_function(BenchmarkId::new("lua", hook), |b| {
                b.iter(|| bridge_call(&lua, black_box(&input)))
            });
        }
        let input = object(base.clone(), "AddHeader");
        group.bench_function(BenchmarkId::new("rust_sdk", "AddHeader"), |b| {
            b.iter(|| bridge_call(&rust, black_box(&input)))
        });
        if has_protobuf {
            let input = object(base.clone(), "Noop");
            group.bench_function(BenchmarkId::new("python", "Noop"), |b| {
                b.iter(|| bridge_call(&python, black_box(&input)))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = lua_benches
}
criterion_main!(benches);
