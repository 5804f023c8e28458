//! Hostile requests against the ID extractor, through the C exports and an API's CustomKeyCheck chain
//! (the example Rust driver loaded as "native"): bodies nested far too deep, too large, with entity
//! declarations, huge regex and form inputs. Each must come back at once as Tyk's 400 "Authorization
//! field missing", with the real reason in the bridge's log, and never reach the plugin. A hang or a
//! stack overflow here would fail the test run itself.

mod abi;
mod common;

use std::ffi::{c_char, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use abi::*;
use coprocess_bridge::ffi::host::{CoProcessInit, CoProcessLoadApi, CoProcessSetLogHandler};
use coprocess_bridge::proto::{HookType, Message, MiniRequestObject, Object, ReturnOverrides};

/// The bridge is process-wide: tests that change its config or log handler take turns.
static SERIAL: Mutex<()> = Mutex::new(());
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

extern "C" fn record(message: *const c_char, level: *const c_char, _user: *mut c_void) {
    // SAFETY: the bridge passes NUL-terminated strings valid for the duration of the call.
    let (m, l) = unsafe { (CStr::from_ptr(message), CStr::from_ptr(level)) };
    LOGS.lock()
        .unwrap()
        .push(format!("{}: {}", l.to_string_lossy(), m.to_string_lossy()));
}

fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let lib = common::build_workspace_cdylib(
            "coprocess-rust-driver-example",
            "coprocess_rust_driver",
        );
        load("native", &lib, Some(r#"{"tokens": ["tok-1"]}"#)).unwrap();
        CoProcessSetLogHandler(Some(record), std::ptr::null_mut());
        for (id, from, with, config) in [
            (
                "xpath",
                "body",
                "xpath",
                r#"{"xpath_expression": "//token"}"#,
            ),
            (
                "regex",
                "body",
                "regex",
                r#"{"regex_expression": "tok-[0-9]+"}"#,
            ),
            (
                "hregex",
                "header",
                "regex",
                r#"{"header_name": "X-Ids", "regex_expression": "tok-[0-9]+"}"#,
            ),
            ("form", "form", "value", r#"{"form_param_name": "key"}"#),
        ] {
            let def = format!(
                r#"{{"api_id": "{id}", "org_id": "org1", "custom_plugin_auth_enabled": true,
                "custom_middleware": {{"driver": "native", "auth_check": {{"name": "Auth"}},
                "id_extractor": {{"extract_from": "{from}", "extract_with": "{with}",
                "extractor_config": {config}}}}}}}"#
            );
            assert_eq!(CoProcessLoadApi(c(&def).as_ptr()), 0, "{}", last_error());
        }
    });
}

fn request(api: &str, body: &str) -> Object {
    Object {
        hook_type: HookType::CustomKeyCheck as i32,
        request: Some(MiniRequestObject {
            headers: [("Authorization".to_string(), "Bearer tok-1".to_string())].into(),
            url: "/x".into(),
            request_uri: "/x".into(),
            method: "POST".into(),
            body: body.into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: [("APIID".to_string(), api.to_string())].into(),
        ..Default::default()
    }
}

/// Dispatches and returns (response code, response error, whether the plugin ran, new log lines).
fn run(o: &Object) -> (i32, String, bool, Vec<String>) {
    LOGS.lock().unwrap().clear();
    let out = dispatch(&o.encode_to_vec()).expect("an answer, not an error");
    let out = Object::decode(out.as_slice()).unwrap();
    let request = out.request.unwrap_or_default();
    let ro = request.return_overrides.unwrap_or_default();
    let plugin_ran = request.set_headers.contains_key("X-Auth-Call");
    let logs = std::mem::take(&mut *LOGS.lock().unwrap());
    (ro.response_code, ro.response_error, plugin_ran, logs)
}

/// Asserts the request was refused with Tyk's 400 before the plugin, for the logged `reason`.
fn assert_refused(o: &Object, reason: &str) {
    let (code, error, plugin_ran, logs) = run(o);
    assert_eq!(
        (code, error.as_str()),
        (400, "Authorization field missing"),
        "{logs:?}"
    );
    assert!(!plugin_ran, "the plugin must not run");
    assert!(
        logs.iter()
            .any(|l| l.starts_with("warning:") && l.contains(reason)),
        "a warning naming '{reason}': {logs:?}"
    );
}

/// Asserts the value was extracted and the request authenticated (by the plugin, or by the session it
/// cached for the same token).
fn assert_extracted(o: &Object) {
    let (code, error, _, logs) = run(o);
    assert_eq!((code, error.as_str()), (-1, ""), "{logs:?}");
}

fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "<a>".repeat(depth), "</a>".repeat(depth))
}

