//! The Lua driver (drivers/lua, libcoprocess_lua.so, LuaJIT built from source) driven through the
//! bridge's C exports: Tyk-style Lua bundles written to disk, loaded, dispatched to, reloaded.

mod abi;
mod common;
#[path = "common/language_driver.rs"]
mod language_driver;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use abi::*;
use coprocess_bridge::ffi::host::{CoProcessLoadBundle, DispatchEvent, Reload};
use coprocess_bridge::proto::{
    HookType, Message, MiniRequestObject, Object, ResponseObject, SessionState,
};
use language_driver::*;

// ---------------------------------------------------------------------------------------------
// Harness: the driver library (shared helpers in tests/common/language_driver.rs)

fn driver_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        install_host_handlers();
        common::build_workspace_cdylib("coprocess-lua-driver", "coprocess_lua")
    })
    .clone()
}

/// A fresh directory for this test's bundles: `target/<profile>/lua-driver-tests/<test>`.
fn fresh_root(test: &str) -> PathBuf {
    language_driver::fresh_root("lua-driver-tests", test)
}

/// Writes a Lua bundle: `files` (path, contents) and a manifest naming `hooks` as pre hooks.
fn write_bundle(root: &Path, name: &str, hooks: &[&str], files: &[(&str, &str)]) -> PathBuf {
    language_driver::write_bundle(root, "lua", name, hooks, files)
}

fn load_driver_with(name: &str, root: &Path, extra: serde_json::Value) -> Result<(), Failure> {
    let mut config = serde_json::json!({ "bundle_root": root });
    if let serde_json::Value::Object(extra) = extra {
        config.as_object_mut().unwrap().extend(extra);
    }
    load(name, &driver_lib(), Some(&config.to_string()))
}

fn load_driver(name: &str, root: &Path) -> Result<(), Failure> {
    load_driver_with(name, root, serde_json::json!({}))
}

