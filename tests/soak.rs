//! A bounded soak: threads dispatch through an API's hook chain, through the ID extractor's auth cache
//! and straight to a C driver while, at the same time, Reload() runs, both driver files are replaced by
//! rename (so they are re-opened from fresh copies and the old ones unloaded), log and event handlers are
//! swapped (their user_data freed at once), events storm the bounded queue, and — when redis-server is
//! installed — the Redis store is restarted. It reports calls, errors (which must be 0) and the process's
//! resident memory before and after.
//!
//! `cargo test --test soak` runs it for 3 seconds; `COPROCESS_SOAK_SECS=300 cargo test --release --test
//! soak -- --nocapture` runs it longer (the README quotes such a run). Its own process: it configures
//! the process-wide bridge.

mod abi;
mod common;

use std::ffi::{c_char, c_void};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use abi::*;
use coprocess_bridge::ffi::host::*;
use coprocess_bridge::ffi::tyk_api::{CoProcessLog, TykTriggerEvent};
use coprocess_bridge::proto::{HookType, Message, MiniRequestObject, Object, ReturnOverrides};

const DRIVER_CONFIG: &str = r#"{"tokens": ["tok-1", "tok-2"], "cache_seconds": 60}"#;

const API: &str = r#"{"api_id": "soak", "org_id": "org1",
    "custom_plugin_auth_enabled": true,
    "custom_middleware": {"driver": "native",
        "pre": [{"name": "ChainA1"}, {"name": "ChainA2"}],
        "post": [{"name": "ChainP"}],
        "auth_check": {"name": "Auth"},
        "id_extractor": {"extract_from": "header", "extract_with": "value",
                         "extractor_config": {"header_name": "Authorization"}}}}"#;