#[test]
fn a_deeply_nested_body_is_refused_before_parsing() {
    let _g = serial();
    setup();
    // 100 000 levels in 700 kB, under the size bound: the depth bound refuses it before parsing.
    let body = nested(100_000, "<token>tok-1</token>");
    assert_refused(
        &request("xpath", &body),
        "the XML nests deeper than 128 elements",
    );
    // ~2 MB of nesting (minutes of sxd-document work before the bounds existed): the size bound.
    let body = nested(300_000, "<token>tok-1</token>");
    assert_refused(&request("xpath", &body), "the body is 2100020 bytes");
    // Within the bound, the token is found and the request authenticated.
    assert_extracted(&request("xpath", &nested(100, "<token>tok-1</token>")));
}

#[test]
fn bodies_over_the_size_bound_are_refused() {
    let _g = serial();
    setup();
    let big = format!("<r><token>tok-1</token>{}</r>", "x".repeat(2 * 1024 * 1024));
    assert_refused(&request("xpath", &big), "over the 1048576 byte limit");
    let big_text = format!("tok-1 {}", "y".repeat(2 * 1024 * 1024));
    assert_refused(&request("regex", &big_text), "over the 1048576 byte limit");
    // raw_body is measured too.
    let mut raw = request("regex", "");
    raw.request.as_mut().unwrap().raw_body = big_text.into_bytes();
    assert_refused(&raw, "the body is 2097158 bytes");
}

#[test]
fn too_many_elements_and_entity_declarations_are_refused() {
    let _g = serial();
    setup();
    let wide = format!("<r>{}<token>tok-1</token></r>", "<e/>".repeat(20_000));
    assert_refused(&request("xpath", &wide), "more than 10000 elements");
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz><token>&lol9;</token></lolz>"#;
    assert_refused(&request("xpath", laughs), "document type declaration");
}

#[test]
fn huge_regex_and_form_inputs_are_refused() {
    let _g = serial();
    setup();
    let mut o = request("hregex", "");
    o.request
        .as_mut()
        .unwrap()
        .headers
        .insert("X-Ids".into(), format!("{} tok-1", "z".repeat(1_100_000)));
    assert_refused(&o, "the extracted input is 1100006 bytes");

    let mut form = request("form", &format!("key=tok-1&pad={}", "p".repeat(2_000_000)));
    form.request.as_mut().unwrap().headers.insert(
        "Content-Type".into(),
        "application/x-www-form-urlencoded".into(),
    );
    assert_refused(&form, "the body is 2000014 bytes");
    let mut query = request("form", "");
    query.request.as_mut().unwrap().request_uri =
        format!("/x?key=tok-1&pad={}", "q".repeat(2_000_000));
    assert_refused(&query, "the query string is");

    // Just under the bound, a large input is searched and the match found.
    assert_extracted(&request(
        "regex",
        &format!("{} tok-1", "w".repeat(1_000_000)),
    ));
}

#[test]
fn the_bounds_are_configurable() {
    let _g = serial();
    setup();
    let init = |json: &str| assert_eq!(CoProcessInit(c(json).as_ptr()), 0, "{}", last_error());
    init(r#"{"id_extractor_limits": {"max_xml_depth": 4, "max_input_bytes": 64}}"#);
    let shallow = nested(3, "<token>tok-1</token>");
    assert_extracted(&request("xpath", &shallow));
    assert_refused(
        &request("xpath", &nested(4, "<token>tok-1</token>")),
        "nests deeper than 4",
    );
    assert_refused(
        &request("regex", &format!("tok-1{}", " ".repeat(64))),
        "over the 64 byte limit",
    );
    // A typo in the limits is refused, not ignored.
    assert_ne!(
        CoProcessInit(c(r#"{"id_extractor_limits": {"max_depth": 4}}"#).as_ptr()),
        0
    );
    assert!(last_error().contains("max_depth"), "{}", last_error());
    init(r#"{"id_extractor_limits": {}}"#);
    assert_extracted(&request("xpath", &nested(100, "<token>tok-1</token>")));
}

#[test]
fn a_regex_too_large_to_compile_is_refused_at_load() {
    setup();
    let def = r#"{"api_id": "bigregex", "org_id": "o", "custom_plugin_auth_enabled": true,
        "custom_middleware": {"driver": "native", "auth_check": {"name": "Auth"},
        "id_extractor": {"extract_from": "body", "extract_with": "regex",
        "extractor_config": {"regex_expression": "\\w{1000}\\w{1000}\\w{1000}"}}}}"#;
    assert_ne!(CoProcessLoadApi(c(def).as_ptr()), 0);
    let e = last_error();
    assert!(
        e.contains("regex_expression is not a valid regex") && e.contains("size limit"),
        "{e}"
    );
}
