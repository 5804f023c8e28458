//! In-process vs gRPC, on the same Object and the same plugin logic (a Pre hook that sets
//! `X-Rust-Driver: rust`):
//!
//! - `in_process`: the bridge → examples/rust_driver (`libcoprocess_rust_driver.so`);
//! - `grpc_tcp`, `grpc_unix`: the bridge → the gRPC driver (`libcoprocess_grpc.so`) → `coprocess serve`
//!   (another process) → the bridge there → the same rust_driver;
//! - `grpc_tcp_inline`: as `grpc_tcp`, with `coprocess serve --inline` (drivers run on the server's
//!   I/O threads, not a blocking pool);
//! - `grpc_python`: the bridge → the gRPC driver → a Python grpcio Dispatcher server doing the same
//!   thing in Python (drivers/grpc/tests/python/dispatcher_server.py), as Tyk users write them.
//!
//! Each runs with 1 call in flight (one thread) and 32 in flight (32 threads); with 32, one iteration is
//! 32 concurrent calls and criterion's throughput counts each. The Object is
//! `fixtures::typical_object()` (~3.3 KB). All numbers come from one run, so their ratios compare like
//! with like on this machine.
//!
//! Run: `cargo bench -p coprocess-grpc-driver --bench grpc` (builds the drivers and the CLI first;
//! without Python's grpcio the Python case is skipped with a loud line).

use std::ffi::CString;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coprocess_bridge::ffi::host::{CoProcessLoadDriver, CoProcessMessageFree, DispatchWithDriver};
use coprocess_bridge::message::CoProcessMessage;
use coprocess_bridge::proto::{fixtures, HookType, Message};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const IN_FLIGHT: [usize; 2] = [1, 32];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// target/<profile>, from target/<profile>/deps/grpc-<hash>.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn build_all() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "coprocess-rust-driver-example",
        "-p",
        "coprocess-grpc-driver",
    ])
    .args(["-p", "coprocess-cli"])
    .current_dir(repo_root());
    if target_dir().file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().expect("run cargo").success(),
        "building the drivers and CLI failed"
    );
}

/// A server process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    /// Starts `cmd` and waits for a stdout line `<marker> <address>`.
    fn start(mut cmd: Command, marker: &str) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.strip_prefix(marker) {
                        break a.trim().to_owned();
                    }
                }
                _ => panic!("{cmd:?} exited before serving"),
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, address }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
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

fn python_grpc_available() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, google.protobuf"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn load(name: &str, path: &Path, config: &str) {
    let (n, p, c) = (
        CString::new(name).unwrap(),
        CString::new(path.to_str().unwrap()).unwrap(),
        CString::new(config).unwrap(),
    );
    let rc = CoProcessLoadDriver(n.as_ptr(), p.as_ptr(), c.as_ptr());
    assert_eq!(rc, 0, "loading {name} from {}", path.display());
}

/// One Dispatch through the bridge's C export, as a host makes it.
fn dispatch(driver: &CString, input: &[u8]) -> usize {
    let msg = CoProcessMessage {
        p_data: input.as_ptr() as *mut _,
        length: input.len() as i32,
    };
    let mut out = CoProcessMessage::empty();
    let rc = DispatchWithDriver(driver.as_ptr(), &msg, &mut out);
    assert_eq!(rc, 0, "dispatch failed");
    let n = out.length as usize;
    CoProcessMessageFree(&mut out);
    n
}

/// `iters` rounds of `in_flight` concurrent calls (one thread each): the time for all of them.
fn run_rounds(driver: &str, input: &[u8], in_flight: usize, iters: u64) -> Duration {
    let name = CString::new(driver).unwrap();
    if in_flight == 1 {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(dispatch(&name, black_box(input)));
        }
        return start.elapsed();
    }
    let barrier = std::sync::Barrier::new(in_flight + 1);
    std::thread::scope(|s| {
        for _ in 0..in_flight {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    black_box(dispatch(&name, black_box(input)));
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every thread before returning.
        start
    })
    .elapsed()
}

fn grpc_vs_in_process(c: &mut Criterion) {
    build_all();
    let dir = target_dir();
    let rust_driver = dir.join("libcoprocess_rust_driver.so");
    let grpc_driver = dir.join("libcoprocess_grpc.so");
    let coprocess = dir.join("coprocess");

    let serve = |listen: &str, extra: &[&str]| {
        let mut cmd = Command::new(&coprocess);
        cmd.args(["serve", "--listen", listen, "--driver"])
            .arg(format!("rust={}", rust_driver.display()))
            .args(extra);
        Server::start(cmd, "listening on")
    };
    let sock = std::env::temp_dir().join(format!("coprocess-bench-{}.sock", std::process::id()));
    let tcp = serve("tcp://127.0.0.1:0", &[]);
    let unix = serve(&format!("unix://{}", sock.display()), &[]);
    let tcp_inline = serve("tcp://127.0.0.1:0", &["--inline"]);
    let python = if python_grpc_available() {
        let mut cmd = Command::new("python3");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/dispatcher_server.py"))
            .args(["--listen", "tcp://127.0.0.1:0"]);
        Some(Server::start(cmd, "LISTENING"))
    } else {
        eprintln!(
            "\nSKIPPED: grpc_python benchmarks: python3 with grpcio, grpcio-tools and protobuf not installed\n"
        );
        None
    };

    load("in_process", &rust_driver, "{}");
    let mut cases = vec!["in_process"];
    for (name, server) in [
        ("grpc_tcp", Some(&tcp)),
        ("grpc_unix", Some(&unix)),
        ("grpc_tcp_inline", Some(&tcp_inline)),
        ("grpc_python", python.as_ref()),
    ] {
        if let Some(s) = server {
            let config = format!(r#"{{"coprocess_grpc_server": "{}"}}"#, s.address);
            load(name, &grpc_driver, &config);
            cases.push(name);
        }
    }

    let mut object = fixtures::typical_object();
    object.hook_type = HookType::Pre as i32;
    let input = object.encode_to_vec();
    // Every path answers the same: the Object plus one header.
    let name = |s: &str| CString::new(s).unwrap();
    let reference = dispatch(&name("in_process"), &input);
    for case in &cases {
        let len = dispatch(&name(case), &input);
        assert!(
            len > input.len() && len.abs_diff(reference) < 64,
            "{case}: {len} vs {reference} bytes"
        );
    }

    for in_flight in IN_FLIGHT {
        let mut group = c.benchmark_group(format!("grpc_vs_in_process/{in_flight}_in_flight"));
        group.throughput(Throughput::Elements(in_flight as u64));
        group.measurement_time(Duration::from_secs(5));
        for case in &cases {
            group.bench_function(BenchmarkId::from_parameter(case), |b| {
                b.iter_custom(|iters| run_rounds(case, &input, in_flight, iters))
            });
        }
        group.finish();
    }
    drop((tcp, unix, tcp_inline, python));
    let _ = std::fs::remove_file(&sock);
}

criterion_group!(benches, grpc_vs_in_process);
criterion_main!(benches);
