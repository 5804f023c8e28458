//! The gRPC driver (drivers/grpc, `libcoprocess_grpc.so`) loaded into the bridge, with real Python
//! grpcio Dispatcher servers (drivers/grpc/tests/python/dispatcher_server.py) as its remotes.

mod abi;
mod common;
mod grpc_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use abi::*;
use coprocess_bridge::ffi::host::DispatchEvent;
use coprocess_bridge::proto::{fixtures, HookType, Message, Object};
use grpc_support::*;

/// Loads the gRPC driver under a fresh name (the bridge is process-wide; every test gets its own).
fn load_grpc(config: serde_json::Value) -> Result<String, Failure> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let name = format!("grpc-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    load(&name, &grpc_driver_lib(), Some(&config.to_string()))?;
    Ok(name)
}

fn object(hook: HookType, name: &str) -> Object {
    let mut o = fixtures::typical_object();
    o.hook_type = hook as i32;
    o.hook_name = name.into();
    o
}

fn run(driver: &str, o: &Object) -> Result<Object, Failure> {
    dispatch_with(driver, &o.encode_to_vec()).map(|out| Object::decode(out.as_slice()).unwrap())
}

fn header(o: &Object, name: &str) -> Option<String> {
    o.request.as_ref()?.set_headers.get(name).cloned()
}

#[test]
fn pre_hook_runs_on_a_python_grpc_server_over_tcp() {
    skip_unless_python_grpc!();
    let server = PyServer::tcp().start();
    let driver = load_grpc(serde_json::json!({"coprocess_grpc_server": server.address})).unwrap();
    let input = object(HookType::Pre, "AddHeader");
    let out = run(&driver, &input).unwrap();
    let mut expected = input.clone();
    expected
        .request
        .as_mut()
        .unwrap()
        .set_headers
        .insert("X-Rust-Driver".into(), "rust".into());
    assert_eq!(out, expected, "the Python plugin's change, nothing else");

    // Tyk's bare host:port form reaches the same server.
    let bare = server.address.strip_prefix("tcp://").unwrap();
    let driver = load_grpc(serde_json::json!({"coprocess_grpc_server": bare})).unwrap();
    assert_eq!(run(&driver, &input).unwrap(), expected);
}

#[test]
fn pre_hook_runs_on_a_python_grpc_server_over_a_unix_socket() {
    skip_unless_python_grpc!();
    let sock = socket_path("py-unix");
    let server = PyServer::default()
        .listen(format!("unix://{}", sock.display()))
        .name("unix")
        .start();
    let driver = load_grpc(serde_json::json!({"coprocess_grpc_server": server.address})).unwrap();
    let out = run(&driver, &object(HookType::Pre, "AddHeader")).unwrap();
    assert_eq!(header(&out, "X-Served-By").as_deref(), Some("unix"));
    assert_eq!(header(&out, "X-Rust-Driver").as_deref(), Some("rust"));
}

#[test]
fn each_load_of_the_library_reaches_its_own_server() {
    skip_unless_python_grpc!();
    let a = PyServer::tcp().name("A").start();
    let b = PyServer::tcp().name("B").start();
    let to_a = load_grpc(serde_json::json!({"coprocess_grpc_server": a.address})).unwrap();
    let to_b = load_grpc(serde_json::json!({"coprocess_grpc_server": b.address})).unwrap();
    for _ in 0..3 {
        let o = object(HookType::Pre, "Who");
        assert_eq!(
            header(&run(&to_a, &o).unwrap(), "X-Served-By").as_deref(),
            Some("A")
        );
        assert_eq!(
            header(&run(&to_b, &o).unwrap(), "X-Served-By").as_deref(),
            Some("B")
        );
    }
}

#[test]
fn several_addresses_are_used_round_robin_and_unreachable_ones_are_skipped() {
    skip_unless_python_grpc!();
    let a = PyServer::tcp().name("A").start();
    let b = PyServer::tcp().name("B").start();
    let driver =
        load_grpc(serde_json::json!({"coprocess_grpc_server": [a.address, b.address]})).unwrap();
    let served: Vec<String> = (0..6)
        .map(|_| {
            header(
                &run(&driver, &object(HookType::Pre, "Who")).unwrap(),
                "X-Served-By",
            )
            .unwrap()
        })
        .collect();
    assert_eq!(served.iter().filter(|s| *s == "A").count(), 3, "{served:?}");
    assert_eq!(served.iter().filter(|s| *s == "B").count(), 3, "{served:?}");
    assert!(
        served.windows(2).all(|w| w[0] != w[1]),
        "alternating: {served:?}"
    );

    // A dead address among live ones: every call still succeeds, on the live server.
    let dead = {
        let gone = PyServer::tcp().start();
        let addr = gone.address.clone();
        let _ = gone.stop();
        addr
    };
    let driver =
        load_grpc(serde_json::json!({"coprocess_grpc_server": format!("{dead},{}", a.address)}))
            .unwrap();
    for _ in 0..4 {
        let out = run(&driver, &object(HookType::Pre, "Who")).unwrap();
        assert_eq!(header(&out, "X-Served-By").as_deref(), Some("A"));
    }
}

