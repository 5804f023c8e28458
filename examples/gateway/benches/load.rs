//! Load on loopback: requests/s and latency percentiles of the gateway (a separate process that
//! dlopens the bridge) with and without in-process plugins, and of the echo upstream alone.
//!
//! Run: `cargo bench -p coprocess-gateway --bench load`
//! Knobs: LOAD_SECONDS (rounds of 1 s per scenario, default 5), LOAD_CONNECTIONS (default 16),
//! LOAD_SCENARIOS (comma-separated names to run; `no_plugin`, the baseline, always runs),
//! LOAD_PERF_EVENTS (comma-separated `perf` events, e.g. `context-switches,syscalls:sys_enter_futex`:
//! one `perf stat -p <gateway pid>` per scenario counts during that scenario's rounds only, and the
//! counts are reported per request), LOAD_GATEWAY_BASELINE (the path of another build of the gateway
//! binary, e.g. main's copied aside before a change: it serves the same scenarios from a second
//! process, its rounds interleaved with this build's, and each scenario is compared across the two).
//!
//! Every line also gives the gateway's CPU time per request (user and system, from /proc), which
//! moves much less with other processes' load than req/s. The load generator and the echo upstream
//! run in this process, on the same cores as the gateway; every other pass of rounds runs the
//! scenarios in reverse order. For counts per request that do not move with load at all
//! (instructions, allocations), see `per_request.py` next to this file.
//!
//! Every scenario is a row of [`SCENARIOS`]: GET `/<name>/x` on the gateway, served by the row's API
//! definition, proxied to the same echo upstream. To add one, add a row (and, for a new driver, an
//! entry in [`drivers`]).

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

/// One load scenario.
struct Scenario {
    name: &'static str,
    /// The API serving `/<name>/` (`{listen}` stands for `/<name>/`, `{upstream}` for the echo
    /// upstream); `None`: requests go to the echo upstream directly, without the gateway.
    api: Option<&'static str>,
}

/// The scenario every other is compared with.
const BASELINE: &str = "no_plugin";

