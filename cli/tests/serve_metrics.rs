//! `coprocess serve --metrics-addr`: the bridge's metrics over real HTTP. Calls go in through a real
//! gRPC client (tonic's Dispatcher client); the metrics come out read by Prometheus' own Python
//! client (urllib + prometheus_client's text parser; that part skips loudly without it), and by raw
//! HTTP for the JSON, the refusals and the connection bounds. Every wait is bounded.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coprocess_grpc_service::{DispatcherClient, RawObject};
use coprocess_proto::{fixtures, HookType, Message};
use serde_json::Value;
use support::test_driver;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A running `coprocess serve`, killed on drop.
struct Served {
    child: Child,
    /// host:port of the metrics listener.
    metrics: String,
    /// host:port of the gRPC listener.
    grpc: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// SIGTERM, then the exit status (SIGKILL after TIMEOUT).
    fn stop(mut self) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM");
        wait_bounded(&mut self.child)
    }
}

fn wait_bounded(child: &mut Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("the process did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `coprocess serve` on 127.0.0.1:0 with the pass-through test driver as "td" and `extra` options;
/// waits for its "metrics on" and "listening on" lines.
fn serve(extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coprocess"))
        .args(["serve", "--listen", "tcp://127.0.0.1:0", "--driver"])
        .arg(format!("td={}", test_driver(&[]).display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting coprocess serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut metrics, mut grpc) = (None, None);
    let deadline = Instant::now() + TIMEOUT;
    while metrics.is_none() || grpc.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!("coprocess serve did not announce both listeners ({status}); stderr is above");
        };
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            metrics = Some(rest.trim_end_matches("/metrics").to_owned());
        } else if let Some(rest) = line.strip_prefix("listening on tcp://") {
            grpc = Some(rest.to_owned());
        }
    }
    Served {
        child,
        metrics: metrics.unwrap(),
        grpc: grpc.unwrap(),
    }
}

/// Sends `request` (raw HTTP/1.1 text) and returns the status and the whole response text.
fn http(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    (status, raw)
}

fn get(addr: &str, target: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .expect("a complete response")
        .1
}

/// `n` Dispatch calls through a real gRPC client, each an Object for a `hook` hook.
fn dispatch_over_grpc(grpc: &str, hook: HookType, n: usize) {
    let mut object = fixtures::typical_object();
    object.hook_type = hook as i32;
    let bytes = object.encode_to_vec();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let mut client = DispatcherClient::connect(format!("http://{grpc}"))
                .await
                .expect("connecting to coprocess serve");
            for _ in 0..n {
                let reply = client
                    .dispatch(RawObject::from(bytes.as_slice()))
                    .await
                    .expect("Dispatch over gRPC");
                assert!(!reply.into_inner().as_slice().is_empty());
            }
        })
        .await
        .expect("the gRPC calls finish in time");
    });
}

#[test]
fn prometheus_scrapes_the_calls_served_over_grpc() {
    let served = serve(&["--metrics-addr", "127.0.0.1:0"]);
    dispatch_over_grpc(&served.grpc, HookType::Pre, 3);
    dispatch_over_grpc(&served.grpc, HookType::Post, 2);

    let url = format!("http://{}/metrics", served.metrics);
    if let Some(samples) = common::prometheus_client_samples(common::Exposition::Url(&url)) {
        // Outside an API the hook label is the hook type.
        for (hook, n) in [("Pre", 3.0), ("Post", 2.0)] {
            let key = format!("api=,driver=td,hook={hook}");
            assert_eq!(
                samples.get(&format!("coprocess_hook_calls_total{{{key}}}")),
                Some(&n),
                "{samples:#?}"
            );
            assert_eq!(
                samples.get(&format!("coprocess_hook_duration_seconds_count{{{key}}}")),
                Some(&n),
                "{samples:#?}"
            );
        }
    }

    let (status, json) = get(&served.metrics, "/metrics?format=json");
    assert_eq!(status, 200, "{json}");
    assert!(
        json.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{json}"
    );
    let v: Value = serde_json::from_str(body(&json)).unwrap();
    assert!(v.to_string().contains(r#""hook":"Post""#), "{v:#}");

    assert_eq!(get(&served.metrics, "/").0, 404);
    assert_eq!(get(&served.metrics, "/metrics?format=xml").0, 400);
    let (status, post) = http(
        &served.metrics,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405, "{post}");
    let (status, garbage) = http(&served.metrics, "\x01\x02 not http\r\n\r\n");
    assert_eq!(status, 400, "{garbage}");

    // The gRPC side still serves, and SIGTERM still ends the process cleanly.
    dispatch_over_grpc(&served.grpc, HookType::Pre, 1);
    assert!(served.stop().success());
}

#[test]
fn idle_connections_are_closed_and_do_not_starve_the_scraper() {
    let served = serve(&["--metrics-addr", "127.0.0.1:0"]);
    // More silent connections than the server serves at once (16): each is closed, at once or when
    // its request head has not come within 5 s.
    let idle: Vec<TcpStream> = (0..24)
        .map(|_| TcpStream::connect(&served.metrics).unwrap())
        .collect();
    for mut s in idle {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 256];
        let started = Instant::now();
        // EOF, a timeout answer (408) or a reset: anything but holding the slot forever.
        let _ = s.read(&mut buf);
        assert!(
            started.elapsed() < TIMEOUT,
            "an idle connection stayed open"
        );
    }
    assert_eq!(get(&served.metrics, "/metrics").0, 200);
}

#[test]
fn metrics_beyond_loopback_need_insecure_and_a_taken_port_is_an_error() {
    let run = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coprocess"))
            .args(["serve", "--listen", "tcp://127.0.0.1:0", "--driver"])
            .arg(format!("td={}", test_driver(&[]).display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child);
        let out = child.wait_with_output().unwrap();
        (status, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (status, err) = run(&["--metrics-addr", "0.0.0.0:0"]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure"),
        "{err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, err) = run(&["--metrics-addr", &addr]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen"), "{err}");
}
