//! The wire walk (`wire::validate_object`, and `wire::check_object`, which also reads the routing
//! values) against a full prost decode of the same Objects, and the routing readers. Run: `cargo bench -p coprocess-proto --features fixtures --bench wire`.

use std::hint::black_box;

use coprocess_proto::{fixtures, wire, Message, Object};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn objects() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("small", fixtures::small_object().encode_to_vec()),
        ("typical", fixtures::typical_object().encode_to_vec()),
        ("large", fixtures::large_object().encode_to_vec()),
        ("full", fixtures::fully_populated_object().encode_to_vec()),
    ]
}

fn wire_benches(c: &mut Criterion) {
    for (size, bytes) in objects() {
        let mut group = c.benchmark_group(format!("wire/{size}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("validate_object", |b| {
            b.iter(|| wire::validate_object(black_box(&bytes)).unwrap())
        });
        group.bench_function("prost_decode", |b| {
            b.iter(|| Object::decode(black_box(bytes.as_slice())).unwrap())
        });
        group.bench_function("check_object", |b| {
            b.iter(|| wire::check_object(black_box(&bytes)).unwrap())
        });
        group.bench_function("spec_value", |b| {
            b.iter(|| wire::spec_value(black_box(&bytes), "APIID"))
        });
        group.finish();
    }
}

criterion_group!(benches, wire_benches);
criterion_main!(benches);