const SCENARIOS: &[Scenario] = &[
    // The echo upstream alone: what the load generator and the upstream cost without a gateway.
    Scenario {
        name: "upstream",
        api: None,
    },
    // An API without hooks: the gateway never calls Dispatch.
    Scenario {
        name: BASELINE,
        api: Some(
            r#"{"api_id": "none", "org_id": "o",
                "proxy": {"listen_path": "{listen}", "target_url": "{upstream}", "strip_listen_path": true}}"#,
        ),
    },
    // The API names the example driver but configures no hook: the gateway dispatches nothing, as
    // for no_plugin. An A/A check: its difference from no_plugin is the measurement's own noise
    // and bias (the same code in another round), and a loaded but unused plugin's cost.
    Scenario {
        name: "driver_unused",
        api: Some(
            r#"{"api_id": "unused", "org_id": "o",
                "proxy": {"listen_path": "{listen}", "target_url": "{upstream}", "strip_listen_path": true},
                "custom_middleware": {"driver": "native"}}"#,
        ),
    },
    // One Pre hook (the example driver's header patch) dispatched inline on the async worker (the
    // driver is "native", in the gateway's default `inline_drivers`).
    Scenario {
        name: "pre_hook",
        api: Some(
            r#"{"api_id": "pre", "org_id": "o",
                "proxy": {"listen_path": "{listen}", "target_url": "{upstream}", "strip_listen_path": true},
                "custom_middleware": {"driver": "native", "pre": [{"name": "AddHeader"}]}}"#,
        ),
    },
    // A Pre hook, CustomKeyCheck served from the ID extractor's cache, a Post hook.
    Scenario {
        name: "pre_auth_post",
        api: Some(
            r#"{"api_id": "full", "org_id": "o",
                "proxy": {"listen_path": "{listen}", "target_url": "{upstream}", "strip_listen_path": true},
                "enable_coprocess_auth": true,
                "custom_middleware": {"driver": "native", "pre": [{"name": "AddHeader"}], "post": [{"name": "PostHook"}],
                  "auth_check": {"name": "Auth"},
                  "id_extractor": {"extract_from": "header", "extract_with": "value",
                                   "extractor_config": {"header_name": "Authorization"}}}}"#,
        ),
    },
    // A Python Pre hook (drivers/python, Tyk's API: `request.add_header`), off the async workers
    // (on the python driver's lane; the blocking pool when the lane is held up).
    Scenario {
        name: "python_pre",
        api: Some(
            r#"{"api_id": "py-pre", "org_id": "o",
                "proxy": {"listen_path": "{listen}", "target_url": "{upstream}", "strip_listen_path": true},
                "custom_middleware": {"driver": "python", "pre": [{"name": "AddHeader"}]}}"#,
        ),
    },
    // Python Pre, CustomKeyCheck (its answer cached by the ID extractor) and Post hooks.
    Scenario {
        name: "python_pre_auth_post",
        api: Some(
            r#"{"api_id": "py-full", "org_id": "o",
                "proxy": {"listen_path": "{listen}", "target_url": "{upstream}", "strip_listen_path": true},
                "enable_coprocess_auth": true,
                "custom_middleware": {"driver": "python", "pre": [{"name": "AddHeader"}], "post": [{"name": "PostHook"}],
                  "auth_check": {"name": "Auth"},
                  "id_extractor": {"extract_from": "header", "extract_with": "value",
                                   "extractor_config": {"header_name": "Authorization"}}}}"#,
        ),
    },
    // The same two with the build of the Python driver named by PYTHON_DRIVER_BASELINE (e.g. an
    // earlier commit's, copied aside), measured in the same run; skipped without it.
    Scenario {
        name: "python_pre_baseline",
        api: Some(
            r#"{"api_id": "py-pre-base", "org_id": "o",
                "proxy": {"listen_path": "{listen}", "target_url": "{upstream}", "strip_listen_path": true},
                "custom_middleware": {"driver": "python_baseline", "pre": [{"name": "AddHeader"}]}}"#,
        ),
    },
    Scenario {
        name: "python_pre_auth_post_baseline",
        api: Some(
            r#"{"api_id": "py-full-base", "org_id": "o",
                "proxy": {"listen_path": "{listen}", "target_url": "{upstream}", "strip_listen_path": true},
                "enable_coprocess_auth": true,
                "custom_middleware": {"driver": "python_baseline", "pre": [{"name": "AddHeader"}], "post": [{"name": "PostHook"}],
                  "auth_check": {"name": "Auth"},
                  "id_extractor": {"extract_from": "header", "extract_with": "value",
                                   "extractor_config": {"header_name": "Authorization"}}}}"#,
        ),
    },
    // The same Pre hook with the same library loaded as "pooled", a driver not in `inline_drivers`:
    // dispatched off the async workers (its lane, or the bounded blocking pool), as Python and gRPC
    // drivers are.
    Scenario {
        name: "pre_hook_pool",
        api: Some(
            r#"{"api_id": "pool", "org_id": "o",
                "proxy": {"listen_path": "{listen}", "target_url": "{upstream}", "strip_listen_path": true},
                "custom_middleware": {"driver": "pooled", "pre": [{"name": "AddHeader"}]}}"#,
        ),
    },
];

/// The Python bundle of the `python_*` scenarios: the same work as the example driver's hooks.
const PYTHON_MIDDLEWARE: &str = r#"
import time
from tyk.decorators import *

@Hook
def AddHeader(request, session, spec):
    request.add_header("X-Python", "pre")
    return request, session

@Hook
def Auth(request, session, metadata, spec):
    if request.get_header("Authorization") == "Bearer tok":
        session.rate, session.per = 1000.0, 1.0
        session.id_extractor_deadline = int(time.time()) + 3600
        metadata["token"] = "tok"
    else:
        request.object.return_overrides.response_code = 403
    return request, session, metadata

@Hook
def PostHook(request, session, spec):
    request.add_header("X-Python", "post")
    return request, session
"#;