#[test]
fn a_slow_server_gives_a_timeout_error_not_a_hang() {
    skip_unless_python_grpc!();
    let server = PyServer::tcp().slow_ms(5_000).start();
    let driver = load_grpc(serde_json::json!({
        "coprocess_grpc_server": server.address, "timeout_ms": 1_000
    }))
    .unwrap();
    let started = Instant::now();
    let (code, message) = run(&driver, &object(HookType::Pre, "Slow")).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(4_000),
        "the call ended by its deadline, not the server's 5 s"
    );
    assert_eq!(
        code,
        coprocess_bridge::error::COPROCESS_ERR_DRIVER_FAILED.code()
    );
    assert!(
        message.contains(&driver)
            && (message.contains("timed out") || message.contains("DeadlineExceeded")),
        "{message}"
    );
    // The same driver answers fast hooks right after.
    assert!(run(&driver, &object(HookType::Pre, "Fast")).is_ok());
}

#[test]
fn a_frozen_server_gives_a_timeout_and_the_driver_resumes_when_it_thaws() {
    skip_unless_python_grpc!();
    let server = PyServer::tcp().start();
    let driver = load_grpc(serde_json::json!({
        "coprocess_grpc_server": server.address, "timeout_ms": 1_000
    }))
    .unwrap();
    run(&driver, &object(HookType::Pre, "Warm")).unwrap();
    server.signal("STOP");
    let started = Instant::now();
    let err = run(&driver, &object(HookType::Pre, "Frozen")).unwrap_err();
    let waited = started.elapsed();
    server.signal("CONT");
    assert!(waited < Duration::from_secs(4), "returned after {waited:?}");
    assert!(
        err.1.contains("timed out") || err.1.contains("DeadlineExceeded"),
        "{}",
        err.1
    );
    assert!(run(&driver, &object(HookType::Pre, "Thawed")).is_ok());
}

/// Retries `f` for up to `within` (the driver reconnects on the next call; the restarted server may
/// take a moment to accept).
fn eventually<T>(
    within: Duration,
    mut f: impl FnMut() -> Result<T, Failure>,
) -> Result<T, Failure> {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn server_down_gives_errors_and_the_driver_recovers_when_it_returns() {
    skip_unless_python_grpc!();
    let server = PyServer::tcp().name("first").start();
    let address = server.address.clone();
    let driver =
        load_grpc(serde_json::json!({"coprocess_grpc_server": address, "timeout_ms": 2_000}))
            .unwrap();
    assert_eq!(
        header(
            &run(&driver, &object(HookType::Pre, "Up")).unwrap(),
            "X-Served-By"
        )
        .as_deref(),
        Some("first")
    );

    let _ = server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let (code, message) = run(&driver, &object(HookType::Pre, "Down")).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(1_900),
            "an error at once, not a hang"
        );
        assert_eq!(
            code,
            coprocess_bridge::error::COPROCESS_ERR_DRIVER_FAILED.code()
        );
        assert!(
            message.contains("no gRPC server reachable") && message.contains(&address),
            "{message}"
        );
    }

    let again = PyServer::tcp()
        .listen(address.clone())
        .name("second")
        .start();
    assert_eq!(again.address, address);
    let out = eventually(Duration::from_secs(10), || {
        run(&driver, &object(HookType::Pre, "Back"))
    })
    .expect("the driver reconnects once the server is back");
    assert_eq!(header(&out, "X-Served-By").as_deref(), Some("second"));
}

#[test]
fn a_failing_plugin_reports_its_status_and_message() {
    skip_unless_python_grpc!();
    let server = PyServer::tcp().start();
    let driver = load_grpc(serde_json::json!({"coprocess_grpc_server": server.address})).unwrap();
    let (code, message) = run(&driver, &object(HookType::Post, "Fail")).unwrap_err();
    assert_eq!(
        code,
        coprocess_bridge::error::COPROCESS_ERR_DRIVER_FAILED.code()
    );
    assert!(
        message.contains("Internal") && message.contains("plugin failed on purpose"),
        "{message}"
    );
}

fn with_body(len: usize) -> Object {
    let mut o = object(HookType::Post, "BodySize");
    o.request.as_mut().unwrap().raw_body = vec![b'x'; len];
    o
}

