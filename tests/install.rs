//! `make install` installs the bridge as a C library is installed, and a host and a driver build
//! against the installed copy with nothing but `pkg-config --cflags --libs`.
//!
//! The install goes to a temporary DESTDIR (PREFIX=/usr/local inside it) with `make install-only`
//! (`make install` without its `cargo build`) from the files this test run built — the bridge, and
//! the example Rust driver as the one installed driver — so the test compiles nothing twice. That
//! `make install` runs the cargo build first is checked with `make -n`. pkg-config reads the staged
//! files through PKG_CONFIG_PATH and
//! PKG_CONFIG_SYSROOT_DIR, which is how packagers check a staged install. The example C host and C
//! driver are copied out of the repository first, so no header of the source tree can be found.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SOVERSION: &str = env!("CARGO_PKG_VERSION_MAJOR");

struct Staged {
    _dir: tempfile::TempDir,
    destdir: PathBuf,
    /// `$DESTDIR/usr/local`
    prefix: PathBuf,
}

impl Staged {
    fn libdir(&self) -> PathBuf {
        self.prefix.join("lib")
    }

    /// `pkg-config ARGS` against the staged .pc files only.
    fn pkg_config(&self, args: &[&str]) -> String {
        let out = run(Command::new("pkg-config")
            .args(args)
            .env("PKG_CONFIG_PATH", self.libdir().join("pkgconfig"))
            .env("PKG_CONFIG_LIBDIR", self.libdir().join("pkgconfig"))
            .env("PKG_CONFIG_SYSROOT_DIR", &self.destdir));
        assert!(
            out.status.success(),
            "pkg-config {args:?}: {}",
            describe(&out)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

const DRIVERS: &str = "DRIVERS=coprocess-rust-driver-example:coprocess_rust_driver";

/// `make install-only` into a fresh DESTDIR.
fn make_install() -> Staged {
    let driver = build_workspace_cdylib("coprocess-rust-driver-example", "coprocess_rust_driver");
    let dir = tempfile::tempdir().unwrap();
    let destdir = dir.path().join("stage");
    let out = run(Command::new("make")
        .arg("install-only")
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg("PREFIX=/usr/local")
        .arg(format!(
            "BRIDGE_BUILD_DIR={}",
            bridge_cdylib().parent().unwrap().display()
        ))
        .arg(format!(
            "DRIVER_BUILD_DIR={}",
            driver.parent().unwrap().display()
        ))
        .arg(DRIVERS)
        .current_dir(repo_root()));
    assert!(out.status.success(), "make install: {}", describe(&out));
    let prefix = destdir.join("usr/local");
    Staged {
        _dir: dir,
        destdir,
        prefix,
    }
}

fn link_target(path: &Path) -> String {
    fs::read_link(path)
        .unwrap_or_else(|e| panic!("{} is not a symbolic link: {e}", path.display()))
        .to_string_lossy()
        .into_owned()
}

/// Copies a repository file into `dir` and returns the copy's path.
fn copy_out(rel: &str, dir: &Path) -> PathBuf {
    let to = dir.join(Path::new(rel).file_name().unwrap());
    fs::copy(repo_root().join(rel), &to).unwrap_or_else(|e| panic!("copying {rel}: {e}"));
    to
}

/// Runs `cc` with the given arguments (split words of pkg-config output included).
fn compile(args: &[String]) {
    let out = run(cc_command().args(args));
    assert!(out.status.success(), "cc {args:?}: {}", describe(&out));
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// The library's files and links, and headers identical to the repository's.
fn check_library_files(lib: &Path, include: &Path) {
    let real = lib.join(format!("libcoprocess_bridge.so.{VERSION}"));
    assert!(real.is_file(), "{} missing", real.display());
    assert_eq!(
        link_target(&lib.join(format!("libcoprocess_bridge.so.{SOVERSION}"))),
        format!("libcoprocess_bridge.so.{VERSION}")
    );
    // The linker's name: make links it to the SONAME's link, cargo-c to the file; both resolve there.
    let dev_link = lib.join("libcoprocess_bridge.so");
    link_target(&dev_link);
    assert_eq!(
        fs::canonicalize(&dev_link).unwrap(),
        fs::canonicalize(&real).unwrap()
    );
    assert!(
        lib.join("libcoprocess_bridge.a").is_file(),
        "no static library"
    );
    for (installed, source) in [
        ("api.h", "api.h"),
        ("coprocess_driver.h", "include/coprocess_driver.h"),
    ] {
        assert_eq!(
            fs::read(include.join("coprocess").join(installed))
                .unwrap_or_else(|e| panic!("include/coprocess/{installed}: {e}")),
            fs::read(repo_root().join(source)).unwrap(),
            "include/coprocess/{installed} differs from {source}"
        );
    }

    // The SONAME the linker records in hosts.
    if tool_available("readelf") {
        let out = run(Command::new("readelf").arg("-d").arg(&real));
        let dynamic = String::from_utf8_lossy(&out.stdout);
        assert!(
            dynamic.contains(&format!("[libcoprocess_bridge.so.{SOVERSION}]")),
            "no SONAME libcoprocess_bridge.so.{SOVERSION}:\n{dynamic}"
        );
    } else {
        report_skip("readelf");
    }
}

/// The example driver and host, built from copies with nothing but the given pkg-config flags, run
/// against the installed library (found by its SONAME on LD_LIBRARY_PATH).
fn build_and_run_the_examples(host_flags: &str, driver_flags: &str, lib: &Path) {
    assert!(
        host_flags.contains("-lcoprocess_bridge"),
        "host flags: {host_flags}"
    );
    let work = tempfile::tempdir().unwrap();
    let driver_src = copy_out("examples/c_driver/c_driver.c", work.path());
    let host_src = copy_out("examples/c_host/c_host.c", work.path());
    let driver = work.path().join("c_driver.so");
    let host = work.path().join("c_host");
    let strict = ["-Wall", "-Wextra", "-Werror", "-std=c11"].map(String::from);
    let mut args: Vec<String> = ["-shared", "-fPIC"].map(String::from).to_vec();
    args.extend(strict.clone());
    args.extend(words(driver_flags));
    args.extend([
        "-o".into(),
        driver.display().to_string(),
        driver_src.display().to_string(),
    ]);
    compile(&args);
    let mut args = strict.to_vec();
    args.push("-pthread".into());
    args.extend([
        "-o".into(),
        host.display().to_string(),
        host_src.display().to_string(),
    ]);
    args.extend(words(host_flags));
    compile(&args);

    let out = run(Command::new(&host).arg(&driver).env("LD_LIBRARY_PATH", lib));
    let full = describe(&out);
    assert!(out.status.success(), "the installed demo failed:\n{full}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("All good"),
        "{full}"
    );
}

#[test]
fn make_install_gives_a_c_library_that_pkg_config_finds() {
    skip_unless_tool!("make");
    skip_unless_tool!("pkg-config");
    let staged = make_install();
    let lib = staged.libdir();
    check_library_files(&lib, &staged.prefix.join("include"));
    for f in [
        lib.join("pkgconfig/coprocess-bridge.pc"),
        lib.join("pkgconfig/coprocess-driver.pc"),
        lib.join("coprocess/libcoprocess_rust_driver.so"),
    ] {
        assert!(f.is_file(), "{} was not installed", f.display());
    }

    // What pkg-config says.
    assert_eq!(
        staged.pkg_config(&["--modversion", "coprocess-bridge"]),
        VERSION
    );
    // pkgconf prefixes path variables with the sysroot too; pkg-config does not.
    let driverdir = staged.pkg_config(&["--variable=driverdir", "coprocess-bridge"]);
    assert!(
        driverdir.ends_with("/usr/local/lib/coprocess"),
        "driverdir: {driverdir}"
    );
    assert_eq!(
        staged.pkg_config(&["--variable=abi_version", "coprocess-driver"]),
        "1"
    );
    build_and_run_the_examples(
        &staged.pkg_config(&["--cflags", "--libs", "coprocess-bridge"]),
        &staged.pkg_config(&["--cflags", "--libs", "coprocess-driver"]),
        &lib,
    );

    // `make uninstall` takes it all away again.
    let out = run(Command::new("make")
        .arg("uninstall")
        .arg(format!("DESTDIR={}", staged.destdir.display()))
        .arg("PREFIX=/usr/local")
        .arg(DRIVERS)
        .current_dir(repo_root()));
    assert!(out.status.success(), "make uninstall: {}", describe(&out));
    let left: Vec<_> = walk(&staged.destdir)
        .into_iter()
        .filter(|p| !p.is_dir())
        .collect();
    assert!(left.is_empty(), "left after uninstall: {left:?}");
}

#[test]
fn make_install_builds_the_bridge_and_the_drivers_first() {
    skip_unless_tool!("make");
    let out = run(Command::new("make")
        .args(["-n", "install", "PREFIX=/opt/cp"])
        .current_dir(repo_root()));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    for needle in [
        "cargo build --profile release -p coprocess-bridge -p coprocess-grpc-driver \
         -p coprocess-python-driver",
        "install-only",
    ] {
        assert!(
            plan.contains(needle),
            "`make -n install` lacks {needle:?}:\n{plan}"
        );
    }
}

/// `cargo cinstall` (cargo-c, `[package.metadata.capi]` in Cargo.toml) gives the same C library:
/// the versioned library and its links, the static library, the headers under include/coprocess,
/// coprocess-bridge.pc, and coprocess-driver.pc (in share/pkgconfig, relocatable); the drivers and
/// coprocess-bridge.pc's `driverdir` variable are `make install`'s. A debug build into a prefix in
/// a temporary directory; skips loudly without cargo-c.
#[test]
fn cargo_cinstall_gives_the_same_c_library() {
    skip_unless_tool!("cargo-cinstall");
    skip_unless_tool!("pkg-config");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("usr");
    let lib = prefix.join("lib");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run(Command::new(cargo)
        .args(["cinstall", "--debug", "-p", "coprocess-bridge", "--prefix"])
        .arg(&prefix)
        .arg("--libdir")
        .arg(&lib)
        // The test build's target directory: cargo-c builds in <it>/<triple>/debug.
        .arg("--target-dir")
        .arg(target_dir().parent().unwrap())
        .current_dir(repo_root()));
    assert!(out.status.success(), "cargo cinstall: {}", describe(&out));
    check_library_files(&lib, &prefix.join("include"));

    let pkg_config = |args: &[&str]| {
        let search = format!(
            "{}:{}",
            lib.join("pkgconfig").display(),
            prefix.join("share/pkgconfig").display()
        );
        let out = run(Command::new("pkg-config")
            .args(args)
            .env("PKG_CONFIG_PATH", &search)
            .env("PKG_CONFIG_LIBDIR", &search));
        assert!(
            out.status.success(),
            "pkg-config {args:?}: {}",
            describe(&out)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(pkg_config(&["--modversion", "coprocess-bridge"]), VERSION);
    assert_eq!(pkg_config(&["--modversion", "coprocess-driver"]), VERSION);
    assert_eq!(
        pkg_config(&["--variable=abi_version", "coprocess-driver"]),
        "1"
    );
    let driverdir = PathBuf::from(pkg_config(&["--variable=driverdir", "coprocess-driver"]));
    assert_eq!(
        fs::canonicalize(driverdir.parent().unwrap()).unwrap(),
        fs::canonicalize(&lib).unwrap(),
        "driverdir {} is not lib/coprocess",
        driverdir.display()
    );
    build_and_run_the_examples(
        &pkg_config(&["--cflags", "--libs", "coprocess-bridge"]),
        &pkg_config(&["--cflags", "--libs", "coprocess-driver"]),
        &lib,
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn hosts_linked_in_the_build_tree_find_the_library_by_its_soname() {
    // build.rs links libcoprocess_bridge.so.<major> next to the library cargo writes, so a host
    // linked with -L target/<profile> -lcoprocess_bridge (whose NEEDED entry is the SONAME) runs.
    let lib = bridge_cdylib();
    let versioned = lib.with_file_name(format!("libcoprocess_bridge.so.{SOVERSION}"));
    assert!(
        versioned.exists(),
        "{} is missing (build.rs creates it)",
        versioned.display()
    );
    assert_eq!(
        fs::canonicalize(&versioned).unwrap(),
        fs::canonicalize(&lib).unwrap()
    );
}
