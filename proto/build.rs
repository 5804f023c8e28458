//! Compiles the Tyk coprocess schema with prost-build, parsed by protox (no system `protoc`), and
//! writes the encoded `FileDescriptorSet` for `FILE_DESCRIPTOR_SET`. With the `json` feature it also
//! generates protobuf canonical JSON (serde) impls with pbjson-build.
fn main() {
    const FILES: &[&str] = &[
        "coprocess_common.proto",
        "coprocess_return_overrides.proto",
        "coprocess_mini_request_object.proto",
        "coprocess_response_object.proto",
        "coprocess_session_state.proto",
        "coprocess_object.proto",
    ];
    for f in FILES {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(FILES, ["."]).expect("the coprocess .proto files must parse");
    let descriptors = {
        use protox::prost::Message;
        fds.encode_to_vec()
    };
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("coprocess_descriptor_set.bin"), &descriptors)
        .expect("writing the descriptor set into OUT_DIR");
    #[cfg(feature = "json")]
    json(&descriptors);
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("prost-build must generate the coprocess types");
}

#[cfg(feature = "json")]
fn json(descriptors: &[u8]) {
    pbjson_build::Builder::new()
        .register_descriptors(descriptors)
        .expect("pbjson-build must read the descriptor set")
        .build(&[".coprocess"])
        .expect("pbjson-build must generate the coprocess serde impls");
}