#[test]
fn a_20_mb_body_passes_with_the_limit_raised_and_fails_cleanly_above_the_limit() {
    skip_unless_python_grpc!();
    const MB: usize = 1024 * 1024;
    let body = 20 * MB;
    let server = PyServer::tcp().max_message_bytes(64 * MB).start();

    let big = load_grpc(serde_json::json!({
        "coprocess_grpc_server": server.address, "max_message_bytes": 32 * MB, "timeout_ms": 30_000
    }))
    .unwrap();
    let out = run(&big, &with_body(body)).unwrap();
    assert_eq!(header(&out, "X-Body-Size"), Some(body.to_string()));
    assert_eq!(
        out.request.unwrap().raw_body.len(),
        body,
        "the body came back whole"
    );

    let small = load_grpc(serde_json::json!({
        "coprocess_grpc_server": server.address, "max_message_bytes": 16 * MB, "timeout_ms": 30_000
    }))
    .unwrap();
    let (code, message) = run(&small, &with_body(body)).unwrap_err();
    assert_eq!(
        code,
        coprocess_bridge::error::COPROCESS_ERR_DRIVER_FAILED.code()
    );
    assert!(
        message.contains("more than max_message_bytes") && message.contains(&(16 * MB).to_string()),
        "names the limit: {message}"
    );
    // Below the limit the same driver keeps working.
    assert!(run(&small, &with_body(MB)).is_ok());

    // The server's own limit (4 MiB, grpcio's default) refuses a 20 MB body just as cleanly.
    let strict = PyServer::tcp().start();
    let to_strict = load_grpc(serde_json::json!({
        "coprocess_grpc_server": strict.address, "max_message_bytes": 32 * MB, "timeout_ms": 30_000
    }))
    .unwrap();
    let (_, message) = run(&to_strict, &with_body(body)).unwrap_err();
    assert!(
        message.contains("ResourceExhausted")
            || message.contains("server may refuse messages that large"),
        "{message}"
    );
    assert!(run(&to_strict, &with_body(MB)).is_ok());
}

#[test]
fn events_reach_the_grpc_server() {
    skip_unless_python_grpc!();
    let dir = scratch_dir("events");
    let events = dir.join("events.txt");
    let server = PyServer::tcp().events(&events).start();
    let _driver = load_grpc(serde_json::json!({"coprocess_grpc_server": server.address})).unwrap();
    let json =
        r#"{"message": {"key": "k1"}, "handler_name": "OnKeyExpired", "spec": {"APIID": "a1"}}"#;
    let text = c(json);
    DispatchEvent(text.as_ptr());
    let got = std::fs::read_to_string(&events).unwrap_or_default();
    assert!(got.lines().any(|l| l == json), "events file: {got:?}");
}

#[test]
fn tls_with_the_servers_ca_works_and_without_it_fails_cleanly() {
    skip_unless_python_grpc!();
    skip_unless_tool!("openssl");
    let dir = scratch_dir("tls");
    let (ca, cert, key) = make_certificates(&dir);
    let server = PyServer::tcp().tls(&cert, &key).name("tls").start();
    let port = server.port();

    let trusted = load_grpc(serde_json::json!({
        "coprocess_grpc_server": format!("tcp://localhost:{port}"),
        "tls": {"ca_file": ca},
    }))
    .unwrap();
    let out = run(&trusted, &object(HookType::Pre, "Tls")).unwrap();
    assert_eq!(header(&out, "X-Served-By").as_deref(), Some("tls"));

    // By IP address, naming the certificate's host explicitly.
    let by_ip = load_grpc(serde_json::json!({
        "coprocess_grpc_server": format!("127.0.0.1:{port}"),
        "tls": {"ca_file": ca, "domain": "localhost"},
    }))
    .unwrap();
    assert!(run(&by_ip, &object(HookType::Pre, "Tls")).is_ok());

    // The system's roots do not trust the test CA: a clear error, no hang.
    let untrusted = load_grpc(serde_json::json!({
        "coprocess_grpc_server": format!("https://localhost:{port}"), "timeout_ms": 5_000
    }))
    .unwrap();
    let (_, message) = run(&untrusted, &object(HookType::Pre, "Tls")).unwrap_err();
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    // Plain text to a TLS server fails too.
    let plain = load_grpc(serde_json::json!({
        "coprocess_grpc_server": format!("tcp://127.0.0.1:{port}"), "timeout_ms": 2_000
    }))
    .unwrap();
    assert!(run(&plain, &object(HookType::Pre, "Tls")).is_err());
}

