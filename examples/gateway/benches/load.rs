//! Load on loopback: requests/s and latency percentiles of the gateway (a separate process that
//! dlopens the bridge) with and without in-process plugins, and of the echo upstream alone.
//!
//! Run: `cargo bench -p coprocess-gateway --bench load`
//! Knobs: LOAD_SECONDS (per scenario, default 5), LOAD_CONNECTIONS (default 16).
//!
//! Scenarios (all proxy GET requests to the same echo upstream):
//! - `upstream`: the echo upstream directly, no gateway;
//! - `no_plugin`: an API without hooks (the gateway never calls Dispatch);
//! - `pre_hook`: one Pre hook (the example driver's header patch), dispatched inline on the async
//!   worker (the driver is "native", in the gateway's default `inline_drivers`);
//! - `pre_auth_post`: a Pre hook, CustomKeyCheck served from the ID extractor's cache, a Post hook;
//! - `pre_hook_pool`: the same Pre hook with the same library loaded as "pooled", a driver not in
//!   `inline_drivers`: dispatched on the bounded blocking pool, as Python and gRPC drivers are.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[path = "../tests/support/mod.rs"]
mod support;

/// The APIs under test; `{upstream}` is the echo upstream.
const APIS: [&str; 4] = [
    r#"{"api_id": "none", "org_id": "o",
        "proxy": {"listen_path": "/no_plugin/", "target_url": "{upstream}", "strip_listen_path": true}}"#,
    r#"{"api_id": "pre", "org_id": "o",
        "proxy": {"listen_path": "/pre_hook/", "target_url": "{upstream}", "strip_listen_path": true},
        "custom_middleware": {"driver": "native", "pre": [{"name": "AddHeader"}]}}"#,
    r#"{"api_id": "full", "org_id": "o",
        "proxy": {"listen_path": "/pre_auth_post/", "target_url": "{upstream}", "strip_listen_path": true},
        "enable_coprocess_auth": true,
        "custom_middleware": {"driver": "native", "pre": [{"name": "AddHeader"}], "post": [{"name": "PostHook"}],
          "auth_check": {"name": "Auth"},
          "id_extractor": {"extract_from": "header", "extract_with": "value",
                           "extractor_config": {"header_name": "Authorization"}}}}"#,
    r#"{"api_id": "pool", "org_id": "o",
        "proxy": {"listen_path": "/pre_hook_pool/", "target_url": "{upstream}", "strip_listen_path": true},
        "custom_middleware": {"driver": "pooled", "pre": [{"name": "AddHeader"}]}}"#,
];

/// One connection sending requests back to back until `until`; returns latencies in µs.
async fn connection(addr: String, path: String, until: Instant) -> Vec<u32> {
    let stream = TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(100_000);
    while Instant::now() < until {
        let req = Request::get(path.as_str())
            .header("Host", addr.as_str())
            .header("Authorization", "Bearer tok")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let start = Instant::now();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.into_body().collect().await.unwrap();
        latencies.push(start.elapsed().as_micros() as u32);
    }
    latencies
}

/// One round of a scenario: every connection for `seconds`; returns (latencies, elapsed seconds).
async fn round(addr: &str, path: &str, connections: u64, seconds: f64) -> (Vec<u32>, f64) {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(addr.to_owned(), path.to_owned(), until)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed().as_secs_f64())
}

/// One line per scenario; `baseline` is the no_plugin rate, for the cost of plugins as a ratio.
fn report(name: &str, mut all: Vec<u32>, elapsed: f64, baseline: f64) {
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    let rate = all.len() as f64 / elapsed;
    println!(
        "{name:<14} {:>9} req {:>9.0} req/s ({:>+6.1}% vs no_plugin)   p50 {:>6} µs   p99 {:>6} µs",
        all.len(),
        rate,
        (rate / baseline - 1.0) * 100.0,
        pct(0.50),
        pct(0.99)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs bench targets with no such flag: do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds = env_or("LOAD_SECONDS", 5);
    let connections = env_or("LOAD_CONNECTIONS", 16);
    let upstream = support::upstream();
    let driver = |name: &str| {
        serde_json::json!({
            "name": name,
            "path": support::target_dir().join("libcoprocess_rust_driver.so"),
            "config": {"tokens": ["tok"], "cache_seconds": 3600}
        })
    };
    let gateway = support::gateway_with_drivers(
        &APIS,
        serde_json::json!([driver("native"), driver("pooled")]),
    );
    let addr = gateway.addr.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Scenarios run interleaved, one second at a time, so that load from other processes on the
    // machine spreads over all of them instead of skewing one.
    let scenarios: Vec<(&str, String, String)> =
        std::iter::once(("upstream", upstream.to_string(), "/x".to_owned()))
            .chain(
                ["no_plugin", "pre_hook", "pre_auth_post", "pre_hook_pool"]
                    .into_iter()
                    .map(|s| (s, addr.clone(), format!("/{s}/x"))),
            )
            .collect();
    println!(
        "load: {connections} connections, {seconds} s per scenario (interleaved 1 s rounds), loopback, GET with an empty body"
    );
    rt.block_on(async {
        let mut results: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0); scenarios.len()];
        for (_, a, p) in &scenarios {
            // Warm-up: fills the auth cache, opens upstream connections.
            round(a, p, 1, 0.3).await;
        }
        for _ in 0..seconds {
            for (i, (_, a, p)) in scenarios.iter().enumerate() {
                let (lat, secs) = round(a, p, connections, 1.0).await;
                results[i].0.extend(lat);
                results[i].1 += secs;
            }
        }
        let baseline = results[1].0.len() as f64 / results[1].1;
        for ((name, _, _), (lat, secs)) in scenarios.iter().zip(results) {
            report(name, lat, secs, baseline);
        }
    });
}
