//! A header-adding hook two ways, through the SDK's real C entry points (what the bridge calls):
//! an `ObjectPatch` (no decode) vs a full decode-modify-encode. Run: `cargo bench -p coprocess-driver --bench patch`.

use std::ffi::c_void;
use std::hint::black_box;

use coprocess_driver::proto::fixtures;
use coprocess_driver::sys::CoProcessMessage;
use coprocess_driver::{Call, Driver, Host, Message, ObjectPatch, Reply, Result};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

struct PatchDriver;

impl Driver for PatchDriver {
    fn new(_: Host, _: &str) -> Result<Self> {
        Ok(PatchDriver)
    }
    fn dispatch(&self, _call: &Call) -> Result<Reply> {
        Ok(ObjectPatch::new().set_header("X-Bench", "1").into())
    }
}

struct DecodeDriver;

impl Driver for DecodeDriver {
    fn new(_: Host, _: &str) -> Result<Self> {
        Ok(DecodeDriver)
    }
    fn dispatch(&self, call: &Call) -> Result<Reply> {
        let mut o = call.decode()?;
        o.request
            .get_or_insert_with(Default::default)
            .set_headers
            .insert("X-Bench".into(), "1".into());
        Ok(o.into())
    }
}

fn run<D: Driver>(instance: *mut c_void, input: &CoProcessMessage) {
    let mut out = CoProcessMessage {
        p_data: std::ptr::null_mut(),
        length: 0,
    };
    // SAFETY: a live instance from `init`, a valid input and out-parameter.
    let rc = unsafe { coprocess_driver::__private::dispatch::<D>(instance, input, &mut out) };
    assert_eq!(rc, 0);
    // SAFETY: the output is malloc'd and ours.
    unsafe { libc::free(black_box(out.p_data)) };
}

fn instance<D: Driver>() -> *mut c_void {
    let mut instance = std::ptr::null_mut();
    // SAFETY: a NULL host (services unused here) and a valid out-pointer.
    let rc = unsafe {
        coprocess_driver::__private::init::<D>(std::ptr::null(), c"{}".as_ptr(), &mut instance)
    };
    assert_eq!(rc, 0);
    instance
}

fn benches(c: &mut Criterion) {
    for (name, object) in [
        ("small", fixtures::small_object()),
        ("typical", fixtures::typical_object()),
        ("large", fixtures::large_object()),
    ] {
        let bytes = object.encode_to_vec();
        let input = CoProcessMessage {
            p_data: bytes.as_ptr() as *mut c_void,
            length: bytes.len() as i32,
        };
        let mut group = c.benchmark_group(format!("set_header/{name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let patch = instance::<PatchDriver>();
        group.bench_function("patch", |b| {
            b.iter(|| run::<PatchDriver>(patch, black_box(&input)))
        });
        let decode = instance::<DecodeDriver>();
        group.bench_function("decode_modify_encode", |b| {
            b.iter(|| run::<DecodeDriver>(decode, black_box(&input)))
        });
        group.finish();
    }
}

criterion_group! {
    name = patch;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(patch);
