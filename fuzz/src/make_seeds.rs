//! Writes the seed corpus: `fuzz/target/<host triple>/release/make_seeds`, run from the repository
//! root after `fuzz/run.sh` built it, refreshes fuzz/seeds/<target>/ from the proto fixtures, Objects
//! routed to the fuzz APIs, the demo API definitions and a Tyk event. It is built like the fuzz
//! targets (a libFuzzer binary, so it links with the coverage runtime) and does its work in `init`.
#![no_main]

use std::path::Path;

use coprocess_proto::{fixtures, HookType, Message, MiniRequestObject, Object, ReturnOverrides};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// An Object as Tyk builds it for `api_id`.
fn routed(api_id: &str, hook: HookType, request: MiniRequestObject) -> Vec<u8> {
    Object {
        hook_type: hook as i32,
        request: Some(MiniRequestObject {
            url: "/x".into(),
            request_uri: "/x?q=1".into(),
            method: "POST".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..request
        }),
        spec: [("APIID", api_id), ("OrgID", "fz")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn write_all() {
    for (name, o) in [
        ("small", fixtures::small_object()),
        ("typical", fixtures::typical_object()),
        ("full", fixtures::fully_populated_object()),
    ] {
        write("dispatch", name, &o.encode_to_vec());
    }
    let headers = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let with = |h: &[(&str, &str)], body: &str| MiniRequestObject {
        headers: headers(h),
        body: body.into(),
        ..Default::default()
    };
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let seeds = [
        (
            "chain-pre",
            routed("fz-chain", HookType::Pre, with(&[], "")),
        ),
        (
            "chain-post",
            routed("fz-chain", HookType::Post, with(&[], "")),
        ),
        (
            "header",
            routed(
                "fz-header",
                HookType::CustomKeyCheck,
                with(&[("Authorization", "Bearer tok-1")], ""),
            ),
        ),
        (
            "xpath",
            routed(
                "fz-xpath",
                HookType::CustomKeyCheck,
                with(&[], "<req><auth><token>t-1</token></auth></req>"),
            ),
        ),
        (
            "regex",
            routed(
                "fz-regex",
                HookType::CustomKeyCheck,
                with(&[], "id tok-1 tok-abc12"),
            ),
        ),
        (
            "form",
            routed(
                "fz-form",
                HookType::CustomKeyCheck,
                with(&form, "key=abc&x=1"),
            ),
        ),
    ];
    for (name, bytes) in seeds {
        write("dispatch", name, &bytes);
    }

    let demo = Path::new("examples/gateway/demo/apps");
    for file in ["classic.json", "oas.json"] {
        write("load_api", file, &std::fs::read(demo.join(file)).unwrap());
    }
    for (id, middleware) in coprocess_fuzz::APIS {
        write(
            "load_api",
            id,
            coprocess_fuzz::definition(id, middleware).as_bytes(),
        );
    }

    write(
        "event",
        "tyk-event",
        &std::fs::read("cli/objects/event.json").unwrap(),
    );
    write("event", "empty-object", b"{}");

    // First byte: which extractor (0 header, 1 xpath, 2 regex, 3 form; +0x80 for small limits).
    for (name, selector, input) in [
        ("header", 0u8, "Bearer tok-1"),
        (
            "xpath",
            1,
            "<req><auth><token>t-1</token></auth><!-- c --><![CDATA[x]]></req>",
        ),
        (
            "xpath-small-limits",
            0x81,
            "<a><b><c><d><e/></d></c></b></a>",
        ),
        ("regex", 2, "id tok-1 tok-abc12"),
        ("form", 3, "key=a&key=b%21&other=z"),
    ] {
        let mut bytes = vec![selector];
        bytes.extend_from_slice(input.as_bytes());
        write("id_extractor", name, &bytes);
    }
}

/// Writes the seeds and ends the process before any fuzzing: this binary only borrows libFuzzer's
/// start-up (the coverage instrumentation needs its runtime linked in). Returns `()` as far as the
/// compiler knows, so the code the macro puts after the init block is not flagged unreachable.
fn write_all_then_exit() {
    write_all();
    std::process::exit(0);
}

libfuzzer_sys::fuzz_target!(init: write_all_then_exit(), |_data: &[u8]| {});
