//! Generates the Dispatcher client and server from `proto/coprocess_object.proto`, parsed by protox (no
//! system `protoc`). No message types are generated: they come from `coprocess-proto` (extern paths), and
//! `Object` maps to `RawObject`, serialized bytes that the codec passes through without decoding.
fn main() {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../proto");
    println!("cargo:rerun-if-changed={proto_dir}");
    let fds = protox::compile(["coprocess_object.proto"], [proto_dir])
        .expect("the coprocess .proto files must parse");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".coprocess", "::coprocess_proto")
        .extern_path(".coprocess.Object", "crate::RawObject")
        .codec_path("crate::codec::WireCodec")
        .compile_fds(fds)
        .expect("tonic-prost-build must generate the Dispatcher service");
}
