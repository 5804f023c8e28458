//! `coprocess bench` on a terminal: a progress line redrawn while it measures (util-linux `script`
//! gives it a real pseudo-terminal; the test skips loudly without it), and none when standard error
//! is a pipe. Either way it ends with the latency summary.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::test_driver;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` to completion within TIMEOUT; (exit status, stdout, stderr).
fn run_bounded(cmd: &mut Command) -> (std::process::ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("{cmd:?} ran over {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status, text(&out.stdout), text(&out.stderr))
}

fn bench_args() -> Vec<String> {
    [
        "bench",
        "--driver",
        &test_driver(&[]).display().to_string(),
        "--duration",
        "1.2",
        "--warmup",
        "0.3",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `coprocess ARGS` as one shell command line for `script -c` (arguments single-quoted).
fn shell_line(args: Vec<String>) -> String {
    std::iter::once(env!("CARGO_BIN_EXE_coprocess").to_owned())
        .chain(args)
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn assert_latency_summary(out: &str) {
    let summary = out
        .lines()
        .find(|l| l.starts_with("latency"))
        .unwrap_or_else(|| panic!("no latency line:\n{out}"));
    for q in ["p50 ", "p90 ", "p99 ", "max "] {
        assert!(summary.contains(q), "{q} missing: {summary}");
    }
}

#[test]
fn progress_is_drawn_on_a_terminal() {
    if common::skip_without("script") {
        return;
    }
    // `script -qec CMD /dev/null`: CMD runs on a new pseudo-terminal whose output script copies.
    let line = shell_line(bench_args());
    let (status, out, err) = run_bounded(Command::new("script").args(["-qec", &line, "/dev/null"]));
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("warming up"), "{out:?}");
    // Redrawn in place: carriage return and erase-line before each state.
    let bars = out.matches("\r\x1b[K  [").count();
    assert!(
        bars >= 2,
        "expected the bar redrawn while measuring: {out:?}"
    );
    assert!(out.contains(" s  ") && out.contains("calls/s"), "{out:?}");
    assert_latency_summary(&out);
}

#[test]
fn no_progress_in_a_pipe_and_with_no_progress() {
    let bin = env!("CARGO_BIN_EXE_coprocess");
    let (status, out, err) = run_bounded(Command::new(bin).args(bench_args()));
    assert!(status.success(), "{err}");
    assert_eq!(err, "", "nothing drawn on a pipe");
    assert_latency_summary(&out);

    if common::tool_available("script") {
        let mut args = bench_args();
        args.push("--no-progress".into());
        let line = shell_line(args);
        let (status, out, _) =
            run_bounded(Command::new("script").args(["-qec", &line, "/dev/null"]));
        assert!(status.success(), "{out}");
        assert!(!out.contains("\x1b[K"), "{out:?}");
        assert_latency_summary(&out);
    }
}
