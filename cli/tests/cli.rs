//! The `coprocess` binary run as a process: every subcommand, its error paths (one line on stderr,
//! exit status 1, nothing on stdout, no panic) and its help. Drivers: examples/c_driver,
//! examples/rust_driver (built with cargo) and cli/tests/drivers/test_driver.c (pass-through, failing,
//! garbage output, wrong ABI, not a driver).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use coprocess_proto::{fixtures, HookType, Message, Object};
use serde_json::{json, Value};
use support::*;

fn seed_file() -> std::path::PathBuf {
    write_scratch("seed.json", seeds_example_payload().as_bytes())
}

fn dispatch_json(args: &[&std::ffi::OsStr]) -> Value {
    let mut all: Vec<&std::ffi::OsStr> = vec!["dispatch".as_ref()];
    all.extend_from_slice(args);
    parse_json(&ok_stdout(&coprocess(all)))
}

// ---------------------------------------------------------------------------------------------
// help

#[test]
fn help_lists_every_subcommand() {
    let text = ok_stdout(&coprocess(["--help"]));
    for word in [
        "dispatch",
        "event",
        "check",
        "bench",
        "--verbose",
        "MessageToJson",
    ] {
        assert!(text.contains(word), "{word} missing from --help:\n{text}");
    }
    for (sub, words) in [
        (
            "dispatch",
            &[
                "--driver",
                "--config",
                "--hook-type",
                "post_key_auth",
                "custom_key_check",
                "--hook-name",
                "--binary",
                "FILE|-",
                "Examples:",
            ][..],
        ),
        ("event", &["--driver", "JSON", "handler_name"][..]),
        ("check", &["PATH", "--no-init", "one-line reason"][..]),
        (
            "bench",
            &["--object", "--threads", "--duration", "typical fixture"][..],
        ),
    ] {
        let text = ok_stdout(&coprocess([sub, "--help"]));
        for word in words {
            assert!(
                text.contains(word),
                "{word} missing from `{sub} --help`:\n{text}"
            );
        }
    }
    let version = ok_stdout(&coprocess(["--version"]));
    assert!(version.starts_with("coprocess "), "{version}");
}

