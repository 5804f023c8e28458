//! The Redis store under failure and load, against real redis-servers started here on loopback ports
//! (skipped loudly without redis-server): a restart under load, a hung server (the circuit breaker
//! makes each caller wait out a timeout at most once per window), several bridge processes sharing
//! state, Sentinel (finding the master and following a failover), a Cluster and TLS. The stores are
//! built from the same JSON a host passes to `CoProcessInit`, so config parsing is covered too.

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coprocess_bridge::config::BridgeConfig;
use coprocess_bridge::store::{Namespace, RedisStore, Store};
use redis_server::{free_port, RedisServer};

const D: Namespace = Namespace::Data;

fn store_from(json: &str) -> Result<RedisStore, String> {
    let cfg = BridgeConfig::parse(Some(json), |_| None).map_err(|e| e.message)?;
    let redis = cfg
        .redis_config()
        .map_err(|e| e.message)?
        .expect("a redis store");
    RedisStore::connect(redis).map_err(|e| e.0)
}

/// One call's outcome, for the load tests.
struct Call {
    at: Instant,
    took: Duration,
    ok: bool,
    /// Why it failed, for the assertion messages.
    error: Option<String>,
}

/// The call failed at the circuit breaker, without trying Redis.
fn refused_by_breaker(call: &Call) -> bool {
    call.error
        .as_deref()
        .is_some_and(|e| e.contains("not tried (circuit open"))
}

/// `threads` threads doing SET+GET pairs until `stop`; every call's outcome.
fn hammer(
    store: &Arc<RedisStore>,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<Call>>> {
    (0..threads)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut calls = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let key = format!("load:{t}:{}", i % 50);
                    let outcome = store
                        .set(D, &key, &i.to_string(), None)
                        .and_then(|()| store.get(D, &key))
                        .map_err(|e| e.0)
                        .and_then(|v| v.map(drop).ok_or_else(|| "GET found nothing".into()));
                    let ok = outcome.is_ok();
                    calls.push(Call {
                        at,
                        took: at.elapsed(),
                        ok,
                        error: outcome.err(),
                    });
                    i += 1;
                    if !ok {
                        // A failing caller retries soon, as gateway traffic would.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                calls
            })
        })
        .collect()
}

#[test]
fn a_restart_under_load_fails_fast_while_down_and_recovers() {
    if common::skip_without("redis-server") {
        return;
    }
    let port = free_port();
    let server = RedisServer::start(port);
    // 16 callers share 4 connections: on a saturated machine a caller can wait longer than the
    // default 200 ms for one, and that "pool busy" failure is not what this test is about.
    let store = Arc::new(
        store_from(&format!(
            r#"{{"store": {{"type": "redis", "url": "{}", "timeout_ms": 1000, "pool_size": 4,
                "pool_wait_ms": 2000, "retry_after_ms": 300}}}}"#,
            server.url()
        ))
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers = hammer(&store, 16, &stop);
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    server.kill();
    std::thread::sleep(Duration::from_millis(1500));
    let restarted = Instant::now();
    let server = RedisServer::start(port);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let calls: Vec<Call> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();

    let before = calls.iter().filter(|c| c.at < killed && c.ok).count();
    assert!(before > 0, "calls succeeded before the kill");
    let down: Vec<&Call> = calls
        .iter()
        .filter(|c| c.at > killed + Duration::from_millis(50) && c.at < restarted)
        .collect();
    assert!(down.len() > 16, "calls kept coming while Redis was down");
    assert!(down.iter().all(|c| !c.ok), "no call succeeds without Redis");
    let slowest = down.iter().map(|c| c.took).max().unwrap();
    assert!(
        slowest < Duration::from_millis(500),
        "failures while down are fast (refused connections, then the open breaker): {slowest:?}"
    );
    let first_ok_after = calls
        .iter()
        .filter(|c| c.at > restarted && c.ok)
        .map(|c| c.at)
        .min()
        .expect("calls succeed again after the restart");
    assert!(
        first_ok_after - restarted < Duration::from_millis(1200),
        "recovered within the breaker window: {:?}",
        first_ok_after - restarted
    );
    let tail_failures: Vec<&str> = calls
        .iter()
        .filter(|c| c.at > first_ok_after + Duration::from_millis(400))
        .filter_map(|c| c.error.as_deref())
        .collect();
    assert!(
        tail_failures.is_empty(),
        "once back, every call succeeds: {tail_failures:?}"
    );
    assert!(store.connections().0 <= 4, "the pool stays bounded");
    drop(server);
}

#[cfg(unix)]
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process this test started and still owns.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

