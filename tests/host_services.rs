//! Events, logs and the store, as hosts and drivers see them. Handlers are process-wide, so the tests
//! that set them take a lock and run one at a time.

mod abi;
mod common;

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::*;
use coprocess_bridge::ffi::tyk_api::{CoProcessLog, TykTriggerEvent};

static SERIAL: Mutex<()> = Mutex::new(());

type Seen = Mutex<Vec<(String, String)>>;

unsafe extern "C" fn record(a: *const c_char, b: *const c_char, user_data: *mut c_void) {
    // SAFETY: the bridge passes valid C strings and the user_data we registered (a live `Seen`).
    let (a, b, seen) = unsafe {
        (
            CStr::from_ptr(a),
            CStr::from_ptr(b),
            &*(user_data as *const Seen),
        )
    };
    seen.lock()
        .unwrap()
        .push((a.to_string_lossy().into(), b.to_string_lossy().into()));
}

fn test_driver() -> std::path::PathBuf {
    common::c_test_driver(&["WITH_OPTIONAL", "VERSION_TAG=\"svc\""])
}

#[test]
fn events_queue_without_a_handler_and_reach_it_with_one() {
    let _g = SERIAL.lock().unwrap();
    while next_event().is_some() {}
    TykTriggerEvent(
        c("QuotaExceeded").as_ptr() as *mut _,
        c("{\"key\":\"k1\"}").as_ptr() as *mut _,
    );
    assert_eq!(
        next_event(),
        Some(("QuotaExceeded".into(), "{\"key\":\"k1\"}".into()))
    );
    assert_eq!(next_event(), None);
    let (mut n, mut p) = (std::ptr::null_mut(), std::ptr::null_mut());
    assert_eq!(
        CoProcessNextEvent(&mut n, &mut p),
        COPROCESS_ERR_EMPTY as i32
    );
    assert_eq!(last_error(), "no event is waiting");
    assert_eq!(
        CoProcessNextEvent(std::ptr::null_mut(), &mut p),
        COPROCESS_ERR_NULL_ARGUMENT as i32
    );

    let seen: Seen = Mutex::new(Vec::new());
    CoProcessSetEventHandler(Some(record), &seen as *const _ as *mut c_void);
    TykTriggerEvent(c("KeyExpired").as_ptr() as *mut _, std::ptr::null_mut());
    CoProcessSetEventHandler(None, std::ptr::null_mut());
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("KeyExpired".to_string(), String::new())]
    );
    assert_eq!(next_event(), None, "a handled event is not queued too");
}

#[test]
fn dispatch_event_reaches_every_driver_and_their_events_reach_the_host() {
    let _g = SERIAL.lock().unwrap();
    while next_event().is_some() {}
    load("events-a", &test_driver(), None).unwrap();
    load("events-b", &test_driver(), None).unwrap();
    let json =
        r#"{"message": {"key": "k"}, "handler_name": "h", "spec": {"APIID": "a1", "OrgID": "o1"}}"#;
    DispatchEvent(c(json).as_ptr());
    let mut got = Vec::new();
    while let Some(ev) = next_event() {
        got.push(ev);
    }
    let from_drivers = got
        .iter()
        .filter(|(n, p)| n == "TestDriverEvent" && p == json)
        .count();
    assert!(
        from_drivers >= 2,
        "each loaded driver got the event and raised one back: {got:?}"
    );

    DispatchEvent(c("not json").as_ptr());
    assert!(
        last_error().starts_with("DispatchEvent: event is not valid JSON"),
        "{}",
        last_error()
    );
    DispatchEvent(std::ptr::null());
    assert_eq!(last_error(), "DispatchEvent: event_json is NULL");
}

#[test]
fn logs_reach_the_handler_with_their_level() {
    let _g = SERIAL.lock().unwrap();
    let seen: Seen = Mutex::new(Vec::new());
    CoProcessSetLogHandler(Some(record), &seen as *const _ as *mut c_void);
    CoProcessLog(
        c("from the host").as_ptr() as *mut _,
        c("error").as_ptr() as *mut _,
    );
    CoProcessLog(c("default level").as_ptr() as *mut _, std::ptr::null_mut());
    load("logs", &test_driver(), None).unwrap();
    DispatchEvent(c("{}").as_ptr()); // the test driver logs at "warning" on events
    CoProcessSetLogHandler(None, std::ptr::null_mut());
    let seen = seen.lock().unwrap();
    assert!(
        seen.contains(&("from the host".into(), "error".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("default level".into(), "info".into())),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(_, level)| level == "warning"),
        "the driver's log arrived: {seen:?}"
    );
    while next_event().is_some() {}
}

