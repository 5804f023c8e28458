//! Per-call cost of Dispatch through the bridge vs calling the same driver's CoProcessDriverDispatch
//! directly (dlopen), for a small (~700 B), typical (~3.3 KB) and large (64 KiB raw_body) Object, with a
//! pass-through C driver and a Rust driver that decodes, sets a header and encodes with prost.
//! Also: the zero-allocation wire check the bridge runs on input and output vs a prost decode.
//!
//! Run: `cargo bench --bench dispatch` (builds the two drivers first).

use std::ffi::{c_char, c_int, c_void, CString};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use coprocess_bridge::driver::bindings::CoProcessHostApi;
use coprocess_bridge::ffi::driver_host::HOST_API;
use coprocess_bridge::ffi::host::{CoProcessLoadDriver, CoProcessMessageFree, DispatchWithDriver};
use coprocess_bridge::message::CoProcessMessage;
use coprocess_bridge::proto::{fixtures, wire, Message, Object};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

type InitFn =
    unsafe extern "C" fn(*const CoProcessHostApi, *const c_char, *mut *mut c_void) -> c_int;
type DispatchFn =
    unsafe extern "C" fn(*mut c_void, *const CoProcessMessage, *mut CoProcessMessage) -> c_int;

fn target_dir() -> PathBuf {
    // target/<profile>/deps/dispatch-<hash> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn build_pass_through() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = target_dir().join("bench-pass_through.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
        ])
        .arg(root.join("include"))
        .arg(root.join("benches/drivers/pass_through.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run cc");
    assert!(status.success(), "compiling the pass-through driver failed");
    out
}

fn build_prost_driver() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "coprocess-prost-driver"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the prost driver failed");
    target_dir().join("libcoprocess_prost_driver.so")
}

/// The same driver file opened directly, as a baseline: no bridge in between.
struct Direct {
    _library: libloading::Library,
    dispatch: DispatchFn,
    instance: *mut c_void,
}

impl Direct {
    fn open(path: &Path) -> Direct {
        // SAFETY: benchmark-only loading of drivers built just above.
        unsafe {
            let library = libloading::Library::new(path).unwrap();
            let init: InitFn = *library.get(b"CoProcessDriverInit\0").unwrap();
            let dispatch: DispatchFn = *library.get(b"CoProcessDriverDispatch\0").unwrap();
            let mut instance = std::ptr::null_mut();
            assert_eq!(init(&HOST_API, c"{}".as_ptr(), &mut instance), 0);
            Direct {
                _library: library,
                dispatch,
                instance,
            }
        }
    }

    fn call(&self, input: &CoProcessMessage) {
        let mut out = CoProcessMessage::empty();
        // SAFETY: a loaded driver, valid messages; the output is malloc'd and freed right here.
        let rc = unsafe { (self.dispatch)(self.instance, input, &mut out) };
        assert_eq!(rc, 0);
        CoProcessMessageFree(black_box(&mut out));
    }
}

fn bridge_call(driver: &CString, input: &CoProcessMessage) {
    let mut out = CoProcessMessage::empty();
    let rc = DispatchWithDriver(driver.as_ptr(), input, &mut out);
    assert_eq!(rc, 0);
    CoProcessMessageFree(black_box(&mut out));
}

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
        ("prost", build_prost_driver()),
    ];
    for (name, path) in &drivers {
        let n = CString::new(*name).unwrap();
        let p = CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(
            CoProcessLoadDriver(n.as_ptr(), p.as_ptr(), std::ptr::null()),
            0
        );
    }
    for (size, bytes) in objects() {
        let mut group = c.benchmark_group(format!("dispatch/{size}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let input = CoProcessMessage {
            p_data: bytes.as_ptr() as *mut c_void,
            length: bytes.len() as c_int,
        };
        for (name, path) in &drivers {
            let direct = Direct::open(path);
            group.bench_function(BenchmarkId::new(*name, "direct"), |b| {
                b.iter(|| direct.call(black_box(&input)))
            });
            let driver = CString::new(*name).unwrap();
            group.bench_function(BenchmarkId::new(*name, "bridge"), |b| {
                b.iter(|| bridge_call(&driver, black_box(&input)))
            });
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = dispatch_benches, check_benches
}
criterion_main!(benches);
