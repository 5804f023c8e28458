//! API definitions, routing by spec["APIID"], hook chains, Tyk's error answers and the ID extractor's
//! auth cache, through the bridge's C exports with the SDK's example driver (examples/rust_driver)
//! loaded as "native".

mod abi;
mod common;

use std::sync::OnceLock;

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::{
    CoProcessListApis, CoProcessLoadApi, CoProcessSetPlainErrors, CoProcessUnloadApi,
};
use coprocess_bridge::proto::{
    Header, HookType, Message, MiniRequestObject, Object, ResponseObject, ReturnOverrides,
    SessionState,
};

const CONFIG: &str = r#"{"tokens": ["tok-1", "tok-2"], "cache_seconds": 60}"#;

fn driver() {
    static LOADED: OnceLock<()> = OnceLock::new();
    LOADED.get_or_init(|| {
        let lib = common::build_workspace_cdylib(
            "coprocess-rust-driver-example",
            "coprocess_rust_driver",
        );
        load("native", &lib, Some(CONFIG)).unwrap();
    });
}

fn load_api(json: &str) -> Result<(), (i32, String)> {
    driver();
    let text = c(json);
    match CoProcessLoadApi(text.as_ptr()) {
        0 => Ok(()),
        rc => Err((rc, last_error())),
    }
}

/// A classic definition with the given custom_middleware body (custom auth enabled when it has an
/// auth_check).
fn classic(api_id: &str, middleware: &str) -> String {
    let auth = middleware.contains("auth_check");
    format!(
        r#"{{"api_id": "{api_id}", "org_id": "org1", "config_data": {{"greeting": "hi"}},
        "custom_plugin_auth_enabled": {auth},
        "custom_middleware": {{"driver": "native", {middleware}}}}}"#
    )
}