fn req(o: &Object) -> &MiniRequestObject {
    o.request.as_ref().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tyk's own Lua example, hook signatures, request changes

/// The shape of Tyk's public Lua plugin demo (`tyk-plugin-demo-lua`): a manifest with driver "lua"
/// and a `MyPreMiddleware` pre hook that calls `tyk.req.set_header` and prints a request header.
#[test]
fn tyk_demo_bundle_my_pre_middleware_sets_a_header() {
    let root = fresh_root("demo");
    write_bundle(
        &root,
        "demo",
        &["MyPreMiddleware"],
        &[(
            "middleware.lua",
            r#"
function MyPreMiddleware(request, session, spec)
  print("MyPreMiddleware, request=", request, "session=", session, "spec=", spec)
  tyk.req.set_header("myluaheader", "myluavalue")
  print("User-Agent header:", tyk.header["User-Agent"])
  return request, session
end

function MyAuthCheck(request, session, metadata, spec)
  return request, session, metadata
end
"#,
        )],
    );
    load_driver("lua-demo", &root).unwrap();
    let input = object(
        HookType::Pre,
        "MyPreMiddleware",
        Some("demo"),
        &[("User-Agent", "curl/8.5.0")],
    );
    let out = run("lua-demo", &input).unwrap();
    assert_eq!(
        req(&out).set_headers,
        strings(&[("myluaheader", "myluavalue")])
    );
    // Nothing else changed.
    let mut expected = input.clone();
    expected.request.as_mut().unwrap().set_headers = req(&out).set_headers.clone();
    assert_eq!(out, expected);
    assert!(
        !logs_containing("User-Agent header:\tcurl/8.5.0").is_empty(),
        "print goes to the host log"
    );
}

const HOOKS: &str = r#"
local cjson = require "cjson"

function Noop(request, session, spec)
  return request, session
end

function NoReturn(request, session, spec)
  request.set_headers = { ["X-No-Return"] = "kept" }
end

function ChangeEverything(request, session, spec)
  request.set_headers = request.set_headers or {}
  request.set_headers["X-Api"] = spec.APIID
  request.set_headers["X-Agent"] = request.headers["User-Agent"]
  request.set_headers["X-Method"] = request.method
  request.set_headers["X-Absent"] = tostring(request.headers["X-Not-Sent"])
  tyk.req.clear_header("X-Remove-Me")
  tyk.req.clear_header("Cookie")
  request.add_params = { added = "1" }
  request.delete_params = { "drop" }
  request.params.keep = nil
  request.url = "/rewritten"
  request.method = "POST"
  request.body = "new body"
  request.raw_body = "bmV3IGJvZHk="
  return request, session
end

function ReadsOnly(request, session, spec)
  local n = 0
  for k, v in pairs(request.headers) do n = n + 1 end
  local seen = request.url .. request.method .. spec.OrgID .. tostring(session.rate)
  return request, session
end

function Shape(request, session, spec)
  local fields = {}
  for k, v in pairs(request) do fields[#fields + 1] = k .. "=" .. type(v) end
  table.sort(fields)
  local spec_keys = {}
  for k in pairs(spec) do spec_keys[#spec_keys + 1] = k end
  table.sort(spec_keys)
  tyk.req.set_header("X-Request-Fields", table.concat(fields, ","))
  tyk.req.set_header("X-Spec-Keys", table.concat(spec_keys, ","))
  tyk.req.set_header("X-Code", tostring(request.return_overrides.response_code))
  tyk.req.set_header("X-Session", type(session) .. ":" .. tostring(next(session)))
  tyk.req.set_header("X-Json", cjson.encode({ url = request.url, raw = request.raw_body }))
  return request, session
end

function ReplacesSession(request, session, spec)
  return request, { rate = 5, per = 2, metadata = { who = "lua" }, tags = { "a", "b" } }
end

function SetsNil(request, session, spec)
  request.url = nil
  request.headers = nil
  return request, session
end

function BadReturn(request, session, spec)
  return 42
end

function BadShape(request, session, spec)
  request.set_headers = { "not", "a", "map" }
  return request, session
end

function Raises(request, session, spec)
  local function inner() error("boom from lua") end
  inner()
end

function TextBody(request, session, spec)
  request.body = "text only"
  return request, session
end

function FreshRequest(request, session, spec)
  return { body = "fresh", method = "PUT", url = "/fresh" }, session
end

function Wrap(request, response, session, metadata, spec)
  response.status_code = 201
  response.headers = response.headers or {}
  response.headers["X-Response"] = "lua"
  response.body = "wrapped:" .. (response.body or "")
  return response
end
"#;

fn hooks_bundle(root: &Path, name: &str) -> PathBuf {
    write_bundle(root, name, &["Noop"], &[("middleware.lua", HOOKS)])
}

#[test]
fn a_hook_that_changes_nothing_returns_the_input_bytes() {
    let root = fresh_root("noop");
    hooks_bundle(&root, "h");
    load_driver("lua-noop", &root).unwrap();
    for hook in ["Noop", "ReadsOnly"] {
        let input =
            object(HookType::Pre, hook, Some("h"), &[("User-Agent", "curl/8")]).encode_to_vec();
        assert_eq!(dispatch_with("lua-noop", &input).unwrap(), input, "{hook}");
    }
    // Returning nothing keeps the changes made in place.
    let out = run(
        "lua-noop",
        &object(HookType::Pre, "NoReturn", Some("h"), &[]),
    )
    .unwrap();
    assert_eq!(req(&out).set_headers, strings(&[("X-No-Return", "kept")]));
}

#[test]
fn pre_hook_changes_headers_params_url_method_and_body() {
    let root = fresh_root("pre");
    hooks_bundle(&root, "h");
    load_driver("lua-pre", &root).unwrap();
    let input = object(
        HookType::Pre,
        "ChangeEverything",
        Some("h"),
        &[("User-Agent", "curl/8"), ("X-Remove-Me", "1")],
    );
    let out = run("lua-pre", &input).unwrap();
    let r = req(&out);
    assert_eq!(
        r.set_headers,
        strings(&[
            ("X-Api", "api-1"),
            ("X-Agent", "curl/8"),
            ("X-Method", "GET"),
            ("X-Absent", "nil"),
        ])
    );
    assert_eq!(r.delete_headers, ["X-Remove-Me", "Cookie"]);
    assert_eq!(r.add_params, strings(&[("added", "1")]));
    assert_eq!(r.delete_params, ["drop"]);
    assert_eq!(r.params, strings(&[("drop", "x")]));
    assert_eq!(r.url, "/rewritten");
    assert_eq!(r.method, "POST");
    assert_eq!(r.body, "new body");
    assert_eq!(r.raw_body, b"new body");
    assert_eq!(r.headers, input.request.as_ref().unwrap().headers);
    assert_eq!(out.spec, input.spec);
}

#[test]
fn tables_have_the_shape_of_tyks_json() {
    let root = fresh_root("shape");
    hooks_bundle(&root, "h");
    load_driver("lua-shape", &root).unwrap();
    let mut input = object(HookType::Pre, "Shape", Some("h"), &[("Accept", "*/*")]);
    input.request.as_mut().unwrap().raw_body = vec![0, 1, 2, 255];
    let out = run("lua-shape", &input).unwrap();
    let h = &req(&out).set_headers;
    // Empty fields (body, set_headers, ...) are absent, as Go's omitempty leaves them out.
    assert_eq!(
        h["X-Request-Fields"],
        "headers=table,method=string,params=table,raw_body=string,request_uri=string,\
         return_overrides=table,scheme=string,url=string"
    );
    assert_eq!(h["X-Spec-Keys"], "APIID,OrgID,bundle_hash");
    assert_eq!(h["X-Code"], "-1");
    // No session in a Pre hook's Object: an empty table.
    assert_eq!(h["X-Session"], "table:nil");
    let json: serde_json::Value = serde_json::from_str(&h["X-Json"]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"url": "/orders?drop=x&keep=y", "raw": "AAEC/w=="})
    );
}

#[test]
fn returned_tables_replace_and_nil_clears() {
    let root = fresh_root("replace");
    hooks_bundle(&root, "h");
    load_driver("lua-replace", &root).unwrap();
    let mut input = object(HookType::Post, "ReplacesSession", Some("h"), &[]);
    input.session = Some(SessionState {
        rate: 100.0,
        alias: "old".into(),
        ..Default::default()
    });
    let out = run("lua-replace", &input).unwrap();
    assert_eq!(
        out.session.unwrap(),
        SessionState {
            rate: 5.0,
            per: 2.0,
            metadata: strings(&[("who", "lua")]),
            tags: vec!["a".into(), "b".into()],
            ..Default::default()
        }
    );
    let out = run(
        "lua-replace",
        &object(HookType::Pre, "SetsNil", Some("h"), &[("A", "b")]),
    )
    .unwrap();
    assert_eq!(req(&out).url, "");
    assert!(req(&out).headers.is_empty());
}

#[test]
fn wrong_returns_and_shapes_fail_the_call_with_a_clear_message() {
    let root = fresh_root("wrong");
    hooks_bundle(&root, "h");
    load_driver("lua-wrong", &root).unwrap();
    let (_, e) = run(
        "lua-wrong",
        &object(HookType::Pre, "BadReturn", Some("h"), &[]),
    )
    .unwrap_err();
    assert!(
        e.contains("returned a number where the request table belongs"),
        "{e}"
    );
    let (_, e) = run(
        "lua-wrong",
        &object(HookType::Pre, "BadShape", Some("h"), &[]),
    )
    .unwrap_err();
    assert!(e.contains("set_headers: expected string keys"), "{e}");
    let (_, e) = run(
        "lua-wrong",
        &object(HookType::Pre, "Missing", Some("h"), &[]),
    )
    .unwrap_err();
    assert!(
        e.contains("lua bundle 'h' has no function 'Missing'"),
        "{e}"
    );
}

#[test]
fn a_lua_error_fails_the_call_and_logs_the_traceback() {
    let root = fresh_root("raises");
    hooks_bundle(&root, "h");
    load_driver("lua-raises", &root).unwrap();
    let (_, e) = run(
        "lua-raises",
        &object(HookType::Pre, "Raises", Some("h"), &[]),
    )
    .unwrap_err();
    assert!(e.contains("lua hook 'Raises' of bundle 'h' failed"), "{e}");
    assert!(e.contains("boom from lua"), "{e}");
    let logged = logs_containing("lua hook 'Raises' of bundle 'h' failed:");
    assert!(
        logged.iter().any(|(m, l)| l == "error"
            && m.contains("stack traceback")
            && m.contains("h/middleware.lua")),
        "{logged:?}"
    );
    // The state keeps serving.
    let input = object(HookType::Pre, "Noop", Some("h"), &[]).encode_to_vec();
    assert_eq!(dispatch_with("lua-raises", &input).unwrap(), input);
}

#[test]
fn response_hook_with_five_parameters_rewrites_the_response() {
    let root = fresh_root("response");
    hooks_bundle(&root, "h");
    load_driver("lua-response", &root).unwrap();
    let mut input = object(HookType::Response, "Wrap", Some("h"), &[]);
    input.response = Some(ResponseObject {
        status_code: 200,
        body: "upstream".into(),
        raw_body: b"upstream".to_vec(),
        ..Default::default()
    });
    let out = run("lua-response", &input).unwrap();
    let response = out.response.unwrap();
    assert_eq!(response.status_code, 201);
    assert_eq!(response.body, "wrapped:upstream");
    assert_eq!(
        response.raw_body, b"wrapped:upstream",
        "raw_body (what Tyk sends) follows the text"
    );
    assert_eq!(response.headers, strings(&[("X-Response", "lua")]));
}

#[test]
fn a_body_changed_as_text_reaches_raw_body() {
    // Tyk's gateway sends raw_body and ignores body: a hook that sets only the text meant the body.
    let root = fresh_root("textbody");
    hooks_bundle(&root, "h");
    load_driver("lua-textbody", &root).unwrap();
    for (hook, want) in [("TextBody", "text only"), ("FreshRequest", "fresh")] {
        let mut input = object(HookType::Pre, hook, Some("h"), &[]);
        let r = input.request.as_mut().unwrap();
        r.body = "original".into();
        r.raw_body = b"original".to_vec();
        let out = run("lua-textbody", &input).unwrap();
        let r = req(&out);
        assert_eq!(
            (r.body.as_str(), r.raw_body.as_slice()),
            (want, want.as_bytes()),
            "{hook}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Auth: CustomKeyCheck with four parameters, 403 through return_overrides, the auth cache

const AUTH: &str = r#"
function MyAuthCheck(request, session, metadata, spec)
  local auth = (request.headers or {})["Authorization"]
  if auth == "Bearer good" then
    session.rate = 1000
    session.per = 1
    session.quota_max = 77
    session.id_extractor_deadline = os.time() + 60
    metadata.token = "good-token"
    return request, session, metadata
  end
  request.return_overrides.response_code = 403
  request.return_overrides.response_error = "Key not authorised"
  request.return_overrides.headers = { ["X-Why"] = "bad token" }
  return request, session, metadata
end

function CountingAuth(request, session, metadata, spec)
  local token = request.headers["Authorization"] or ""
  local key = "lua-cache-calls:" .. token
  tyk.store_data(key, tostring((tonumber(tyk.get_data(key)) or 0) + 1), 0)
  if token:find("^cache%-good") then
    session.rate = 42
    session.id_extractor_deadline = os.time() + 60
  elseif token:find("^cache%-expired") then
    session.rate = 1
    session.id_extractor_deadline = os.time() - 1
  else
    request.return_overrides.response_code = 403
    request.return_overrides.response_error = "Key not authorised"
    return request, session, metadata
  end
  metadata.token = token
  return request, session, metadata
end
"#;

#[test]
fn auth_check_with_four_parameters_accepts_and_keeps_metadata() {
    let root = fresh_root("auth");
    write_bundle(&root, "a", &["MyAuthCheck"], &[("middleware.lua", AUTH)]);
    load_driver("lua-auth", &root).unwrap();
    let before = now();
    let input = object(
        HookType::CustomKeyCheck,
        "MyAuthCheck",
        Some("a"),
        &[("Authorization", "Bearer good")],
    );
    let out = run("lua-auth", &input).unwrap();
    let session = out.session.as_ref().expect("a session");
    assert_eq!(
        (session.rate, session.per, session.quota_max),
        (1000.0, 1.0, 77)
    );
    assert!((before + 59..=now() + 61).contains(&session.id_extractor_deadline));
    assert_eq!(out.metadata, strings(&[("token", "good-token")]));
    assert_eq!(session.metadata, strings(&[("token", "good-token")]));
    assert_eq!(
        req(&out).return_overrides.as_ref().unwrap().response_code,
        -1
    );
}

#[test]
fn auth_check_answers_403_through_return_overrides() {
    let root = fresh_root("auth-403");
    write_bundle(&root, "a", &["MyAuthCheck"], &[("middleware.lua", AUTH)]);
    load_driver("lua-auth-403", &root).unwrap();
    for headers in [&[("Authorization", "Bearer bad")][..], &[]] {
        let input = object(HookType::CustomKeyCheck, "MyAuthCheck", Some("a"), headers);
        let out = run("lua-auth-403", &input).unwrap();
        let ro = req(&out).return_overrides.clone().unwrap();
        assert_eq!(ro.response_code, 403);
        assert_eq!(ro.response_error, "Key not authorised");
        assert_eq!(ro.headers, strings(&[("X-Why", "bad token")]));
    }
}

#[test]
fn id_extractor_deadline_set_in_lua_feeds_the_auth_cache() {
    let root = fresh_root("auth-cache");
    write_bundle(&root, "c", &["CountingAuth"], &[("middleware.lua", AUTH)]);
    load_driver("lua-cache", &root).unwrap();
    check_the_auth_cache_in_front_of(
        "lua-cache",
        "middleware.lua",
        "api-lua-cache",
        "lua-cache-calls",
    );
}

// ---------------------------------------------------------------------------------------------
// cjson, host API, events

#[test]
fn cjson_works_without_lua_cjson_installed() {
    let root = fresh_root("cjson");
    write_bundle(
        &root,
        "j",
        &["Json"],
        &[(
            "middleware.lua",
            r#"
local cjson = require "cjson"
local safe = require "cjson.safe"

function Json(request, session, spec)
  local config = cjson.decode(spec.config_data)
  local h = {}
  h["X-Limit"] = tostring(config.limits.rps)
  h["X-First"] = config.tenants[1]
  h["X-Null"] = tostring(config.missing == cjson.null)
  h["X-Enc-Array"] = cjson.encode({ 1, 2, "three" })
  h["X-Enc-Empty"] = cjson.encode({})
  h["X-Enc-Escape"] = cjson.encode({ path = "/a\"b" })
  h["X-Enc-Null"] = cjson.encode({ cjson.null })
  h["X-Enc-Float"] = cjson.encode({ x = 0.5, y = 1e20 })
  local ok, err = pcall(cjson.encode, { f = print })
  h["X-Enc-Error"] = tostring(ok) .. ":" .. err
  local v, e = safe.decode("{not json")
  h["X-Safe"] = tostring(v) .. ":" .. tostring(e ~= nil)
  -- The whole request, as Tyk's JSON would have it.
  local whole = cjson.decode(cjson.encode(request))
  h["X-Whole"] = whole.method .. " " .. whole.url .. " " .. whole.headers["Accept"]
  request.set_headers = h
  return request, session
end
"#,
        )],
    );
    load_driver("lua-cjson", &root).unwrap();
    let mut input = object(
        HookType::Pre,
        "Json",
        Some("j"),
        &[("Accept", "text/plain")],
    );
    input.spec.insert(
        "config_data".into(),
        r#"{"limits": {"rps": 25}, "tenants": ["acme", "globex"], "missing": null}"#.into(),
    );
    let out = run("lua-cjson", &input).unwrap();
    let h = &req(&out).set_headers;
    assert_eq!(h["X-Limit"], "25");
    assert_eq!(h["X-First"], "acme");
    assert_eq!(h["X-Null"], "true");
    assert_eq!(h["X-Enc-Array"], r#"[1,2,"three"]"#);
    assert_eq!(h["X-Enc-Empty"], "{}");
    assert_eq!(h["X-Enc-Escape"], r#"{"path":"\/a\"b"}"#);
    assert_eq!(h["X-Enc-Null"], "[null]");
    let float: serde_json::Value = serde_json::from_str(&h["X-Enc-Float"]).unwrap();
    assert_eq!(float, serde_json::json!({"x": 0.5, "y": 1e20}));
    assert!(
        h["X-Enc-Error"].starts_with("false:"),
        "{}",
        h["X-Enc-Error"]
    );
    assert!(
        h["X-Enc-Error"].contains("Cannot serialise function"),
        "{}",
        h["X-Enc-Error"]
    );
    assert_eq!(h["X-Safe"], "nil:true");
    assert_eq!(h["X-Whole"], "GET /orders?drop=x&keep=y text/plain");
}

#[test]
fn host_api_store_get_log_and_trigger_event() {
    let root = fresh_root("host");
    write_bundle(
        &root,
        "host",
        &["UsesHost"],
        &[(
            "middleware.lua",
            r#"
function UsesHost(request, session, spec)
  local key = "lua:" .. spec.APIID
  tyk.store_data(key, "stored-value", 60)
  tyk.req.set_header("X-Got", tyk.get_data(key))
  tyk.req.set_header("X-Absent", tostring(tyk.get_data("lua:never-stored")))
  tyk.trigger_event("LuaEvent", { from = "lua" })
  tyk.log("hello from lua", "warning")
  return request, session
end
"#,
        )],
    );
    load_driver("lua-host", &root).unwrap();
    let mut input = object(HookType::Pre, "UsesHost", Some("host"), &[]);
    input
        .spec
        .insert("APIID".into(), format!("api-host-{}", std::process::id()));
    let out = run("lua-host", &input).unwrap();
    let h = &req(&out).set_headers;
    assert_eq!(h["X-Got"], "stored-value");
    assert_eq!(h["X-Absent"], "nil");
    assert_eq!(
        get(&format!("lua:api-host-{}", std::process::id())),
        "stored-value"
    );
    assert!(EVENTS
        .lock()
        .unwrap()
        .iter()
        .any(|(n, p)| n == "LuaEvent" && p == r#"{"from":"lua"}"#));
    assert!(logs_containing("hello from lua")
        .iter()
        .any(|(_, l)| l == "warning"));
}

#[test]
fn events_reach_the_lua_handler_named_by_handler_name() {
    let root = fresh_root("events");
    write_bundle(
        &root,
        "ev",
        &[],
        &[(
            "middleware.lua",
            r#"
function RecordEvent(event, spec)
  tyk.store_data("lua_event:" .. event.message.key, event.handler_name .. ":" .. spec.APIID, 0)
end
function Broken(event, spec)
  error("handler failure")
end
"#,
        )],
    );
    load_driver("lua-events", &root).unwrap();
    let key = format!("ev-{}", std::process::id());
    let event = serde_json::json!({
        "message": {"key": key}, "handler_name": "RecordEvent", "spec": {"APIID": "api-ev", "OrgID": "o"}
    });
    DispatchEvent(c(&event.to_string()).as_ptr());
    assert_eq!(get(&format!("lua_event:{key}")), "RecordEvent:api-ev");
    DispatchEvent(c(r#"{"handler_name": "Broken", "message": {}}"#).as_ptr());
    assert!(!logs_containing("lua event handler 'Broken' of bundle 'ev' failed").is_empty());
    DispatchEvent(c("not json").as_ptr());
    DispatchEvent(c(r#"{"handler_name": "NoSuchHandler"}"#).as_ptr());
}

// ---------------------------------------------------------------------------------------------
// Bundles: environments, broken bundles, budgets, reload, load by path, threads

#[test]
fn two_bundles_may_define_the_same_globals() {
    let root = fresh_root("clash");
    for (name, tag) in [("one", "first"), ("two", "second")] {
        write_bundle(
            &root,
            name,
            &["Tag"],
            &[
                (
                    "middleware.lua",
                    &format!(
                        r#"
local helpers = require "helpers"
counter = 0
TAG = "{tag}"
function Tag(request, session, spec)
  counter = counter + 1
  tyk.req.set_header("X-Tag", helpers.tag() .. ":" .. TAG .. ":" .. counter)
  return request, session
end
"#
                    ),
                ),
                (
                    "helpers.lua",
                    &format!("return {{ tag = function() return \"{name}\" end }}"),
                ),
            ],
        );
    }
    load_driver("lua-clash", &root).unwrap();
    let tag = |bundle: &str| {
        let out = run(
            "lua-clash",
            &object(HookType::Pre, "Tag", Some(bundle), &[]),
        )
        .unwrap();
        req(&out).set_headers["X-Tag"].clone()
    };
    assert_eq!(tag("one"), "one:first:1");
    assert_eq!(tag("two"), "two:second:1");
    assert_eq!(tag("one"), "one:first:2");
    // Without bundle_hash and with two bundles defining the hook, the call says so.
    let (_, e) = run("lua-clash", &object(HookType::Pre, "Tag", None, &[])).unwrap_err();
    assert!(e.contains("defined by lua bundles one, two"), "{e}");
}

#[test]
fn broken_bundles_fail_their_own_hooks_only() {
    let root = fresh_root("broken");
    hooks_bundle(&root, "good");
    write_bundle(
        &root,
        "syntax",
        &["Hook"],
        &[("middleware.lua", "function Hook(request\n  x = = 1\nend")],
    );
    write_bundle(
        &root,
        "runtime",
        &["Hook"],
        &[("middleware.lua", "local x = nil\nx.field = 1")],
    );
    let missing = root.join("missing");
    fs::create_dir_all(&missing).unwrap();
    fs::write(
        missing.join("manifest.json"),
        r#"{"file_list": ["middleware.lua"], "custom_middleware": {"driver": "lua"}}"#,
    )
    .unwrap();
    load_driver("lua-broken", &root).unwrap();

    for (bundle, text) in [
        ("syntax", "syntax/middleware.lua:2"),
        ("runtime", "runtime/middleware.lua:2"),
        ("missing", "file_list names middleware.lua"),
    ] {
        let (_, e) = run(
            "lua-broken",
            &object(HookType::Pre, "Hook", Some(bundle), &[]),
        )
        .unwrap_err();
        assert!(
            e.contains(&format!("lua bundle '{bundle}' failed to load")),
            "{e}"
        );
        assert!(e.contains(text), "{bundle}: {e}");
    }
    let input = object(HookType::Pre, "Noop", Some("good"), &[]).encode_to_vec();
    assert_eq!(dispatch_with("lua-broken", &input).unwrap(), input);
}

#[test]
fn an_endless_loop_is_stopped_by_the_time_budget() {
    let root = fresh_root("loop");
    write_bundle(
        &root,
        "l",
        &["Spin"],
        &[(
            "middleware.lua",
            r#"
function Spin(request, session, spec)
  local i = 0
  while true do i = i + 1 end
end
function SpinInPcall(request, session, spec)
  while true do
    pcall(function() while true do end end)
  end
end
function Fine(request, session, spec)
  tyk.req.set_header("X-Fine", "yes")
  return request, session
end
"#,
        )],
    );
    load_driver_with("lua-loop", &root, serde_json::json!({"timeout_ms": 200})).unwrap();
    for hook in ["Spin", "SpinInPcall"] {
        let start = Instant::now();
        let (_, e) = run("lua-loop", &object(HookType::Pre, hook, Some("l"), &[])).unwrap_err();
        let took = start.elapsed();
        assert!(
            e.contains("ran past its time budget of 200 ms"),
            "{hook}: {e}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{hook} stopped after {took:?}"
        );
    }
    let out = run("lua-loop", &object(HookType::Pre, "Fine", Some("l"), &[])).unwrap();
    assert_eq!(req(&out).set_headers["X-Fine"], "yes");
}

#[test]
fn an_instruction_budget_stops_long_hooks() {
    let root = fresh_root("instructions");
    write_bundle(
        &root,
        "n",
        &["Count"],
        &[(
            "middleware.lua",
            r#"
function Count(request, session, spec)
  local n = tonumber(spec.loops)
  local s = 0
  for i = 1, n do s = s + i end
  tyk.req.set_header("X-Sum", tostring(s))
  return request, session
end
"#,
        )],
    );
    load_driver_with(
        "lua-instructions",
        &root,
        serde_json::json!({"timeout_ms": 0, "max_instructions": 100000}),
    )
    .unwrap();
    let with_loops = |n: &str| {
        let mut o = object(HookType::Pre, "Count", Some("n"), &[]);
        o.spec.insert("loops".into(), n.into());
        run("lua-instructions", &o)
    };
    assert_eq!(
        req(&with_loops("100").unwrap()).set_headers["X-Sum"],
        "5050"
    );
    let (_, e) = with_loops("100000000").unwrap_err();
    assert!(e.contains("budget of 100000 instructions"), "{e}");
}

#[test]
fn reload_picks_up_changes_and_keeps_a_working_version() {
    let root = fresh_root("reload");
    let version = |v: &str| {
        format!("function V(request, session, spec)\n  tyk.req.set_header(\"X-V\", \"{v}\")\n  return request, session\nend\n")
    };
    write_bundle(&root, "r", &["V"], &[("middleware.lua", &version("1"))]);
    load_driver("lua-reload", &root).unwrap();
    let v = |bundle: &str| {
        run("lua-reload", &object(HookType::Pre, "V", Some(bundle), &[]))
            .map(|o| req(&o).set_headers["X-V"].clone())
    };
    assert_eq!(v("r").unwrap(), "1");
    write_atomically(&root.join("r/middleware.lua"), &version("2"));
    assert_eq!(v("r").unwrap(), "1", "no reload yet");
    Reload();
    assert_eq!(v("r").unwrap(), "2");
    write_atomically(&root.join("r/middleware.lua"), "function V(request\n");
    Reload();
    assert_eq!(
        v("r").unwrap(),
        "2",
        "a broken new version leaves the old one serving"
    );
    assert!(!logs_containing("lua bundle 'r' changed but its new version fails").is_empty());
    write_bundle(&root, "new", &["V"], &[("middleware.lua", &version("new"))]);
    Reload();
    assert_eq!(v("new").unwrap(), "new");
    fs::remove_dir_all(root.join("new")).unwrap();
    Reload();
    let (_, e) = v("new").unwrap_err();
    assert!(e.contains("no lua bundle 'new' is loaded"), "{e}");
}

#[test]
fn bundles_load_by_path_through_coprocess_load_bundle() {
    let root = fresh_root("by-path");
    let elsewhere = fresh_root("by-path-src");
    let dir = hooks_bundle(&elsewhere, "0123abcd");
    load_driver("lua-by-path", &root).unwrap();
    let rc = CoProcessLoadBundle(c("lua-by-path").as_ptr(), c(dir.to_str().unwrap()).as_ptr());
    assert_eq!(rc, 0, "{}", last_error());
    let out = run(
        "lua-by-path",
        &object(HookType::Pre, "NoReturn", Some("0123abcd"), &[]),
    )
    .unwrap();
    assert_eq!(req(&out).set_headers["X-No-Return"], "kept");
    Reload();
    assert!(run(
        "lua-by-path",
        &object(HookType::Pre, "Noop", Some("0123abcd"), &[])
    )
    .is_ok());
    let broken = write_bundle(&elsewhere, "broken", &[], &[("middleware.lua", "x = ")]);
    let rc = CoProcessLoadBundle(
        c("lua-by-path").as_ptr(),
        c(broken.to_str().unwrap()).as_ptr(),
    );
    assert_ne!(rc, 0);
    assert!(
        logs_containing("lua bundle 'broken' failed to load")
            .iter()
            .any(|(m, l)| l == "error" && m.contains("broken/middleware.lua:1")),
        "the reason is logged"
    );
}

#[test]
fn four_threads_dispatch_at_once() {
    let root = fresh_root("threads");
    write_bundle(
        &root,
        "t",
        &["Work"],
        &[(
            "middleware.lua",
            r#"
calls = 0
function Work(request, session, spec)
  calls = calls + 1
  local s = 0
  for i = 1, 20000 do s = s + i end
  tyk.req.set_header("X-Thread", request.headers["X-Thread"])
  tyk.req.set_header("X-Sum", tostring(s))
  return request, session
end
"#,
        )],
    );
    load_driver("lua-threads", &root).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let tag = t.to_string();
                let input = object(HookType::Pre, "Work", Some("t"), &[("X-Thread", &tag)]);
                for _ in 0..200 {
                    let out = run("lua-threads", &input).unwrap();
                    assert_eq!(req(&out).set_headers["X-Thread"], tag);
                    assert_eq!(req(&out).set_headers["X-Sum"], "200010000");
                }
            });
        }
    });
}
