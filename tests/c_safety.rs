//! The C hosts, run the way a C gateway runs the bridge: tests/hosts/safety_host.c (one failure mode
//! per run: Dispatch(&m, &m), a driver returning the host's buffer, Reload() from a reload hook, handler
//! swaps with user_data freed at once, CoProcessLastError on an exiting thread) and
//! examples/c_host/stress_host.c (threads dispatching, events, handler swaps, reloads by rename), each
//! plainly, under AddressSanitizer + UBSan, and under valgrind; and the demo host under the sanitizers.
//!
//! Sanitizers: the host is built with `-fsanitize=address,undefined`; the bridge and the drivers are
//! not instrumented, but their malloc/free go through ASan's allocator (it interposes them for the whole
//! process), so a double free, a use after free or a free of a foreign pointer anywhere is reported.
//! Leak checking stays on. Skipped loudly when the compiler cannot build with the sanitizers.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;

const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
];

/// ASan settings that work with an uninstrumented bridge: report and fail on the first error, keep
/// leak detection; UBSan prints a stack and fails.
const ASAN_OPTIONS: &str = "halt_on_error=1:detect_leaks=1:abort_on_error=0:exitcode=86";
const UBSAN_OPTIONS: &str = "halt_on_error=1:print_stacktrace=1:exitcode=87";

fn safety_host(flags: &[&str]) -> PathBuf {
    build_c_host_with_flags(Path::new("tests/hosts/safety_host.c"), &[], flags)
}

fn stress_host(flags: &[&str]) -> PathBuf {
    build_c_host_with_flags(Path::new("examples/c_host/stress_host.c"), &[], flags)
}

fn hostile(mode: &str) -> PathBuf {
    build_c_driver(Path::new("tests/drivers/hostile_driver.c"), &[mode])
}

fn test_driver() -> PathBuf {
    build_c_driver(Path::new("tests/drivers/test_driver.c"), &["WITH_OPTIONAL"])
}

fn c_driver() -> PathBuf {
    build_c_driver(Path::new("examples/c_driver/c_driver.c"), &[])
}

/// Whether the C compiler can build and run a sanitized program here; reports a skip when not.
fn sanitizers_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        let src = write_c_source("sanitizer_probe.c", "int main(void) { return 0; }\n");
        let exe = c_artifacts_dir().join(format!("sanitizer_probe-{}", std::process::id()));
        let built = cc_command()
            .args(SANITIZE)
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .output()
            .is_ok_and(|o| o.status.success());
        let ran = built && Command::new(&exe).status().is_ok_and(|s| s.success());
        let _ = std::fs::remove_file(&exe);
        ran
    });
    if !ok {
        report_skip("AddressSanitizer/UBSan runtime (libasan, libubsan)");
    }
    ok
}

fn sanitized(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env("ASAN_OPTIONS", ASAN_OPTIONS)
        .env("UBSAN_OPTIONS", UBSAN_OPTIONS);
    cmd
}

fn valgrind(exe: &Path) -> Command {
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--quiet",
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
    ])
    .arg(exe);
    cmd
}

fn assert_clean(what: &str, out: &Output) {
    let full = describe(out);
    assert!(out.status.success(), "{what} failed:\n{full}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("[FAILED]"), "{what}:\n{full}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for marker in [
        "ERROR: AddressSanitizer",
        "runtime error:",
        "ERROR: LeakSanitizer",
    ] {
        assert!(!stderr.contains(marker), "{what}: {marker}\n{full}");
    }
}

/// Each safety_host mode with its argument (a driver, or the number of handler swaps: valgrind runs
/// one thread at a time, so it gets fewer).
fn modes(swaps: &str) -> Vec<(&'static str, Option<std::ffi::OsString>)> {
    vec![
        ("inplace", Some(test_driver().into())),
        ("return-input", Some(hostile("RETURN_INPUT").into())),
        ("reentrant-reload", Some(hostile("REENTRANT_RELOAD").into())),
        ("swap-free", Some(swaps.into())),
        ("exiting-thread", None),
    ]
}

fn run_mode(mut cmd: Command, mode: &str, arg: &Option<std::ffi::OsString>) -> Output {
    cmd.arg(mode);
    if let Some(a) = arg {
        cmd.arg(a);
    }
    run(&mut cmd)
}

#[test]
fn safety_host_modes_pass() {
    let host = safety_host(&[]);
    for (mode, arg) in modes("400") {
        let out = run_mode(Command::new(&host), mode, &arg);
        assert_clean(mode, &out);
    }
}

#[test]
fn dispatch_in_place_from_c_sees_the_host_s_object() {
    let out = run_mode(
        Command::new(safety_host(&[])),
        "inplace",
        &Some(test_driver().into()),
    );
    assert_clean("inplace", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[ok]     the driver answered the Object m held (not an empty one)"),
        "{stdout}"
    );
}

#[test]
fn a_reload_hook_calling_reload_does_not_deadlock() {
    let out = run_mode(
        Command::new(safety_host(&[])),
        "reentrant-reload",
        &Some(hostile("REENTRANT_RELOAD").into()),
    );
    assert_clean("reentrant-reload", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "log warning: Reload() called from a driver's reload hook: ignored (a reload is running)"
        ),
        "{stdout}"
    );
}

#[test]
fn safety_host_modes_are_clean_under_asan_and_ubsan() {
    if !sanitizers_available() {
        return;
    }
    let host = safety_host(SANITIZE);
    for (mode, arg) in modes("400") {
        let out = run_mode(sanitized(&host), mode, &arg);
        assert_clean(&format!("{mode} under ASan/UBSan"), &out);
    }
}

#[test]
fn safety_host_modes_are_clean_under_valgrind() {
    skip_unless_tool!("valgrind");
    let host = safety_host(&[]);
    for (mode, arg) in modes("20") {
        let out = run_mode(valgrind(&host), mode, &arg);
        assert_clean(&format!("{mode} under valgrind"), &out);
    }
}

fn stress_summary(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("calls="))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn stress_host_runs_clean() {
    let out = run(Command::new(stress_host(&[]))
        .arg(c_driver())
        .args(["1500", "4"]));
    assert_clean("stress_host", &out);
    assert!(
        stress_summary(&out).ends_with("late_calls=0 failures=0"),
        "{}",
        describe(&out)
    );
}

#[test]
fn stress_host_is_clean_under_asan_and_ubsan() {
    if !sanitizers_available() {
        return;
    }
    let out = run(sanitized(&stress_host(SANITIZE))
        .arg(c_driver())
        .args(["1500", "4"]));
    assert_clean("stress_host under ASan/UBSan", &out);
}

#[test]
fn stress_host_is_clean_under_valgrind() {
    skip_unless_tool!("valgrind");
    let out = run(valgrind(&stress_host(&[]))
        .arg(c_driver())
        .args(["1500", "2"]));
    assert_clean("stress_host under valgrind", &out);
}

#[test]
fn c_host_demo_is_clean_under_asan_and_ubsan() {
    if !sanitizers_available() {
        return;
    }
    let host = build_c_host_with_flags(Path::new("examples/c_host/c_host.c"), &[], SANITIZE);
    let out = run(sanitized(&host).arg(c_driver()));
    assert_clean("the demo under ASan/UBSan", &out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("All good"),
        "{}",
        describe(&out)
    );
}
