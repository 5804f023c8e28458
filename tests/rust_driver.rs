//! The SDK's example driver (examples/rust_driver), driven through the bridge's C exports.

mod abi;
mod common;

use std::sync::OnceLock;

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::DispatchEvent;
use coprocess_bridge::proto::{fixtures, HookType, Message, Object, ResponseObject};

const CONFIG: &str =
    r#"{"tokens": ["secret-1", "secret-2"], "rate": 7, "per": 3, "cache_seconds": 60}"#;

/// Loads the example once per test process, under the name "rust".
fn driver() -> &'static str {
    static LOADED: OnceLock<()> = OnceLock::new();
    LOADED.get_or_init(|| {
        let lib = common::build_workspace_cdylib(
            "coprocess-rust-driver-example",
            "coprocess_rust_driver",
        );
        load("rust", &lib, Some(CONFIG)).unwrap();
    });
    "rust"
}

fn object(hook: HookType, name: &str) -> Object {
    let mut o = fixtures::small_object();
    o.hook_type = hook as i32;
    o.hook_name = name.into();
    o
}

fn run(o: &Object) -> Result<Object, (i32, String)> {
    dispatch_with(driver(), &o.encode_to_vec()).map(|out| Object::decode(out.as_slice()).unwrap())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn pre_hooks_get_a_header_and_nothing_else_changes() {
    let input = object(HookType::Pre, "AddHeader");
    let out = run(&input).unwrap();
    let mut expected = input.clone();
    expected
        .request
        .as_mut()
        .unwrap()
        .set_headers
        .insert("X-Rust-Driver".into(), "rust".into());
    assert_eq!(out, expected);
}

#[test]
fn custom_key_check_accepts_listed_bearer_tokens() {
    let mut input = object(HookType::CustomKeyCheck, "Auth");
    input.session = None;
    input
        .request
        .as_mut()
        .unwrap()
        .headers
        .insert("Authorization".into(), "Bearer secret-2".into());
    let out = run(&input).unwrap();
    let session = out.session.expect("a session is returned");
    assert_eq!((session.rate, session.per), (7.0, 3.0));
    assert_eq!(
        session.metadata.get("token").map(String::as_str),
        Some("secret-2")
    );
    assert!(
        session.id_extractor_deadline >= now() + 50,
        "deadline set for the auth cache"
    );
    assert_eq!(
        out.metadata.get("token").map(String::as_str),
        Some("secret-2")
    );
    assert_eq!(
        out.request.unwrap().return_overrides.unwrap().response_code,
        -1
    );
}

#[test]
fn custom_key_check_answers_403_otherwise() {
    for auth in [None, Some("Bearer wrong"), Some("Basic c2VjcmV0LTE=")] {
        let mut input = object(HookType::CustomKeyCheck, "Auth");
        if let Some(a) = auth {
            input
                .request
                .as_mut()
                .unwrap()
                .headers
                .insert("Authorization".into(), a.into());
        }
        let out = run(&input).unwrap();
        let ro = out.request.unwrap().return_overrides.unwrap();
        assert_eq!(ro.response_code, 403, "{auth:?}");
        assert_eq!(ro.response_error, "Key not authorised");
        assert_eq!(ro.response_body, r#"{"error": "Key not authorised"}"#);
        assert!(out
            .session
            .is_none_or(|s| !s.metadata.contains_key("token")));
    }
}

#[test]
fn response_hooks_rewrite_body_and_status() {
    let mut input = object(HookType::Response, "Rewrite");
    input.response = Some(ResponseObject {
        status_code: 502,
        raw_body: b"upstream failed".to_vec(),
        body: "upstream failed".into(),
        ..Default::default()
    });
    let out = run(&input).unwrap();
    let r = out.response.unwrap();
    assert_eq!(r.status_code, 200);
    let body: serde_json::Value = serde_json::from_slice(&r.raw_body).unwrap();
    assert_eq!(body["upstream_status"], 502);
    assert_eq!(body["upstream_bytes"], 15);
    assert_eq!(r.body.as_bytes(), r.raw_body.as_slice());
    assert_eq!(
        r.headers.get("Content-Type").map(String::as_str),
        Some("application/json")
    );
}

#[test]
fn a_panicking_hook_fails_that_call_only() {
    let (code, msg) = run(&object(HookType::Post, "Panic")).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DRIVER_FAILED as i32);
    assert_eq!(
        msg,
        "driver 'rust' failed (code 2): driver panicked: the Panic hook panics on purpose"
    );
    assert!(
        run(&object(HookType::Pre, "AfterPanic")).is_ok(),
        "the driver keeps serving"
    );
}

#[test]
fn events_are_counted_in_the_store() {
    driver();
    let before: u64 = get("rust_driver:events").parse().unwrap_or(0);
    for _ in 0..3 {
        DispatchEvent(c(r#"{"message": {}, "handler_name": "count", "spec": {}}"#).as_ptr());
    }
    let after: u64 = get("rust_driver:events").parse().unwrap();
    assert_eq!(after, before + 3);
}

#[test]
fn a_bad_config_fails_the_load() {
    let lib =
        common::build_workspace_cdylib("coprocess-rust-driver-example", "coprocess_rust_driver");
    let (code, msg) = load("rust-bad-config", &lib, Some(r#"{"tokens": 5}"#)).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
    assert!(
        msg.ends_with("failed to initialise: CoProcessDriverInit returned 1"),
        "{msg}"
    );
}
