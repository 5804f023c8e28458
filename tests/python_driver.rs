//! The Python driver (drivers/python, libcoprocess_python.so) with real CPython, driven through the
//! bridge's C exports: Tyk-style bundles written to disk, loaded, dispatched to, reloaded.
//!
//! Needs python3 with the `protobuf` package (the driver's message classes); without it every test
//! prints `SKIPPED: <test>: python3 with the protobuf package not installed`.

mod abi;
mod common;
#[path = "common/language_driver.rs"]
mod language_driver;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::{CoProcessLoadBundle, DispatchEvent, Reload};
use coprocess_bridge::proto::{HookType, Message, Object, ResponseObject, SessionState};
use language_driver::*;

// ---------------------------------------------------------------------------------------------
// Harness: the driver library (shared helpers in tests/common/language_driver.rs)

/// The driver library, or `None` (after a loud skip) when python3 or its protobuf package is missing.
fn driver_lib() -> Option<PathBuf> {
    static LIB: OnceLock<Option<PathBuf>> = OnceLock::new();
    let lib = LIB.get_or_init(|| {
        let ok = Command::new("python3")
            .args(["-c", "import google.protobuf"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return None;
        }
        install_host_handlers();
        Some(common::build_workspace_cdylib(
            "coprocess-python-driver",
            "coprocess_python",
        ))
    });
    if lib.is_none() {
        common::report_skip("python3 with the protobuf package");
    }
    lib.clone()
}

/// A fresh directory for this test's bundles: `target/<profile>/python-driver-tests/<test>`.
fn fresh_root(test: &str) -> PathBuf {
    language_driver::fresh_root("python-driver-tests", test)
}

/// Writes a Python bundle: `files` (path, contents) and a manifest naming `hooks` as pre hooks.
fn write_bundle(root: &Path, name: &str, hooks: &[&str], files: &[(&str, &str)]) -> PathBuf {
    language_driver::write_bundle(root, "python", name, hooks, files)
}

/// Loads a driver instance named `name` over `root`.
fn load_driver(name: &str, root: &Path) -> Result<(), (i32, String)> {
    let lib = driver_lib().expect("checked by the caller");
    let config = serde_json::json!({ "bundle_root": root }).to_string();
    load(name, &lib, Some(&config))
}

/// Skips the calling test loudly when the driver cannot run here.
macro_rules! python_or_skip {
    () => {
        if driver_lib().is_none() {
            return;
        }
    };
}

fn set_headers(o: &Object) -> &HashMap<String, String> {
    &o.request.as_ref().unwrap().set_headers
}

// ---------------------------------------------------------------------------------------------
// Bundles

const HELPERS_A: &str = r#"
def tag():
    return "bundle-a"

def explode():
    raise ValueError("boom from helpers")
"#;

/// A Tyk-style bundle with one hook of each signature and every host service.
const MIDDLEWARE_A: &str = r#"
import json
import sys
import time

from tyk.decorators import *
from gateway import TykGateway as tyk

import helpers


@Hook
def AddHeaders(request, session, spec):
    request.add_header("X-Python", helpers.tag())
    request.add_header("X-Api-Id", spec["APIID"])
    request.add_header("X-Seen-Agent", request.get_header("User-Agent") or "none")
    request.add_header("X-Missing", str(request.get_header("X-Not-Sent")))
    request.delete_header("X-Remove-Me")
    request.add_param("added", "1")
    request.delete_param("drop")
    request.object.set_headers["X-Method"] = request.object.method
    return request, session


@Pre
def OldStylePre(request, session, spec):
    request.add_header("X-Old-Style", "pre")
    return request, session


@Hook
def MyAuthCheck(request, session, metadata, spec):
    auth = request.get_header("Authorization")
    if auth == "Bearer good":
        session.rate = 1000.0
        session.per = 1.0
        session.quota_max = 77
        session.id_extractor_deadline = int(time.time()) + 60
        metadata["token"] = "good-token"
        return request, session, metadata
    request.object.return_overrides.response_code = 403
    request.object.return_overrides.response_error = "Key not authorised"
    request.object.return_overrides.headers["X-Why"] = "bad token"
    return request, session, metadata


@Hook
def AfterAuth(request, session, metadata, spec):
    metadata["post_key_auth"] = "yes"
    session.tags.append("seen-by-python")
    return request, session, metadata


@Hook
def ReturnsNewValues(request, session, metadata, spec):
    # Returns new objects instead of changing the given ones: they replace them.
    new_session = type(session)()
    new_session.alias = "replaced"
    return request.object, new_session, {"only": "this"}


@Hook
def Wrap(request, response, session, metadata, spec):
    response.status_code = 201
    response.headers["X-Response"] = "python"
    response.raw_body = b'{"wrapped": ' + response.raw_body + b'}'
    response.body = response.raw_body.decode()
    return response


@Hook
def UsesHost(request, session, spec):
    key = "py:" + spec["APIID"]
    tyk.store_data(key, "stored-value", 60)
    got = tyk.get_data(key)
    request.add_header("X-Got", got.decode() + ":" + type(got).__name__)
    request.add_header("X-Absent", repr(tyk.get_data("py:never-stored")))
    tyk.trigger_event("PythonEvent", json.dumps({"from": "python"}))
    tyk.log("hello from python", "warning")
    try:
        {}["nope"]
    except KeyError:
        tyk.log_error("handled a problem:")
    return request, session


@Hook
def Raises(request, session, spec):
    return helpers.explode()


@Hook
def BadReturn(request, session, spec):
    return 42


@Hook
def Namespaces(request, session, spec):
    request.add_header("X-Global-Helpers", str("helpers" in sys.modules))
    request.add_header("X-Global-Tyk", str("tyk" in sys.modules or "gateway" in sys.modules))
    request.add_header("X-Module", __name__)
    return request, session


def NotAHook(request, session, spec):
    raise RuntimeError("never called: not decorated and not in the manifest")


@Event
def RecordEvent(event, spec):
    tyk.store_data("py_event:" + event.message["key"], json.dumps({"api": spec.get("APIID"), "name": event.handler_name}), 0)
"#;

const HOOKS_A: &[&str] = &[
    "AddHeaders",
    "OldStylePre",
    "MyAuthCheck",
    "AfterAuth",
    "ReturnsNewValues",
    "Wrap",
    "UsesHost",
    "Raises",
    "BadReturn",
    "Namespaces",
];

fn bundle_a(root: &Path, name: &str) -> PathBuf {
    write_bundle(
        root,
        name,
        HOOKS_A,
        &[("middleware.py", MIDDLEWARE_A), ("helpers.py", HELPERS_A)],
    )
}

/// A second bundle with its own helpers.py (and a package using a relative import).
fn bundle_b(root: &Path, name: &str) {
    write_bundle(
        root,
        name,
        &["AddHeaders"],
        &[
            (
                "middleware.py",
                r#"
from tyk.decorators import *
import helpers
from util.text import shout

@Hook
def AddHeaders(request, session, spec):
    request.add_header("X-Python", helpers.tag())
    request.add_header("X-Shout", shout("b"))
    import helpers as late  # imported at call time: still this bundle's module
    request.add_header("X-Late", late.tag())
    return request, session
"#,
            ),
            ("helpers.py", "def tag():\n    return 'bundle-b'\n"),
            ("util/__init__.py", ""),
            (
                "util/text.py",
                "from . import suffix\n\ndef shout(s):\n    return s.upper() + suffix.MARK\n",
            ),
            ("util/suffix.py", "MARK = '!'\n"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Hook signatures, request helpers, auth

#[test]
fn pre_hook_with_three_parameters_changes_headers_and_params() {
    python_or_skip!();
    let root = fresh_root("pre");
    bundle_a(&root, "a");
    load_driver("py-pre", &root).unwrap();

    let input = object(
        HookType::Pre,
        "AddHeaders",
        Some("a"),
        &[("User-Agent", "curl/8"), ("X-Remove-Me", "1")],
    );
    let out = run("py-pre", &input).unwrap();
    let req = out.request.as_ref().unwrap();
    let expected: HashMap<String, String> = [
        ("X-Python", "bundle-a"),
        ("X-Api-Id", "api-1"),
        ("X-Seen-Agent", "curl/8"),
        ("X-Missing", "None"),
        ("X-Method", "GET"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(req.set_headers, expected);
    assert_eq!(req.delete_headers, vec!["X-Remove-Me".to_string()]);
    assert_eq!(
        req.add_params,
        HashMap::from([("added".into(), "1".into())])
    );
    assert_eq!(req.delete_params, vec!["drop".to_string()]);
    // Everything else is as sent.
    assert_eq!(req.headers, input.request.as_ref().unwrap().headers);
    assert_eq!(req.return_overrides.as_ref().unwrap().response_code, -1);
    assert_eq!(out.spec, input.spec);
    assert!(
        out.session.is_none(),
        "a Pre hook that ignores the session adds none"
    );

    let out = run(
        "py-pre",
        &object(HookType::Pre, "OldStylePre", Some("a"), &[]),
    )
    .unwrap();
    assert_eq!(set_headers(&out)["X-Old-Style"], "pre");
}

#[test]
fn auth_check_with_four_parameters_accepts_and_sets_the_deadline() {
    python_or_skip!();
    let root = fresh_root("auth-ok");
    bundle_a(&root, "a");
    load_driver("py-auth-ok", &root).unwrap();

    let input = object(
        HookType::CustomKeyCheck,
        "MyAuthCheck",
        Some("a"),
        &[("Authorization", "Bearer good")],
    );
    let before = now();
    let out = run("py-auth-ok", &input).unwrap();
    let session = out.session.as_ref().expect("a session is returned");
    assert_eq!(
        (session.rate, session.per, session.quota_max),
        (1000.0, 1.0, 77)
    );
    assert!(
        (before + 59..=now() + 61).contains(&session.id_extractor_deadline),
        "id_extractor_deadline {} is about now + 60",
        session.id_extractor_deadline
    );
    assert_eq!(out.metadata["token"], "good-token");
    assert_eq!(session.metadata["token"], "good-token");
    assert_eq!(
        out.request.unwrap().return_overrides.unwrap().response_code,
        -1
    );
}

#[test]
fn auth_check_answers_403_through_return_overrides() {
    python_or_skip!();
    let root = fresh_root("auth-403");
    bundle_a(&root, "a");
    load_driver("py-auth-403", &root).unwrap();

    for headers in [vec![], vec![("Authorization", "Bearer bad")]] {
        let input = object(HookType::CustomKeyCheck, "MyAuthCheck", Some("a"), &headers);
        let out = run("py-auth-403", &input).unwrap();
        let ro = out.request.unwrap().return_overrides.unwrap();
        assert_eq!(ro.response_code, 403, "{headers:?}");
        assert_eq!(ro.response_error, "Key not authorised");
        assert_eq!(ro.headers["X-Why"], "bad token");
        assert!(out.metadata.is_empty());
        assert!(out.session.is_none_or(|s| s.metadata.is_empty()));
    }
}

#[test]
fn post_key_auth_hook_changes_metadata_and_session_in_place() {
    python_or_skip!();
    let root = fresh_root("postkeyauth");
    bundle_a(&root, "a");
    load_driver("py-pka", &root).unwrap();

    let mut input = object(HookType::PostKeyAuth, "AfterAuth", Some("a"), &[]);
    input.session = Some(SessionState {
        rate: 5.0,
        tags: vec!["existing".into()],
        ..Default::default()
    });
    input.metadata.insert("from_gateway".into(), "1".into());
    let out = run("py-pka", &input).unwrap();
    assert_eq!(
        out.metadata,
        HashMap::from([
            ("from_gateway".into(), "1".into()),
            ("post_key_auth".into(), "yes".into())
        ])
    );
    let session = out.session.unwrap();
    assert_eq!(session.rate, 5.0);
    assert_eq!(session.tags, vec!["existing", "seen-by-python"]);
}

#[test]
fn returned_objects_replace_the_given_ones() {
    python_or_skip!();
    let root = fresh_root("replace");
    bundle_a(&root, "a");
    load_driver("py-replace", &root).unwrap();

    let mut input = object(HookType::Post, "ReturnsNewValues", Some("a"), &[]);
    input.session = Some(SessionState {
        rate: 5.0,
        ..Default::default()
    });
    input.metadata.insert("old".into(), "gone".into());
    let out = run("py-replace", &input).unwrap();
    let session = out.session.unwrap();
    assert_eq!((session.alias.as_str(), session.rate), ("replaced", 0.0));
    assert_eq!(
        out.metadata,
        HashMap::from([("only".into(), "this".into())])
    );
    assert_eq!(out.request, input.request);
}

#[test]
fn response_hook_with_five_parameters_rewrites_the_response() {
    python_or_skip!();
    let root = fresh_root("response");
    bundle_a(&root, "a");
    load_driver("py-response", &root).unwrap();

    let mut input = object(HookType::Response, "Wrap", Some("a"), &[]);
    input.response = Some(ResponseObject {
        status_code: 200,
        raw_body: b"[1,2]".to_vec(),
        body: "[1,2]".into(),
        headers: HashMap::from([("Content-Type".into(), "application/json".into())]),
        ..Default::default()
    });
    let out = run("py-response", &input).unwrap();
    let r = out.response.unwrap();
    assert_eq!(r.status_code, 201);
    assert_eq!(r.raw_body, br#"{"wrapped": [1,2]}"#);
    assert_eq!(r.body, r#"{"wrapped": [1,2]}"#);
    assert_eq!(r.headers["X-Response"], "python");
    assert_eq!(r.headers["Content-Type"], "application/json");
}

// ---------------------------------------------------------------------------------------------
// Host services and events

#[test]
fn store_get_trigger_event_and_log_go_through_the_bridge() {
    python_or_skip!();
    let root = fresh_root("host");
    bundle_a(&root, "a");
    load_driver("py-host", &root).unwrap();

    let mut input = object(HookType::Pre, "UsesHost", Some("a"), &[]);
    input.spec.insert("APIID".into(), "api-host".into());
    let out = run("py-host", &input).unwrap();
    assert_eq!(set_headers(&out)["X-Got"], "stored-value:bytes");
    assert_eq!(set_headers(&out)["X-Absent"], "b''");
    assert_eq!(get("py:api-host"), "stored-value", "visible to the host");

    assert!(EVENTS
        .lock()
        .unwrap()
        .contains(&("PythonEvent".into(), r#"{"from": "python"}"#.into())));
    let warning = logs_containing("hello from python");
    assert!(
        warning.iter().any(|(_, level)| level == "warning"),
        "{warning:?}"
    );
    let error = logs_containing("handled a problem:");
    assert!(
        error
            .iter()
            .any(|(m, level)| level == "error" && m.contains("KeyError: 'nope'")),
        "log_error in an except block logs the traceback: {error:?}"
    );
}

#[test]
fn events_reach_event_handlers() {
    python_or_skip!();
    let root = fresh_root("events");
    bundle_a(&root, "a");
    load_driver("py-events", &root).unwrap();

    let event = r#"{"message": {"key": "k-events"}, "handler_name": "RecordEvent", "spec": {"APIID": "api-ev", "OrgID": "o"}}"#;
    DispatchEvent(c(event).as_ptr());
    let stored: serde_json::Value = serde_json::from_str(&get("py_event:k-events")).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"api": "api-ev", "name": "RecordEvent"})
    );

    // Garbage and unknown handlers are logged, never fatal.
    DispatchEvent(c("not json").as_ptr());
    DispatchEvent(c(r#"{"handler_name": "NoSuchHandler"}"#).as_ptr());
    assert!(run(
        "py-events",
        &object(HookType::Pre, "OldStylePre", Some("a"), &[])
    )
    .is_ok());
}

// ---------------------------------------------------------------------------------------------
// Namespaces, errors

#[test]
fn two_bundles_with_same_named_modules_stay_apart() {
    python_or_skip!();
    let root = fresh_root("namespaces");
    bundle_a(&root, "a");
    bundle_b(&root, "b");
    load_driver("py-ns", &root).unwrap();

    let out_a = run(
        "py-ns",
        &object(HookType::Pre, "AddHeaders", Some("a"), &[]),
    )
    .unwrap();
    let out_b = run(
        "py-ns",
        &object(HookType::Pre, "AddHeaders", Some("b"), &[]),
    )
    .unwrap();
    assert_eq!(set_headers(&out_a)["X-Python"], "bundle-a");
    assert_eq!(set_headers(&out_b)["X-Python"], "bundle-b");
    assert_eq!(set_headers(&out_b)["X-Late"], "bundle-b");
    assert_eq!(
        set_headers(&out_b)["X-Shout"],
        "B!",
        "packages and relative imports work"
    );

    let out = run(
        "py-ns",
        &object(HookType::Pre, "Namespaces", Some("a"), &[]),
    )
    .unwrap();
    let h = set_headers(&out);
    assert_eq!(
        h["X-Global-Helpers"], "False",
        "no bundle module in sys.modules under its bare name"
    );
    assert_eq!(
        h["X-Global-Tyk"], "False",
        "tyk and gateway are not put in sys.modules"
    );
    assert!(
        h["X-Module"].starts_with("_coprocess_bundles.b"),
        "{}",
        h["X-Module"]
    );
    assert!(
        h["X-Module"].ends_with("_a.middleware"),
        "{}",
        h["X-Module"]
    );

    // With no bundle_hash, a hook name defined by one bundle only is found; one defined by both is
    // ambiguous.
    let out = run("py-ns", &object(HookType::Pre, "Wrap", None, &[]));
    assert!(out.is_ok(), "{out:?}");
    let (code, msg) = run("py-ns", &object(HookType::Pre, "AddHeaders", None, &[])).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DRIVER_FAILED as i32);
    assert!(
        msg.contains("hook 'AddHeaders' is defined by bundles a, b"),
        "{msg}"
    );
}

#[test]
fn broken_bundles_fail_their_own_hooks_only() {
    python_or_skip!();
    let root = fresh_root("broken");
    bundle_a(&root, "a");
    write_bundle(
        &root,
        "syntax",
        &["Hook1"],
        &[(
            "middleware.py",
            "from tyk.decorators import *\n\n@Hook\ndef Hook1(request, session, spec:\n    pass\n",
        )],
    );
    write_bundle(
        &root,
        "missing_dep",
        &["Hook1"],
        &[(
            "middleware.py",
            "from tyk.decorators import *\nimport definitely_not_installed_xyz\n",
        )],
    );
    write_bundle(&root, "no_manifest", &[], &[]);
    fs::remove_file(root.join("no_manifest/manifest.json")).unwrap();
    load_driver("py-broken", &root).expect("broken bundles do not fail the driver");

    let (code, msg) = run(
        "py-broken",
        &object(HookType::Pre, "Hook1", Some("syntax"), &[]),
    )
    .unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DRIVER_FAILED as i32);
    assert!(
        msg.contains("bundle 'syntax' failed to load: SyntaxError"),
        "{msg}"
    );
    assert!(msg.contains("middleware.py, line 4"), "{msg}");

    let (_, msg) = run(
        "py-broken",
        &object(HookType::Pre, "Hook1", Some("missing_dep"), &[]),
    )
    .unwrap_err();
    assert!(
        msg.contains("bundle 'missing_dep' failed to load: ModuleNotFoundError: No module named 'definitely_not_installed_xyz'"),
        "{msg}"
    );
    let (_, msg) = run(
        "py-broken",
        &object(HookType::Pre, "X", Some("no_manifest"), &[]),
    )
    .unwrap_err();
    assert!(msg.contains("no manifest.json"), "{msg}");

    let logged = logs_containing("bundle 'missing_dep'");
    assert!(
        logged
            .iter()
            .any(|(m, l)| l == "error" && m.contains("Traceback")),
        "the import traceback is logged: {logged:?}"
    );
    // The good bundle next to them works.
    let out = run(
        "py-broken",
        &object(HookType::Pre, "AddHeaders", Some("a"), &[]),
    )
    .unwrap();
    assert_eq!(set_headers(&out)["X-Python"], "bundle-a");
}

#[test]
fn exceptions_and_bad_calls_are_driver_errors() {
    python_or_skip!();
    let root = fresh_root("errors");
    bundle_a(&root, "a");
    load_driver("py-errors", &root).unwrap();

    let (code, msg) = run(
        "py-errors",
        &object(HookType::Pre, "Raises", Some("a"), &[]),
    )
    .unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DRIVER_FAILED as i32);
    assert_eq!(
        msg,
        "driver 'py-errors' failed (code 1): python hook 'Raises' of bundle 'a' raised ValueError: boom from helpers (traceback logged)"
    );
    let logged = logs_containing("python hook 'Raises' of bundle 'a' raised:");
    assert!(
        logged.iter().any(|(m, l)| l == "error"
            && m.contains("Traceback (most recent call last)")
            && m.contains("helpers.py\", line 6, in explode")),
        "{logged:?}"
    );

    let (_, msg) = run(
        "py-errors",
        &object(HookType::Pre, "BadReturn", Some("a"), &[]),
    )
    .unwrap_err();
    assert!(
        msg.contains("TypeError: hook 'BadReturn' must return (request, session), not 'int'"),
        "{msg}"
    );
    let (_, msg) = run(
        "py-errors",
        &object(HookType::Pre, "NotAHook", Some("a"), &[]),
    )
    .unwrap_err();
    assert!(
        msg.contains("bundle 'a' has no hook 'NotAHook' (it defines: AddHeaders, AfterAuth"),
        "{msg}"
    );
    let (_, msg) = run(
        "py-errors",
        &object(HookType::Pre, "AddHeaders", Some("zzz"), &[]),
    )
    .unwrap_err();
    assert!(
        msg.contains("no bundle 'zzz' is loaded (loaded: a)"),
        "{msg}"
    );

    // The driver keeps serving.
    assert!(run(
        "py-errors",
        &object(HookType::Pre, "AddHeaders", Some("a"), &[])
    )
    .is_ok());
}

#[test]
fn bad_config_fails_the_load() {
    python_or_skip!();
    let lib = driver_lib().unwrap();
    let (code, _) = load(
        "py-bad-config",
        &lib,
        Some(r#"{"bundle_root": "/no/such/dir"}"#),
    )
    .unwrap_err();
    assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
    assert!(!logs_containing("bundle_root /no/such/dir is not a directory").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Reload, LoadBundle, threads

fn version_bundle(root: &Path, name: &str, version: &str) {
    write_bundle(
        root,
        name,
        &["Version"],
        &[
            (
                "middleware.py",
                "from tyk.decorators import *\nimport helpers\n\n@Hook\ndef Version(request, session, spec):\n    request.add_header('X-Version', helpers.VERSION)\n    return request, session\n",
            ),
            ("helpers.py", &format!("VERSION = '{version}'\n")),
        ],
    );
}

fn version(driver: &str, bundle: &str) -> Result<String, String> {
    run(driver, &object(HookType::Pre, "Version", Some(bundle), &[]))
        .map(|o| set_headers(&o)["X-Version"].clone())
        .map_err(|e| e.1)
}

#[test]
fn reload_reimports_changed_bundles() {
    python_or_skip!();
    let root = fresh_root("reload");
    version_bundle(&root, "v", "one");
    load_driver("py-reload", &root).unwrap();
    assert_eq!(version("py-reload", "v").unwrap(), "one");

    // A changed helper module (same length, same second) is picked up by Reload.
    write_atomically(&root.join("v/helpers.py"), "VERSION = 'two'\n");
    assert_eq!(
        version("py-reload", "v").unwrap(),
        "one",
        "not before Reload"
    );
    Reload();
    assert_eq!(version("py-reload", "v").unwrap(), "two");

    // A new version that fails to import leaves the previous one serving; fixing it loads it.
    write_atomically(&root.join("v/helpers.py"), "VERSION = (\n");
    Reload();
    assert_eq!(version("py-reload", "v").unwrap(), "two");
    assert!(!logs_containing("bundle 'v' changed but its new version fails").is_empty());
    write_atomically(&root.join("v/helpers.py"), "VERSION = 'three'\n");
    Reload();
    assert_eq!(version("py-reload", "v").unwrap(), "three");

    // New bundle directories are picked up, removed ones dropped.
    version_bundle(&root, "w", "w1");
    assert!(version("py-reload", "w").is_err());
    Reload();
    assert_eq!(version("py-reload", "w").unwrap(), "w1");
    fs::remove_dir_all(root.join("w")).unwrap();
    Reload();
    assert!(version("py-reload", "w")
        .unwrap_err()
        .contains("no bundle 'w' is loaded"));
}

#[test]
fn load_bundle_adds_a_bundle_at_run_time() {
    python_or_skip!();
    let root = fresh_root("load-bundle");
    let elsewhere = fresh_root("load-bundle-extra");
    version_bundle(&elsewhere, "extra", "x1");
    write_bundle(
        &elsewhere,
        "bad",
        &[],
        &[("middleware.py", "import nope_nope\n")],
    );
    load_driver("py-lb", &root).unwrap();
    assert!(version("py-lb", "extra").is_err());

    let rc = CoProcessLoadBundle(
        c("py-lb").as_ptr(),
        c(elsewhere.join("extra").to_str().unwrap()).as_ptr(),
    );
    assert_eq!(rc, 0, "{}", last_error());
    assert_eq!(version("py-lb", "extra").unwrap(), "x1");
    // Reload re-checks it too.
    write_atomically(&elsewhere.join("extra/helpers.py"), "VERSION = 'x2'\n");
    Reload();
    assert_eq!(version("py-lb", "extra").unwrap(), "x2");

    let rc = CoProcessLoadBundle(
        c("py-lb").as_ptr(),
        c(elsewhere.join("bad").to_str().unwrap()).as_ptr(),
    );
    assert_ne!(rc, 0);
    assert!(!logs_containing("No module named 'nope_nope'").is_empty());
}

#[test]
fn four_threads_dispatch_at_once() {
    python_or_skip!();
    let root = fresh_root("threads");
    bundle_a(&root, "a");
    bundle_b(&root, "b");
    load_driver("py-threads", &root).unwrap();

    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..200 {
                    let bundle = if (t + i) % 2 == 0 { "a" } else { "b" };
                    let out = run(
                        "py-threads",
                        &object(HookType::Pre, "AddHeaders", Some(bundle), &[]),
                    )
                    .unwrap_or_else(|e| panic!("thread {t} call {i}: {e:?}"));
                    assert_eq!(set_headers(&out)["X-Python"], format!("bundle-{bundle}"));
                    if i % 50 == 0 {
                        Reload();
                    }
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// A host that is itself Python

/// A Python program loads the bridge with ctypes, then the Python driver into the same process: the
/// driver must use the running interpreter (not start a second one) and work from ctypes calls.
#[test]
fn works_inside_a_python_host_process() {
    python_or_skip!();
    let root = fresh_root("python-host");
    version_bundle(&root, "v", "from-python-host");
    let input = object(HookType::Pre, "Version", Some("v"), &[]).encode_to_vec();
    let input_path = root.join("input.bin");
    fs::write(&input_path, &input).unwrap();
    let script = r#"
import ctypes, sys, threading
bridge_path, driver_path, root, input_path = sys.argv[1:5]
sys.modules["helpers"] = "the host's own module named helpers"   # must not leak into bundles

class Msg(ctypes.Structure):
    _fields_ = [("p_data", ctypes.c_void_p), ("length", ctypes.c_int)]

bridge = ctypes.CDLL(bridge_path)   # CDLL: the GIL is released during each call
bridge.CoProcessLastError.restype = ctypes.c_char_p
cfg = ('{"bundle_root": "%s"}' % root).encode()
rc = bridge.CoProcessLoadDriver(b"python", driver_path.encode(), cfg)
assert rc == 0, bridge.CoProcessLastError()
data = open(input_path, "rb").read()
buf = ctypes.create_string_buffer(data, len(data))
results = []

def call():
    inp = Msg(ctypes.cast(buf, ctypes.c_void_p), len(data))
    out = Msg()
    rc = bridge.DispatchWithDriver(b"python", ctypes.byref(inp), ctypes.byref(out))
    assert rc == 0, bridge.CoProcessLastError()
    results.append(ctypes.string_at(out.p_data, out.length))
    bridge.CoProcessMessageFree(ctypes.byref(out))

call()
threads = [threading.Thread(target=call) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert len(results) == 5 and all(b"from-python-host" in r for r in results), results
assert "_coprocess_bundles" in sys.modules and "tyk" not in sys.modules
bridge.CoProcessShutdown()
print("python host ok")
"#;
    let script_path = root.join("host.py");
    fs::write(&script_path, script).unwrap();
    let out = common::run(
        Command::new("python3")
            .arg(&script_path)
            .arg(common::bridge_cdylib())
            .arg(driver_lib().unwrap())
            .arg(&root)
            .arg(&input_path),
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("python host ok"),
        "{}",
        common::describe(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// The bridge's ID extractor and auth cache in front of a Python auth_check

#[test]
fn id_extractor_deadline_set_in_python_feeds_the_auth_cache() {
    python_or_skip!();
    let root = fresh_root("auth-cache");
    write_bundle(
        &root,
        "c",
        &["CountingAuth"],
        &[(
            "middleware.py",
            r#"
import time
from tyk.decorators import *
from gateway import TykGateway as tyk

@Hook
def CountingAuth(request, session, metadata, spec):
    token = request.get_header("Authorization") or ""
    key = "py-cache-calls:" + token
    tyk.store_data(key, str(int(tyk.get_data(key) or b"0") + 1), 0)
    if token.startswith("cache-good"):
        session.rate = 42.0
        session.id_extractor_deadline = int(time.time()) + 60
    elif token.startswith("cache-expired"):
        session.rate = 1.0
        session.id_extractor_deadline = int(time.time()) - 1
    else:
        request.object.return_overrides.response_code = 403
        request.object.return_overrides.response_error = "Key not authorised"
        return request, session, metadata
    metadata["token"] = token
    return request, session, metadata
"#,
        )],
    );
    load_driver("py-cache", &root).unwrap();
    check_the_auth_cache_in_front_of(
        "py-cache",
        "middleware.py",
        "api-py-cache",
        "py-cache-calls",
    );
}

// ---------------------------------------------------------------------------------------------
// Message classes, python_path

/// The message classes come from proto/ (a FileDescriptorSet compiled at build time): every field of
/// a fully populated Object survives the trip through Python's `protobuf` and back.
#[test]
fn every_field_survives_the_python_message_classes() {
    python_or_skip!();
    let root = fresh_root("fidelity");
    write_bundle(
        &root,
        "f",
        &["Touch"],
        &[(
            "middleware.py",
            r#"
from tyk.decorators import *
import coprocess_object_pb2, coprocess_session_state_pb2, coprocess_common_pb2

@Hook
def Touch(request, session, metadata, spec):
    # Tyk's generated module names work, and name the same classes the hook receives.
    assert isinstance(session, coprocess_session_state_pb2.SessionState)
    assert coprocess_common_pb2.HookType.Name(coprocess_common_pb2.Post) == "Post"
    assert type(request.object).DESCRIPTOR.full_name == "coprocess.MiniRequestObject"
    return request, session, metadata
"#,
        )],
    );
    load_driver("py-fidelity", &root).unwrap();
    let mut input = coprocess_bridge::proto::fixtures::fully_populated_object();
    input.hook_type = HookType::Post as i32;
    input.hook_name = "Touch".into();
    input.spec.insert("bundle_hash".into(), "f".into());
    let out = run("py-fidelity", &input).unwrap();
    assert_eq!(out, input);
}

#[test]
fn python_path_extends_the_import_path() {
    python_or_skip!();
    let root = fresh_root("python-path");
    let libs = fresh_root("python-path-libs");
    fs::write(
        libs.join("extlib_for_coprocess_test.py"),
        "VALUE = 'from python_path'\n",
    )
    .unwrap();
    write_bundle(
        &root,
        "p",
        &["UsesLib"],
        &[(
            "middleware.py",
            "from tyk.decorators import *\nimport extlib_for_coprocess_test as ext\n\n@Hook\ndef UsesLib(request, session, spec):\n    request.add_header('X-Ext', ext.VALUE)\n    return request, session\n",
        )],
    );
    let config = serde_json::json!({ "bundle_root": root, "python_path": [libs] }).to_string();
    load("py-path", &driver_lib().unwrap(), Some(&config)).unwrap();
    let out = run("py-path", &object(HookType::Pre, "UsesLib", Some("p"), &[])).unwrap();
    assert_eq!(set_headers(&out)["X-Ext"], "from python_path");
}

// ---------------------------------------------------------------------------------------------
// Lazy decoding: a hook pays for the parts of the Object it uses

const MIDDLEWARE_LAZY: &str = r#"
from tyk.decorators import *
import helpers

@Hook
def Noop(request, session, spec):
    return request, session

@Hook
def NoopAuth(request, session, metadata, spec):
    return request, session, metadata

@Hook
def AddHeader(request, session, spec):
    request.add_header("X-Python", "1")
    request.delete_header("Cookie")
    request.add_param("p", "v")
    request.delete_param("drop")
    return request, session

@Hook
def ReadsSpec(request, session, spec):
    request.add_header("X-Api", spec["APIID"])
    return request, session

@Hook
def ChangesSpec(request, session, spec):
    spec["added"] = "yes"
    del spec["OrgID"]
    return request, session

@Hook
def ReadsSession(request, session, spec):
    request.add_header("X-Rate", str(session.rate))
    return request, session

@Hook
def EditsThenDecodes(request, session, spec):
    request.add_header("X-A", "1")
    request.delete_header("Cookie")
    request.object.set_headers["X-B"] = request.object.set_headers["X-A"] + "2"
    request.add_header("X-C", "3")
    return request, session

@Hook
def OddArguments(request, session, spec):
    request.add_header("X-Ünïcode", "välue")
    try:
        request.add_header("X-Number", 5)
    except TypeError as e:
        request.add_header("X-Error", type(e).__name__)
    return request, session

@Hook
def Captures(request, session, spec):
    get = lambda: session
    request.add_header("X-Type", type(get()).__name__)
    return request, session

@Hook
def SeesLocals(request, session, spec):
    request.add_header("X-Type", type(locals()["session"]).__name__)
    return request, session

@Hook
def PassesOn(request, session, spec):
    request.add_header("X-Type", helpers.type_name(session))
    return request, session

@Hook
def SpecAsMetadata(request, session, metadata, spec):
    return request, session, spec
"#;

const LAZY_HOOKS: &[&str] = &[
    "Noop",
    "NoopAuth",
    "AddHeader",
    "ReadsSpec",
    "ChangesSpec",
    "ReadsSession",
    "EditsThenDecodes",
    "OddArguments",
    "Captures",
    "SeesLocals",
    "PassesOn",
    "SpecAsMetadata",
];

/// The typical Object (a session with several map entries, a 1 KiB body) for hook `name`.
fn typical(hook: HookType, name: &str) -> Object {
    let mut o = coprocess_bridge::proto::fixtures::typical_object();
    o.hook_type = hook as i32;
    o.hook_name = name.into();
    o.spec.insert("bundle_hash".into(), "lazy".into());
    o.spec.insert("config_data".into(), r#"{"a": 1}"#.into());
    o.metadata = strings(&[("m1", "1"), ("m2", "2"), ("m3", "3")]);
    o
}

fn lazy_driver(name: &str) {
    let root = fresh_root(name);
    write_bundle(
        &root,
        "lazy",
        LAZY_HOOKS,
        &[
            ("middleware.py", MIDDLEWARE_LAZY),
            (
                "helpers.py",
                "def type_name(value):\n    return type(value).__name__\n",
            ),
        ],
    );
    load_driver(name, &root).unwrap();
}

#[test]
fn hooks_that_only_return_their_arguments_answer_with_the_input_bytes() {
    python_or_skip!();
    lazy_driver("py-lazy-noop");
    for (hook, name) in [(HookType::Pre, "Noop"), (HookType::Post, "NoopAuth")] {
        let input = typical(hook, name).encode_to_vec();
        // Map order in `input` is prost's: any decode and re-encode would change the bytes.
        assert_eq!(
            dispatch_with("py-lazy-noop", &input).unwrap(),
            input,
            "{name}"
        );
    }
    // Reading spec decodes it; as it is unchanged, only the request edit is appended.
    let input = typical(HookType::Pre, "ReadsSpec").encode_to_vec();
    let out = dispatch_with("py-lazy-noop", &input).unwrap();
    assert!(
        out.starts_with(&input),
        "the answer is the input and a patch"
    );
    let out = Object::decode(out.as_slice()).unwrap();
    let mut expected = typical(HookType::Pre, "ReadsSpec");
    let request = expected.request.as_mut().unwrap();
    request.set_headers = strings(&[("X-Api", "a1b2c3d4e5f60718293a4b5c6d7e8f90")]);
    assert_eq!(out, expected);
}

#[test]
fn request_edits_without_a_decode_are_a_patch() {
    python_or_skip!();
    lazy_driver("py-lazy-edits");
    let input = typical(HookType::Pre, "AddHeader");
    let bytes = input.encode_to_vec();
    let out = dispatch_with("py-lazy-edits", &bytes).unwrap();
    assert!(out.starts_with(&bytes));
    let mut expected = input.clone();
    let request = expected.request.as_mut().unwrap();
    request.set_headers = strings(&[("X-Python", "1")]);
    request.delete_headers = vec!["Cookie".into()];
    request.add_params = strings(&[("p", "v")]);
    request.delete_params = vec!["drop".into()];
    assert_eq!(Object::decode(out.as_slice()).unwrap(), expected);

    // Edits recorded before the hook decodes the request are applied to it, in order.
    let input = typical(HookType::Pre, "EditsThenDecodes");
    let out = run("py-lazy-edits", &input).unwrap();
    let mut expected = input.clone();
    let request = expected.request.as_mut().unwrap();
    request.set_headers = strings(&[("X-A", "1"), ("X-B", "12"), ("X-C", "3")]);
    request.delete_headers = vec!["Cookie".into()];
    assert_eq!(out, expected);

    // Arguments that are not plain ASCII str take the message's own path, errors included.
    let out = run("py-lazy-edits", &typical(HookType::Pre, "OddArguments")).unwrap();
    assert_eq!(
        set_headers(&out),
        &strings(&[("X-Ünïcode", "välue"), ("X-Error", "TypeError")])
    );
}

#[test]
fn parts_a_hook_uses_are_real_messages_and_changes_to_them_are_kept() {
    python_or_skip!();
    lazy_driver("py-lazy-parts");
    let input = typical(HookType::Pre, "ChangesSpec");
    let out = run("py-lazy-parts", &input).unwrap();
    let mut expected = input.clone();
    expected.spec.remove("OrgID");
    expected.spec.insert("added".into(), "yes".into());
    assert_eq!(out, expected);

    let input = typical(HookType::Pre, "ReadsSession");
    let out = run("py-lazy-parts", &input).unwrap();
    assert_eq!(set_headers(&out)["X-Rate"], "1000.0");
    assert_eq!(out.session, input.session);

    // A session the hook captures, sees through locals() or hands to other code is the message.
    for name in ["Captures", "SeesLocals", "PassesOn"] {
        let out = run("py-lazy-parts", &typical(HookType::Pre, name)).unwrap();
        assert_eq!(set_headers(&out)["X-Type"], "SessionState", "{name}");
        assert_eq!(out.session, typical(HookType::Pre, name).session);
    }

    // A part returned in another position is what it stands for.
    let input = typical(HookType::Post, "SpecAsMetadata");
    let out = run("py-lazy-parts", &input).unwrap();
    assert_eq!(out.metadata, input.spec);
    assert_eq!(out.session, input.session);
}