/// The Python driver (built in the bench's profile) over a bundle root holding the bundle above, and
/// the one PYTHON_DRIVER_BASELINE names; none (said loudly) when python3 with the protobuf package is
/// missing.
fn python_drivers() -> Vec<serde_json::Value> {
    let has_protobuf = std::process::Command::new("python3")
        .args(["-c", "import google.protobuf"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_protobuf {
        eprintln!("SKIPPED: python_* scenarios: python3 with the protobuf package not installed");
        return Vec::new();
    }
    support::common::cargo_build(&["-p", "coprocess-python-driver"]);
    // One bundle root per driver: bundle module names are shared by the driver copies of a process.
    let driver = |name: &str, path: std::path::PathBuf| {
        let root = support::target_dir().join("load-bench-python").join(name);
        let bundle = root.join(name);
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("manifest.json"),
            r#"{"file_list": ["middleware.py"]}"#,
        )
        .unwrap();
        std::fs::write(bundle.join("middleware.py"), PYTHON_MIDDLEWARE).unwrap();
        serde_json::json!({"name": name, "path": path, "config": {"bundle_root": root}})
    };
    let mut drivers = vec![driver(
        "python",
        support::target_dir().join("libcoprocess_python.so"),
    )];
    if let Some(path) = std::env::var_os("PYTHON_DRIVER_BASELINE") {
        drivers.push(driver("python_baseline", path.into()));
    }
    drivers
}

/// The drivers the bridge loads (its `drivers` option).
fn drivers(python: Vec<serde_json::Value>) -> serde_json::Value {
    let rust_driver = |name: &str| {
        serde_json::json!({
            "name": name,
            "path": support::target_dir().join("libcoprocess_rust_driver.so"),
            "config": {"tokens": ["tok"], "cache_seconds": 3600}
        })
    };
    let mut drivers = vec![rust_driver("native"), rust_driver("pooled")];
    drivers.extend(python);
    serde_json::Value::Array(drivers)
}

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

/// CPU time (user, system; all threads, in seconds) the process `pid` has used so far, from /proc
/// (clock ticks of 10 ms; summed over many rounds). `None` where there is no /proc.
fn cpu_seconds(pid: u32) -> Option<[f64; 2]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let after = stat.rsplit_once(") ")?.1;
    let mut fields = after.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some([utime / 100.0, stime / 100.0])
}

/// `perf stat` attached to the process `pid` for the whole run, counting `events` only while
/// [`PerfStat::counting`] runs (its control FIFO enables and disables the events).
struct PerfStat {
    child: std::process::Child,
    control: std::fs::File,
    ack: std::io::BufReader<std::fs::File>,
    out: std::path::PathBuf,
}

impl PerfStat {
    fn start(pid: u32, events: &str, dir: &std::path::Path) -> PerfStat {
        std::fs::create_dir_all(dir).unwrap();
        let [control, ack, out] = ["control", "ack", "out.csv"].map(|f| dir.join(f));
        for fifo in [&control, &ack] {
            let _ = std::fs::remove_file(fifo);
            let made = std::process::Command::new("mkfifo").arg(fifo).status();
            assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", fifo.display());
        }
        let mut fifos = std::ffi::OsString::from("fifo:");
        fifos.push(&control);
        fifos.push(",");
        fifos.push(&ack);
        let child = std::process::Command::new("perf")
            .args(["stat", "-x", ",", "--delay", "-1", "-e", events])
            .args(["-p", &pid.to_string(), "--control"])
            .arg(fifos)
            .arg("-o")
            .arg(&out)
            // Not its "Events enabled" lines.
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("running perf (LOAD_PERF_EVENTS is set)");
        // Each open waits for perf to open the other end.
        let control = std::fs::OpenOptions::new()
            .write(true)
            .open(control)
            .unwrap();
        let ack = std::io::BufReader::new(std::fs::File::open(ack).unwrap());
        PerfStat {
            child,
            control,
            ack,
            out,
        }
    }

    fn command(&mut self, command: &str) {
        use std::io::{BufRead, Write};
        writeln!(self.control, "{command}").unwrap();
        let mut line = String::new();
        self.ack.read_line(&mut line).unwrap();
        // perf writes "ack\n" with its C string's NUL.
        let ack = line.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        assert_eq!(ack, "ack", "perf's answer to {command}");
    }

    /// Counts while `run` runs.
    async fn counting<T>(&mut self, run: impl std::future::Future<Output = T>) -> T {
        self.command("enable");
        let out = run.await;
        self.command("disable");
        out
    }

    /// Stops perf; (event, count) in the order asked for (`<not counted>` is 0).
    fn stop(mut self) -> Vec<(String, f64)> {
        let stopped = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(stopped.success(), "kill -INT perf failed");
        self.child.wait().expect("waiting for perf");
        let text = std::fs::read_to_string(&self.out).expect("perf stat's output");
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let fields: Vec<&str> = l.split(',').collect();
                let event = fields.get(2)?.to_string();
                Some((event, fields[0].parse().unwrap_or(0.0)))
            })
            .collect()
    }
}

