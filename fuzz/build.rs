//! Compiles the example C driver (examples/c_driver) into a shared library the targets load, so
//! Dispatch runs a real driver: it appends a header on Pre hooks and re-raises events.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    let source = root.join("examples/c_driver/c_driver.c");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("libfuzz_c_driver.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-std=c11", "-I"])
        .arg(root.join("include"))
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    assert!(status.success(), "{cc} failed on {}", source.display());
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rustc-env=FUZZ_C_DRIVER={}", out.display());
}