/// An Object as Tyk's gateway builds it: return_overrides.response_code = -1, spec with the API.
fn request(api_id: &str, hook: HookType, headers: &[(&str, &str)]) -> Object {
    Object {
        hook_type: hook as i32,
        request: Some(MiniRequestObject {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            url: "/x".into(),
            request_uri: "/x".into(),
            method: "GET".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: [("APIID", api_id), ("OrgID", "org1"), ("bundle_hash", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn run(o: &Object) -> Result<Object, (i32, String)> {
    dispatch(&o.encode_to_vec()).map(|out| Object::decode(out.as_slice()).unwrap())
}

fn set_header(o: &Object, name: &str) -> Option<String> {
    o.request.as_ref()?.set_headers.get(name).cloned()
}

fn overrides(o: &Object) -> ReturnOverrides {
    o.request
        .as_ref()
        .and_then(|r| r.return_overrides.clone())
        .unwrap_or_default()
}

fn calls(name: &str) -> u64 {
    get(&format!("rust_driver:calls:{name}"))
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_chain_runs_in_order_and_feeds_each_hook_the_previous_output() {
    load_api(&classic(
        "chain",
        r#""pre": [{"name": "ChainA1"}, {"name": "Off", "disabled": true}, {"name": "ChainA2"}, {"name": "ShowConfig"}],
           "post": [{"name": "ChainA3"}], "auth_check": {"name": "Auth"}"#,
    ))
    .unwrap();
    let out = run(&request("chain", HookType::Pre, &[])).unwrap();
    assert_eq!(
        set_header(&out, "X-Chain").as_deref(),
        Some("ChainA1,ChainA2")
    );
    assert_eq!(
        set_header(&out, "X-Config-Data").as_deref(),
        Some(r#"{"greeting":"hi"}"#),
        "spec carries config_data"
    );
    assert_eq!(overrides(&out).response_code, -1);
    let post = run(&request("chain", HookType::Post, &[("X-Chain", "before")])).unwrap();
    assert_eq!(
        set_header(&post, "X-Chain").as_deref(),
        Some("before,ChainA3")
    );
}

#[test]
fn a_hook_that_sets_a_response_code_ends_the_chain() {
    load_api(&classic(
        "stop",
        r#""pre": [{"name": "ChainS1"}, {"name": "Deny"}, {"name": "ChainS2"}], "auth_check": {"name": "A"}"#,
    ))
    .unwrap();
    let before = calls("ChainS2");
    let out = run(&request("stop", HookType::Pre, &[("X-Deny", "1")])).unwrap();
    let ro = overrides(&out);
    assert_eq!(ro.response_code, 418);
    assert_eq!(
        ro.response_body,
        r#"{"chain":"ChainS1","denied_by":"Deny"}"#
    );
    assert_eq!(
        calls("ChainS2"),
        before,
        "the hook after the stop never ran"
    );
    let out = run(&request("stop", HookType::Pre, &[])).unwrap();
    assert_eq!(
        set_header(&out, "X-Chain").as_deref(),
        Some("ChainS1,ChainS2")
    );
    assert_eq!(calls("ChainS2"), before + 1);
}

#[test]
fn pre_and_custom_key_check_hooks_never_see_a_session() {
    load_api(&classic(
        "nosession",
        r#""pre": [{"name": "ChainN"}], "post": [{"name": "ChainP"}], "auth_check": {"name": "Auth"}"#,
    ))
    .unwrap();
    let mut o = request("nosession", HookType::Pre, &[]);
    o.session = Some(SessionState {
        rate: 9.0,
        ..Default::default()
    });
    // The example driver patches its input, so a session in the output came from the input.
    assert_eq!(run(&o).unwrap().session, None);
    o.hook_type = HookType::Post as i32;
    assert_eq!(run(&o).unwrap().session.map(|s| s.rate), Some(9.0));
}

#[test]
fn custom_key_check_uses_the_id_extractor_cache() {
    load_api(&classic(
        "auth",
        r#""auth_check": {"name": "Auth"},
           "id_extractor": {"extract_from": "header", "extract_with": "value",
                            "extractor_config": {"header_name": "Authorization"}}"#,
    ))
    .unwrap();
    let ckc = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        run(&request("auth", HookType::CustomKeyCheck, &headers)).unwrap()
    };
    let first = ckc(Some("Bearer tok-1"));
    let n: u64 = set_header(&first, "X-Auth-Call").unwrap().parse().unwrap();
    let session = first.session.clone().expect("a session");
    assert!(session.id_extractor_deadline > 0);
    let cached = ckc(Some("Bearer tok-1"));
    assert_eq!(
        set_header(&cached, "X-Auth-Call"),
        None,
        "served from the cache"
    );
    assert_eq!(
        cached.session,
        Some(session),
        "the cached session is returned"
    );
    assert_eq!(overrides(&cached).response_code, -1);
    let mut named = request(
        "auth",
        HookType::CustomKeyCheck,
        &[("Authorization", "Bearer tok-1")],
    );
    named.hook_name = "Auth".into();
    let named = run(&named).unwrap();
    assert_eq!(
        set_header(&named, "X-Auth-Call"),
        None,
        "a named CustomKeyCheck (as Tyk sends it) uses the cache too"
    );
    let sid = coprocess_bridge::id_extractor::session_id("org1", "Bearer tok-1", None);
    assert!(
        get(&coprocess_bridge::id_extractor::cache::key(&sid)).is_empty(),
        "the cache is not in the plugins' key space"
    );
    let other = ckc(Some("Bearer tok-2"));
    let m: u64 = set_header(&other, "X-Auth-Call").unwrap().parse().unwrap();
    assert!(m > n, "another value reaches the driver");
    let refused = ckc(Some("Bearer nope"));
    assert_eq!(overrides(&refused).response_code, 403);
    let again = ckc(Some("Bearer nope"));
    assert_eq!(
        overrides(&again).response_code,
        403,
        "refusals are not cached"
    );
    let missing = ckc(None);
    let ro = overrides(&missing);
    assert_eq!(
        (ro.response_code, ro.response_error.as_str()),
        (400, "Authorization field missing")
    );
}

#[test]
fn failed_hooks_answer_like_tyk_unless_plain_errors_are_asked_for() {
    load_api(&classic(
        "fail",
        r#""pre": [{"name": "Fail"}, {"name": "ChainF"}], "auth_check": {"name": "Panic"}"#,
    ))
    .unwrap();
    let out = run(&request("fail", HookType::Pre, &[])).unwrap();
    let ro = overrides(&out);
    assert_eq!(
        (ro.response_code, ro.response_error.as_str()),
        (500, "Middleware error")
    );
    assert_eq!(set_header(&out, "X-Chain"), None, "the chain stopped");
    let out = run(&request("fail", HookType::CustomKeyCheck, &[])).unwrap();
    let ro = overrides(&out);
    assert_eq!(
        (ro.response_code, ro.response_error.as_str()),
        (403, "Key not authorised")
    );

    CoProcessSetPlainErrors(1);
    let pre = run(&request("fail", HookType::Pre, &[]));
    let ckc = run(&request("fail", HookType::CustomKeyCheck, &[]));
    CoProcessSetPlainErrors(0);
    let (code, msg) = pre.unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DRIVER_FAILED as i32);
    assert!(msg.contains("the Fail hook fails on purpose"), "{msg}");
    assert_eq!(ckc.unwrap_err().0, COPROCESS_ERR_DRIVER_FAILED as i32);
}

#[test]
fn oas_definitions_route_and_chain_too() {
    load_api(
        r#"{"openapi": "3.0.3", "info": {"title": "o", "version": "1"}, "paths": {},
        "x-tyk-api-gateway": {"info": {"id": "oas-api", "orgId": "org1", "state": {"active": true}},
          "middleware": {"global": {"pluginConfig": {"driver": "native", "data": {"enabled": true, "value": {"k": 2}}},
            "prePlugins": [{"enabled": true, "functionName": "ChainO1"}, {"enabled": true, "functionName": "ShowConfig"}],
            "postAuthenticationPlugins": [{"enabled": true, "functionName": "ChainO2"}]}}}}"#,
    )
    .unwrap();
    let out = run(&request("oas-api", HookType::Pre, &[])).unwrap();
    assert_eq!(set_header(&out, "X-Chain").as_deref(), Some("ChainO1"));
    assert_eq!(
        set_header(&out, "X-Config-Data").as_deref(),
        Some(r#"{"k":2}"#)
    );
    let out = run(&request("oas-api", HookType::PostKeyAuth, &[])).unwrap();
    assert_eq!(set_header(&out, "X-Chain").as_deref(), Some("ChainO2"));
}

#[test]
fn a_named_hook_runs_alone_and_unknown_apis_go_to_the_only_driver() {
    load_api(&classic(
        "named",
        r#""pre": [{"name": "ChainX1"}, {"name": "ChainX2"}]"#,
    ))
    .unwrap();
    let mut o = request("named", HookType::Pre, &[]);
    o.hook_name = "ChainX2".into();
    assert_eq!(
        set_header(&run(&o).unwrap(), "X-Chain").as_deref(),
        Some("ChainX2")
    );
    let unknown = request("not-loaded", HookType::Pre, &[]);
    let out = run(&unknown).unwrap();
    assert_eq!(set_header(&out, "X-Rust-Driver").as_deref(), Some("rust"));
    assert!(!out.spec.contains_key("config_data"));
}

#[test]
fn apis_are_listed_unloaded_and_bad_definitions_refused() {
    load_api(&classic("listed", r#""post": [{"name": "ChainL"}]"#)).unwrap();
    let p = CoProcessListApis();
    // SAFETY: a malloc'd NUL-terminated string, freed right after.
    let text = unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned();
    coprocess_bridge::ffi::host::CoProcessFree(p as *mut _);
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let api = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["api_id"] == "listed")
        .expect("listed");
    assert_eq!(api["post"][0]["name"], "ChainL");
    assert_eq!(api["driver"], "native");

    let id = c("listed");
    assert_eq!(CoProcessUnloadApi(id.as_ptr()), 0);
    assert_eq!(
        CoProcessUnloadApi(id.as_ptr()),
        COPROCESS_ERR_UNKNOWN_API as i32
    );
    assert_eq!(last_error(), "no API with api_id 'listed' is loaded");
    let out = run(&request("listed", HookType::Post, &[])).unwrap();
    assert_eq!(
        set_header(&out, "X-Chain"),
        None,
        "routed as an unknown API"
    );

    let (code, msg) =
        load_api(r#"{"api_id": "b", "custom_middleware": {"pre": [{"name": 3}]}}"#).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_INVALID_API as i32);
    assert_eq!(
        msg,
        "invalid API definition: custom_middleware.pre[0].name must be a string, not a number"
    );
    assert_eq!(
        CoProcessLoadApi(std::ptr::null()),
        COPROCESS_ERR_NULL_ARGUMENT as i32
    );
}

#[test]
fn the_demo_gateway_definitions_load() {
    let dir = common::repo_root().join("examples/gateway/demo/apps");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        load_api(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        loaded += 1;
    }
    assert_eq!(loaded, 3, "a classic, an OAS and a Lua API definition");
}

// ---------------------------------------------------------------------------------------------
// Tyk's per-hook semantics: each hook of a chain is its own middleware (Edit:/Record hooks of the
// example driver: they answer edits and store what they saw, nothing else).

/// The Object a `Record...` hook of the example driver was given.
fn seen(hook: &str) -> Object {
    let hex = get(&format!("rust_driver:seen:{hook}"));
    assert!(!hex.is_empty(), "{hook} did not run");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Object::decode(bytes.as_slice()).unwrap()
}

fn headers_of(o: &Object) -> Vec<String> {
    let mut h: Vec<String> = o
        .request
        .as_ref()
        .unwrap()
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    h.sort();
    h
}

/// A Pre request with a query, a Host and a body, as Tyk's BuildObject makes it.
fn rich_request(api_id: &str) -> Object {
    let mut o = request(
        api_id,
        HookType::Pre,
        &[("Host", "gw.example"), ("Accept", "*/*"), ("X-Drop", "d")],
    );
    let r = o.request.as_mut().unwrap();
    r.url = "/x?q=1".into();
    r.params.insert("q".into(), "1".into());
    r.method = "POST".into();
    r.body = "original".into();
    r.raw_body = b"original".to_vec();
    o
}

#[test]
fn chained_hooks_see_what_earlier_hooks_did_and_the_host_gets_the_net_effect() {
    load_api(&classic(
        "semantics",
        r#""pre": [{"name": "Edit:set x-added=1;set X-Keep=k;del accept"}, {"name": "RecordS1"},
                   {"name": "Edit:del X-ADDED;del x-drop;add p=v w;url /new?ignored=1;method PUT;body changed"},
                   {"name": "RecordS2"}]"#,
    ))
    .unwrap();
    let out = run(&rich_request("semantics")).unwrap();

    let first = seen("RecordS1");
    assert_eq!(
        headers_of(&first),
        ["Host: gw.example", "X-Added: 1", "X-Drop: d", "X-Keep: k"],
        "the first hook's set headers (canonical names), not its deleted ones"
    );
    let r = first.request.as_ref().unwrap();
    assert!(r.set_headers.is_empty() && r.delete_headers.is_empty());
    assert_eq!(r.return_overrides.as_ref().unwrap().response_code, -1);
    assert_eq!((r.body.as_str(), r.url.as_str()), ("original", "/x?q=1"));

    let second = seen("RecordS2");
    assert_eq!(headers_of(&second), ["Host: gw.example", "X-Keep: k"]);
    let r = second.request.as_ref().unwrap();
    assert_eq!(r.url, "/new?p=v+w&q=1", "the query as Tyk re-encodes it");
    assert_eq!(r.params.get("p").map(String::as_str), Some("v w"));
    assert_eq!(r.method, "PUT");
    assert_eq!(
        (r.body.as_str(), r.raw_body.as_slice()),
        ("changed", &b"changed"[..])
    );
    assert_eq!(r.request_uri, "/x", "request_uri stays the host's");
    assert!(r.add_params.is_empty() && r.delete_params.is_empty());

    // The answer: the whole chain's edits, applied by a host as Tyk applies one hook's.
    let r = out.request.as_ref().unwrap();
    let mut deleted = r.delete_headers.clone();
    deleted.sort();
    assert_eq!(deleted, ["Accept", "X-Added", "X-Drop"]);
    assert_eq!(r.set_headers.len(), 1);
    assert_eq!(set_header(&out, "X-Keep").as_deref(), Some("k"));
    assert_eq!(r.add_params.get("p").map(String::as_str), Some("v w"));
    assert_eq!(
        (r.url.as_str(), r.method.as_str()),
        ("/new?p=v+w&q=1", "PUT")
    );
    assert_eq!(r.raw_body, b"changed");
    assert_eq!(headers_of(&out), headers_of(&second));
}

/// Header names as Go's `textproto.CanonicalMIMEHeaderKey` writes them (token names only).
fn canonical(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let c = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            c
        })
        .collect()
}

/// The headers a host has after applying `answer` to the request it sent as Tyk applies one hook's
/// answer (`ObjectPostProcess`: delete_headers, then set_headers, canonical names).
fn headers_applied(sent: &Object, answer: &Object) -> Vec<String> {
    let mut h: std::collections::BTreeMap<String, String> = sent
        .request
        .as_ref()
        .unwrap()
        .headers
        .iter()
        .map(|(k, v)| (canonical(k), v.clone()))
        .collect();
    let r = answer.request.as_ref().unwrap();
    for name in &r.delete_headers {
        h.remove(&canonical(name));
    }
    for (name, value) in &r.set_headers {
        h.insert(canonical(name), value.clone());
    }
    h.into_iter().map(|(k, v)| format!("{k}: {v}")).collect()
}

#[test]
fn header_edits_across_hooks_leave_the_hosts_request_as_the_chain_left_it() {
    // Set, deleted, set again; a name the host sent in lower case; the last hook's own sets.
    load_api(&classic(
        "headers",
        r#""pre": [{"name": "Edit:set X-Twice=1;set X-Lower=hook"}, {"name": "Edit:del x-twice"},
                   {"name": "RecordH1"}, {"name": "Edit:set X-Twice=3;set x-last=l"}, {"name": "RecordH2"}]"#,
    ))
    .unwrap();
    let sent = request(
        "headers",
        HookType::Pre,
        &[("x-lower", "host"), ("Accept", "*/*")],
    );
    let out = run(&sent).unwrap();
    assert_eq!(
        headers_of(&seen("RecordH1")),
        ["Accept: */*", "X-Lower: hook"]
    );
    let last = seen("RecordH2");
    assert_eq!(
        headers_of(&last),
        ["Accept: */*", "X-Last: l", "X-Lower: hook", "X-Twice: 3"]
    );
    let r = out.request.as_ref().unwrap();
    assert!(r.delete_headers.iter().all(|n| canonical(n) != "X-Twice"));
    assert_eq!(set_header(&out, "X-Twice").as_deref(), Some("3"));
    assert_eq!(headers_applied(&sent, &out), headers_of(&last));
    assert_eq!(headers_of(&out), headers_of(&last));

    // Every hook sets the same header (the last answer serves as it is, see chain::request).
    load_api(&classic(
        "same-header",
        r#""pre": [{"name": "Edit:set X-Same=s"}, {"name": "Edit:set X-Same=s;"},
                   {"name": "RecordH3"}, {"name": "Edit:set X-Same=s;;"}]"#,
    ))
    .unwrap();
    let sent = request("same-header", HookType::Pre, &[("Accept", "*/*")]);
    let out = run(&sent).unwrap();
    let r = out.request.as_ref().unwrap();
    assert!(r.delete_headers.is_empty());
    assert_eq!(r.set_headers.len(), 1);
    assert_eq!(set_header(&out, "X-Same").as_deref(), Some("s"));
    assert_eq!(headers_applied(&sent, &out), headers_of(&seen("RecordH3")));
}

#[test]
fn only_a_positive_response_code_ends_a_chain() {
    load_api(&classic(
        "codes",
        r#""pre": [{"name": "Edit:code 0"}, {"name": "RecordC1"}, {"name": "Edit:code -5"},
                   {"name": "Edit:code 201;set X-Last=1"}, {"name": "RecordC2"}]"#,
    ))
    .unwrap();
    store("rust_driver:seen:RecordC2", "", 0);
    let out = run(&request("codes", HookType::Pre, &[])).unwrap();
    assert_eq!(
        seen("RecordC1")
            .request
            .unwrap()
            .return_overrides
            .unwrap()
            .response_code,
        -1,
        "0 is no override: the chain went on, and the next hook has Tyk's -1"
    );
    assert_eq!(get("rust_driver:seen:RecordC2"), "", "201 ended the chain");
    assert_eq!(overrides(&out).response_code, 201);
    assert_eq!(set_header(&out, "X-Last").as_deref(), Some("1"));
}

#[test]
fn raw_body_only_hooks_get_raw_body_and_no_text() {
    load_api(&classic(
        "rawbody",
        r#""pre": [{"name": "RecordB1", "raw_body_only": true}, {"name": "RecordB2"}]"#,
    ))
    .unwrap();
    let mut o = rich_request("rawbody");
    o.request.as_mut().unwrap().raw_body.clear(); // a host that sends the text only
    run(&o).unwrap();
    let r = seen("RecordB1").request.unwrap();
    assert_eq!(
        (r.body.as_str(), r.raw_body.as_slice()),
        ("", &b"original"[..])
    );
    let r = seen("RecordB2").request.unwrap();
    assert_eq!(
        (r.body.as_str(), r.raw_body.as_slice()),
        ("original", &b"original"[..])
    );
}

#[test]
fn a_url_tyk_refuses_is_a_middleware_error() {
    load_api(&classic(
        "badurl",
        r#""pre": [{"name": "Edit:url relative"}, {"name": "ChainU"}]"#,
    ))
    .unwrap();
    let before = calls("ChainU");
    let out = run(&request("badurl", HookType::Pre, &[])).unwrap();
    let ro = overrides(&out);
    assert_eq!(
        (ro.response_code, ro.response_error.as_str()),
        (500, "Middleware error")
    );
    assert_eq!(calls("ChainU"), before);
}

#[test]
fn an_auth_check_without_a_session_is_forbidden() {
    for (id, extractor) in [
        ("nosess", ""),
        (
            "nosess-ex",
            r#", "id_extractor": {"extract_from": "header", "extract_with": "value",
                  "extractor_config": {"header_name": "Authorization"}}"#,
        ),
    ] {
        load_api(&classic(
            id,
            &format!(r#""auth_check": {{"name": "Edit:set X-Auth=none"}}{extractor}"#),
        ))
        .unwrap();
        let out = run(&request(
            id,
            HookType::CustomKeyCheck,
            &[("Authorization", "x")],
        ))
        .unwrap();
        let ro = overrides(&out);
        assert_eq!(
            (ro.response_code, ro.response_error.as_str()),
            (403, "Forbidden"),
            "{id}"
        );
        let sid = coprocess_bridge::id_extractor::session_id("org1", "x", None);
        assert_eq!(
            get(&coprocess_bridge::id_extractor::cache::key(&sid)),
            "",
            "not cached"
        );
    }
    // An override answers as it is.
    load_api(&classic(
        "nosess-code",
        r#""auth_check": {"name": "Edit:code 401"}"#,
    ))
    .unwrap();
    let out = run(&request("nosess-code", HookType::CustomKeyCheck, &[])).unwrap();
    assert_eq!(overrides(&out).response_code, 401);
}

#[test]
fn id_extractors_load_from_tyk_classic_and_oas_keys() {
    let form = |o: &mut Object, key: &str| {
        let r = o.request.as_mut().unwrap();
        r.url = format!("/x?{key}=Bearer%20tok-1");
        r.request_uri = r.url.clone();
    };
    load_api(&classic(
        "form-classic",
        r#""auth_check": {"name": "Auth"},
           "id_extractor": {"extract_from": "form", "extract_with": "value",
                            "extractor_config": {"param_name": "authorization"}}"#,
    ))
    .unwrap();
    load_api(
        r#"{"openapi": "3.0.3", "info": {"title": "o", "version": "1"}, "paths": {},
        "x-tyk-api-gateway": {"info": {"id": "form-oas", "orgId": "org1", "state": {"active": true}},
          "server": {"authentication": {"enabled": true, "custom": {"enabled": true,
            "config": {"enabled": true, "functionName": "Auth",
              "idExtractor": {"enabled": true, "source": "form", "with": "regex",
                "config": {"formParamName": "authorization", "regexp": "tok-[0-9]+", "regexpMatchIndex": 0}}}}}},
          "middleware": {"global": {"pluginConfig": {"driver": "native"}}}}}"#,
    )
    .unwrap();
    for id in ["form-classic", "form-oas"] {
        let mut o = request(
            id,
            HookType::CustomKeyCheck,
            &[("Authorization", "Bearer tok-1")],
        );
        let missing = run(&o).unwrap();
        assert_eq!(
            overrides(&missing).response_code,
            400,
            "{id}: no form value"
        );
        form(&mut o, "authorization");
        let out = run(&o).unwrap();
        assert!(out.session.is_some(), "{id}: {:?}", overrides(&out));
        let again = run(&o).unwrap();
        assert_eq!(
            set_header(&again, "X-Auth-Call"),
            None,
            "{id}: cached by the form value"
        );
    }
}

#[test]
fn an_sdk_set_body_changes_the_body_tyk_sends_upstream() {
    // Tyk's gateway takes the request body from raw_body only: ObjectPatch::set_body must set it.
    load_api(&classic(
        "setbody",
        r#""pre": [{"name": "Edit:text from set_body"}, {"name": "RecordT1"}]"#,
    ))
    .unwrap();
    let out = run(&rich_request("setbody")).unwrap();
    let r = seen("RecordT1").request.unwrap();
    assert_eq!(
        (r.body.as_str(), r.raw_body.as_slice()),
        ("from set_body", &b"from set_body"[..]),
        "the next hook of the chain sees the new body"
    );
    assert_eq!(out.request.unwrap().raw_body, b"from set_body");
    // One named hook: the host applies its answer itself, from raw_body.
    let mut o = rich_request("setbody");
    o.hook_name = "Edit:text solo".into();
    let r = run(&o).unwrap().request.unwrap();
    assert_eq!(
        (r.body.as_str(), r.raw_body.as_slice()),
        ("solo", &b"solo"[..])
    );
}

/// A Response hook's Object as Tyk's BuildObject makes it: a two-valued Set-Cookie.
fn upstream_response(api_id: &str) -> Object {
    let mut o = request(api_id, HookType::Response, &[]);
    let strings = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let header = |key: &str, values: &[&str]| Header {
        key: key.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    o.response = Some(ResponseObject {
        status_code: 200,
        raw_body: b"upstream".to_vec(),
        body: "upstream".into(),
        headers: strings(&[("Content-Type", "text/plain"), ("Set-Cookie", "a=1")]),
        multivalue_headers: vec![
            header("Set-Cookie", &["a=1", "b=2"]),
            header("Content-Type", &["text/plain"]),
        ],
    });
    o
}

/// A response's multivalue headers, sorted, checked to agree with its `headers` map.
fn response_headers(r: &ResponseObject) -> Vec<String> {
    assert_eq!(r.headers.len(), r.multivalue_headers.len(), "{r:?}");
    let mut all: Vec<String> = r
        .multivalue_headers
        .iter()
        .map(|h| {
            assert_eq!(r.headers[&h.key], h.values[0], "{h:?}");
            format!("{}: {}", h.key, h.values.join(" | "))
        })
        .collect();
    all.sort();
    all
}

#[test]
fn response_hooks_of_a_chain_see_the_response_as_tyk_left_it() {
    load_api(&classic(
        "respchain",
        r#""response": [{"name": "Edit:rset x-added=1;rset Set-Cookie=z=9;rbody changed;rstatus 201"},
                        {"name": "RecordR1", "raw_body_only": true},
                        {"name": "Edit:radd set-cookie=c=3"},
                        {"name": "Edit:rdel Content-Type"},
                        {"name": "RecordR2"}]"#,
    ))
    .unwrap();
    let out = run(&upstream_response("respchain")).unwrap();

    // A changed headers map is synchronised into the multivalue headers (the first value replaced,
    // the new name in canonical form); Content-Length is the new body's.
    let first = seen("RecordR1").response.unwrap();
    assert_eq!(first.status_code, 201);
    assert_eq!(
        (first.body.as_str(), first.raw_body.as_slice()),
        ("", &b"changed"[..]),
        "raw_body_only: no text"
    );
    assert_eq!(
        response_headers(&first),
        [
            "Content-Length: 7",
            "Content-Type: text/plain",
            "Set-Cookie: z=9 | b=2",
            "X-Added: 1"
        ]
    );
    // A multivalue entry added with the map unchanged joins its canonical name; a name removed
    // from the map is gone.
    let second = seen("RecordR2").response.unwrap();
    assert_eq!(second.body, "changed");
    assert_eq!(
        response_headers(&second),
        [
            "Content-Length: 7",
            "Set-Cookie: z=9 | b=2 | c=3",
            "X-Added: 1"
        ]
    );
    assert_eq!(
        seen("RecordR2").request.unwrap().headers,
        upstream_response("x").request.unwrap().headers,
        "the request is the host's"
    );
    // The host gets the response as the chain left it.
    let r = out.response.unwrap();
    assert_eq!(
        (r.status_code, r.raw_body.as_slice()),
        (201, &b"changed"[..])
    );
    assert_eq!(response_headers(&r), response_headers(&second));
}