#[test]
fn logs_go_to_stderr_with_their_level_without_a_handler() {
    let src = common::write_c_source(
        "log_to_stderr.c",
        "#include \"api.h\"\nint main(void) { CoProcessLog((char*)\"disk is full\", (char*)\"warning\"); return 0; }\n",
    );
    let host = common::build_c_host(&src, &[]);
    let out = common::run(&mut std::process::Command::new(host));
    assert!(out.status.success(), "{}", common::describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: disk is full"),
        "{}",
        common::describe(&out)
    );
}

#[test]
fn the_store_keeps_values_until_their_ttl() {
    store("svc:forever", "v1", 0);
    store("svc:short", "v2", 1);
    assert_eq!(get("svc:forever"), "v1");
    assert_eq!(get("svc:short"), "v2");
    assert_eq!(
        get("svc:absent"),
        "",
        "an absent key gives an empty (malloc'd) string"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(get("svc:short"), "", "an expired key is gone");
    assert_eq!(get("svc:forever"), "v1");
    let p = coprocess_bridge::ffi::tyk_api::TykGetData(std::ptr::null_mut());
    assert!(p.is_null());
    assert_eq!(last_error(), "TykGetData: key is NULL");
}

#[test]
fn drivers_use_the_same_store_as_the_host() {
    let _g = SERIAL.lock().unwrap();
    load(
        "store-user",
        &test_driver(),
        Some(r#"{"marker": "store-user"}"#),
    )
    .unwrap();
    assert_eq!(get("test_driver:config"), r#"{"marker": "store-user"}"#);
}

#[test]
fn coprocess_init_validates_its_config() {
    let _g = SERIAL.lock().unwrap();
    assert_eq!(CoProcessInit(std::ptr::null()), 0);
    assert_eq!(CoProcessInit(c("{}").as_ptr()), 0);
    assert_eq!(
        CoProcessInit(c("[").as_ptr()),
        COPROCESS_ERR_INVALID_CONFIG as i32
    );
    assert!(
        last_error().starts_with("CoProcessInit config: not valid JSON"),
        "{}",
        last_error()
    );
    let cfg = format!(
        r#"{{"drivers": [{{"name": "from-init", "path": "{}", "config": {{"marker": "init"}}}}]}}"#,
        test_driver().display()
    );
    assert_eq!(CoProcessInit(c(&cfg).as_ptr()), 0, "{}", last_error());
    assert_eq!(
        CoProcessInit(c(&cfg).as_ptr()),
        0,
        "idempotent: {}",
        last_error()
    );
    assert!(dispatch_with("from-init", &pre_object()).is_ok());
    assert_eq!(get("test_driver:config"), r#"{"marker":"init"}"#);

    assert_eq!(
        CoProcessInit(c(r#"{"enable_coprocess": false}"#).as_ptr()),
        0
    );
    let (code, msg) = dispatch_with("from-init", &pre_object()).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DISABLED as i32);
    assert_eq!(msg, "coprocess is disabled (enable_coprocess is false)");
    assert_eq!(
        CoProcessInit(c(r#"{"enable_coprocess": true}"#).as_ptr()),
        0
    );
}

/// The drop warnings are rate-limited on the process's running total of drops, which other tests
/// here raise (a queue left full by a handler swap storm): the scenario runs in a fresh process.
#[test]
fn a_full_event_queue_drops_the_oldest_and_says_so_in_the_log() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "full_event_queue_in_a_fresh_process",
            "--ignored",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}{stderr}");
}

#[test]
#[ignore = "run in its own process by a_full_event_queue_drops_the_oldest_and_says_so_in_the_log"]
fn full_event_queue_in_a_fresh_process() {
    let _g = SERIAL.lock().unwrap();
    while next_event().is_some() {}
    let logs: Seen = Mutex::new(Vec::new());
    CoProcessSetLogHandler(Some(record), &logs as *const _ as *mut c_void);
    assert_eq!(
        CoProcessInit(c(r#"{"event_queue_capacity": 4, "event_queue_max_bytes": 64}"#).as_ptr()),
        0
    );
    for i in 0..10 {
        TykTriggerEvent(
            c("Storm").as_ptr() as *mut _,
            c(&i.to_string()).as_ptr() as *mut _,
        );
    }
    let big = "x".repeat(100);
    TykTriggerEvent(c("Huge").as_ptr() as *mut _, c(&big).as_ptr() as *mut _);
    let mut kept = Vec::new();
    while let Some((_, payload)) = next_event() {
        kept.push(payload);
    }
    assert_eq!(
        CoProcessInit(
            c(r#"{"event_queue_capacity": 1024, "event_queue_max_bytes": 16777216}"#).as_ptr()
        ),
        0
    );
    CoProcessSetLogHandler(None, std::ptr::null_mut());
    assert_eq!(kept, ["6", "7", "8", "9"], "the newest four are kept");
    let logs = logs.lock().unwrap();
    let warnings: Vec<&String> = logs
        .iter()
        .filter(|(m, level)| level == "warning" && m.contains("dropped"))
        .map(|(m, _)| m)
        .collect();
    // Drops 1..=6 are reported at totals 1, 2 and 4; the huge event (total 7) is not a power of two.
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "the event queue is full (event_queue_capacity 4, event_queue_max_bytes 64): the oldest \
             event was dropped; "
        ),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[2].contains("events dropped so far. Set an event handler"),
        "{}",
        warnings[2]
    );
}

/// A host's user_data: the handler checks it is still alive on every call.
struct Owned {
    alive: std::sync::atomic::AtomicU64,
    calls: std::sync::atomic::AtomicU64,
}

const ALIVE: u64 = 0xA11CE;

/// Keeps the swap test's log lines off stderr between handlers.
unsafe extern "C" fn quiet(_: *const c_char, _: *const c_char, _: *mut c_void) {}
static LATE_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

unsafe extern "C" fn check_alive(_: *const c_char, _: *const c_char, user_data: *mut c_void) {
    use std::sync::atomic::Ordering::SeqCst;
    // SAFETY: the test registers a live `Owned`; a call after its release is what the test detects.
    let owned = unsafe { &*(user_data as *const Owned) };
    if owned.alive.load(SeqCst) != ALIVE {
        LATE_CALLS.fetch_add(1, SeqCst);
    }
    owned.calls.fetch_add(1, SeqCst);
    std::thread::yield_now();
    if owned.alive.load(SeqCst) != ALIVE {
        LATE_CALLS.fetch_add(1, SeqCst);
    }
}

#[test]
fn after_a_handler_swap_returns_the_old_handler_never_runs() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    let _g = SERIAL.lock().unwrap();
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let stop = &stop;
            s.spawn(move || {
                let (name, msg) = (c("Swap"), c("swap test"));
                while !stop.load(SeqCst) {
                    if t % 2 == 0 {
                        TykTriggerEvent(name.as_ptr() as *mut _, msg.as_ptr() as *mut _);
                    } else {
                        CoProcessLog(msg.as_ptr() as *mut _, c("error").as_ptr() as *mut _);
                    }
                }
            });
        }
        for _ in 0..300 {
            let owned = Box::into_raw(Box::new(Owned {
                alive: AtomicU64::new(ALIVE),
                calls: AtomicU64::new(0),
            }));
            CoProcessSetEventHandler(Some(check_alive), owned.cast());
            CoProcessSetLogHandler(Some(check_alive), owned.cast());
            std::thread::sleep(std::time::Duration::from_micros(200));
            CoProcessSetEventHandler(None, std::ptr::null_mut());
            CoProcessSetLogHandler(Some(quiet), std::ptr::null_mut());
            // SAFETY: the bridge promises no call uses `owned` any more: mark it dead, then free it.
            let owned = unsafe { Box::from_raw(owned) };
            owned.alive.store(0xDEAD, SeqCst);
            total.fetch_add(owned.calls.load(SeqCst), SeqCst);
            drop(owned);
        }
        stop.store(true, SeqCst);
    });
    CoProcessSetLogHandler(None, std::ptr::null_mut());
    while next_event().is_some() {}
    assert!(total.load(SeqCst) > 0, "the handlers were called");
    assert_eq!(
        LATE_CALLS.load(SeqCst),
        0,
        "a handler ran after it was replaced"
    );
}

unsafe extern "C" fn replaces_itself(_: *const c_char, _: *const c_char, user_data: *mut c_void) {
    // A handler that swaps handlers (and logs through the new one) must not deadlock.
    CoProcessSetLogHandler(Some(record), user_data);
    CoProcessLog(
        c("from the new handler").as_ptr() as *mut _,
        std::ptr::null_mut(),
    );
}

#[test]
fn a_handler_that_replaces_itself_does_not_deadlock() {
    let _g = SERIAL.lock().unwrap();
    let seen: &'static Seen = Box::leak(Box::new(Mutex::new(Vec::new())));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        CoProcessSetLogHandler(Some(replaces_itself), seen as *const _ as *mut c_void);
        CoProcessLog(c("first").as_ptr() as *mut _, std::ptr::null_mut());
        CoProcessSetLogHandler(None, std::ptr::null_mut());
        tx.send(()).unwrap();
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("swapping handlers from inside a handler deadlocked");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("from the new handler".to_string(), "info".to_string())]
    );
}
