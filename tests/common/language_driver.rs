//! Harness shared by the language-driver tests (`tests/lua_driver.rs`, `tests/python_driver.rs`):
//! the log and event handlers the host installs, bundles written to disk as an operator deploys
//! them, and the Objects the tests dispatch. Each test file says
//! `#[path = "common/language_driver.rs"] mod language_driver;` beside `mod abi; mod common;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::abi::{c, dispatch, dispatch_with, get, last_error, Failure};
use coprocess_bridge::ffi::host::{
    CoProcessLoadApi, CoProcessSetEventHandler, CoProcessSetLogHandler,
};
use coprocess_bridge::proto::{HookType, Message, MiniRequestObject, Object, ReturnOverrides};

/// Log lines and events the bridge handed to the host (handlers are process-wide: set once).
pub static LOGS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
pub static EVENTS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn on_log(message: *const c_char, level: *const c_char, _: *mut c_void) {
    // SAFETY: the bridge passes valid C strings for the duration of the call.
    let (m, l) = unsafe { (CStr::from_ptr(message), CStr::from_ptr(level)) };
    LOGS.lock().unwrap().push((
        m.to_string_lossy().into_owned(),
        l.to_string_lossy().into_owned(),
    ));
}

unsafe extern "C" fn on_event(name: *const c_char, payload: *const c_char, _: *mut c_void) {
    // SAFETY: as above.
    let (n, p) = unsafe { (CStr::from_ptr(name), CStr::from_ptr(payload)) };
    EVENTS.lock().unwrap().push((
        n.to_string_lossy().into_owned(),
        p.to_string_lossy().into_owned(),
    ));
}

/// Routes the bridge's logs and events into `LOGS` and `EVENTS`.
pub fn install_host_handlers() {
    CoProcessSetLogHandler(Some(on_log), std::ptr::null_mut());
    CoProcessSetEventHandler(Some(on_event), std::ptr::null_mut());
}

pub fn logs_containing(text: &str) -> Vec<(String, String)> {
    LOGS.lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| m.contains(text))
        .cloned()
        .collect()
}

/// A fresh directory for one test's bundles: `target/<profile>/<folder>/<test>-<pid>`.
pub fn fresh_root(folder: &str, test: &str) -> PathBuf {
    let root = crate::common::target_dir()
        .join(folder)
        .join(format!("{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    root
}

/// Writes bundle `name` under `root`: `files` (path, contents) and a manifest listing them, naming
/// `driver` and `hooks` as pre hooks.
pub fn write_bundle(
    root: &Path,
    driver: &str,
    name: &str,
    hooks: &[&str],
    files: &[(&str, &str)],
) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    let pre: Vec<_> = hooks
        .iter()
        .map(|h| serde_json::json!({ "name": h }))
        .collect();
    let file_list: Vec<_> = files.iter().map(|(p, _)| *p).collect();
    let manifest = serde_json::json!({
        "file_list": file_list,
        "custom_middleware": {"pre": pre, "driver": driver},
        "checksum": "",
        "signature": "",
    });
    write_atomically(&dir.join("manifest.json"), &manifest.to_string());
    for (path, contents) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_atomically(&p, contents);
    }
    dir
}

/// Replaces a file by rename, as an operator deploying a bundle would.
pub fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}

pub fn strings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A request as Tyk builds it, with `headers` and the params `drop=x`, `keep=y`.
pub fn request(headers: &[(&str, &str)]) -> MiniRequestObject {
    MiniRequestObject {
        headers: strings(headers),
        params: strings(&[("drop", "x"), ("keep", "y")]),
        method: "GET".into(),
        url: "/orders?drop=x&keep=y".into(),
        request_uri: "/orders?drop=x&keep=y".into(),
        scheme: "http".into(),
        return_overrides: Some(ReturnOverrides {
            response_code: -1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An Object for hook `name` of bundle `bundle` (`spec["bundle_hash"]`) of API `api-1`.
pub fn object(
    hook: HookType,
    name: &str,
    bundle: Option<&str>,
    headers: &[(&str, &str)],
) -> Object {
    let mut spec = strings(&[("APIID", "api-1"), ("OrgID", "org-1")]);
    if let Some(b) = bundle {
        spec.insert("bundle_hash".into(), b.into());
    }
    Object {
        hook_type: hook as i32,
        hook_name: name.into(),
        request: Some(request(headers)),
        spec,
        ..Default::default()
    }
}

/// Dispatches `o` to `driver` and decodes the answer.
pub fn run(driver: &str, o: &Object) -> Result<Object, Failure> {
    dispatch_with(driver, &o.encode_to_vec()).map(|out| Object::decode(out.as_slice()).unwrap())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Loads API `api_id` with `driver`'s hook `CountingAuth` (bundle "c", file `file`) as its auth check
/// behind a header ID extractor on `Authorization`, then checks the bridge's auth cache in front of
/// it. The hook counts its calls in the store under `<counter>:<token>` and answers tokens starting
/// `cache-good` with a session whose deadline is a minute away (rate 42), `cache-expired` with one
/// whose deadline has passed, and any other token with a 403.
pub fn check_the_auth_cache_in_front_of(driver: &str, file: &str, api_id: &str, counter: &str) {
    let api = serde_json::json!({
        "api_id": api_id, "org_id": "org-1", "name": api_id,
        "enable_coprocess_auth": true,
        "custom_middleware": {
            "driver": driver,
            "auth_check": {"name": "CountingAuth", "path": file},
            "id_extractor": {"extract_from": "header", "extract_with": "value",
                             "extractor_config": {"header_name": "Authorization"}}
        }
    });
    let rc = CoProcessLoadApi(c(&api.to_string()).as_ptr());
    assert_eq!(rc, 0, "{}", last_error());

    let pid = std::process::id();
    let auth = |token: &str| -> Object {
        let mut o = object(
            HookType::CustomKeyCheck,
            "",
            Some("c"),
            &[("Authorization", token)],
        );
        o.spec.insert("APIID".into(), api_id.into());
        let out = dispatch(&o.encode_to_vec()).unwrap_or_else(|e| panic!("{token}: {e:?}"));
        Object::decode(out.as_slice()).unwrap()
    };
    let calls = |token: &str| get(&format!("{counter}:{token}"));

    let good = format!("cache-good-{pid}");
    for _ in 0..3 {
        let session = auth(&good).session.expect("a session");
        assert_eq!(session.rate, 42.0);
        assert!(session.id_extractor_deadline > now());
    }
    assert_eq!(
        calls(&good),
        "1",
        "the cached session answers until its deadline"
    );

    let expired = format!("cache-expired-{pid}");
    auth(&expired);
    auth(&expired);
    assert_eq!(calls(&expired), "2", "a deadline in the past is not cached");

    let bad = format!("cache-bad-{pid}");
    for _ in 0..2 {
        let out = auth(&bad);
        let code = out.request.unwrap().return_overrides.unwrap().response_code;
        assert_eq!(code, 403);
    }
    assert_eq!(calls(&bad), "2", "failed auth is not cached");
}
