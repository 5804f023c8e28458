//! The host crate against the real bridge: `libcoprocess_bridge.so` opened with dlopen, the example
//! Rust driver loaded into it, Objects written by the encoder and answers applied by the reader.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use coprocess_host::{
    encode_object, override_answer, Auth, Bridge, HookRequest, ObjectContext, RequestEdits,
};
use coprocess_proto::HookType;
use http::{HeaderMap, HeaderValue, Method};

#[path = "../../tests/common/mod.rs"]
mod common;

/// The log lines the bridge sent to the sink: (level, message).
static LOGS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Builds the bridge and the example driver (once), opens the bridge, loads the driver as "native"
/// and two APIs: `pre` (a Pre hook) and `auth` (CustomKeyCheck with the ID extractor's cache).
fn bridge() -> Bridge {
    static BRIDGE: OnceLock<Bridge> = OnceLock::new();
    *BRIDGE.get_or_init(|| {
        common::cargo_build(&[
            "--quiet",
            "-p",
            "coprocess-bridge",
            "-p",
            "coprocess-rust-driver-example",
        ]);
        let dir = common::target_dir();
        let bridge = Bridge::open(&dir.join("libcoprocess_bridge.so")).expect("dlopen");
        bridge.set_log_sink(Some(Box::new(|level: &str, message: &str| {
            LOGS.lock()
                .unwrap()
                .push((level.to_owned(), message.to_owned()))
        })));
        bridge.init(r#"{"log_level": "info"}"#).unwrap();
        let driver = dir.join("libcoprocess_rust_driver.so");
        bridge
            .load_driver(
                "native",
                driver.to_str().unwrap(),
                Some(r#"{"tokens": ["tok"], "cache_seconds": 3600}"#),
            )
            .unwrap();
        bridge
            .load_api(
                r#"{"api_id": "pre", "org_id": "o",
                    "custom_middleware": {"driver": "native", "pre": [{"name": "AddHeader"}],
                                          "post": [{"name": "Edit:code 418"}]}}"#,
            )
            .unwrap();
        bridge
            .load_api(
                r#"{"api_id": "auth", "org_id": "o", "enable_coprocess_auth": true,
                    "custom_middleware": {"driver": "native", "auth_check": {"name": "Auth"},
                      "id_extractor": {"extract_from": "header", "extract_with": "value",
                                       "extractor_config": {"header_name": "Authorization"}}}}"#,
            )
            .unwrap();
        bridge
    })
}

fn request(authorization: &str) -> HookRequest {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(authorization).unwrap(),
    );
    HookRequest {
        method: Method::POST,
        url: "/x?a=1".into(),
        headers,
        body: Bytes::from_static(b"{}"),
        host: "example".into(),
        request_uri: "/x?a=1".into(),
    }
}

fn spec(api: &str) -> [(&str, &str); 2] {
    [("APIID", api), ("OrgID", "o")]
}

#[test]
fn a_pre_hook_edits_the_request_through_dlopen() {
    let bridge = bridge();
    let mut req = request("Bearer tok");
    let mut buf = Vec::new();
    let spec = spec("pre");
    let ctx = ObjectContext {
        spec: &spec,
        body_text: true,
        ..Default::default()
    };
    let at = encode_object(&mut buf, HookType::Pre, &req, None, &ctx);
    let answer = bridge.dispatch(&buf).expect("dispatch");
    let edits = RequestEdits::read(&answer).unwrap();
    assert_eq!(edits.return_overrides().unwrap().unwrap().response_code, -1);
    req.apply(&edits, &buf, &at).unwrap();
    assert_eq!(req.headers["x-rust-driver"], "rust");
    assert_eq!(&req.body[..], b"{}", "an unchanged body stays");
    assert_eq!(req.url, "/x?a=1");

    // The Post chain of the same API answers 418 through return_overrides.
    encode_object(&mut buf, HookType::Post, &req, None, &ctx);
    let answer = bridge.dispatch(&buf).unwrap();
    let ro = RequestEdits::read(&answer)
        .unwrap()
        .return_overrides()
        .unwrap()
        .unwrap();
    assert_eq!(override_answer(&ro).unwrap().status, 418);
}

