//! Hot reload: hooks of unchanged drivers run, changed files are re-opened, calls in flight finish on the
//! old version, and dispatching threads never see an error.

mod abi;
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use abi::*;
use coprocess_bridge::ffi::host::Reload;
use coprocess_bridge::proto::{fixtures, Message};

fn build(tag: &str, extra: &[&str]) -> PathBuf {
    let tag = format!("VERSION_TAG=\"{tag}\"");
    let mut defines = vec![tag.as_str()];
    defines.extend_from_slice(extra);
    common::build_c_driver(
        &common::repo_root().join("tests/drivers/test_driver.c"),
        &defines,
    )
}

/// Replaces `dest` with `src` the way users are told to: copy beside it, then rename over it.
fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("tmp");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// Reload() reaches every loaded driver, so tests that count reload hooks must not overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn tag_of(out: &[u8]) -> String {
    set_header(out, "X-Test-Driver").expect("the test driver sets its tag")
}

#[test]
fn reload_calls_hooks_and_reopens_changed_files() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("driver.so");
    install(&build("r1", &[]), &file);
    load("reloadable", &file, None).unwrap();
    assert_eq!(
        tag_of(&dispatch_with("reloadable", &pre_object()).unwrap()),
        "r1"
    );

    Reload();
    assert_eq!(
        get("test_driver:reload:r1"),
        "1",
        "an unchanged driver's reload hook ran"
    );
    assert_eq!(
        tag_of(&dispatch_with("reloadable", &pre_object()).unwrap()),
        "r1"
    );

    install(&build("r2", &[]), &file);
    Reload();
    assert_eq!(
        tag_of(&dispatch_with("reloadable", &pre_object()).unwrap()),
        "r2"
    );
    assert_eq!(
        get("test_driver:reload:r2"),
        "",
        "a re-opened driver is initialised, not reloaded"
    );
    Reload();
    assert_eq!(get("test_driver:reload:r2"), "1");

    // A broken replacement is refused; the running version keeps serving.
    let broken = dir.path().join("broken");
    std::fs::write(&broken, b"not a library").unwrap();
    install(&broken, &file);
    Reload();
    assert_eq!(
        tag_of(&dispatch_with("reloadable", &pre_object()).unwrap()),
        "r2"
    );
    // Once a good file is back, the next reload picks it up.
    install(&build("r3", &[]), &file);
    Reload();
    assert_eq!(
        tag_of(&dispatch_with("reloadable", &pre_object()).unwrap()),
        "r3"
    );
}

#[test]
fn calls_in_flight_finish_on_the_old_version() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.so");
    install(&build("slow1", &["SLOW_MS=1500"]), &file);
    load("slow", &file, None).unwrap();
    let fast = build("slow2", &[]);
    let input = pre_object();
    let in_flight = std::thread::spawn(move || dispatch_with("slow", &input));
    std::thread::sleep(Duration::from_millis(300));
    install(&fast, &file);
    Reload();
    assert_eq!(
        tag_of(&dispatch_with("slow", &pre_object()).unwrap()),
        "slow2",
        "new calls use the new file"
    );
    let old = in_flight
        .join()
        .unwrap()
        .expect("the call in flight succeeds");
    assert_eq!(
        tag_of(&old),
        "slow1",
        "the call in flight finished on the old library"
    );
}

#[test]
fn dispatching_threads_see_no_error_while_reload_runs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("busy.so");
    let versions = [build("busy-a", &[]), build("busy-b", &[])];
    install(&versions[0], &file);
    load("busy", &file, None).unwrap();
    let input = fixtures::typical_object().encode_to_vec();
    let stop = AtomicBool::new(false);
    let calls = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let out = dispatch_with("busy", &input).expect("no error during reload");
                    assert!(tag_of(&out).starts_with("busy-"));
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for i in 0..40 {
            install(&versions[i % 2], &file);
            Reload();
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(tag_of(&dispatch_with("busy", &input).unwrap()), "busy-b");
}
