//! Build step of the Python driver: put libpython's directory on the driver's rpath. pyo3 links
//! `-lpython3.x`, but a libpython outside the system directories (pyenv, a venv's base) would not be
//! found at load time. (The schema comes from `coprocess_proto::FILE_DESCRIPTOR_SET`, built once by
//! the proto crate; the embedded runtime turns it into `protobuf` message classes at start-up.)

fn main() {
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
