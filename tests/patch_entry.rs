//! The optional driver entry point `CoProcessDriverDispatchPatch` (include/coprocess_driver.h), through
//! the bridge's C exports with real driver libraries:
//! - a driver with only `CoProcessDriverDispatch` is called as before; one with both is called through
//!   the patch entry point (the C test driver counts its calls there);
//! - the host gets the same bytes either way: the example Rust driver (which exports both, through the
//!   SDK) against the same library behind a shim that exports only `CoProcessDriverDispatch`, over
//!   random chains of its `Edit:` and named hooks;
//! - a patch that is garbage, truncated, points into the input or comes with a failure is a clear error.

mod abi;
mod common;

use std::sync::OnceLock;

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::CoProcessLoadApi;
use coprocess_bridge::proto::{fixtures, HookType, Message, Object, ResponseObject};
use proptest::prelude::*;

/// Loads the C test driver built with `defines` under `name`.
fn loaded(name: &str, defines: &[&str]) -> String {
    load(name, &common::c_test_driver(defines), None).unwrap();
    name.to_string()
}

/// How many calls the C test driver built with `VERSION_TAG=tag` took through the patch entry point.
fn patch_calls(tag: &str) -> u64 {
    get(&format!("test_driver:patch_calls:{tag}"))
        .parse()
        .unwrap_or(0)
}

fn objects() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        pre_object(),
        fixtures::typical_object().encode_to_vec(),
        fixtures::large_object().encode_to_vec(),
    ]
}

#[test]
fn a_driver_with_the_patch_entry_point_is_called_through_it_and_answers_the_same_bytes() {
    let old = loaded("dispatch-only", &["VERSION_TAG=\"same\""]);
    let new = loaded("with-patch", &["VERSION_TAG=\"same\"", "WITH_PATCH"]);
    for (i, input) in objects().iter().enumerate() {
        let before = input.clone();
        let want = dispatch_with(&old, input).unwrap();
        assert_eq!(
            set_header(&want, "X-Test-Driver").as_deref(),
            Some("same"),
            "the old path answers"
        );
        assert_eq!(dispatch_with(&new, input).unwrap(), want, "object {i}");
        assert_eq!(patch_calls("same"), i as u64 + 1, "through the patch entry");
        assert_eq!(input, &before, "the input is untouched");
    }
}

#[test]
fn a_driver_without_the_patch_entry_point_is_called_as_before() {
    let d = loaded("old-only", &["VERSION_TAG=\"old\""]);
    let out = dispatch_with(&d, &pre_object()).unwrap();
    assert_eq!(set_header(&out, "X-Test-Driver").as_deref(), Some("old"));
    assert_eq!(patch_calls("old"), 0);
}

#[test]
fn a_whole_object_or_an_empty_patch_from_the_patch_entry_point_is_an_answer() {
    let whole = loaded("whole", &["VERSION_TAG=\"w\"", "WITH_PATCH", "PATCH_WHOLE"]);
    let old = loaded("whole-old", &["VERSION_TAG=\"w\""]);
    let empty = loaded(
        "empty-patch",
        &["VERSION_TAG=\"e\"", "WITH_PATCH", "PATCH_EMPTY"],
    );
    for input in objects() {
        assert_eq!(
            dispatch_with(&whole, &input).unwrap(),
            dispatch_with(&old, &input).unwrap()
        );
        assert_eq!(dispatch_with(&empty, &input).unwrap(), input, "unchanged");
    }
    assert!(patch_calls("w") > 0 && patch_calls("e") > 0);
}

#[test]
fn a_bad_patch_is_a_clear_error() {
    let cases = [
        (
            "patch-garbage",
            "PATCH_GARBAGE",
            COPROCESS_ERR_DRIVER_BAD_OUTPUT,
            "driver 'patch-garbage' returned a patch that is not well-formed coprocess.Object fields: ",
        ),
        (
            "patch-truncated",
            "PATCH_TRUNCATED",
            COPROCESS_ERR_DRIVER_BAD_OUTPUT,
            "driver 'patch-truncated' returned a patch that is not well-formed coprocess.Object fields: ",
        ),
        (
            "patch-alias",
            "PATCH_ALIAS",
            COPROCESS_ERR_DRIVER_BAD_OUTPUT,
            "driver 'patch-alias' returned its input buffer as output",
        ),
        (
            "patch-fails",
            "PATCH_FAILS",
            COPROCESS_ERR_DRIVER_FAILED,
            "driver 'patch-fails' failed (code 3): patch backend unavailable",
        ),
    ];
    let input = fixtures::typical_object().encode_to_vec();
    for (name, fault, status, message) in cases {
        let d = loaded(name, &["WITH_PATCH", fault]);
        let before = input.clone();
        let (code, msg) = dispatch_with(&d, &input).unwrap_err();
        assert_eq!(code, status as i32, "{name}: {msg}");
        assert!(msg.starts_with(message), "{name}: {msg}");
        assert_eq!(input, before, "{name}: the input is untouched");
    }
}

