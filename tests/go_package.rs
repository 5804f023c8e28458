//! The Go package (go/coprocess): `go vet` and `go test` (with the race detector) against the bridge
//! this build produced, with the example C driver and the example Rust driver. Skips loudly without
//! `go` or `pkg-config`.
//!
//! cgo finds the bridge through `#cgo pkg-config: coprocess-bridge`; here a coprocess-bridge.pc for
//! the build tree (header in the repository root, library in target/<profile>/deps) stands in for
//! the installed one. No Go module is downloaded (GOPROXY=off: the package needs none); Go's caches
//! live under the target directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A directory with a coprocess-bridge.pc describing the build tree.
fn build_tree_pkg_config() -> PathBuf {
    let dir = c_artifacts_dir().join("go-pkgconfig");
    std::fs::create_dir_all(&dir).unwrap();
    let lib_dir = bridge_cdylib().parent().unwrap().to_path_buf();
    let pc = format!(
        "Name: coprocess-bridge\nDescription: coprocess-bridge (build tree)\nVersion: {}\n\
         Cflags: -I{}\nLibs: -L{} -lcoprocess_bridge -Wl,-rpath,{}\n",
        env!("CARGO_PKG_VERSION"),
        repo_root().display(),
        lib_dir.display(),
        lib_dir.display()
    );
    std::fs::write(dir.join("coprocess-bridge.pc"), pc).unwrap();
    dir
}

fn go(args: &[&str], pkg_config: &Path) -> Command {
    let caches = target_dir().join("go");
    let mut cmd = Command::new("go");
    cmd.args(args)
        .current_dir(repo_root().join("go/coprocess"))
        .env("PKG_CONFIG_PATH", pkg_config)
        .env("CGO_ENABLED", "1")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .env("GOCACHE", caches.join("cache"))
        .env("GOPATH", caches.join("path"))
        .env("COPROCESS_C_DRIVER", c_driver())
        .env(
            "COPROCESS_RUST_DRIVER",
            build_workspace_cdylib("coprocess-rust-driver-example", "coprocess_rust_driver"),
        );
    cmd
}

fn c_driver() -> PathBuf {
    build_c_driver(Path::new("examples/c_driver/c_driver.c"), &[])
}

fn run_go(args: &[&str]) -> String {
    let pc = build_tree_pkg_config();
    let out = run(&mut go(args, &pc));
    let full = describe(&out);
    assert!(out.status.success(), "go {args:?} failed:\n{full}");
    full
}

#[test]
fn go_package_vets_and_passes_its_tests() {
    skip_unless_tool!("go");
    skip_unless_tool!("pkg-config");
    run_go(&["vet", "./..."]);
    let out = run_go(&["test", "-race", "-count=1", "-v", "./..."]);
    for test in [
        "TestDispatchWithTheCDriver",
        "TestDispatchWithTheRustDriver",
        "TestVersionNamesTheDriverABI",
        "TestFailuresAreTypedErrors",
        "TestAppendDispatchAppendsToTheCallersBuffer",
        "TestAnAnswerLargerThanTheRoomIsCopiedWhole",
        "TestDriverNamesOfAnyLength",
        "TestEventsReachTheGoHandler",
        "TestConcurrentGoroutines",
        "TestShutdownAndStartAgain",
    ] {
        assert!(
            out.contains(&format!("--- PASS: {test}")),
            "{test} did not pass:\n{out}"
        );
    }
    assert!(!out.contains("SKIPPED"), "the Go tests skipped:\n{out}");
}

#[test]
fn go_benchmarks_run() {
    skip_unless_tool!("go");
    skip_unless_tool!("pkg-config");
    // A smoke run only (numbers come from `go test -bench` by hand, see the README).
    let out = run_go(&[
        "test",
        "-count=1",
        "-run",
        "^$",
        "-bench",
        "Dispatch",
        "-benchtime",
        "200x",
    ]);
    for bench in [
        "BenchmarkDispatchFromGo",
        "BenchmarkAppendDispatchFromGo",
        "BenchmarkDispatchFromC",
        "BenchmarkDispatchFromGoParallel",
    ] {
        assert!(out.contains(bench), "{bench} did not run:\n{out}");
    }
}
