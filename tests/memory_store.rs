//! The embedded store's caps through the C exports (issue 10, item 6): `CoProcessInit`'s
//! `{"store": {"type": "memory", "max_entries": N, "max_bytes": B}}` bounds the plugins' data; a write
//! beyond it is refused with the reason in `CoProcessLastError`, counted and logged, and nothing stored
//! before is lost. One test: the store is process-wide.

mod abi;

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

use abi::*;
use coprocess_bridge::ffi::host::{CoProcessInit, CoProcessSetLogHandler, CoProcessShutdown};

type Seen = Mutex<Vec<(String, String)>>;

unsafe extern "C" fn record(message: *const c_char, level: *const c_char, user_data: *mut c_void) {
    // SAFETY: the bridge passes valid C strings and the user_data we registered (a live `Seen`).
    let (m, l, seen) = unsafe {
        (
            CStr::from_ptr(message),
            CStr::from_ptr(level),
            &*(user_data as *const Seen),
        )
    };
    seen.lock()
        .unwrap()
        .push((m.to_string_lossy().into(), l.to_string_lossy().into()));
}

#[test]
fn the_embedded_store_is_capped_and_says_so() {
    static SEEN: Seen = Mutex::new(Vec::new());
    CoProcessSetLogHandler(Some(record), &SEEN as *const _ as *mut c_void);
    let config = c(r#"{"store": {"type": "memory", "max_entries": 100, "max_bytes": 1000000}}"#);
    assert_eq!(CoProcessInit(config.as_ptr()), 0, "{}", last_error());
    for i in 0..100 {
        store(&format!("k{i}"), "v", 0);
    }
    store("one-too-many", "v", 0);
    assert!(
        last_error().starts_with(
            "could not store key 'one-too-many': the embedded store's data space is full (100 entries"
        ),
        "{}",
        last_error()
    );
    assert_eq!(get("one-too-many"), "");
    assert_eq!(get("k0"), "v", "nothing stored before was evicted");
    store("k0", "overwritten", 0);
    assert_eq!(get("k0"), "overwritten", "overwrites need no room");

    // Keys with a TTL make room once expired.
    CoProcessShutdown();
    assert_eq!(CoProcessInit(config.as_ptr()), 0, "{}", last_error());
    for i in 0..100 {
        store(&format!("t{i}"), "v", 1);
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for i in 0..100 {
        store(&format!("n{i}"), "v", 0);
        assert_eq!(get(&format!("n{i}")), "v", "{}", last_error());
    }

    // A larger budget applies to the same store, without losing data.
    let bigger = c(r#"{"store": {"type": "memory", "max_entries": 200}}"#);
    assert_eq!(CoProcessInit(bigger.as_ptr()), 0, "{}", last_error());
    store("room-now", "v", 0);
    assert_eq!(get("room-now"), "v");
    assert_eq!(get("n0"), "v");

    let bad = c(r#"{"store": {"type": "memory", "max_bytes": 0}}"#);
    assert_ne!(CoProcessInit(bad.as_ptr()), 0);
    assert!(last_error().contains("must be above 0"), "{}", last_error());

    CoProcessSetLogHandler(None, std::ptr::null_mut());
    let seen = SEEN.lock().unwrap();
    assert!(
        seen.iter().any(|(m, l)| l == "warning"
            && m.starts_with("embedded store: the data space is full (limits 100 entries")
            && m.contains("1 writes refused")),
        "the refusal was logged: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(m, l)| l == "error" && m.starts_with("could not store key 'one-too-many'")),
        "{seen:?}"
    );
}
