//! What a person watching the demo gateway sees: one access-log line per request on standard output,
//! and the bridge's metrics on /metrics (Prometheus text).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use support::TIMEOUT;

const API: &str = r#"{
  "api_id": "observed", "org_id": "org", "name": "observed",
  "proxy": {"listen_path": "/observed/", "target_url": "{upstream}", "strip_listen_path": true},
  "custom_middleware": {"driver": "native", "pre": [{"name": "ChainPre1"}]}
}"#;

/// GET `path`; returns the status and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    (head[9..12].parse().unwrap(), body.to_owned())
}

#[test]
fn each_request_gets_an_access_log_line_and_metrics_count_the_hooks() {
    let gw = support::gateway(&[API], serde_json::json!({}));
    assert_eq!(get(&gw.addr, "/observed/pets?id=1").0, 200);
    assert_eq!(get(&gw.addr, "/nowhere").0, 404);

    let (status, metrics) = get(&gw.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            r#"coprocess_hook_calls_total{api="observed",hook="ChainPre1",driver="native"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE coprocess_hook_duration_seconds histogram"));
    // The gateway's own counters follow the bridge's.
    assert!(metrics.contains("\ncoprocess_gateway_access_log_dropped_total 0\n"));
    assert!(metrics.contains("\ncoprocess_gateway_blocking_wait_timeouts_total 0\n"));

    // The lines are printed after each answer is complete: wait for them, boundedly.
    let started = Instant::now();
    let lines = loop {
        let lines = gw.stdout.lock().unwrap().clone();
        let logged = |p: &str| lines.iter().any(|l| l.starts_with(p));
        if logged("GET /observed/pets?id=1 200 ") && logged("GET /nowhere 404 ") {
            break lines;
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "no access-log lines: {lines:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let line = lines
        .iter()
        .find(|l| l.starts_with("GET /observed/pets?id=1 200 "))
        .unwrap();
    // "GET /observed/pets?id=1 200 1.234ms plugins=0.456ms": plugin time is part of the total.
    let fields: Vec<&str> = line.split(' ').collect();
    let total: f64 = fields[3].trim_end_matches("ms").parse().unwrap();
    let plugins: f64 = fields[4]
        .trim_start_matches("plugins=")
        .trim_end_matches("ms")
        .parse()
        .unwrap();
    assert!(plugins > 0.0 && plugins <= total, "{line}");
    let not_found = lines
        .iter()
        .find(|l| l.starts_with("GET /nowhere 404 "))
        .unwrap();
    assert!(not_found.ends_with(" plugins=0.000ms"), "{not_found}");
}

/// Lines are queued and written out in batches (here: only at shutdown), never by the request;
/// SIGTERM writes out what is queued before the gateway exits.
#[test]
fn sigterm_writes_out_the_queued_access_log_lines() {
    let mut gw = support::gateway_with_config(
        &[API],
        serde_json::json!([{
            "name": "native",
            "path": support::target_dir().join("libcoprocess_rust_driver.so"),
            "config": {}
        }]),
        serde_json::json!({"access_log_flush_ms": 600_000}),
    );
    assert_eq!(get(&gw.addr, "/observed/late").0, 200);
    let logged = |gw: &support::Gateway| {
        gw.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("GET /observed/late 200 "))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!logged(&gw), "written before a flush was due");
    assert!(gw.terminate().success());
    let started = Instant::now();
    while !logged(&gw) {
        assert!(started.elapsed() < TIMEOUT, "the line was lost at shutdown");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