/// One scenario on one gateway, or on the echo upstream alone.
struct Target {
    /// The scenario's name, with " [base]" on the LOAD_GATEWAY_BASELINE gateway.
    label: String,
    through_gateway: bool,
    addr: String,
    path: String,
    /// The gateway process serving it.
    pid: Option<u32>,
    /// The target it is compared with: its gateway's no_plugin.
    baseline: usize,
}

/// The 1, 5 and 15 minute load averages, from /proc ("?" where there is none).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// What one scenario's rounds measured.
#[derive(Clone, Default)]
struct Tally {
    latencies: Vec<u32>,
    elapsed: f64,
    /// The gateway's CPU seconds (user, system) over the scenario's rounds.
    gateway_cpu: [f64; 2],
    /// LOAD_PERF_EVENTS counts of the gateway over the scenario's rounds.
    perf: Vec<(String, f64)>,
    /// CPU seconds of this process (the load generator and the echo upstream) over the rounds.
    bench_cpu: f64,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed
    }

    /// Gateway CPU per request, µs: user, system.
    fn cpu_split(&self) -> [f64; 2] {
        self.gateway_cpu
            .map(|seconds| seconds * 1e6 / self.latencies.len() as f64)
    }

    /// Gateway CPU per request, µs.
    fn cpu_per_request(&self) -> f64 {
        self.cpu_split().iter().sum()
    }
}

