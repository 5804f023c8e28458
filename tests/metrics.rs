//! `CoProcessMetrics`: what real drivers did shows in the Prometheus text exposition, read back with
//! a real parser (Python's prometheus_client; the test skips loudly without it), and in the JSON.
//!
//! One test function: the metrics are process-wide, and this binary's only test owns them.

mod abi;
mod common;

use std::ffi::CStr;

use abi::*;
use coprocess_bridge::ffi::host::{CoProcessFree, CoProcessInit, CoProcessLoadApi, Reload};
use coprocess_bridge::ffi::metrics::CoProcessMetrics;
use coprocess_bridge::ffi::tyk_api::TykTriggerEvent;
use coprocess_bridge::proto::{HookType, Message, MiniRequestObject, Object, ReturnOverrides};

/// `CoProcessMetrics(format)` as a String (NULL -> None).
fn metrics(format: i32) -> Option<String> {
    let p = CoProcessMetrics(format);
    if p.is_null() {
        return None;
    }
    // SAFETY: a malloc'd NUL-terminated string, freed right after the copy.
    let text = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    CoProcessFree(p.cast());
    Some(text)
}

/// The JSON exposition's series for the hooks of `api` run by `driver`.
fn hook_series(json: &serde_json::Value, api: &str, driver: &str) -> serde_json::Value {
    json["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["api"] == api && h["driver"] == driver)
        .unwrap_or_else(|| panic!("no series for {api}/{driver}: {json}"))
        .clone()
}

fn auth_object(token: &str) -> Vec<u8> {
    Object {
        hook_type: HookType::CustomKeyCheck as i32,
        request: Some(MiniRequestObject {
            headers: [("Authorization".to_owned(), format!("Bearer {token}"))].into(),
            // As Tyk builds requests: -1 is "no answer yet".
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: [
            ("APIID".to_owned(), "m-api".to_owned()),
            ("OrgID".to_owned(), "o".to_owned()),
        ]
        .into(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn metrics_count_what_drivers_did_and_parse_as_prometheus_text() {
    let ok = common::build_c_driver(
        &common::repo_root().join("tests/drivers/test_driver.c"),
        &[],
    );
    let failing = common::build_c_driver(
        &common::repo_root().join("tests/drivers/test_driver.c"),
        &["FAULT_DISPATCH_FAILS"],
    );
    let rust =
        common::build_workspace_cdylib("coprocess-rust-driver-example", "coprocess_rust_driver");
    assert_eq!(
        CoProcessInit(c(r#"{"event_queue_capacity": 2}"#).as_ptr()),
        0,
        "{}",
        last_error()
    );
    load("m-ok", &ok, None).unwrap();
    load("m-fail", &failing, None).unwrap();
    load("m-rust", &rust, Some(r#"{"tokens": ["t1"]}"#)).unwrap();

    for _ in 0..3 {
        dispatch_with("m-ok", &pre_object()).unwrap();
    }
    assert!(dispatch_with("m-fail", &pre_object()).is_err());
    assert!(
        dispatch_with("m-ok", &[0xff]).is_err(),
        "never reaches a driver"
    );

    // An API: CustomKeyCheck behind the ID extractor's cache (a miss, then a hit).
    let api = r#"{"api_id": "m-api", "org_id": "o", "custom_middleware": {"driver": "m-rust",
        "auth_check": {"name": "BearerAuth"}, "id_extractor": {"extract_from": "header",
        "extract_with": "value", "extractor_config": {"header_name": "Authorization"}}},
        "enable_coprocess_auth": true}"#;
    assert_eq!(CoProcessLoadApi(c(api).as_ptr()), 0, "{}", last_error());
    dispatch(&auth_object("t1")).unwrap();
    dispatch(&auth_object("t1")).unwrap();

    // Events: no handler, a queue of 2, 3 events: one dropped.
    for _ in 0..3 {
        TykTriggerEvent(
            c("MetricsEvent").as_ptr().cast_mut(),
            c("{}").as_ptr().cast_mut(),
        );
    }
    Reload();

    let text = metrics(0).expect("Prometheus text");
    let json: serde_json::Value =
        serde_json::from_str(&metrics(1).expect("JSON")).expect("valid JSON");
    assert!(metrics(7).is_none(), "an unknown format is refused");
    assert!(last_error().contains("format"), "{}", last_error());

    // The JSON.
    let hook = |api: &str, driver: &str| hook_series(&json, api, driver);
    assert_eq!(hook("", "m-ok")["calls"], 3);
    assert_eq!(hook("", "m-ok")["hook"], "Pre");
    assert_eq!(hook("", "m-fail")["failures"]["driver_failed"], 1);
    let auth = hook("m-api", "m-rust");
    assert_eq!(auth["hook"], "BearerAuth");
    assert_eq!(auth["calls"], 1, "the second lookup hit the cache: {auth}");
    assert_eq!(auth["auth_cache"]["hits"], 1);
    assert_eq!(auth["auth_cache"]["misses"], 1);
    assert_eq!(json["events"]["dropped"], 1);
    assert_eq!(json["events"]["delivered_to_queue"], 3);
    assert!(json["reloads"]["m-ok"]["reloads"].as_u64() >= Some(1));

    // "hook_metrics": false stops the per-hook counts (calls and auth cache); CoProcessInit without
    // it turns them back on.
    let series = |api: &str, driver: &str| {
        let json: serde_json::Value = serde_json::from_str(&metrics(1).unwrap()).unwrap();
        hook_series(&json, api, driver)
    };
    let init = |cfg: &str| assert_eq!(CoProcessInit(c(cfg).as_ptr()), 0, "{}", last_error());
    init(r#"{"hook_metrics": false, "event_queue_capacity": 2}"#);
    dispatch_with("m-ok", &pre_object()).unwrap();
    dispatch(&auth_object("t1")).unwrap();
    assert_eq!(series("", "m-ok")["calls"], 3, "not counted while off");
    assert_eq!(series("m-api", "m-rust")["auth_cache"]["hits"], 1);
    init(r#"{"event_queue_capacity": 2}"#);
    dispatch_with("m-ok", &pre_object()).unwrap();
    assert_eq!(series("", "m-ok")["calls"], 4, "counted again");

    // The text (read before the switch), through a real parser.
    let Some(samples) = common::prometheus_client_samples(common::Exposition::Text(&text)) else {
        return;
    };
    let get = |key: &str| {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in\n{text}"))
    };
    assert_eq!(
        get("coprocess_hook_calls_total{api=,driver=m-ok,hook=Pre}"),
        3.0
    );
    assert_eq!(
        get("coprocess_hook_failures_total{api=,driver=m-fail,hook=Pre,kind=driver_failed}"),
        1.0
    );
    assert_eq!(
        get("coprocess_hook_duration_seconds_count{api=,driver=m-ok,hook=Pre}"),
        3.0
    );
    assert_eq!(
        get("coprocess_hook_duration_seconds_bucket{api=,driver=m-ok,hook=Pre,le=+Inf}"),
        3.0
    );
    assert!(get("coprocess_hook_duration_seconds_sum{api=,driver=m-ok,hook=Pre}") > 0.0);
    assert_eq!(
        get("coprocess_auth_cache_lookups_total{api=m-api,driver=m-rust,hook=BearerAuth,result=hit}"),
        1.0
    );
    assert_eq!(get("coprocess_events_dropped_total{}"), 1.0);
    assert_eq!(get("coprocess_events_delivered_total{to=queue}"), 3.0);
    assert!(get("coprocess_reloads_total{driver=m-ok}") >= 1.0);
    assert_eq!(get("coprocess_reload_failures_total{driver=m-ok}"), 0.0);
    assert_eq!(get("coprocess_store_errors_total{op=read}"), 0.0);
}
