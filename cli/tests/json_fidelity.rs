//! `coprocess dispatch` prints what Google's protobuf runtime prints: the CLI (run as a process, through
//! a pass-through driver) against Python's `google.protobuf.json_format.MessageToJson` on the same
//! Object, compared as parsed JSON values. Python builds the message classes from our own schema
//! (coprocess_proto::FILE_DESCRIPTOR_SET), so both sides read the same .proto files.
//!
//! Needs python3 with the protobuf package; without it each test prints a loud SKIPPED line.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use coprocess_proto::{fixtures, HookType, Message, MiniRequestObject, Object, SessionState};
use serde_json::Value;
use support::*;

/// What the CLI prints for `input` (JSON unless `binary`) through the pass-through driver.
fn cli_json(input: &std::path::Path, binary: bool) -> Value {
    let driver = test_driver(&[]);
    let mut args = vec![
        "dispatch".into(),
        "--driver".into(),
        driver.into_os_string(),
    ];
    if binary {
        args.extend(["--binary".into(), "--output".into(), "json".into()]);
    }
    args.push(input.as_os_str().to_owned());
    parse_json(&ok_stdout(&coprocess(args)))
}

fn python_json(python: &str, mode: &str, input: &std::path::Path) -> Value {
    let out = pyjson(python, mode, input);
    parse_json(std::str::from_utf8(&out).expect("UTF-8 from Python"))
}

fn assert_same_json(ours: Value, google: Value) {
    assert_eq!(
        normalize_numbers(ours.clone()),
        normalize_numbers(google.clone()),
        "\n--- coprocess dispatch ---\n{ours:#}\n--- MessageToJson ---\n{google:#}"
    );
}

/// Checks one Object every way round: binary in, JSON out; Google's JSON in (both field name styles),
/// JSON out; our JSON parsed by Google gives the same bytes' Object back.
fn check_object(python: &str, object: &Object) {
    let bin = write_scratch("object.bin", &object.encode_to_vec());
    let google = python_json(python, "bin2json", &bin);

    // 1. The same bytes printed by both.
    assert_same_json(cli_json(&bin, true), google.clone());

    // 2. Google's JSON, read by the CLI: camelCase names, then the original proto field names.
    let camel = write_scratch("google.json", google.to_string().as_bytes());
    assert_same_json(cli_json(&camel, false), google.clone());
    let proto_names = pyjson(python, "bin2json_proto", &bin);
    let snake = write_scratch("google_proto_names.json", &proto_names);
    assert_same_json(cli_json(&snake, false), google.clone());

    // 3. The CLI's JSON, read by Google, is the same Object.
    let ours = cli_json(&bin, true);
    let ours_file = write_scratch("ours.json", ours.to_string().as_bytes());
    let back = pyjson(python, "json2bin", &ours_file);
    assert_eq!(
        Object::decode(back.as_slice()).expect("Python's bytes decode"),
        *object,
        "our JSON, parsed by json_format.Parse, is another Object"
    );
}

#[test]
fn seeds_example_payload_matches_message_to_json() {
    let Some(python) = python_protobuf() else {
        return;
    };
    let payload = seeds_example_payload();
    let file = write_scratch("seed_payload.json", payload.as_bytes());
    let ours = cli_json(&file, false);
    let google = python_json(&python, "json2json", &file);
    assert_same_json(ours.clone(), google);
    // And it is what the README shows, up to key order (a pass-through driver changes nothing).
    assert_eq!(ours, parse_json(&payload));
}

#[test]
fn seeds_example_payload_every_way_round() {
    let Some(python) = python_protobuf() else {
        return;
    };
    let file = write_scratch("seed_payload.json", seeds_example_payload().as_bytes());
    let bin = pyjson(&python, "json2bin", &file);
    check_object(&python, &Object::decode(bin.as_slice()).unwrap());
}

#[test]
fn fully_populated_object_matches_message_to_json() {
    let Some(python) = python_protobuf() else {
        return;
    };
    check_object(&python, &fixtures::fully_populated_object());
}

#[test]
fn fixtures_match_message_to_json() {
    let Some(python) = python_protobuf() else {
        return;
    };
    for object in [
        Object::default(),
        fixtures::small_object(),
        fixtures::typical_object(),
    ] {
        check_object(&python, &object);
    }
}

#[test]
fn edge_values_match_message_to_json() {
    let Some(python) = python_protobuf() else {
        return;
    };
    let object = Object {
        hook_type: HookType::Response as i32,
        hook_name: "ünïcødé ✓ \"quoted\" \\ / \u{1}".into(),
        request: Some(MiniRequestObject {
            raw_body: (0..=255).collect(),
            headers: [("".to_owned(), "".to_owned()), ("k".into(), "".into())]
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        session: Some(SessionState {
            last_check: i64::MIN,
            expires: i64::MAX,
            quota_max: -1,
            allowance: 1e300,
            rate: -0.000_001,
            per: 3.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    check_object(&python, &object);
}

#[test]
fn non_finite_doubles_and_unknown_enum_numbers_match_message_to_json() {
    let Some(python) = python_protobuf() else {
        return;
    };
    // NaN != NaN, so only the printing direction is compared here.
    let object = Object {
        hook_type: 9,
        session: Some(SessionState {
            allowance: f64::NAN,
            rate: f64::INFINITY,
            per: f64::NEG_INFINITY,
            monitor: Some(coprocess_proto::Monitor {
                trigger_limits: vec![0.5, f64::NAN, -1.0],
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let bin = write_scratch("non_finite.bin", &object.encode_to_vec());
    assert_same_json(cli_json(&bin, true), python_json(&python, "bin2json", &bin));
}