/// One line per scenario: requests/s and the gateway's CPU per request, each also against the
/// baseline's, and latency percentiles. CPU per request moves much less than throughput with the
/// load other processes put on the machine.
fn report(name: &str, mut t: Tally, baseline: &Tally, through_gateway: bool) {
    t.latencies.sort_unstable();
    let all = &t.latencies;
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    let cpu = if through_gateway && t.cpu_per_request() > 0.0 {
        let [user, system] = t.cpu_split();
        format!(
            "gateway CPU {:>6.1} µs/req ({:>+6.1}%; user {user:>5.1}, sys {system:>5.1})",
            t.cpu_per_request(),
            (t.cpu_per_request() / baseline.cpu_per_request() - 1.0) * 100.0
        )
    } else {
        format!("{:63}", "")
    };
    println!(
        "{name:<22} {:>8} req {:>7.0} req/s ({:>+6.1}% vs {BASELINE})   {cpu}   load+echo {:>5.1} µs/req   p50 {:>6} µs   p99 {:>6} µs",
        all.len(),
        t.rate(),
        (t.rate() / baseline.rate() - 1.0) * 100.0,
        t.bench_cpu * 1e6 / all.len() as f64,
        pct(0.50),
        pct(0.99)
    );
    if through_gateway && !t.perf.is_empty() {
        let counts: Vec<String> = t
            .perf
            .iter()
            .filter(|(_, n)| *n > 0.0)
            .map(|(event, n)| format!("{event} {:.3}", n / all.len() as f64))
            .collect();
        println!("{:22} gateway per request: {}", "", counts.join(", "));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs bench targets with no such flag: do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds = env_or("LOAD_SECONDS", 5);
    let connections = env_or("LOAD_CONNECTIONS", 16);
    let chosen = std::env::var("LOAD_SCENARIOS").ok();
    let mut scenarios: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| {
            s.name == BASELINE
                || chosen
                    .as_deref()
                    .is_none_or(|c| c.split(',').any(|n| n.trim() == s.name))
        })
        .collect();
    let is_python = |s: &&Scenario| s.name.starts_with("python_");
    let python = if scenarios.iter().any(is_python) {
        python_drivers()
    } else {
        Vec::new()
    };
    let has = |driver: &str| python.iter().any(|d| d["name"] == driver);
    scenarios.retain(|s| {
        !is_python(s)
            || has(if s.name.ends_with("_baseline") {
                "python_baseline"
            } else {
                "python"
            })
    });
    let upstream = support::upstream();
    let listen = |s: &Scenario| format!("/{}/", s.name);
    let apis: Vec<String> = scenarios
        .iter()
        .filter_map(|s| s.api.map(|api| api.replace("{listen}", &listen(s))))
        .collect();
    let apis: Vec<&str> = apis.iter().map(String::as_str).collect();
    let drivers = drivers(python);
    let mut gateways = vec![("", support::gateway_with_drivers(&apis, drivers.clone()))];
    if let Some(binary) = std::env::var_os("LOAD_GATEWAY_BASELINE") {
        let binary = std::path::PathBuf::from(binary);
        let gateway = support::gateway_binary(&binary, &apis, drivers, serde_json::json!({}));
        gateways.push((" [base]", gateway));
    }
    let mut targets: Vec<Target> = Vec::new();
    for s in scenarios.iter().filter(|s| s.api.is_none()) {
        targets.push(Target {
            label: s.name.to_owned(),
            through_gateway: false,
            addr: upstream.to_string(),
            path: "/x".to_owned(),
            pid: None,
            baseline: 0,
        });
    }
    for (suffix, gateway) in &gateways {
        let baseline = targets.len()
            + scenarios
                .iter()
                .filter(|s| s.api.is_some())
                .position(|s| s.name == BASELINE)
                .unwrap();
        for s in scenarios.iter().filter(|s| s.api.is_some()) {
            targets.push(Target {
                label: format!("{}{suffix}", s.name),
                through_gateway: true,
                addr: gateway.addr.clone(),
                path: format!("{}x", listen(s)),
                pid: Some(gateway.pid()),
                baseline,
            });
        }
    }
    // The upstream alone is compared with this build's no_plugin.
    let baseline = targets.iter().position(|b| b.label == BASELINE).unwrap();
    for t in targets.iter_mut().filter(|t| !t.through_gateway) {
        t.baseline = baseline;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "load: {connections} connections, {seconds} s per scenario (interleaved 1 s rounds), loopback, GET with an empty body; load average {}",
        load_average()
    );
    let perf_events = std::env::var("LOAD_PERF_EVENTS")
        .ok()
        .filter(|e| !e.is_empty());
    // One perf per scenario, counting only during that scenario's rounds.
    let mut perf: Vec<Option<PerfStat>> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (events, pid) = (perf_events.as_ref()?, t.pid?);
            let dir = support::target_dir().join(format!("load-bench-perf/{i}"));
            Some(PerfStat::start(pid, events, &dir))
        })
        .collect();
    let bench_pid = std::process::id();
    rt.block_on(async {
        let mut results: Vec<Tally> = vec![Tally::default(); targets.len()];
        for t in &targets {
            // Warm-up: fills the auth cache, opens upstream connections.
            round(&t.addr, &t.path, 1, 0.3).await;
        }
        // Scenarios run interleaved, one second at a time, so that load from other processes on
        // the machine spreads over all of them instead of skewing one; every other pass runs them
        // in reverse, so no scenario always follows the same one.
        for pass in 0..seconds {
            let mut order: Vec<usize> = (0..targets.len()).collect();
            if pass % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let t = &targets[i];
                let cpu_before = t.pid.and_then(cpu_seconds);
                let bench_before = cpu_seconds(bench_pid);
                let (lat, secs) = match &mut perf[i] {
                    Some(perf) => {
                        perf.counting(round(&t.addr, &t.path, connections, 1.0))
                            .await
                    }
                    None => round(&t.addr, &t.path, connections, 1.0).await,
                };
                let cpu_after = t.pid.and_then(cpu_seconds);
                let bench_after = cpu_seconds(bench_pid);
                let tally = &mut results[i];
                tally.latencies.extend(lat);
                tally.elapsed += secs;
                if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
                    tally.gateway_cpu[0] += a[0] - b[0];
                    tally.gateway_cpu[1] += a[1] - b[1];
                }
                if let (Some(b), Some(a)) = (bench_before, bench_after) {
                    tally.bench_cpu += a[0] + a[1] - b[0] - b[1];
                }
            }
        }
        for (tally, perf) in results.iter_mut().zip(perf) {
            if let Some(perf) = perf {
                tally.perf = perf.stop();
            }
        }
        for (t, tally) in targets.iter().zip(&results) {
            report(
                &t.label,
                tally.clone(),
                &results[t.baseline],
                t.through_gateway,
            );
        }
        if gateways.len() > 1 {
            println!("this build vs LOAD_GATEWAY_BASELINE's, scenario by scenario:");
            for (t, tally) in targets.iter().zip(&results) {
                let Some(base) = targets
                    .iter()
                    .position(|b| b.label == format!("{} [base]", t.label))
                else {
                    continue;
                };
                let base = &results[base];
                println!(
                    "{:<22} req/s {:>+6.1}%   gateway CPU/req {:>+6.1}%",
                    t.label,
                    (tally.rate() / base.rate() - 1.0) * 100.0,
                    (tally.cpu_per_request() / base.cpu_per_request() - 1.0) * 100.0
                );
            }
        }
        println!("load average at the end {}", load_average());
    });
}