fn request(hook: HookType, headers: &[(&str, &str)]) -> Vec<u8> {
    Object {
        hook_type: hook as i32,
        request: Some(MiniRequestObject {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            url: "/soak".into(),
            method: "GET".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: [("APIID", "soak"), ("OrgID", "org1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("staging");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

struct Redis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    fn spawn(port: u16, dir: &Path) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn start(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        Redis {
            child: Redis::spawn(port, dir.path()),
            port,
            dir,
        }
    }

    /// Kills the server and starts a new one on the same port.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Redis::spawn(self.port, self.dir.path());
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    errors: AtomicU64,
    reloads: AtomicU64,
    replacements: AtomicU64,
    swaps: AtomicU64,
    events: AtomicU64,
    handler_calls: AtomicU64,
}

/// The first few errors, for the failure message.
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn error(counts: &Counts, what: String) {
    counts.errors.fetch_add(1, SeqCst);
    let mut errors = ERRORS.lock().unwrap();
    if errors.len() < 10 {
        errors.push(what);
    }
}

const ALIVE: u64 = 0x50A4;
/// Handler calls that found their user_data already released.
static LATE_CALLS: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn handler(_: *const c_char, _: *const c_char, user_data: *mut c_void) {
    // SAFETY: the soak registers a live (AtomicU64, AtomicU64) pair and frees it only after the swap.
    let (alive, calls) = unsafe { &*(user_data as *const (AtomicU64, AtomicU64)) };
    if alive.load(SeqCst) != ALIVE {
        LATE_CALLS.fetch_add(1, SeqCst);
    }
    calls.fetch_add(1, SeqCst);
}

fn one_round(counts: &Counts, n: u64, pre: &[u8], auth: &[&[u8]; 2], direct: &[u8]) {
    let check = |what: &str, r: Result<Vec<u8>, Failure>, ok: &dyn Fn(&Object) -> bool| match r {
        Ok(out) => match Object::decode(out.as_slice()) {
            Ok(o) if ok(&o) => {}
            Ok(o) => error(counts, format!("{what}: unexpected answer {o:?}")),
            Err(e) => error(counts, format!("{what}: answer does not decode: {e}")),
        },
        Err((code, msg)) => error(counts, format!("{what}: error {code}: {msg}")),
    };
    let header = |o: &Object, name: &str| {
        o.request
            .as_ref()
            .and_then(|r| r.set_headers.get(name).cloned())
    };
    match n % 3 {
        0 => check("pre chain", dispatch(pre), &|o| {
            header(o, "X-Chain").as_deref() == Some("ChainA1,ChainA2")
        }),
        1 => check("auth", dispatch(auth[(n / 3 % 2) as usize]), &|o| {
            o.session.is_some()
                && o.request
                    .as_ref()
                    .and_then(|r| r.return_overrides.as_ref())
                    .is_none_or(|ro| ro.response_code == -1)
        }),
        _ => check("direct", dispatch_with("ctest", direct), &|o| {
            header(o, "X-Test-Driver").is_some_and(|t| t.starts_with("soak-"))
        }),
    }
    counts.calls.fetch_add(1, SeqCst);
}

#[test]
fn soak() {
    let secs: u64 = std::env::var("COPROCESS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let duration = Duration::from_secs(secs);
    let dir = tempfile::tempdir().unwrap();

    let redis = if common::tool_available("redis-server") {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let redis = Redis::start(port);
        let cfg = format!(
            r#"{{"store": {{"type": "redis", "url": "redis://127.0.0.1:{port}/0"}}, "event_queue_capacity": 256}}"#
        );
        assert_eq!(CoProcessInit(c(&cfg).as_ptr()), 0, "{}", last_error());
        Mutex::new(Some(redis))
    } else {
        common::report_skip("redis-server (the soak runs without a Redis restart)");
        assert_eq!(
            CoProcessInit(c(r#"{"event_queue_capacity": 256}"#).as_ptr()),
            0
        );
        Mutex::new(None)
    };

    let rust_driver =
        common::build_workspace_cdylib("coprocess-rust-driver-example", "coprocess_rust_driver");
    let native = dir.path().join("native.so");
    install(&rust_driver, &native);
    load("native", &native, Some(DRIVER_CONFIG)).unwrap();
    let versions: Vec<PathBuf> = ["soak-a", "soak-b"]
        .iter()
        .map(|tag| {
            let tag = format!("VERSION_TAG=\"{tag}\"");
            common::build_c_driver(
                &common::repo_root().join("tests/drivers/test_driver.c"),
                &[tag.as_str(), "WITH_OPTIONAL"],
            )
        })
        .collect();
    let ctest = dir.path().join("ctest.so");
    install(&versions[0], &ctest);
    load("ctest", &ctest, None).unwrap();
    let api = c(API);
    assert_eq!(CoProcessLoadApi(api.as_ptr()), 0, "{}", last_error());

    let pre = request(HookType::Pre, &[]);
    let auth = [
        request(
            HookType::CustomKeyCheck,
            &[("Authorization", "Bearer tok-1")],
        ),
        request(
            HookType::CustomKeyCheck,
            &[("Authorization", "Bearer tok-2")],
        ),
    ];
    let auth = [auth[0].as_slice(), auth[1].as_slice()];
    let direct = request(HookType::Pre, &[]);

    // Warm up (first calls allocate caches, thread-locals, the store's connection), then measure.
    let counts = Counts::default();
    for n in 0..300 {
        one_round(&counts, n, &pre, &auth, &direct);
    }
    let rss_before = resident_bytes();
    let stop = AtomicBool::new(false);
    let redis_restarts = AtomicU64::new(0);
    let started = Instant::now();

    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (counts, stop, pre, direct) = (&counts, &stop, &pre, &direct);
            s.spawn(move || {
                let mut n = t;
                while !stop.load(SeqCst) {
                    one_round(counts, n, pre, &auth, direct);
                    n += 1;
                }
            });
        }
        // Reloads and driver file replacement by rename.
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(SeqCst) {
                if i.is_multiple_of(3) {
                    install(&versions[(i / 3 % 2) as usize], &ctest);
                    counts.replacements.fetch_add(1, SeqCst);
                }
                if i % 10 == 5 {
                    install(&rust_driver, &native);
                    counts.replacements.fetch_add(1, SeqCst);
                }
                Reload();
                counts.reloads.fetch_add(1, SeqCst);
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // Handler swaps, user_data freed right after.
        s.spawn(|| {
            while !stop.load(SeqCst) {
                let owned = Box::into_raw(Box::new((AtomicU64::new(ALIVE), AtomicU64::new(0))));
                CoProcessSetEventHandler(Some(handler), owned.cast());
                CoProcessSetLogHandler(Some(handler), owned.cast());
                std::thread::sleep(Duration::from_millis(2));
                CoProcessSetEventHandler(None, std::ptr::null_mut());
                CoProcessSetLogHandler(None, std::ptr::null_mut());
                // SAFETY: the bridge promised no call uses `owned` any more.
                let owned = unsafe { Box::from_raw(owned) };
                owned.0.store(0, SeqCst);
                counts.handler_calls.fetch_add(owned.1.load(SeqCst), SeqCst);
                counts.swaps.fetch_add(1, SeqCst);
            }
        });
        // An event storm: more than the queue holds, from the host and through every driver.
        s.spawn(|| {
            let (name, payload) = (c("SoakEvent"), c(r#"{"n": 1}"#));
            let event = c(r#"{"message": {}, "handler_name": "soak", "spec": {"APIID": "soak"}}"#);
            let line = c("soak log line");
            let mut i = 0u64;
            while !stop.load(SeqCst) {
                TykTriggerEvent(name.as_ptr() as *mut _, payload.as_ptr() as *mut _);
                if i.is_multiple_of(8) {
                    DispatchEvent(event.as_ptr());
                    CoProcessLog(line.as_ptr() as *mut _, c("debug").as_ptr() as *mut _);
                }
                if i.is_multiple_of(512) {
                    while next_event().is_some() {}
                }
                counts.events.fetch_add(1, SeqCst);
                i += 1;
            }
        });
        // Redis restarts (when installed): every few seconds, at least one per run.
        s.spawn(|| {
            let period = duration.min(Duration::from_secs(5)) / 2;
            let mut slept = Duration::ZERO;
            while !stop.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
                slept += Duration::from_millis(10);
                if slept < period {
                    continue;
                }
                slept = Duration::ZERO;
                if let Some(r) = redis.lock().unwrap().as_mut() {
                    r.restart();
                    redis_restarts.fetch_add(1, SeqCst);
                }
            }
        });
        std::thread::sleep(duration);
        stop.store(true, SeqCst);
    });
    let elapsed = started.elapsed();
    let rss_after = resident_bytes();
    while next_event().is_some() {}
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let report = format!(
        "\nsoak: {:.1} s, {} calls ({:.0}/s), {} errors, {} reloads, {} driver file replacements, {} \
         handler swaps ({} handler calls), {} events, {} Redis restarts, {} retired libraries still \
         mapped, RSS before {:.1} MiB, after {:.1} MiB\n",
        elapsed.as_secs_f64(),
        counts.calls.load(SeqCst),
        counts.calls.load(SeqCst) as f64 / elapsed.as_secs_f64(),
        counts.errors.load(SeqCst),
        counts.reloads.load(SeqCst),
        counts.replacements.load(SeqCst),
        counts.swaps.load(SeqCst),
        counts.handler_calls.load(SeqCst),
        counts.events.load(SeqCst),
        redis_restarts.load(SeqCst),
        coprocess_bridge::runtime::global()
            .registry
            .retired_count(),
        mib(rss_before),
        mib(rss_after),
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());
    CoProcessShutdown();
    drop(redis);

    assert_eq!(
        counts.errors.load(SeqCst),
        0,
        "{report}first errors: {:#?}",
        ERRORS.lock().unwrap()
    );
    assert_eq!(
        LATE_CALLS.load(SeqCst),
        0,
        "a handler ran after it was replaced"
    );
    assert!(counts.calls.load(SeqCst) > 1000, "{report}");
    assert!(counts.reloads.load(SeqCst) > 5, "{report}");
    assert!(
        rss_after < rss_before + (256 << 20),
        "resident memory grew by more than 256 MiB: {report}"
    );
}
