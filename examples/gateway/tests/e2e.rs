//! End to end over real HTTP on 127.0.0.1: the gateway binary (which dlopens the bridge), the SDK's
//! example driver, API definition files in both formats, and an echo upstream started by the test.
//! Every wait is bounded; each test starts its own gateway process and kills it when done.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::{Gateway, TIMEOUT};

fn gateway(apis: &[&str]) -> Gateway {
    support::gateway(
        apis,
        serde_json::json!({"tokens": ["tok-a", "tok-b"], "cache_seconds": 60}),
    )
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The echo upstream's view of a request header (lower-case name).
    fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name][0].as_str().map(str::to_owned)
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to the end.
fn http(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(&gw.addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        gw.addr,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

const CLASSIC: &str = r#"{
  "api_id": "classic", "org_id": "org", "name": "classic",
  "proxy": {"listen_path": "/classic/", "target_url": "{upstream}", "strip_listen_path": true},
  "config_data": {"greeting": "hi"},
  "custom_plugin_auth_enabled": true,
  "custom_middleware": {
    "driver": "native",
    "pre": [{"name": "AddHeader"}, {"name": "ChainPre1"}, {"name": "Deny"}, {"name": "ChainPre2"},
            {"name": "Skipped", "disabled": true}, {"name": "ShowConfig"}],
    "auth_check": {"name": "BearerAuth"},
    "post_key_auth": [{"name": "ChainKey", "require_session": true}],
    "post": [{"name": "ChainPost"}],
    "id_extractor": {"extract_from": "header", "extract_with": "value",
                     "extractor_config": {"header_name": "Authorization"}}
  }
}"#;

const OAS: &str = r#"{
  "openapi": "3.0.3", "info": {"title": "oas", "version": "1"}, "paths": {},
  "x-tyk-api-gateway": {
    "info": {"id": "oas", "orgId": "org", "state": {"active": true}},
    "upstream": {"url": "{upstream}"},
    "server": {"listenPath": {"value": "/oas/", "strip": true}},
    "middleware": {"global": {
      "pluginConfig": {"driver": "native"},
      "prePlugins": [{"enabled": true, "functionName": "ChainO"}],
      "responsePlugins": [{"enabled": true, "functionName": "Rewrite"}]}}
  }
}"#;

const FAILING: &str = r#"{
  "api_id": "failing", "org_id": "org",
  "proxy": {"listen_path": "/failing/", "target_url": "{upstream}", "strip_listen_path": true},
  "enable_coprocess_auth": true,
  "custom_middleware": {"driver": "native", "pre": [{"name": "Fail"}], "auth_check": {"name": "Panic"}}
}"#;

const FAILING_AUTH: &str = r#"{
  "api_id": "failing-auth", "org_id": "org",
  "proxy": {"listen_path": "/failing-auth/", "target_url": "{upstream}", "strip_listen_path": true},
  "enable_coprocess_auth": true,
  "custom_middleware": {"driver": "native", "auth_check": {"name": "Panic"}}
}"#;

#[test]
fn every_request_hook_runs_in_order_on_a_classic_api() {
    let gw = gateway(&[CLASSIC]);
    let r = http(
        &gw,
        "POST",
        "/classic/things?x=1",
        &[("Authorization", "Bearer tok-a")],
        "payload",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = r.json();
    assert_eq!(echo["path"], "/things", "listen path stripped");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], "payload");
    assert_eq!(
        r.upstream_header("x-rust-driver").as_deref(),
        Some("rust"),
        "Pre"
    );
    assert_eq!(
        r.upstream_header("x-chain").as_deref(),
        Some("ChainPre1,ChainPre2,ChainKey,ChainPost"),
        "Pre chain, then PostKeyAuth, then Post"
    );
    assert_eq!(
        r.upstream_header("x-config-data").as_deref(),
        Some(r#"{"greeting":"hi"}"#)
    );
    assert!(
        r.upstream_header("x-auth-call").is_some(),
        "CustomKeyCheck ran"
    );
    assert_eq!(r.header("x-upstream"), Some("echo"));
}