#[test]
fn a_bad_config_fails_the_load() {
    for config in [
        serde_json::json!({}),
        serde_json::json!({"coprocess_grpc_server": "no-port"}),
        serde_json::json!({"coprocess_grpc_server": "h:1", "timeout_ms": 0}),
        serde_json::json!({"coprocess_grpc_server": "h:1", "tls": {"ca_file": "/nonexistent/ca.pem"}}),
    ] {
        let (code, message) = load_grpc(config.clone()).unwrap_err();
        assert_eq!(
            code,
            coprocess_bridge::error::COPROCESS_ERR_LOAD_FAILED.code(),
            "{config}: {message}"
        );
    }
}

#[test]
fn nothing_listening_is_an_error_at_once() {
    // No Python needed: a port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = load_grpc(serde_json::json!({
        "coprocess_grpc_server": format!("tcp://127.0.0.1:{port}"), "timeout_ms": 5_000
    }))
    .unwrap();
    let started = Instant::now();
    let (code, message) = run(&driver, &object(HookType::Pre, "Nobody")).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        code,
        coprocess_bridge::error::COPROCESS_ERR_DRIVER_FAILED.code()
    );
    assert!(message.contains("no gRPC server reachable"), "{message}");
    let sock = socket_path("nobody");
    let driver = load_grpc(serde_json::json!({
        "coprocess_grpc_server": format!("unix://{}", sock.display())
    }))
    .unwrap();
    let (_, message) = run(&driver, &object(HookType::Pre, "Nobody")).unwrap_err();
    assert!(message.contains("no gRPC server reachable"), "{message}");
}

#[test]
fn many_threads_share_one_driver_and_its_servers() {
    skip_unless_python_grpc!();
    let a = PyServer::tcp().name("A").start();
    let sock = socket_path("py-many");
    let b = PyServer::default()
        .listen(format!("unix://{}", sock.display()))
        .name("B")
        .start();
    let driver =
        load_grpc(serde_json::json!({"coprocess_grpc_server": [a.address, b.address]})).unwrap();
    let served: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..16)
            .map(|i| {
                let driver = &driver;
                s.spawn(move || {
                    (0..20)
                        .map(|j| {
                            let mut o = object(HookType::Pre, &format!("t{i}-{j}"));
                            o.request.as_mut().unwrap().body = format!("{i}/{j}");
                            let out = run(driver, &o).unwrap();
                            assert_eq!(
                                out.hook_name, o.hook_name,
                                "each caller gets its own answer"
                            );
                            assert_eq!(out.request.as_ref().unwrap().body, format!("{i}/{j}"));
                            header(&out, "X-Served-By").unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(served.len(), 320);
    assert_eq!(
        served.iter().filter(|s| *s == "A").count(),
        160,
        "even round-robin"
    );
}

#[test]
fn mutual_tls_sends_the_client_certificate() {
    skip_unless_python_grpc!();
    skip_unless_tool!("openssl");
    let dir = scratch_dir("mtls");
    let (ca, cert, key) = make_certificates(&dir);
    let server = PyServer::tcp()
        .tls(&cert, &key)
        .require_client_cert(&ca)
        .name("mtls")
        .start();
    let address = format!("tcp://localhost:{}", server.port());

    let with_cert = load_grpc(serde_json::json!({
        "coprocess_grpc_server": address,
        "tls": {"ca_file": ca, "cert_file": dir.join("client.pem"), "key_file": dir.join("client.key")},
    }))
    .unwrap();
    let out = run(&with_cert, &object(HookType::Pre, "Mtls")).unwrap();
    assert_eq!(header(&out, "X-Served-By").as_deref(), Some("mtls"));

    let without = load_grpc(serde_json::json!({
        "coprocess_grpc_server": address, "timeout_ms": 5_000, "tls": {"ca_file": ca},
    }))
    .unwrap();
    assert!(
        run(&without, &object(HookType::Pre, "Mtls")).is_err(),
        "the server wants a certificate"
    );
}

#[test]
fn a_server_killed_mid_call_gives_an_error_before_the_deadline() {
    skip_unless_python_grpc!();
    let server = PyServer::tcp().slow_ms(10_000).start();
    let driver = load_grpc(serde_json::json!({
        "coprocess_grpc_server": server.address, "timeout_ms": 20_000
    }))
    .unwrap();
    run(&driver, &object(HookType::Pre, "Warm")).unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        let call = s.spawn(|| run(&driver, &object(HookType::Pre, "Slow")));
        std::thread::sleep(Duration::from_millis(500));
        server.signal("KILL");
        let (code, message) = call.join().unwrap().unwrap_err();
        assert_eq!(
            code,
            coprocess_bridge::error::COPROCESS_ERR_DRIVER_FAILED.code()
        );
        assert!(!message.contains("timed out"), "{message}");
    });
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the lost connection ended the call, not the 20 s deadline"
    );
}
