//! Shared by the end-to-end tests and the load bench: builds the bridge and the example driver next
//! to the gateway binary, starts the echo upstream in-process, and runs the gateway binary as a child
//! process with generated API definition files. Every wait is bounded. Builds go through the root
//! crate's test helpers (`tests/common`), included here as [`common`].
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(20);

#[path = "../../../../tests/common/mod.rs"]
pub mod common;

/// The profile's target directory (where the gateway binary is), after building the bridge and the
/// example driver into it (once).
pub fn target_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Not --quiet: a cold build takes minutes on a small machine, or waits for another cargo's
        // lock on the target directory; its own progress lines say which, instead of a silent test.
        eprintln!("building the bridge and the example driver");
        common::cargo_build(&[
            "-p",
            "coprocess-bridge",
            "-p",
            "coprocess-rust-driver-example",
        ]);
        common::target_dir()
    })
}

/// The echo upstream (from the gateway crate), on a free port, for the whole test binary.
pub fn upstream() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                coprocess_gateway::echo::serve(l).await;
            });
        });
        rx.recv_timeout(TIMEOUT).expect("the echo upstream starts")
    })
}

/// A running gateway process, killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: String,
    /// Every line the gateway printed on standard output so far.
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// The gateway process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (boundedly) for the gateway to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the gateway") {
                return status;
            }
            assert!(started.elapsed() < TIMEOUT, "the gateway ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the gateway with the given API definitions (`{upstream}` in them is the echo's address)
/// and the example driver loaded as "native" with `driver_config`.
pub fn gateway(apis: &[&str], driver_config: serde_json::Value) -> Gateway {
    let driver = serde_json::json!({
        "name": "native",
        "path": target_dir().join("libcoprocess_rust_driver.so"),
        "config": driver_config
    });
    gateway_with_drivers(apis, serde_json::json!([driver]))
}

/// Starts the gateway with the given API definitions and `drivers` (the bridge's driver list).
pub fn gateway_with_drivers(apis: &[&str], drivers: serde_json::Value) -> Gateway {
    gateway_with_config(apis, drivers, serde_json::json!({}))
}

/// Starts the gateway with the given API definitions, `drivers`, and `extra` gateway config keys
/// (e.g. `blocking_dispatches`).
pub fn gateway_with_config(
    apis: &[&str],
    drivers: serde_json::Value,
    extra: serde_json::Value,
) -> Gateway {
    gateway_binary(
        Path::new(env!("CARGO_BIN_EXE_coprocess-gateway")),
        apis,
        drivers,
        extra,
    )
}

/// Starts the gateway executable `binary` (this build's, or another build of it, e.g. one copied
/// aside to compare with) as [`gateway_with_config`] does.
pub fn gateway_binary(
    binary: &Path,
    apis: &[&str],
    drivers: serde_json::Value,
    extra: serde_json::Value,
) -> Gateway {
    let target = target_dir();
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    for (i, api) in apis.iter().enumerate() {
        let text = api.replace("{upstream}", &format!("http://{}", upstream()));
        std::fs::write(apps.join(format!("{i}.json")), text).unwrap();
    }
    let mut config = serde_json::json!({
        "listen": "127.0.0.1:0",
        "bridge": target.join("libcoprocess_bridge.so"),
        "coprocess_options": {"drivers": drivers, "log_level": "warning"},
        "apps": [apps],
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    let config_path = dir.path().join("gateway.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut child = Command::new(binary)
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the gateway");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.lock().unwrap().push(line.clone());
            if let Some(addr) = line.strip_prefix("coprocess-gateway listening on http://") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr = match rx.recv_timeout(TIMEOUT) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!("the gateway did not start ({status}); its stderr is above");
        }
    };
    Gateway {
        child,
        addr,
        stdout: lines,
        _dir: dir,
    }
}