#[test]
fn a_hook_that_answers_ends_the_chain() {
    let gw = gateway(&[CLASSIC]);
    let r = http(
        &gw,
        "GET",
        "/classic/",
        &[("Authorization", "Bearer tok-a"), ("X-Deny", "1")],
        "",
    );
    assert_eq!(r.status, 418);
    assert_eq!(r.body, r#"{"chain":"ChainPre1","denied_by":"Deny"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn auth_passes_refuses_with_403_and_answers_400_without_the_field() {
    let gw = gateway(&[CLASSIC, FAILING_AUTH]);
    let ok = http(
        &gw,
        "GET",
        "/classic/",
        &[("Authorization", "Bearer tok-b")],
        "",
    );
    assert_eq!(ok.status, 200);
    let refused = http(
        &gw,
        "GET",
        "/classic/",
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.body, r#"{"error":"Key not authorised"}"#,
        "Tyk's error body"
    );
    let missing = http(&gw, "GET", "/classic/", &[], "");
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body, r#"{"error":"Authorization field missing"}"#);
    let failed = http(&gw, "GET", "/failing-auth/", &[], "");
    assert_eq!(failed.status, 403, "a failing CustomKeyCheck");
    assert_eq!(failed.body, r#"{"error":"Key not authorised"}"#);
}

#[test]
fn a_cached_session_skips_the_driver_and_another_key_does_not() {
    let gw = gateway(&[CLASSIC]);
    let auth = |token: &str| {
        let r = http(&gw, "GET", "/classic/", &[("Authorization", token)], "");
        assert_eq!(r.status, 200, "{}", r.body);
        r.upstream_header("x-auth-call")
    };
    let first = auth("Bearer tok-a").expect("the first request reaches the driver");
    assert_eq!(
        auth("Bearer tok-a"),
        None,
        "the second is served from the cache"
    );
    let other = auth("Bearer tok-b").expect("another key reaches the driver");
    assert!(other.parse::<u64>().unwrap() > first.parse::<u64>().unwrap());
}

#[test]
fn response_hooks_rewrite_an_oas_api_response() {
    let gw = gateway(&[OAS]);
    let r = http(&gw, "GET", "/oas/pets", &[], "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["rewritten_by"], "rust_driver");
    assert_eq!(body["upstream_status"], 200);
    let cookies: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .collect();
    assert_eq!(cookies.len(), 2, "multivalue headers survive the hook");
}

#[test]
fn failing_hooks_answer_500_and_unknown_paths_404() {
    let gw = gateway(&[FAILING, OAS]);
    let r = http(&gw, "GET", "/failing/", &[], "");
    assert_eq!(r.status, 500);
    assert_eq!(r.body, r#"{"error":"Middleware error"}"#);
    let r = http(&gw, "GET", "/nowhere", &[], "");
    assert_eq!(r.status, 404);
}

/// The demo's Lua API (`demo/apps/lua.json`, bundle in `demo/lua/`) through the Lua driver: Pre, the
/// Lua auth hook behind the ID extractor's cache, Post with the session, and a 403.
#[test]
fn the_demo_lua_api_runs_its_lua_hooks() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
    let target = support::target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet", "-p", "coprocess-lua-driver"]);
    if target.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "building the Lua driver");
    let api = std::fs::read_to_string(demo.join("apps/lua.json"))
        .unwrap()
        .replace("http://127.0.0.1:8081", "{upstream}");
    let drivers = serde_json::json!([{
        "name": "lua",
        "path": target.join("libcoprocess_lua.so"),
        "config": {"bundle_root": demo.join("lua")}
    }]);
    let gw = support::gateway_with_drivers(&[&api], drivers);
    let token = [("Authorization", "Bearer lua-token")];
    let r = http(&gw, "GET", "/lua/hello", &token, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.upstream_header("myluaheader").as_deref(),
        Some("myluavalue")
    );
    assert_eq!(r.upstream_header("x-lua-auth-call").as_deref(), Some("1"));
    assert_eq!(
        r.upstream_header("x-lua-alias").as_deref(),
        Some("lua-demo-user")
    );
    let r = http(&gw, "GET", "/lua/hello", &token, "");
    assert_eq!(
        r.upstream_header("x-lua-auth-call"),
        None,
        "the cached session answers"
    );
    assert_eq!(
        r.upstream_header("x-lua-alias").as_deref(),
        Some("lua-demo-user")
    );
    let r = http(
        &gw,
        "GET",
        "/lua/hello",
        &[("Authorization", "Bearer wrong")],
        "",
    );
    assert_eq!(r.status, 403);
}

const TYK_RULES: &str = r#"{
  "api_id": "rules", "org_id": "org",
  "proxy": {"listen_path": "/rules/", "target_url": "{upstream}", "strip_listen_path": true},
  "custom_plugin_auth_enabled": true,
  "custom_middleware": {
    "driver": "native",
    "auth_check": {"name": "BearerAuth"},
    "post_key_auth": [{"name": "ShowSession"}],
    "post": [{"name": "Edit:code 429"}]
  }
}"#;

const NO_SESSION: &str = r#"{
  "api_id": "nosession", "org_id": "org",
  "proxy": {"listen_path": "/nosession/", "target_url": "{upstream}", "strip_listen_path": true},
  "custom_plugin_auth_enabled": true,
  "custom_middleware": {"driver": "native", "auth_check": {"name": "Edit:set X-Auth=none"}}
}"#;

#[test]
fn sessions_reach_hooks_after_auth_and_errors_render_as_tyk_does() {
    let gw = gateway(&[TYK_RULES, NO_SESSION]);
    let r = http(
        &gw,
        "GET",
        "/rules/",
        &[("Authorization", "Bearer tok-a")],
        "",
    );
    // The Post hook answered 429 without override_error: an error, in Tyk's JSON body.
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body, r#"{"error":"Key not authorised"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
    // An auth check that gives no session is a failed authentication.
    let r = http(
        &gw,
        "GET",
        "/nosession/",
        &[("Authorization", "Bearer tok-a")],
        "",
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, r#"{"error":"Forbidden"}"#)
    );
}

