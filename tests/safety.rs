//! Failure modes that used to take the host down (issue 10), each checked by the message the host
//! sees: a driver with an unresolved symbol, a driver handing back the host's buffer, `Dispatch(&m, &m)`,
//! reload copies and their unloading, and `CoProcessLastError` on an exiting thread.
//! Its own process: it sets the process-wide log handler.

mod abi;
mod common;

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::*;
use coprocess_bridge::message::CoProcessMessage;
use coprocess_bridge::proto::{Message, Object};

fn hostile(mode: &str) -> PathBuf {
    common::build_c_driver(
        &common::repo_root().join("tests/drivers/hostile_driver.c"),
        &[mode],
    )
}

fn test_driver(tag: &str) -> PathBuf {
    let tag = format!("VERSION_TAG=\"{tag}\"");
    common::c_test_driver(&[tag.as_str(), "WITH_OPTIONAL"])
}

/// Replaces `dest` with `src` the way users are told to: copy beside it, then rename over it.
fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("tmp");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "C" fn collect(message: *const c_char, _level: *const c_char, _: *mut c_void) {
    // SAFETY: the bridge passes a valid C string.
    let m = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    LOGS.lock().unwrap().push(m);
}

/// Log lines containing `needle`, collected since the test binary started.
fn logged(needle: &str) -> Vec<String> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| CoProcessSetLogHandler(Some(collect), std::ptr::null_mut()));
    LOGS.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

fn tag_of(out: &[u8]) -> String {
    set_header(out, "X-Test-Driver").expect("the test driver sets its tag")
}

// --- 1. Unresolved symbols ----------------------------------------------------------------------

#[test]
fn a_driver_with_an_unresolved_symbol_is_refused_at_load() {
    let path = hostile("UNRESOLVED");
    let (code, msg) = load("unresolved", &path, None).expect_err("must be refused");
    assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
    assert_eq!(
        msg,
        format!(
            "cannot load driver library {}: undefined symbol: coprocess_test_function_defined_nowhere",
            path.display()
        )
    );
    assert!(!coprocess_bridge::runtime::global()
        .registry
        .names()
        .contains(&"unresolved".to_string()));
}

#[test]
fn a_reload_to_a_version_with_an_unresolved_symbol_keeps_the_old_one() {
    logged(""); // the log handler is in place before the reload logs
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("unres.so");
    install(&test_driver("before-unresolved"), &file);
    load("unres", &file, None).unwrap();
    install(&hostile("UNRESOLVED"), &file);
    Reload();
    assert_eq!(
        tag_of(&dispatch_with("unres", &pre_object()).unwrap()),
        "before-unresolved",
        "the running version keeps serving"
    );
    let expected = format!(
        "reload of driver 'unres' failed, keeping the running version: cannot load driver library {}: \
         undefined symbol: coprocess_test_function_defined_nowhere",
        file.display()
    );
    assert!(
        logged("reload of driver 'unres'").contains(&expected),
        "{:?}",
        logged("reload of driver 'unres'")
    );
}

// --- 2. A driver handing back the host's buffer -------------------------------------------------

#[test]
fn output_pointing_into_the_input_is_refused_and_never_freed() {
    for mode in ["RETURN_INPUT", "RETURN_INPUT_FAIL", "RETURN_INPUT_TAIL"] {
        let name = format!("hostile-{mode}");
        load(&name, &hostile(mode), None).unwrap();
        // The input is Rust-owned (malloc underneath): were it freed by the bridge too, dropping it
        // here would be a double free and abort this process.
        let input = pre_object();
        let copy = input.clone();
        let (code, msg) = dispatch_with(&name, &input).expect_err(mode);
        assert_eq!(code, COPROCESS_ERR_DRIVER_BAD_OUTPUT as i32, "{mode}");
        assert_eq!(
            msg,
            format!(
                "driver '{name}' returned its input buffer as output (out->p_data points into \
                 in->p_data): a driver must hand back a malloc'd copy (coprocess_driver.h)"
            )
        );
        assert_eq!(input, copy, "the input is untouched");
        drop(input);
    }
}

// --- 3. Dispatch(&m, &m) ------------------------------------------------------------------------