/// On the API path a bad patch is a failed hook, as a bad whole answer is: Tyk's 500 answer.
#[test]
fn a_bad_patch_in_a_chain_is_a_failed_hook() {
    loaded("chain-garbage", &["WITH_PATCH", "PATCH_GARBAGE"]);
    let api = r#"{"api_id": "patch-garbage-chain", "org_id": "o",
        "custom_middleware": {"driver": "chain-garbage", "pre": [{"name": "A"}, {"name": "B"}]}}"#;
    assert_eq!(CoProcessLoadApi(c(api).as_ptr()), 0, "{}", last_error());
    let mut o = fixtures::typical_object();
    o.hook_type = HookType::Pre as i32;
    o.hook_name.clear();
    o.spec.insert("APIID".into(), "patch-garbage-chain".into());
    let out = Object::decode(dispatch(&o.encode_to_vec()).unwrap().as_slice()).unwrap();
    let overrides = out.request.unwrap().return_overrides.unwrap();
    assert_eq!(
        (overrides.response_code, overrides.response_error.as_str()),
        (500, "Middleware error")
    );
}

/// The example driver (both entry points, from the SDK) as "eq-native", and the same library behind
/// the shim (only `CoProcessDriverDispatch`) as "eq-dispatch-only". No tokens: CustomKeyCheck
/// answers are the same on both (a session would carry the time it was made).
fn example_pair() -> (&'static str, &'static str) {
    static LOADED: OnceLock<()> = OnceLock::new();
    LOADED.get_or_init(|| {
        let lib = common::build_workspace_cdylib(
            "coprocess-rust-driver-example",
            "coprocess_rust_driver",
        );
        let inner = format!("INNER_DRIVER=\"{}\"", lib.display());
        let shim = common::build_c_driver(
            &common::repo_root().join("tests/drivers/dispatch_only_shim.c"),
            &[inner.as_str()],
        );
        load("eq-native", &lib, Some("{}")).unwrap();
        load("eq-dispatch-only", &shim, Some("{}")).unwrap();
    });
    ("eq-native", "eq-dispatch-only")
}

/// One hook of a generated chain: its name (what the example driver does) and `raw_body_only`.
#[derive(Debug, Clone)]
struct Hook {
    name: String,
    raw_body_only: bool,
}

fn edit() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "X-A",
        "x-a",
        "Accept",
        "host",
        "X-Rust-Driver",
        "X-New",
    ]);
    let value = prop::sample::select(vec!["1", "two", ""]);
    prop_oneof![
        (name.clone(), value.clone()).prop_map(|(n, v)| format!("set {n}={v}")),
        name.prop_map(|n| format!("del {n}")),
        (
            prop::sample::select(vec!["p", "q"]),
            prop::sample::select(vec!["v w", "1"])
        )
            .prop_map(|(n, v)| format!("add {n}={v}")),
        prop::sample::select(vec!["p", "q"]).prop_map(|n| format!("rm {n}")),
        prop::sample::select(vec!["/new?x=1", "/x", "relative"]).prop_map(|u| format!("url {u}")),
        prop::sample::select(vec!["PUT", "GET"]).prop_map(|m| format!("method {m}")),
        prop::sample::select(vec!["body changed", "text changed", "body \u{e9}"])
            .prop_map(String::from),
        prop::sample::select(vec![-1, 0, 202, 403]).prop_map(|c| format!("code {c}")),
        (
            prop::sample::select(vec!["X-R", "content-type"]),
            value.clone()
        )
            .prop_map(|(n, v)| format!("rset {n}={v}")),
        value.clone().prop_map(|v| format!("radd X-M={v}")),
        prop::sample::select(vec!["rbody new", "rstatus 201", "rstatus 500"])
            .prop_map(String::from),
    ]
}

fn hook() -> impl Strategy<Value = Hook> {
    let named = prop::sample::select(vec![
        "RecordEq",
        "ChainEq",
        "Deny",
        "ShowConfig",
        "ShowSession",
        "Fail",
        "Default",
        "rdel",
    ])
    .prop_map(|n| match n {
        "rdel" => "Edit:rdel X-R".to_owned(),
        n => n.to_owned(),
    });
    let edits = prop::collection::vec(edit(), 0..4).prop_map(|e| format!("Edit:{}", e.join(";")));
    (prop_oneof![named, edits], any::<bool>()).prop_map(|(name, raw_body_only)| Hook {
        name,
        raw_body_only,
    })
}

/// An API whose `hook_type` chain is `hooks`, on `driver`.
fn api_definition(api_id: &str, driver: &str, hook_type: HookType, hooks: &[Hook]) -> String {
    let list: Vec<serde_json::Value> = hooks
        .iter()
        .map(|h| serde_json::json!({"name": h.name, "raw_body_only": h.raw_body_only}))
        .collect();
    let mut middleware = serde_json::json!({"driver": driver});
    match hook_type {
        HookType::CustomKeyCheck => middleware["auth_check"] = list[0].clone(),
        HookType::Pre => middleware["pre"] = list.into(),
        HookType::Post => middleware["post"] = list.into(),
        _ => middleware["response"] = list.into(),
    }
    serde_json::json!({
        "api_id": api_id, "org_id": "o", "config_data": {"k": "v"},
        "enable_coprocess_auth": hook_type == HookType::CustomKeyCheck,
        "custom_middleware": middleware,
    })
    .to_string()
}