#[test]
fn post_key_auth_hooks_get_the_session_without_require_session() {
    let api = TYK_RULES.replace(r#""post": [{"name": "Edit:code 429"}]"#, r#""post": []"#);
    let gw = gateway(&[&api]);
    let r = http(
        &gw,
        "GET",
        "/rules/",
        &[("Authorization", "Bearer tok-a")],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-session").as_deref(), Some("rate=100"));
}

/// Hooks of a driver not in `inline_drivers` run on the blocking pool; a request that gets no turn
/// within `blocking_wait_ms` is answered 503 (Tyk's words) and counted on /metrics, while the one
/// holding the pool finishes normally.
#[test]
fn a_request_that_waits_too_long_for_the_blocking_pool_gets_a_503() {
    const SLOW: &str = r#"{
      "api_id": "slow", "org_id": "org",
      "proxy": {"listen_path": "/slow/", "target_url": "{upstream}", "strip_listen_path": true},
      "custom_middleware": {"driver": "pooled", "pre": [{"name": "Sleep:1500"}]}
    }"#;
    let driver = serde_json::json!([{
        "name": "pooled",
        "path": support::target_dir().join("libcoprocess_rust_driver.so"),
        "config": {}
    }]);
    let gw = support::gateway_with_config(
        &[SLOW],
        driver,
        serde_json::json!({"blocking_dispatches": 1, "blocking_wait_ms": 100}),
    );
    // Two at once: one holds the only turn for 1.5 s, the other gives up after 0.1 s.
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..2)
            .map(|_| s.spawn(|| http(&gw, "GET", "/slow/x", &[], "")))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503]);
    let busy = replies.iter().find(|r| r.status == 503).unwrap();
    assert_eq!(busy.body, r#"{"error":"Service temporarily unavailable."}"#);
    assert_eq!(busy.header("Content-Type"), Some("application/json"));
    let metrics = http(&gw, "GET", "/metrics", &[], "").body;
    assert!(
        metrics.contains("\ncoprocess_gateway_blocking_wait_timeouts_total 1\n"),
        "{metrics}"
    );
}

/// Hooks of a driver not in `inline_drivers` run on its lane (one thread); a hook that sleeps holds
/// the lane, and the other requests' hooks of that driver do not wait for it: they go to the
/// blocking pool (the lane's fall-back). Also without lanes (`lane_patience_ms: 0`, the pool only).
#[test]
fn a_sleeping_hook_does_not_hold_up_other_hooks_of_its_driver() {
    const SLOW: &str = r#"{
      "api_id": "slow", "org_id": "org",
      "proxy": {"listen_path": "/slow/", "target_url": "{upstream}", "strip_listen_path": true},
      "custom_middleware": {"driver": "pooled", "pre": [{"name": "Sleep:1500"}]}
    }"#;
    const QUICK: &str = r#"{
      "api_id": "quick", "org_id": "org",
      "proxy": {"listen_path": "/quick/", "target_url": "{upstream}", "strip_listen_path": true},
      "custom_middleware": {"driver": "pooled", "pre": [{"name": "AddHeader"}],
                            "post": [{"name": "ChainPost"}]}
    }"#;
    let driver = serde_json::json!([{
        "name": "pooled",
        "path": support::target_dir().join("libcoprocess_rust_driver.so"),
        "config": {}
    }]);
    for patience in [5, 0] {
        let gw = support::gateway_with_config(
            &[SLOW, QUICK],
            driver.clone(),
            serde_json::json!({"lane_patience_ms": patience}),
        );
        // Served by the lane before the slow hook holds it.
        let r = http(&gw, "GET", "/quick/x", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.upstream_header("x-rust-driver").as_deref(), Some("rust"));
        assert_eq!(r.upstream_header("x-chain").as_deref(), Some("ChainPost"));
        std::thread::scope(|s| {
            let slow = s.spawn(|| http(&gw, "GET", "/slow/x", &[], ""));
            std::thread::sleep(std::time::Duration::from_millis(300));
            for _ in 0..3 {
                let started = std::time::Instant::now();
                let r = http(&gw, "GET", "/quick/x", &[], "");
                assert_eq!(r.status, 200, "{}", r.body);
                assert_eq!(r.upstream_header("x-chain").as_deref(), Some("ChainPost"));
                assert!(
                    started.elapsed() < std::time::Duration::from_millis(700),
                    "lane_patience_ms {patience}: a quick hook waited {:?} for the sleeping one",
                    started.elapsed()
                );
            }
            assert!(!slow.is_finished(), "the slow hook still sleeps");
            assert_eq!(slow.join().unwrap().status, 200);
        });
        // With a lane, the quick ones went to the pool (so did the slow one, if the busy machine kept
        // the lane from starting it in time); without, there is no lane to fall back from.
        let metrics = http(&gw, "GET", "/metrics", &[], "").body;
        let fallbacks: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("coprocess_gateway_lane_fallbacks_total "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no lane fallback count: {metrics}"));
        if patience == 0 {
            assert_eq!(fallbacks, 0);
        } else {
            assert!(fallbacks >= 1, "{metrics}");
        }
    }
}
