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