#[test]
fn usage_errors_exit_2_with_usage() {
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["dispatch"][..],
        &["dispatch", "--driver", "x.so", "--hook-type", "sideways"][..],
        &["bench", "--driver", "x.so", "--threads", "0"][..],
        &["bench", "--driver", "x.so", "--duration", "-1"][..],
    ] {
        let out = coprocess(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}:\n{}",
            common::describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Usage:") || stderr.starts_with("error: invalid value"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// dispatch

#[test]
fn dispatch_c_driver_adds_a_header_to_the_seeds_payload() {
    let driver = c_driver();
    let seed = seed_file();
    let out = dispatch_json(&["--driver".as_ref(), driver.as_os_str(), seed.as_os_str()]);
    let mut expected = parse_json(&seeds_example_payload());
    expected["request"]["setHeaders"] = json!({"X-Coprocess-Driver": "c"});
    assert_eq!(out, expected);
}

#[test]
fn dispatch_reads_standard_input() {
    let driver = c_driver();
    let payload = seeds_example_payload();
    let dash = coprocess_with_stdin(
        [
            "dispatch".as_ref(),
            "--driver".as_ref(),
            driver.as_os_str(),
            "-".as_ref(),
        ],
        payload.as_bytes(),
    );
    let none = coprocess_with_stdin(
        ["dispatch".as_ref(), "--driver".as_ref(), driver.as_os_str()],
        payload.as_bytes(),
    );
    let a = parse_json(&ok_stdout(&dash));
    assert_eq!(a, parse_json(&ok_stdout(&none)));
    assert_eq!(a["request"]["setHeaders"]["X-Coprocess-Driver"], "c");
}

#[test]
fn dispatch_hook_type_and_name_overrides() {
    let driver = c_driver();
    let seed = seed_file();
    // c_driver only touches Pre hooks.
    let out = dispatch_json(&[
        "--driver".as_ref(),
        driver.as_os_str(),
        "--hook-type".as_ref(),
        "post".as_ref(),
        "--hook-name".as_ref(),
        "Renamed".as_ref(),
        seed.as_os_str(),
    ]);
    assert_eq!(out["hookType"], "Post");
    assert_eq!(out["hookName"], "Renamed");
    assert!(out["request"].get("setHeaders").is_none(), "{out:#}");
    // Case-insensitive, and the dashed spelling.
    for spelling in ["POST_KEY_AUTH", "post-key-auth"] {
        let out = dispatch_json(&[
            "--driver".as_ref(),
            driver.as_os_str(),
            "--hook-type".as_ref(),
            spelling.as_ref(),
            seed.as_os_str(),
        ]);
        assert_eq!(out["hookType"], "PostKeyAuth");
    }
}

#[test]
fn dispatch_rust_driver_custom_key_check_with_config() {
    let driver = rust_driver();
    let config = r#"{"tokens": ["s3cret"], "rate": 7, "per": 2}"#;
    let object = json!({
        "hook_type": "CustomKeyCheck",
        "request": {"headers": {"Authorization": "Bearer s3cret"}},
        "spec": {"APIID": "a", "OrgID": "o"}
    });
    let file = write_scratch("auth.json", object.to_string().as_bytes());
    let out = dispatch_json(&[
        "--driver".as_ref(),
        driver.as_os_str(),
        "--config".as_ref(),
        config.as_ref(),
        file.as_os_str(),
    ]);
    assert_eq!(out["metadata"]["token"], "s3cret", "{out:#}");
    assert_eq!(out["session"]["rate"], 7.0);
    assert_eq!(out["session"]["per"], 2.0);
    // int64 as a string, as MessageToJson prints it.
    assert!(out["session"]["idExtractorDeadline"].is_string(), "{out:#}");

    // An unknown token: 403 through return_overrides.
    let object = json!({
        "hookType": "CustomKeyCheck",
        "request": {"headers": {"Authorization": "Bearer nope"}}
    });
    let file = write_scratch("auth_bad.json", object.to_string().as_bytes());
    let out = dispatch_json(&[
        "--driver".as_ref(),
        driver.as_os_str(),
        "--config".as_ref(),
        config.as_ref(),
        file.as_os_str(),
    ]);
    assert_eq!(
        out["request"]["returnOverrides"]["responseCode"], 403,
        "{out:#}"
    );
}

#[test]
fn dispatch_binary_in_and_out() {
    let driver = rust_driver();
    let object = fixtures::typical_object();
    let file = write_scratch("typical.bin", &object.encode_to_vec());
    let out = coprocess([
        "dispatch".as_ref(),
        "--driver".as_ref(),
        driver.as_os_str(),
        "--binary".as_ref(),
        file.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let result = Object::decode(out.stdout.as_slice()).expect("binary output decodes");
    assert_eq!(result.hook_type, HookType::Pre as i32);
    assert_eq!(
        result
            .request
            .unwrap()
            .set_headers
            .get("X-Rust-Driver")
            .map(String::as_str),
        Some("rust")
    );

    // --binary --hook-type: decoded, changed, re-encoded; --output json prints JSON.
    let out = dispatch_json(&[
        "--driver".as_ref(),
        driver.as_os_str(),
        "--binary".as_ref(),
        "--output".as_ref(),
        "json".as_ref(),
        "--hook-type".as_ref(),
        "response".as_ref(),
        file.as_os_str(),
    ]);
    assert_eq!(out["hookType"], "Response");
    assert_eq!(out["response"]["statusCode"], 200, "{out:#}");
    assert!(
        out["response"]["rawBody"].is_string(),
        "bytes print as base64"
    );
}

#[test]
fn dispatch_json_in_binary_out() {
    let driver = test_driver(&[]);
    let seed = seed_file();
    let out = coprocess([
        "dispatch".as_ref(),
        "--driver".as_ref(),
        driver.as_os_str(),
        "--output".as_ref(),
        "binary".as_ref(),
        seed.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let o = Object::decode(out.stdout.as_slice()).unwrap();
    assert_eq!(o.hook_name, "MyPrePluginMiddleware");
    assert_eq!(
        o.request.unwrap().return_overrides.unwrap().response_code,
        -1
    );
}

#[test]
fn dispatch_errors_are_one_line() {
    let pass = test_driver(&[]);
    let seed = seed_file();
    let missing = scratch().join("does-not-exist.json");
    let bad_json = write_scratch("bad.json", br#"{"hookType": "Pre", "#);
    let wrong_type = write_scratch("wrong.json", br#"{"hookType": "Sideways"}"#);
    let unknown = write_scratch("unknown.json", br#"{"hookTipe": "Pre"}"#);
    let not_utf8 = write_scratch("latin1.json", b"{\"hookName\": \"\xe9\"}");
    let garbage_bin = write_scratch("garbage.bin", b"\xff\xff\xff\xff\x0f");
    let text_as_driver = write_scratch("driver.txt", b"not a library");

    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (vec![missing.as_os_str()], "cannot read"),
        (
            vec![bad_json.as_os_str()],
            "not a valid coprocess.Object in JSON",
        ),
        (vec![wrong_type.as_os_str()], "Sideways"),
        (vec![unknown.as_os_str()], "unknown field `hookTipe`"),
        (vec![not_utf8.as_os_str()], "not UTF-8"),
        (
            vec!["--binary".as_ref(), garbage_bin.as_os_str()],
            "not a well-formed coprocess.Object",
        ),
        (
            vec![
                "--binary".as_ref(),
                "--hook-name".as_ref(),
                "x".as_ref(),
                garbage_bin.as_os_str(),
            ],
            "not a valid serialized coprocess.Object",
        ),
        (
            vec!["--config".as_ref(), "{not json".as_ref(), seed.as_os_str()],
            "--config is not valid JSON",
        ),
    ];
    for (extra, expect) in cases {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["dispatch".as_ref(), "--driver".as_ref(), pass.as_os_str()];
        args.extend(extra);
        let line = one_line_error(&coprocess(&args));
        assert!(
            line.contains(expect),
            "{args:?}: expected {expect:?} in {line}"
        );
    }

    // Driver problems.
    let failing = test_driver(&["FAIL"]);
    let garbage = test_driver(&["GARBAGE"]);
    let wrong_abi = test_driver(&["ABI_VERSION=7"]);
    for (driver, expect) in [
        (&failing, "test driver refuses on purpose"),
        (&garbage, "not a well-formed coprocess.Object"),
        (&wrong_abi, "ABI version 7"),
        (&text_as_driver, "cannot load driver library"),
        (&missing, "No such file"),
    ] {
        let line = one_line_error(&coprocess([
            "dispatch".as_ref(),
            "--driver".as_ref(),
            driver.as_os_str(),
            seed.as_os_str(),
        ]));
        assert!(
            line.contains(expect),
            "{}: expected {expect:?} in {line}",
            driver.display()
        );
    }
}

#[test]
fn dispatch_rust_driver_init_failure() {
    let driver = rust_driver();
    let seed = seed_file();
    let line = one_line_error(&coprocess([
        "dispatch".as_ref(),
        "--driver".as_ref(),
        driver.as_os_str(),
        "--config".as_ref(),
        r#"{"tokenz": []}"#.as_ref(),
        seed.as_os_str(),
    ]));
    assert!(line.contains("tokenz"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// event

const EVENT: &str =
    r#"{"message": {"key": "k1"}, "handler_name": "h", "spec": {"APIID": "a", "OrgID": "o"}}"#;

#[test]
fn event_prints_what_the_driver_raises() {
    let out = ok_stdout(&coprocess([
        "event".as_ref(),
        "--driver".as_ref(),
        c_driver().as_os_str(),
        EVENT.as_ref(),
    ]));
    let lines: Vec<Value> = out.lines().map(parse_json).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["name"], "CDriverEvent");
    assert_eq!(
        parse_json(lines[0]["payload"].as_str().unwrap()),
        parse_json(EVENT)
    );

    // From standard input, through the test driver.
    let out = coprocess_with_stdin(
        [
            "event".as_ref(),
            "--driver".as_ref(),
            test_driver(&[]).as_os_str(),
            "-".as_ref(),
        ],
        EVENT.as_bytes(),
    );
    let v = parse_json(ok_stdout(&out).trim());
    assert_eq!(v["name"], "TestEvent");
}

#[test]
fn event_without_events_says_so() {
    let out = coprocess([
        "event".as_ref(),
        "--driver".as_ref(),
        rust_driver().as_os_str(),
        EVENT.as_ref(),
    ]);
    assert!(ok_stdout(&out).is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the driver raised no event"),
        "{}",
        common::describe(&out)
    );
}

#[test]
fn event_errors_are_one_line() {
    let line = one_line_error(&coprocess([
        "event".as_ref(),
        "--driver".as_ref(),
        c_driver().as_os_str(),
        r#"{"message": "#.as_ref(),
    ]));
    assert!(line.contains("the event is not valid JSON"), "{line}");
    let not_a_driver = test_driver(&["NOT_A_DRIVER"]);
    let line = one_line_error(&coprocess([
        "event".as_ref(),
        "--driver".as_ref(),
        not_a_driver.as_os_str(),
        EVENT.as_ref(),
    ]));
    assert!(
        line.contains("does not export CoProcessDriverAbiVersion"),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// check

#[test]
fn check_reports_abi_version_and_symbols() {
    let out = ok_stdout(&coprocess(["check".as_ref(), rust_driver().as_os_str()]));
    assert!(out.contains("ABI version  1"), "{out}");
    for sym in [
        "CoProcessDriverAbiVersion",
        "CoProcessDriverInit",
        "CoProcessDriverDispatch",
        "CoProcessDriverDispatchEvent",
        "CoProcessDriverReload",
        "CoProcessDriverLoadBundle",
        "CoProcessDriverShutdown",
    ] {
        assert!(out.contains(sym), "{sym} missing:\n{out}");
    }
    assert!(out.contains("init         ok"), "{out}");

    // The test driver has no optional symbols; --no-init skips the init.
    let out = ok_stdout(&coprocess([
        "check".as_ref(),
        test_driver(&[]).as_os_str(),
        "--no-init".as_ref(),
    ]));
    assert!(
        out.contains("(optional CoProcessDriverShutdown not exported)"),
        "{out}"
    );
    assert!(!out.contains("init"), "{out}");
}

#[test]
fn check_unloadable_libraries_give_a_one_line_reason() {
    let text = write_scratch("not-a-library.so", b"just text");
    let missing = scratch().join("missing-driver.so");
    for (path, expect) in [
        (missing, "No such file or directory"),
        (text, "cannot load driver library"),
        (test_driver(&["NOT_A_DRIVER"]), "is not a coprocess driver"),
        (
            test_driver(&["ABI_VERSION=7"]),
            "has ABI version 7; this bridge supports version 1",
        ),
    ] {
        let line = one_line_error(&coprocess(["check".as_ref(), path.as_os_str()]));
        assert!(
            line.contains(expect),
            "{}: expected {expect:?} in {line}",
            path.display()
        );
    }
    // Loadable, but its init refuses the config: the report is printed, then the reason.
    let out = coprocess([
        "check".as_ref(),
        rust_driver().as_os_str(),
        "--config".as_ref(),
        r#"{"tokenz": []}"#.as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", common::describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("tokenz"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// bench

fn bench_json(args: &[&std::ffi::OsStr]) -> Value {
    let mut all: Vec<&std::ffi::OsStr> = vec!["bench".as_ref()];
    all.extend_from_slice(args);
    all.extend(["--duration", "0.3", "--warmup", "0.05", "--json"].map(std::ffi::OsStr::new));
    parse_json(ok_stdout(&coprocess(all)).trim())
}

fn assert_sane_report(v: &Value) {
    assert!(v["calls"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["calls_per_second"].as_f64().unwrap() > 0.0, "{v:#}");
    let l = &v["latency_ns"];
    let q: Vec<u64> = ["min", "p50", "p90", "p99", "p999", "max"]
        .iter()
        .map(|k| l[k].as_u64().unwrap())
        .collect();
    assert!(
        q.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {v:#}"
    );
}

#[test]
fn bench_default_object_and_threads() {
    let v = bench_json(&[
        "--driver".as_ref(),
        c_driver().as_os_str(),
        "--threads".as_ref(),
        "2".as_ref(),
    ]);
    assert_eq!(v["object"], "typical fixture");
    assert_eq!(v["threads"], 2);
    assert_eq!(v["hook_type"], "Pre");
    assert_eq!(
        v["object_bytes"],
        fixtures::typical_object().encode_to_vec().len()
    );
    assert_sane_report(&v);
}

#[test]
fn bench_object_file_json_and_binary() {
    let seed = seed_file();
    let v = bench_json(&[
        "--driver".as_ref(),
        rust_driver().as_os_str(),
        "--object".as_ref(),
        seed.as_os_str(),
    ]);
    assert_eq!(v["hook_type"], "Pre");
    assert_sane_report(&v);
    let bin = write_scratch("large.bin", &fixtures::large_object().encode_to_vec());
    let v = bench_json(&[
        "--driver".as_ref(),
        rust_driver().as_os_str(),
        "--object".as_ref(),
        bin.as_os_str(),
        "--hook-type".as_ref(),
        "response".as_ref(),
    ]);
    assert_eq!(v["hook_type"], "Response");
    assert_sane_report(&v);
}

#[test]
fn bench_human_output() {
    let out = ok_stdout(&coprocess([
        "bench".as_ref(),
        "--driver".as_ref(),
        test_driver(&[]).as_os_str(),
        "--duration".as_ref(),
        "0.2".as_ref(),
        "--warmup".as_ref(),
        "0".as_ref(),
    ]));
    for word in ["throughput", "calls/s", "p50", "p99.9", "typical fixture"] {
        assert!(out.contains(word), "{word} missing:\n{out}");
    }
}

#[test]
fn bench_errors_are_one_line() {
    let line = one_line_error(&coprocess([
        "bench".as_ref(),
        "--driver".as_ref(),
        test_driver(&["FAIL"]).as_os_str(),
        "--duration".as_ref(),
        "0.2".as_ref(),
    ]));
    assert!(line.contains("test driver refuses on purpose"), "{line}");
    let missing = scratch().join("missing-object.json");
    let line = one_line_error(&coprocess([
        "bench".as_ref(),
        "--driver".as_ref(),
        test_driver(&[]).as_os_str(),
        "--object".as_ref(),
        missing.as_os_str(),
    ]));
    assert!(line.contains("cannot read"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// the sample files in cli/objects/ (the README's commands use them)

fn objects_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("objects")
}

#[test]
fn sample_pre_object_is_the_seeds_payload() {
    let committed = std::fs::read_to_string(objects_dir().join("pre.json")).unwrap();
    assert_eq!(parse_json(&committed), parse_json(&seeds_example_payload()));
    let out = dispatch_json(&[
        "--driver".as_ref(),
        rust_driver().as_os_str(),
        objects_dir().join("pre.json").as_os_str(),
    ]);
    assert_eq!(
        out["request"]["setHeaders"]["X-Rust-Driver"], "rust",
        "{out:#}"
    );
}

#[test]
fn sample_custom_key_check_and_event() {
    let out = dispatch_json(&[
        "--driver".as_ref(),
        rust_driver().as_os_str(),
        "--config".as_ref(),
        r#"{"tokens": ["s3cret"]}"#.as_ref(),
        objects_dir().join("custom_key_check.json").as_os_str(),
    ]);
    assert_eq!(out["metadata"]["token"], "s3cret", "{out:#}");
    let event = std::fs::read(objects_dir().join("event.json")).unwrap();
    let out = coprocess_with_stdin(
        [
            "event".as_ref(),
            "--driver".as_ref(),
            c_driver().as_os_str(),
            "-".as_ref(),
        ],
        &event,
    );
    assert!(ok_stdout(&out).contains("CDriverEvent"));
}
