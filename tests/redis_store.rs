//! The Redis store with a real redis-server started here on 127.0.0.1 (skipped loudly without one):
//! keys carry Tyk's `coprocess-data:` prefix and TTLs, a second process (another "gateway instance")
//! sees the same data, a Redis that goes away gives errors and the bridge recovers when it returns.
//! Its own process: the store is process-wide.

mod abi;
mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::CoProcessInit;
use redis_server::{free_port, RedisServer};

/// A second process using the bridge with the same Redis: prints TykGetData(argv[2]).
fn other_instance() -> PathBuf {
    let src = common::write_c_source(
        "redis_reader.c",
        r#"#include <stdio.h>
#include "api.h"
int main(int argc, char **argv) {
  if (argc != 3) return 2;
  if (CoProcessInit(argv[1]) != 0) { fprintf(stderr, "%s\n", CoProcessLastError()); return 1; }
  char *v = TykGetData(argv[2]);
  printf("%s\n", v);
  CoProcessFree(v);
  CoProcessShutdown();
  return 0;
}
"#,
    );
    common::build_c_host(&src, &[])
}

#[test]
fn the_redis_store_is_shared_prefixed_and_recovers() {
    if common::skip_without("redis-server") {
        return;
    }
    let port = free_port();
    let server = RedisServer::start(port);
    let config = format!(
        r#"{{"store": {{"type": "redis", "url": "{}"}}}}"#,
        server.url()
    );
    assert_eq!(CoProcessInit(c(&config).as_ptr()), 0, "{}", last_error());

    // Keys carry Tyk's prefix; TTLs are Redis TTLs.
    store("greeting", "hello", 0);
    assert_eq!(
        server.get("coprocess-data:greeting").as_deref(),
        Some("hello")
    );
    assert_eq!(
        server.pttl("coprocess-data:greeting"),
        -1,
        "ttl 0 = no expiry"
    );
    store("short", "v", 5);
    let pttl = server.pttl("coprocess-data:short");
    assert!(pttl > 0 && pttl <= 5000, "PTTL {pttl}");
    assert_eq!(get("greeting"), "hello");
    assert_eq!(get("absent"), "");

    // Drivers write through the same store.
    let driver = common::build_c_driver(
        &common::repo_root().join("tests/drivers/test_driver.c"),
        &[],
    );
    load("redis-user", &driver, Some(r#"{"via": "redis"}"#)).unwrap();
    assert_eq!(
        server.get("coprocess-data:test_driver:config").as_deref(),
        Some(r#"{"via": "redis"}"#)
    );

    // Another gateway instance (a separate process) sees the data.
    let out = common::run(Command::new(other_instance()).args([config.as_str(), "greeting"]));
    assert!(out.status.success(), "{}", common::describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");

    // Redis goes away: errors, not hangs or crashes.
    drop(server);
    let started = Instant::now();
    assert_eq!(get("greeting"), "", "a failed read answers \"\"");
    assert!(
        last_error().starts_with("could not read key 'greeting': redis:"),
        "{}",
        last_error()
    );
    store("k", "v", 0);
    assert!(
        last_error().starts_with("could not store key 'k': redis:"),
        "{}",
        last_error()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );

    // ... and comes back: the bridge reconnects by itself, once the circuit breaker's window (1 s by
    // default) has passed.
    let server = RedisServer::start(port);
    let back = Instant::now();
    loop {
        store("again", "back", 0);
        if server.get("coprocess-data:again").is_some() {
            break;
        }
        assert!(
            last_error().contains("circuit open"),
            "meanwhile calls fail at once: {}",
            last_error()
        );
        assert!(back.elapsed() < Duration::from_secs(3), "{}", last_error());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get("again"), "back");
}

#[test]
fn an_unreachable_redis_fails_init_with_the_reason() {
    let port = free_port();
    let config = format!(
        r#"{{"store": {{"type": "redis", "url": "redis://127.0.0.1:{port}/0", "timeout_ms": 300}}}}"#
    );
    assert_eq!(
        CoProcessInit(c(&config).as_ptr()),
        COPROCESS_ERR_INVALID_CONFIG as i32
    );
    assert!(
        last_error().starts_with(&format!(
            "CoProcessInit config: cannot reach Redis at redis://127.0.0.1:{port}/0:"
        )),
        "{}",
        last_error()
    );
}