#[test]
fn a_hung_redis_costs_each_caller_at_most_one_timeout_per_breaker_window() {
    if common::skip_without("redis-server") {
        return;
    }
    let server = RedisServer::start(free_port());
    let timeout = Duration::from_millis(500);
    let window = Duration::from_millis(1000);
    let store = Arc::new(
        store_from(&format!(
            r#"{{"store": {{"type": "redis", "url": "{}", "timeout_ms": 500, "pool_size": 4,
                "pool_wait_ms": 50, "retry_after_ms": 1000}}}}"#,
            server.url()
        ))
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers = hammer(&store, 16, &stop);
    std::thread::sleep(Duration::from_millis(200));
    // SIGSTOP: the kernel still accepts connections, nothing answers: every command and every connect
    // handshake would wait out the timeout.
    let hung = Instant::now();
    signal(server.pid(), libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(3500));
    let resumed = Instant::now();
    signal(server.pid(), libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    let per_thread: Vec<Vec<Call>> = workers.into_iter().map(|w| w.join().unwrap()).collect();

    let windows = ((resumed - hung).as_millis() / window.as_millis()) as usize + 1;
    let slow = |c: &&Call| c.took >= timeout / 2 && c.at >= hung && c.at < resumed;
    let mut total_slow = 0;
    for (t, calls) in per_thread.iter().enumerate() {
        let n = calls.iter().filter(slow).count();
        total_slow += n;
        assert!(
            n <= windows + 1,
            "thread {t} waited out the timeout {n} times in {windows} windows"
        );
    }
    // Once the breaker is open, only its probes may wait: one per window. A call the open breaker
    // refused was admitted before it returned, so the breaker was open by then, and every call that
    // started later met an open breaker. (Before it opens, each caller may have one call admitted,
    // the per-caller bound's +1. A total bound on those was timing-dependent: a connection freed by
    // a timeout can go to a caller already waiting in the pool before the breaker trips.)
    let open_by = per_thread
        .iter()
        .flatten()
        .filter(|c| c.at >= hung && refused_by_breaker(c))
        .map(|c| c.at + c.took)
        .min()
        .expect("the breaker refused some call while Redis hung");
    let slow_after_open = per_thread
        .iter()
        .flatten()
        .filter(slow)
        .filter(|c| c.at > open_by)
        .count();
    assert!(
        slow_after_open <= windows,
        "{slow_after_open} slow calls once the breaker was open, for {windows} windows \
         ({total_slow} slow in all)"
    );
    let all: Vec<&Call> = per_thread.iter().flatten().collect();
    let fast_failures = all
        .iter()
        .filter(|c| c.at >= hung && c.at < resumed && !c.ok && c.took < Duration::from_millis(60))
        .count();
    assert!(
        fast_failures > 100,
        "the other calls failed at once ({fast_failures})"
    );
    assert!(
        all.iter()
            .any(|c| c.at > resumed + window + timeout && c.ok),
        "calls succeed again after the server resumes"
    );
    assert!(
        all.iter()
            .filter(|c| c.at > resumed + window * 2 + timeout)
            .all(|c| c.ok),
        "and keep succeeding"
    );
}

/// A bridge host process: stores `proc:<i>` = `<i>`, then waits until it sees `proc:0`..`proc:<n-1>`.
fn sharing_host() -> std::path::PathBuf {
    let src = common::write_c_source(
        "redis_sharer.c",
        r#"#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "api.h"
int main(int argc, char **argv) {
  if (argc != 4) return 2;
  if (CoProcessInit(argv[1]) != 0) { fprintf(stderr, "%s\n", CoProcessLastError()); return 1; }
  int me = atoi(argv[2]), n = atoi(argv[3]);
  char key[32], value[32];
  snprintf(key, sizeof key, "proc:%d", me);
  snprintf(value, sizeof value, "%d", me);
  TykStoreData(key, value, 60);
  for (int tries = 0; tries < 500; tries++) {
    int seen = 0;
    for (int i = 0; i < n; i++) {
      snprintf(key, sizeof key, "proc:%d", i);
      char *v = TykGetData(key);
      snprintf(value, sizeof value, "%d", i);
      if (strcmp(v, value) == 0) seen++;
      CoProcessFree(v);
    }
    if (seen == n) { printf("saw %d\n", n); CoProcessShutdown(); return 0; }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "process %d did not see every other process's key\n", me);
  return 3;
}
"#,
    );
    common::build_c_host(&src, &[])
}

#[test]
fn several_bridge_processes_share_one_redis() {
    if common::skip_without("redis-server") {
        return;
    }
    let server = RedisServer::start(free_port());
    let host = sharing_host();
    let config = format!(
        r#"{{"store": {{"type": "redis", "url": "{}"}}}}"#,
        server.url()
    );
    let n = 4;
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(&host)
                .args([config.as_str(), &i.to_string(), &n.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", common::describe(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("saw {n}")
        );
    }
    assert_eq!(server.keys("coprocess-data:proc:*").len(), n);
}

/// A sentinel monitoring `master_port` as "mymaster" (master password "pw"), itself with password
/// "spw", on its own port.
fn start_sentinel(master_port: u16) -> RedisServer {
    let port = free_port();
    let conf = format!(
        "port {port}\nbind 127.0.0.1\nrequirepass spw\n\
         sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
         sentinel auth-pass mymaster pw\n\
         sentinel down-after-milliseconds mymaster 500\n\
         sentinel failover-timeout mymaster 3000\n"
    );
    RedisServer::start_sentinel(port, &conf, "spw")
}

