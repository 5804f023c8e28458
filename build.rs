//! Gives the bridge's shared library a SONAME, as a C library has: `libcoprocess_bridge.so.<major>`.
//! Hosts linked with `-lcoprocess_bridge` then depend on `libcoprocess_bridge.so.0`, which
//! `make install` (and cargo-c) install as a link to the real `libcoprocess_bridge.so.0.x.y`.
//!
//! In the build tree cargo only writes `libcoprocess_bridge.so`, so hosts linked against
//! `target/<profile>/` (the README's instructions, `make demo`, the C tests) would not find the
//! versioned name at run time; this script adds `libcoprocess_bridge.so.<major>` there as a link to
//! the unversioned file. Hosts that dlopen the library by path do not care about either name.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    write_relocatable_driver_pc();
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !matches!(
        target_os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    let soname = format!("libcoprocess_bridge.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    if let Some(profile_dir) = profile_dir() {
        for dir in [profile_dir.join("deps"), profile_dir] {
            link_soname(&dir, &soname);
        }
    }
}

/// `target/<profile>` (or `target/<triple>/<profile>`): OUT_DIR is `<that>/build/<pkg>-<hash>/out`.
fn profile_dir() -> Option<PathBuf> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    Some(out.ancestors().nth(3)?.to_path_buf())
}

/// `dir/<soname>` -> `libcoprocess_bridge.so` (relative, so the tree can move). The link dangles
/// until the linker writes the library; an existing link is left alone.
fn link_soname(dir: &Path, soname: &str) {
    if !dir.is_dir() {
        return;
    }
    let link = dir.join(soname);
    if link.symlink_metadata().is_ok() {
        return;
    }
    #[cfg(unix)]
    if let Err(e) = std::os::unix::fs::symlink("libcoprocess_bridge.so", &link) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            println!("cargo:warning=could not create {}: {e}", link.display());
        }
    }
}

/// `$OUT_DIR/coprocess-driver.pc` for `cargo cinstall`, which copies it verbatim into
/// `$datadir/pkgconfig` (`[package.metadata.capi.install.data]`; a header-only package is
/// arch-independent): the Makefile's template, with the prefix found from where the file lies
/// (`${pcfiledir}/../..`) since cargo-c substitutes nothing in it.
fn write_relocatable_driver_pc() {
    const TEMPLATE: &str = "pkgconfig/coprocess-driver.pc.in";
    const HEADER: &str = "include/coprocess_driver.h";
    println!("cargo:rerun-if-changed={TEMPLATE}");
    println!("cargo:rerun-if-changed={HEADER}");
    let template = std::fs::read_to_string(TEMPLATE).expect("the .pc template");
    let header = std::fs::read_to_string(HEADER).expect("the driver header");
    let abi = header
        .lines()
        .find_map(|l| l.strip_prefix("#define COPROCESS_DRIVER_ABI_VERSION "))
        .and_then(|v| v.split_whitespace().next())
        .expect("COPROCESS_DRIVER_ABI_VERSION in the driver header");
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets the version");
    let pc = template
        .replace("@PREFIX@", "${pcfiledir}/../..")
        .replace("@EXEC_PREFIX@", "${prefix}")
        .replace("@LIBDIR@", "${exec_prefix}/lib")
        .replace("@INCLUDEDIR@", "${prefix}/include")
        .replace("@DRIVERDIR@", "${libdir}/coprocess")
        .replace("@VERSION@", &version)
        .replace("@DRIVER_ABI_VERSION@", abi);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("coprocess-driver.pc"), pc).expect("writing coprocess-driver.pc");
}