/// The typical Object as Tyk's gateway sends it to `api_id`'s `hook_type` chain (`named`: to one
/// hook of it, as Tyk names a CustomKeyCheck).
fn host_object(api_id: &str, hook_type: HookType, named: Option<&str>) -> Vec<u8> {
    let mut o = fixtures::typical_object();
    o.hook_type = hook_type as i32;
    o.hook_name = named.unwrap_or_default().into();
    o.spec.insert("APIID".into(), api_id.into());
    if hook_type == HookType::Response {
        o.response = Some(ResponseObject {
            status_code: 200,
            raw_body: b"{\"upstream\": true}".to_vec(),
            body: "{\"upstream\": true}".into(),
            headers: [("Content-Type".to_owned(), "application/json".to_owned())].into(),
            ..Default::default()
        });
    }
    o.encode_to_vec()
}

/// Runs `hooks` as `hook_type` chain of one API, once on each driver of the pair; both answers.
fn both_paths(
    case: &str,
    hook_type: HookType,
    hooks: &[Hook],
    named: bool,
) -> [Result<Vec<u8>, (i32, String)>; 2] {
    let (native, dispatch_only) = example_pair();
    let api_id = format!("eq-{case}");
    let name = named.then(|| hooks[0].name.as_str());
    let input = host_object(&api_id, hook_type, name);
    [native, dispatch_only].map(|driver| {
        let definition = api_definition(&api_id, driver, hook_type, hooks);
        assert_eq!(
            CoProcessLoadApi(c(&definition).as_ptr()),
            0,
            "{}",
            last_error()
        );
        dispatch(&input)
    })
}

/// Whether the example driver answers `name` with a whole re-encoded Object: prost writes map entries
/// in the order of a `HashMap` made for the call, so two such answers may differ in bytes alone.
fn answers_a_whole_object(hook_type: HookType, name: &str) -> bool {
    let edits = name.starts_with("Edit:") && !name.starts_with("Edit:rdel");
    // Named hooks other than these are Pre/PostKeyAuth/Post hooks; in a Response chain they get the
    // example's Response answer, a whole Object.
    let patch_anywhere = edits || name.starts_with("Record");
    name.starts_with("Edit:rdel") || (hook_type == HookType::Response && !patch_anywhere)
}

/// The same bytes, or (after a whole re-encoded answer) the same Object.
fn same_answer(
    a: &Result<Vec<u8>, (i32, String)>,
    b: &Result<Vec<u8>, (i32, String)>,
    byte_for_byte: bool,
) -> Result<(), TestCaseError> {
    if byte_for_byte {
        prop_assert_eq!(a, b);
        return Ok(());
    }
    let decoded = |r: &Result<Vec<u8>, (i32, String)>| {
        r.clone()
            .map(|bytes| Object::decode(bytes.as_slice()).unwrap())
    };
    prop_assert_eq!(decoded(a), decoded(b));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The host's answer is the same bytes whichever entry point the driver is called through.
    #[test]
    fn chains_answer_the_same_bytes_through_either_entry_point(
        hook_type in prop::sample::select(vec![
            HookType::Pre, HookType::Post, HookType::Response, HookType::CustomKeyCheck,
        ]),
        hooks in prop::collection::vec(hook(), 1..4),
        named in any::<bool>(),
    ) {
        let [patched, whole] = both_paths("chain", hook_type, &hooks, named);
        let ran = if named || hook_type == HookType::CustomKeyCheck { &hooks[..1] } else { &hooks[..] };
        // A Response chain of several hooks answers with the response it built from decoded maps.
        let rebuilt = hook_type == HookType::Response && ran.len() > 1;
        let bytes = !rebuilt && !ran.iter().any(|h| answers_a_whole_object(hook_type, &h.name));
        same_answer(&patched, &whole, bytes)?;
    }

    /// The same without an API: `DispatchWithDriver` to each driver of the pair.
    #[test]
    fn plain_dispatches_answer_the_same_bytes_through_either_entry_point(
        hook_type in prop::sample::select(vec![HookType::Pre, HookType::Post, HookType::Response]),
        hook in hook(),
    ) {
        let (native, dispatch_only) = example_pair();
        let input = host_object("no-such-api", hook_type, Some(&hook.name));
        // A failure names the driver: the rest of its message must be the same.
        let unnamed = |driver: &str| {
            dispatch_with(driver, &input).map_err(|(code, msg)| (code, msg.replace(driver, "D")))
        };
        let bytes = !answers_a_whole_object(hook_type, &hook.name);
        same_answer(&unnamed(native), &unnamed(dispatch_only), bytes)?;
    }
}
