//! Build steps of the Python driver:
//! - compile proto/ into a FileDescriptorSet with protox (no system `protoc`); the embedded runtime
//!   turns it into `protobuf` message classes at start-up, so they always match the bridge's schema;
//! - put libpython's directory on the driver's rpath: pyo3 links `-lpython3.x` but a libpython
//!   outside the system directories (pyenv, a venv's base) would not be found at load time.
use std::path::PathBuf;

fn main() {
    const FILES: &[&str] = &[
        "coprocess_common.proto",
        "coprocess_return_overrides.proto",
        "coprocess_mini_request_object.proto",
        "coprocess_response_object.proto",
        "coprocess_session_state.proto",
        "coprocess_object.proto",
    ];
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    for f in FILES {
        println!("cargo:rerun-if-changed={}", proto_dir.join(f).display());
    }
    let mut compiler = protox::Compiler::new([&proto_dir]).expect("the proto directory exists");
    compiler.include_imports(true);
    compiler
        .open_files(FILES)
        .expect("the coprocess .proto files must parse");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out.join("coprocess.fds"),
        compiler.encode_file_descriptor_set(),
    )
    .expect("writing the descriptor set");

    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