#[test]
fn dispatch_in_place_dispatches_the_input_and_returns_the_output() {
    load("inplace", &test_driver("inplace"), None).unwrap();
    let input = pre_object();
    let mut m = CoProcessMessage {
        p_data: input.as_ptr() as *mut c_void,
        length: input.len() as i32,
    };
    let name = c("inplace");
    let p: *mut CoProcessMessage = &mut m;
    assert_eq!(
        DispatchWithDriver(name.as_ptr(), p, p),
        0,
        "{}",
        last_error()
    );
    assert_ne!(
        m.p_data,
        input.as_ptr() as *mut c_void,
        "m holds the output"
    );
    // SAFETY: on success m holds `length` malloc'd bytes.
    let out =
        unsafe { std::slice::from_raw_parts(m.p_data as *const u8, m.length as usize) }.to_vec();
    CoProcessMessageFree(&mut m);
    assert!(
        out.starts_with(&input),
        "the driver saw the host's Object, not an empty one"
    );
    assert_eq!(tag_of(&out), "inplace");
    let original = Object::decode(input.as_slice()).unwrap();
    let mut answered = Object::decode(out.as_slice()).unwrap();
    answered.request.as_mut().unwrap().set_headers.clear();
    assert_eq!(answered, original);

    // A failure in place leaves {NULL, 0} and the input buffer alone.
    let mut bad = CoProcessMessage {
        p_data: b"\xff\xff".as_ptr() as *mut c_void,
        length: 2,
    };
    let p: *mut CoProcessMessage = &mut bad;
    assert_eq!(
        DispatchWithDriver(name.as_ptr(), p, p),
        COPROCESS_ERR_INVALID_OBJECT as i32
    );
    assert!(bad.p_data.is_null() && bad.length == 0);
}

// --- 8. Reload copies ---------------------------------------------------------------------------

/// Mappings of memory-file driver copies in this process, by inode.
fn memfd_copies_mapped() -> std::collections::BTreeSet<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|l| l.contains("/memfd:coprocess-driver"))
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .collect()
}

#[test]
fn reload_copies_are_anonymous_and_old_ones_are_unloaded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cycled.so");
    let versions = [test_driver("cycle-a"), test_driver("cycle-b")];
    install(&versions[0], &file);
    load("cycled", &file, None).unwrap();
    let before = memfd_copies_mapped();
    for i in 1..=40 {
        install(&versions[i % 2], &file);
        Reload();
        assert_eq!(
            tag_of(&dispatch_with("cycled", &pre_object()).unwrap()),
            if i % 2 == 0 { "cycle-a" } else { "cycle-b" }
        );
    }
    let after = memfd_copies_mapped();
    let new: Vec<_> = after.difference(&before).collect();
    // Other tests of this binary may hold one copy each of their own; ours is one.
    assert!(
        !new.is_empty() && new.len() <= 3,
        "40 reloads left {} memory-file copies mapped (expected the current one): {new:?}",
        new.len()
    );
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let tmp = std::env::temp_dir();
    assert!(
        !maps
            .lines()
            .any(|l| l.contains(&*tmp.to_string_lossy()) && l.contains("coprocess-bridge-")),
        "no reload copy is mapped from a path in {}",
        tmp.display()
    );
    assert_eq!(
        get("test_driver:shutdown"),
        "1",
        "replaced instances were shut down"
    );
}

// --- 11. CoProcessLastError on an exiting thread -------------------------------------------------

static AT_EXIT: Mutex<Option<String>> = Mutex::new(None);

/// A pthread key destructor: runs after the thread's Rust thread-locals were destroyed.
unsafe extern "C" fn at_thread_exit(_: *mut c_void) {
    let rc = Dispatch(std::ptr::null(), std::ptr::null_mut());
    // SAFETY: CoProcessLastError always returns a valid C string.
    let text = unsafe { CStr::from_ptr(CoProcessLastError()) }
        .to_string_lossy()
        .into_owned();
    *AT_EXIT.lock().unwrap() = Some(format!("{rc}: {text}"));
}

#[test]
fn last_error_works_while_a_thread_exits() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: a fresh key with a destructor of the right signature.
    assert_eq!(
        unsafe { libc::pthread_key_create(&mut key, Some(at_thread_exit)) },
        0
    );
    std::thread::spawn(move || {
        // Touch the last-error slot so the thread has one to destroy, then arm the destructor.
        assert_eq!(
            Dispatch(std::ptr::null(), std::ptr::null_mut()),
            COPROCESS_ERR_NULL_ARGUMENT as i32
        );
        assert_eq!(last_error(), "Dispatch: out is NULL");
        // SAFETY: any non-NULL value arms the key's destructor for this thread.
        unsafe { libc::pthread_setspecific(key, std::ptr::dangling::<c_void>()) };
    })
    .join()
    .unwrap();
    let seen = AT_EXIT.lock().unwrap().take();
    assert_eq!(
        seen.as_deref(),
        Some("1: (no error message: CoProcessLastError was called while this thread was exiting)"),
        "the host is still running and got an explanation"
    );
}