#[test]
fn sentinel_leads_to_the_master_and_follows_a_failover() {
    if common::skip_without("redis-server") {
        return;
    }
    let master =
        RedisServer::start_with(free_port(), &["--requirepass", "pw", "--masterauth", "pw"]);
    let replica_port = free_port();
    let replica = RedisServer::start_with(
        replica_port,
        &[
            "--requirepass",
            "pw",
            "--masterauth",
            "pw",
            "--replicaof",
            "127.0.0.1",
            &master.port.to_string(),
        ],
    );
    let sentinel = start_sentinel(master.port);
    let json = |name: &str| {
        format!(
            r#"{{"storage": {{"type": "redis", "addrs": ["127.0.0.1:{}"], "master_name": "{name}",
                "sentinel_password": "spw", "password": "pw", "timeout": 1}}}}"#,
            sentinel.port
        )
    };
    let e = store_from(&json("nosuchmaster")).err().unwrap();
    assert!(e.contains("sentinel does not know master"), "{e}");
    let store = store_from(&json("mymaster")).unwrap();
    store.set(D, "before", "1", None).unwrap();
    assert_eq!(master.get("coprocess-data:before").as_deref(), Some("1"));
    let synced = Instant::now() + Duration::from_secs(10);
    while replica.get("coprocess-data:before").is_none() {
        assert!(Instant::now() < synced, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(20));
    }

    master.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if store.set(D, "after", "2", None).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no failover within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        replica.get("coprocess-data:after").as_deref(),
        Some("2"),
        "the write went to the promoted replica"
    );
    assert_eq!(
        store.get(D, "before").unwrap().as_deref(),
        Some("1"),
        "replicated before the failover"
    );
}

#[test]
fn a_cluster_spreads_keys_over_its_masters() {
    if common::skip_without("redis-server") || common::skip_without("redis-cli") {
        return;
    }
    // The cluster bus gets its own free port (port + 10000 may be taken or above 65535).
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start_with(
                free_port(),
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &free_port().to_string(),
                ],
            )
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = common::run(
        Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"]),
    );
    assert!(out.status.success(), "{}", common::describe(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes
        .iter()
        .all(|n| n.text(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "the cluster did not become ok");
        std::thread::sleep(Duration::from_millis(100));
    }
    let store = store_from(&format!(
        r#"{{"store": {{"type": "redis", "enable_cluster": true, "addrs": ["{}"]}}}}"#,
        addrs[0]
    ))
    .unwrap();
    for i in 0..200 {
        store
            .set(D, &format!("k{i}"), &i.to_string(), None)
            .unwrap();
    }
    for i in 0..200 {
        assert_eq!(store.get(D, &format!("k{i}")).unwrap(), Some(i.to_string()));
    }
    let per_node: Vec<usize> = nodes
        .iter()
        .map(|n| n.keys("coprocess-data:k*").len())
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), 200, "{per_node:?}");
    assert!(
        per_node.iter().all(|&n| n > 20),
        "keys spread over every master: {per_node:?}"
    );
}

/// A CA and a server certificate for 127.0.0.1 / localhost, made with openssl in `dir`.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = common::run(Command::new("openssl").args(args).current_dir(dir));
        assert!(out.status.success(), "{}", common::describe(&out));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
}

#[test]
fn tls_with_a_ca_file_or_skipped_verification() {
    if common::skip_without("redis-server") || common::skip_without("openssl") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let file = |n: &str| certs.path().join(n).display().to_string();
    let port = free_port();
    let _server = RedisServer::start_tls(
        port,
        &file("server.crt"),
        &file("server.key"),
        &file("ca.crt"),
    );
    let json = |extra: &str| {
        format!(
            r#"{{"storage": {{"type": "redis", "host": "127.0.0.1", "port": {port}, "use_ssl": true {extra}}}}}"#
        )
    };
    let verified = store_from(&json(&format!(r#", "ca_file": "{}""#, file("ca.crt")))).unwrap();
    verified.set(D, "tls", "yes", None).unwrap();
    assert_eq!(verified.get(D, "tls").unwrap().as_deref(), Some("yes"));
    let skipped = store_from(&json(r#", "ssl_insecure_skip_verify": true"#)).unwrap();
    assert_eq!(skipped.get(D, "tls").unwrap().as_deref(), Some("yes"));
    let e = store_from(&json(""))
        .err()
        .expect("an unknown CA is refused");
    assert!(e.contains("cannot reach Redis"), "{e}");
    let e = store_from(&json(r#", "ca_file": "/nonexistent/ca.pem""#))
        .err()
        .unwrap();
    assert!(e.contains("cannot read ca_file /nonexistent/ca.pem"), "{e}");
}
