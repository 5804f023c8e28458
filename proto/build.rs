//! Compiles the Tyk coprocess schema with prost-build, parsed by protox (no system `protoc`).
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
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("prost-build must generate the coprocess types");
}
