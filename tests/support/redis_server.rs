//! A real redis-server for the store tests, started on a loopback port in its own temporary directory
//! and killed on drop. Included with `#[path = "support/redis_server.rs"] mod redis_server;`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    /// redis-server's working directory; removed after the server stops.
    dir: tempfile::TempDir,
    /// `requirepass`, which the test's own connections use.
    password: Option<String>,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// A plain server on `port`.
    pub fn start(port: u16) -> RedisServer {
        RedisServer::start_with(port, &[])
    }

    /// A server on `port` with extra command-line options (`["--cluster-enabled", "yes"]`).
    pub fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .map(|i| extra[i + 1].to_owned());
        let server = RedisServer::spawn(port, extra, None, password);
        server.wait_until_up();
        server
    }

    /// A sentinel on `port` with the configuration text `conf` (its password `password`).
    pub fn start_sentinel(port: u16, conf: &str, password: &str) -> RedisServer {
        let server = RedisServer::spawn(port, &[], Some(conf), Some(password.to_owned()));
        server.wait_until_up();
        server
    }

    /// A TLS-only server on `port` (clients need no certificate of their own).
    pub fn start_tls(port: u16, cert: &str, key: &str, ca: &str) -> RedisServer {
        let server = RedisServer::spawn(
            0,
            &[
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-ca-cert-file",
                ca,
                "--tls-auth-clients",
                "no",
            ],
            None,
            None,
        );
        let mut server = server;
        server.port = port;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server (TLS) did not come up on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn spawn(
        port: u16,
        extra: &[&str],
        sentinel_conf: Option<&str>,
        password: Option<String>,
    ) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("redis-server");
        match sentinel_conf {
            // A sentinel rewrites its configuration file: it lives in the temporary directory.
            Some(conf) => {
                let path = dir.path().join("sentinel.conf");
                std::fs::write(&path, conf).unwrap();
                cmd.arg(path).arg("--sentinel");
            }
            None => {
                cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(dir.path());
            }
        }
        let child = cmd
            .args(extra)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        RedisServer {
            child,
            port,
            dir,
            password,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.client().is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A connection of the test's own (not the bridge's), checked with PING.
    pub fn client(&self) -> redis::RedisResult<redis::Connection> {
        let url = match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => self.url(),
        };
        let mut c =
            redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(1))?;
        redis::cmd("PING").query::<String>(&mut c)?;
        Ok(c)
    }

    pub fn get(&self, key: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.client().unwrap())
            .unwrap()
    }

    pub fn pttl(&self, key: &str) -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut self.client().unwrap())
            .unwrap()
    }

    /// A command's text answer (`["CLUSTER", "INFO"]`).
    pub fn text(&self, command: &[&str]) -> String {
        redis::cmd(command[0])
            .arg(&command[1..])
            .query(&mut self.client().unwrap())
            .unwrap()
    }

    /// Every key matching `pattern` (a test-sized keyspace).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut self.client().unwrap())
            .unwrap();
        keys.sort();
        keys
    }

    /// Stops the server now (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
