//! `coprocess serve`: the gRPC Dispatcher server over in-process drivers, called by a Python grpcio
//! client (what a gateway speaking Tyk's gRPC protocol does) and by the bridge's own gRPC driver.

mod abi;
mod common;
mod grpc_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use grpc_support::*;
use serde_json::Value;

fn rust_driver() -> std::path::PathBuf {
    common::build_workspace_cdylib("coprocess-rust-driver-example", "coprocess_rust_driver")
}

fn serve(args: &[&str]) -> Peer {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    start_serve(&coprocess_bin(), &args)
}

fn serve_rust(listen: &str, extra: &[&str]) -> Peer {
    let lib = rust_driver();
    let driver = format!("rust={}", lib.display());
    let mut args = vec!["--listen", listen, "--driver", &driver];
    args.extend_from_slice(extra);
    serve(&args)
}

/// Runs dispatcher_client.py against `target`; one JSON value per call.
fn client(target: &str, args: &[&str]) -> Vec<Value> {
    let out = common::run(
        Command::new("python3")
            .arg(python_dir().join("dispatcher_client.py"))
            .args(["--target", target])
            .args(args)
            .stdin(Stdio::null()),
    );
    assert!(
        out.status.success(),
        "the Python client failed:\n{}",
        common::describe(&out)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn one(target: &str, args: &[&str]) -> Value {
    client(target, args).remove(0)
}

#[test]
fn a_python_grpc_client_runs_the_rust_driver_over_tcp() {
    skip_unless_python_grpc!();
    let server = serve_rust(
        "tcp://127.0.0.1:0",
        &["--config", r#"{"tokens": ["secret-1"]}"#],
    );
    let replies = client(&server.address, &["--count", "3"]);
    assert_eq!(replies.len(), 3);
    for r in replies {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["set_headers"]["X-Rust-Driver"], "rust", "{r}");
    }
    // The driver's config reached it: a listed token passes the auth hook, another is refused.
    let ok = one(
        &server.address,
        &[
            "--hook-type",
            "CustomKeyCheck",
            "--header",
            "Authorization=Bearer secret-1",
        ],
    );
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["return_overrides"]["response_code"], -1, "{ok}");
    let refused = one(
        &server.address,
        &[
            "--hook-type",
            "CustomKeyCheck",
            "--header",
            "Authorization=Bearer nope",
        ],
    );
    assert_eq!(
        refused["return_overrides"]["response_code"], 403,
        "{refused}"
    );
    let (status, _, err) = server.stop();
    assert!(status.success(), "exit 0 on SIGTERM: {status}\n{err}");
}

#[test]
fn a_python_grpc_client_runs_the_rust_driver_inline_over_a_unix_socket() {
    skip_unless_python_grpc!();
    let sock = socket_path("serve-unix");
    let listen = format!("unix://{}", sock.display());
    // --inline: the driver runs on the server's I/O threads.
    let server = serve_rust(&listen, &["--inline"]);
    assert_eq!(server.address, listen);
    let r = one(&server.address, &[]);
    assert_eq!(r["set_headers"]["X-Rust-Driver"], "rust", "{r}");
    let (status, _, err) = server.stop();
    assert!(status.success(), "{status}\n{err}");
    assert!(!sock.exists(), "the socket file is removed on exit");
}

#[test]
fn errors_come_back_as_grpc_statuses() {
    skip_unless_python_grpc!();
    let server = serve_rust("tcp://127.0.0.1:0", &[]);
    let panic = one(&server.address, &["--hook-name", "Panic"]);
    assert_eq!(panic["code"], "INTERNAL", "{panic}");
    assert!(
        panic["details"].as_str().unwrap().contains("panicked"),
        "{panic}"
    );

    let garbage = one(&server.address, &["--raw-hex", "ffffffff"]);
    assert_eq!(garbage["code"], "INVALID_ARGUMENT", "{garbage}");
    assert!(garbage["details"]
        .as_str()
        .unwrap()
        .contains("not a well-formed coprocess.Object"));

    // Routing by metadata is off unless asked for: it would skip API chains and the ID extractor.
    let routed = one(&server.address, &["--driver", "nope"]);
    assert_eq!(routed["code"], "PERMISSION_DENIED", "{routed}");
    assert!(
        routed["details"]
            .as_str()
            .unwrap()
            .contains("--route-by-metadata"),
        "{routed}"
    );

    let event = one(
        &server.address,
        &["--event", r#"{"message": {}, "handler_name": "h"}"#],
    );
    assert_eq!(event["ok"], true, "{event}");
    let bad_event = one(&server.address, &["--event", "not json"]);
    assert_eq!(bad_event["code"], "INVALID_ARGUMENT", "{bad_event}");

    // The server is still serving after all that.
    assert_eq!(one(&server.address, &[])["ok"], true);
}

#[test]
fn several_drivers_are_picked_by_metadata() {
    skip_unless_python_grpc!();
    let lib = rust_driver();
    let (a, b) = (
        format!("a={}", lib.display()),
        format!("b={}", lib.display()),
    );
    let server = serve(&[
        "--listen",
        "tcp://127.0.0.1:0",
        "--driver",
        &a,
        "--driver",
        &b,
        "--config",
        r#"a={"header": "X-From-A"}"#,
        "--config",
        r#"b={"header": "X-From-B"}"#,
        "--route-by-metadata",
    ]);
    let unknown = one(&server.address, &["--driver", "nope"]);
    assert_eq!(unknown["code"], "NOT_FOUND", "{unknown}");
    let ra = one(&server.address, &["--driver", "a"]);
    assert_eq!(ra["set_headers"]["X-From-A"], "rust", "{ra}");
    let rb = one(&server.address, &["--driver", "b"]);
    assert_eq!(rb["set_headers"]["X-From-B"], "rust", "{rb}");
    let neither = one(&server.address, &[]);
    assert_eq!(
        neither["code"], "FAILED_PRECONDITION",
        "two drivers, no choice: {neither}"
    );
}

#[test]
fn a_20_mb_body_passes_with_the_limit_raised_and_fails_cleanly_above_it() {
    skip_unless_python_grpc!();
    const MB: usize = 1024 * 1024;
    let body = (20 * MB).to_string();
    let client_limit = (64 * MB).to_string();
    let raised = serve_rust(
        "tcp://127.0.0.1:0",
        &["--max-message-bytes", &(32 * MB).to_string()],
    );
    let r = one(
        &raised.address,
        &["--body-bytes", &body, "--max-message-bytes", &client_limit],
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["raw_body_len"], 20 * MB, "{r}");
    assert_eq!(r["set_headers"]["X-Rust-Driver"], "rust");

    let default = serve_rust("tcp://127.0.0.1:0", &[]);
    let r = one(
        &default.address,
        &["--body-bytes", &body, "--max-message-bytes", &client_limit],
    );
    assert!(
        r["code"] == "OUT_OF_RANGE" && r["details"].as_str().unwrap().contains("16777216"),
        "16 MiB default: {r}"
    );
    assert_eq!(
        one(&default.address, &["--body-bytes", &MB.to_string()])["ok"],
        true
    );
}

#[test]
fn sigterm_lets_calls_in_flight_finish() {
    skip_unless_python_grpc!();
    let slow = common::build_c_driver(Path::new("tests/drivers/test_driver.c"), &["SLOW_MS=1500"]);
    let driver = format!("slow={}", slow.display());
    let sock = socket_path("serve-graceful");
    let listen = format!("unix://{}", sock.display());
    let server = serve(&["--listen", &listen, "--driver", &driver]);

    let mut client = Command::new("python3")
        .arg(python_dir().join("dispatcher_client.py"))
        .args(["--target", &server.address, "--announce"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(client.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "calling");
    // The call is on its way (connected first): give it time to reach the 1.5 s driver, then stop.
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, err) = server.stop();
    let reply: Value = serde_json::from_str(&lines.next().expect("a reply").unwrap()).unwrap();
    assert!(client.wait().unwrap().success());
    assert_eq!(
        reply["ok"], true,
        "the call in flight finished: {reply}\n{err}"
    );
    assert_eq!(reply["set_headers"]["X-Test-Driver"], "v1", "{reply}");
    assert!(status.success(), "exit 0: {status}\n{err}");
    assert!(err.contains("stopping"), "{err}");
    assert!(!sock.exists(), "the socket file is removed");
}

#[test]
fn the_grpc_driver_reaches_coprocess_serve() {
    // Rust on both ends, no Python: the bridge's gRPC driver → coprocess serve → the Rust driver.
    use abi::*;
    use coprocess_bridge::proto::{fixtures, HookType, Message, Object};
    let tcp = serve_rust("tcp://127.0.0.1:0", &[]);
    let sock = socket_path("serve-from-driver");
    let unix = serve_rust(&format!("unix://{}", sock.display()), &[]);
    for (name, server) in [("via-tcp", &tcp), ("via-unix", &unix)] {
        let config = serde_json::json!({"coprocess_grpc_server": server.address}).to_string();
        load(name, &grpc_driver_lib(), Some(&config)).unwrap();
        let mut o = fixtures::typical_object();
        o.hook_type = HookType::Pre as i32;
        let out =
            Object::decode(dispatch_with(name, &o.encode_to_vec()).unwrap().as_slice()).unwrap();
        o.request
            .as_mut()
            .unwrap()
            .set_headers
            .insert("X-Rust-Driver".into(), "rust".into());
        assert_eq!(out, o, "{name}");
    }
    let (code, message) = {
        let mut o = fixtures::small_object();
        o.hook_name = "Panic".into();
        dispatch_with("via-tcp", &o.encode_to_vec()).unwrap_err()
    };
    assert_eq!(
        code,
        coprocess_bridge::error::COPROCESS_ERR_DRIVER_FAILED.code()
    );
    assert!(
        message.contains("Internal") && message.contains("panicked"),
        "{message}"
    );
}

#[test]
fn bad_arguments_fail_before_serving() {
    let bin = coprocess_bin();
    for (args, why) in [
        (vec!["--listen", "nowhere", "--driver", "x.so"], "--listen"),
        (
            vec![
                "--listen",
                "tcp://127.0.0.1:0",
                "--driver",
                "/nonexistent/libx.so",
            ],
            "loading driver 'x'",
        ),
    ] {
        let out = common::run(Command::new(&bin).arg("serve").args(&args));
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// Loads the gRPC driver under `name`, pointed at a `coprocess serve` with the given extra config.
fn grpc_client(name: &str, config: serde_json::Value) -> Result<(), abi::Failure> {
    abi::load(name, &grpc_driver_lib(), Some(&config.to_string()))
}

/// A Pre Object through the named gRPC driver; the served Rust driver sets X-Rust-Driver.
fn call_through(name: &str) -> Result<Vec<u8>, abi::Failure> {
    abi::dispatch_with(name, &abi::pre_object())
}

#[test]
fn tls_and_mutual_tls_serve_the_grpc_driver() {
    skip_unless_tool!("openssl");
    let dir = scratch_dir("serve-tls");
    let (ca, cert, key) = make_certificates(&dir);
    let (cert_s, key_s, ca_s) = (
        cert.display().to_string(),
        key.display().to_string(),
        ca.display().to_string(),
    );
    let tls = serve_rust(
        "tcp://127.0.0.1:0",
        &["--tls-cert", &cert_s, "--tls-key", &key_s],
    );
    grpc_client(
        "tls-trusted",
        serde_json::json!({"coprocess_grpc_server": tls.address, "tls": {"ca_file": ca, "domain": "localhost"}}),
    )
    .unwrap();
    let out = call_through("tls-trusted").unwrap();
    assert_eq!(
        abi::set_header(&out, "X-Rust-Driver").as_deref(),
        Some("rust")
    );
    grpc_client(
        "tls-plain",
        serde_json::json!({"coprocess_grpc_server": tls.address, "timeout_ms": 3_000}),
    )
    .unwrap();
    assert!(
        call_through("tls-plain").is_err(),
        "plain text to a TLS server fails"
    );

    let mtls = serve_rust(
        "tcp://127.0.0.1:0",
        &[
            "--tls-cert",
            &cert_s,
            "--tls-key",
            &key_s,
            "--tls-client-ca",
            &ca_s,
        ],
    );
    grpc_client(
        "mtls-with-cert",
        serde_json::json!({"coprocess_grpc_server": mtls.address, "tls": {
            "ca_file": ca, "domain": "localhost",
            "cert_file": dir.join("client.pem"), "key_file": dir.join("client.key")}}),
    )
    .unwrap();
    let out = call_through("mtls-with-cert").unwrap();
    assert_eq!(
        abi::set_header(&out, "X-Rust-Driver").as_deref(),
        Some("rust")
    );
    grpc_client(
        "mtls-without-cert",
        serde_json::json!({"coprocess_grpc_server": mtls.address, "timeout_ms": 3_000,
            "tls": {"ca_file": ca, "domain": "localhost"}}),
    )
    .unwrap();
    assert!(
        call_through("mtls-without-cert").is_err(),
        "the server requires a client certificate"
    );
    // A certificate from another CA is refused as well.
    let other = scratch_dir("serve-tls-other");
    make_certificates(&other);
    grpc_client(
        "mtls-foreign-cert",
        serde_json::json!({"coprocess_grpc_server": mtls.address, "timeout_ms": 3_000, "tls": {
            "ca_file": ca, "domain": "localhost",
            "cert_file": other.join("client.pem"), "key_file": other.join("client.key")}}),
    )
    .unwrap();
    assert!(call_through("mtls-foreign-cert").is_err());
    // The server still serves the good client after the refusals.
    assert!(call_through("mtls-with-cert").is_ok());
    for server in [tls, mtls] {
        let (status, _, err) = server.stop();
        assert!(status.success(), "{status}\n{err}");
    }
}

#[test]
fn calls_over_the_in_flight_bound_get_resource_exhausted() {
    let slow = common::build_c_driver(Path::new("tests/drivers/test_driver.c"), &["SLOW_MS=1000"]);
    let driver = format!("slow={}", slow.display());
    let server = serve(&[
        "--listen",
        "tcp://127.0.0.1:0",
        "--driver",
        &driver,
        "--max-in-flight",
        "1",
        "--in-flight-wait-ms",
        "0",
    ]);
    grpc_client(
        "bounded",
        serde_json::json!({"coprocess_grpc_server": server.address, "timeout_ms": 20_000}),
    )
    .unwrap();
    // Three calls at once against one slot, each holding it for a second: they overlap, so one runs
    // and the others are turned away at once (not queued).
    let results: Vec<_> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..3)
            .map(|_| s.spawn(|| call_through("bounded")))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|(_, m)| m.clone())
        .collect();
    assert!(ok >= 1, "{results:?}");
    assert!(
        !refused.is_empty(),
        "some call was over the bound: {results:?}"
    );
    for m in &refused {
        assert!(
            m.contains("ResourceExhausted") && m.contains("--max-in-flight"),
            "{m}"
        );
    }

    // With a wait long enough, excess calls queue for the slot instead.
    let queued = serve(&[
        "--listen",
        "tcp://127.0.0.1:0",
        "--driver",
        &driver,
        "--max-in-flight",
        "1",
        "--in-flight-wait-ms",
        "30000",
    ]);
    grpc_client(
        "queued",
        serde_json::json!({"coprocess_grpc_server": queued.address, "timeout_ms": 30_000}),
    )
    .unwrap();
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..2).map(|_| s.spawn(|| call_through("queued"))).collect();
        for c in calls {
            let r = c.join().unwrap();
            assert!(r.is_ok(), "{r:?}");
        }
    });
}

#[test]
fn plain_text_beyond_loopback_needs_insecure() {
    let lib = rust_driver();
    let driver = format!("rust={}", lib.display());
    let out = common::run(Command::new(coprocess_bin()).args([
        "serve",
        "--listen",
        "tcp://0.0.0.0:0",
        "--driver",
        &driver,
    ]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure"),
        "{err}"
    );
    let insecure = serve(&[
        "--listen",
        "tcp://0.0.0.0:0",
        "--driver",
        &driver,
        "--insecure",
    ]);
    // It serves: reach it through loopback.
    let port = insecure.port();
    grpc_client(
        "insecure",
        serde_json::json!({"coprocess_grpc_server": format!("tcp://127.0.0.1:{port}")}),
    )
    .unwrap();
    assert!(call_through("insecure").is_ok());
    let (status, _, err) = insecure.stop();
    assert!(status.success(), "{status}\n{err}");
}
