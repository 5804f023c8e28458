//! Helpers for the gRPC tests (`tests/grpc_*.rs`): the Python grpcio peers in
//! `drivers/grpc/tests/python/`, started for real on 127.0.0.1 or a Unix socket, and the gRPC driver
//! library. Tests that need Python's grpcio skip LOUDLY when it is missing.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common;

/// The Python packages the gRPC tests need (CI installs them with pip).
pub const PYTHON_PACKAGES: &str =
    "python3 with grpcio, grpcio-tools and protobuf (pip install grpcio grpcio-tools protobuf)";

pub fn python_dir() -> PathBuf {
    common::repo_root().join("drivers/grpc/tests/python")
}

/// Whether `python3` can import grpc, grpc_tools and google.protobuf.
pub fn python_grpc_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import grpc, grpc_tools, google.protobuf"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `true` (after a loud SKIPPED line) when Python's grpcio is missing.
pub fn skip_without_python_grpc() -> bool {
    if python_grpc_available() {
        return false;
    }
    common::report_skip(PYTHON_PACKAGES);
    true
}

#[macro_export]
macro_rules! skip_unless_python_grpc {
    () => {
        if $crate::grpc_support::skip_without_python_grpc() {
            return;
        }
    };
}

/// `libcoprocess_grpc.so`, built once per test process.
pub fn grpc_driver_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| common::build_workspace_cdylib("coprocess-grpc-driver", "coprocess_grpc"))
        .clone()
}

/// A unique scratch directory under target/ for sockets, certificates and event files.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = common::target_dir().join("grpc-tests").join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A short socket path: Unix socket paths must fit in 108 bytes, target/ paths may not.
pub fn socket_path(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coprocess-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.sock"));
    let _ = std::fs::remove_file(&path);
    path
}

/// A child process that prints `<marker> <address>` once it serves; killed (SIGTERM, then SIGKILL)
/// when dropped.
pub struct Peer {
    pub child: Child,
    /// The address it printed (`tcp://127.0.0.1:PORT` or `unix:///path`).
    pub address: String,
    stderr: Option<std::thread::JoinHandle<String>>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

/// Waits for a line starting with `marker` on the child's stdout; the rest of the line is the address.
fn wait_for_marker(mut child: Child, marker: &str, what: &str) -> Peer {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    let marker_owned = marker.to_owned();
    let out_thread = std::thread::spawn(move || read_until_marker(stdout, &marker_owned, tx));
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(address) => Peer {
            child,
            address,
            stderr: Some(err_thread),
            stdout: Some(out_thread),
        },
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_thread.join().unwrap_or_default();
            panic!("{what} did not start (no '{marker}' line):\n{err}");
        }
    }
}

fn read_until_marker(stdout: ChildStdout, marker: &str, tx: mpsc::Sender<String>) -> String {
    let mut rest = String::new();
    let mut sent = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if !sent {
            if let Some(addr) = line.strip_prefix(marker) {
                let _ = tx.send(addr.trim().to_owned());
                sent = true;
                continue;
            }
        }
        rest.push_str(&line);
        rest.push('\n');
    }
    rest
}

impl Peer {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// SIGTERM, then waits (SIGKILL after 10 s). Returns (exit status, stdout after the marker, stderr).
    pub fn stop(mut self) -> (std::process::ExitStatus, String, String) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self
            .stdout
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let err = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (status, out, err)
    }

    /// The port of a `tcp://host:port` address.
    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Options of `dispatcher_server.py`.
#[derive(Debug, Default, Clone)]
pub struct PyServer {
    pub listen: String,
    pub name: Option<String>,
    pub max_message_bytes: Option<usize>,
    pub slow_ms: Option<u64>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub tls_client_ca: Option<PathBuf>,
    pub events: Option<PathBuf>,
}

impl PyServer {
    pub fn tcp() -> PyServer {
        PyServer {
            listen: "tcp://127.0.0.1:0".into(),
            ..Default::default()
        }
    }

    pub fn listen(mut self, address: impl Into<String>) -> Self {
        self.listen = address.into();
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = Some(n);
        self
    }

    pub fn slow_ms(mut self, ms: u64) -> Self {
        self.slow_ms = Some(ms);
        self
    }

    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.into(), key.into()));
        self
    }

    /// Mutual TLS: client certificates must be signed by `ca`.
    pub fn require_client_cert(mut self, ca: &Path) -> Self {
        self.tls_client_ca = Some(ca.into());
        self
    }

    pub fn events(mut self, file: &Path) -> Self {
        self.events = Some(file.into());
        self
    }

    pub fn start(&self) -> Peer {
        let mut cmd = Command::new("python3");
        cmd.arg(python_dir().join("dispatcher_server.py"))
            .args(["--listen", &self.listen]);
        if let Some(n) = &self.name {
            cmd.args(["--name", n]);
        }
        if let Some(n) = self.max_message_bytes {
            cmd.args(["--max-message-bytes", &n.to_string()]);
        }
        if let Some(ms) = self.slow_ms {
            cmd.args(["--slow-ms", &ms.to_string()]);
        }
        if let Some((cert, key)) = &self.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        if let Some(ca) = &self.tls_client_ca {
            cmd.arg("--tls-client-ca").arg(ca);
        }
        if let Some(f) = &self.events {
            cmd.arg("--events").arg(f);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        wait_for_marker(child, "LISTENING", "the Python Dispatcher server")
    }
}

/// Starts `coprocess serve` (the CLI binary at `bin`) with `args`; waits for its "listening on" line.
pub fn start_serve(bin: &Path, args: &[String]) -> Peer {
    let child = Command::new(bin)
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    wait_for_marker(child, "listening on", "coprocess serve")
}

/// The `coprocess` binary, built once per test process (cargo build -p coprocess-cli).
pub fn coprocess_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        common::cargo_build(&["--quiet", "-p", "coprocess-cli", "--bin", "coprocess"]);
        let bin = common::target_dir().join("coprocess");
        assert!(bin.is_file(), "{} was not produced", bin.display());
        bin
    })
    .clone()
}

/// A self-signed CA, a server certificate for `localhost`/127.0.0.1 and a client certificate, made
/// with the openssl CLI in `dir`: returns (ca.pem, server.pem, server.key); the client's are
/// client.pem and client.key beside them.
pub fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &str| {
        let out = common::run(
            Command::new("openssl")
                .args(args.split_whitespace())
                .current_dir(dir),
        );
        assert!(
            out.status.success(),
            "openssl {args}:\n{}",
            common::describe(&out)
        );
    };
    let ext = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    ext(
        "server.ext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    );
    ext(
        "client.ext",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    );
    run("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=coprocess-test-CA -keyout ca.key -out ca.pem");
    for (who, cn) in [("server", "localhost"), ("client", "coprocess-client")] {
        run(&format!(
            "req -newkey rsa:2048 -nodes -subj /CN={cn} -keyout {who}.key -out {who}.csr"
        ));
        run(&format!(
            "x509 -req -in {who}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
             -extfile {who}.ext -out {who}.pem"
        ));
    }
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}