#[test]
fn custom_key_check_hands_on_a_session_or_refuses() {
    let bridge = bridge();
    let spec = spec("auth");
    let ctx = ObjectContext {
        spec: &spec,
        ..Default::default()
    };
    let mut buf = Vec::new();
    for _ in 0..2 {
        // The second time the session comes from the bridge's cache.
        encode_object(
            &mut buf,
            HookType::CustomKeyCheck,
            &request("Bearer tok"),
            None,
            &ctx,
        );
        let answer = bridge.dispatch(&buf).unwrap();
        let auth = Auth::read(&answer).unwrap().expect("granted");
        let session = <coprocess_proto::SessionState as coprocess_proto::Message>::decode(
            auth.session.as_slice(),
        )
        .unwrap();
        assert_eq!(session.rate, 100.0);
    }
    encode_object(
        &mut buf,
        HookType::CustomKeyCheck,
        &request("Bearer wrong"),
        None,
        &ctx,
    );
    let answer = bridge.dispatch(&buf).unwrap();
    assert_eq!(Auth::read(&answer).unwrap(), None);
    let ro = RequestEdits::read(&answer)
        .unwrap()
        .return_overrides()
        .unwrap()
        .unwrap();
    assert_eq!(ro.response_code, 403);
}

#[test]
fn failures_carry_the_bridge_code_and_message() {
    let bridge = bridge();
    let e = bridge.dispatch(b"\xff\xff").unwrap_err();
    assert_eq!(e.code, 3, "COPROCESS_ERR_INVALID_OBJECT: {e}");
    assert!(!e.message.is_empty());
    let e = bridge
        .load_driver("x", "/nonexistent/driver.so", None)
        .unwrap_err();
    assert!(e.message.contains("/nonexistent/driver.so"), "{e}");
    let e = bridge.load_api("{").unwrap_err();
    assert!(e.code != 0, "{e}");
    let e = bridge.init("nul\0").unwrap_err();
    assert_eq!(e.code, -1, "refused before the call: {e}");
    let e = bridge.dispatch_event("not json").unwrap_err();
    assert!(!e.message.is_empty());
    bridge
        .dispatch_event(r#"{"message": {}, "handler_name": "h", "spec": {}}"#)
        .unwrap();
    assert!(bridge.metrics(99).is_err(), "an unknown metrics format");
    assert!(bridge
        .metrics(coprocess_host::METRICS_PROMETHEUS)
        .unwrap()
        .contains("coprocess"));
    assert!(bridge.version().starts_with("coprocess-bridge "));
    let apis: serde_json::Value = serde_json::from_str(&bridge.list_apis().unwrap()).unwrap();
    assert_eq!(apis.as_array().unwrap().len(), 2);
}

#[test]
fn the_log_sink_gets_the_driver_lines() {
    bridge();
    let logs = LOGS.lock().unwrap();
    assert!(
        logs.iter()
            .any(|(level, m)| level == "info" && m.contains("rust_driver ready")),
        "{logs:?}"
    );
}

#[test]
fn answers_outlive_their_dispatch_and_cross_threads() {
    let bridge = bridge();
    let mut buf = Vec::new();
    let spec = spec("pre");
    let ctx = ObjectContext {
        spec: &spec,
        ..Default::default()
    };
    encode_object(&mut buf, HookType::Pre, &request("x"), None, &ctx);
    let answers: Vec<_> = (0..4)
        .map(|_| Arc::new(bridge.dispatch(&buf).unwrap()))
        .collect();
    let lens: Vec<usize> = answers
        .into_iter()
        .map(|a| std::thread::spawn(move || a.len()).join().unwrap())
        .collect();
    assert!(lens.iter().all(|&l| l > buf.len()));
}

#[test]
fn a_missing_library_is_an_error_naming_it() {
    let e = Bridge::open(Path::new("/nonexistent/libcoprocess_bridge.so"))
        .err()
        .unwrap();
    assert!(e.contains("/nonexistent/libcoprocess_bridge.so"), "{e}");
}
