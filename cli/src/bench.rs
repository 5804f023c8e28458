//! `coprocess bench`: throughput and latency percentiles of DispatchWithDriver on one Object, from
//! several threads, through the bridge's C export (input check, routing, driver call, output check).
//! For comparisons between commits use the criterion benches (`cargo bench`); this answers "how fast is
//! my driver through the bridge on this machine".

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use coprocess_proto::{fixtures, HookType, Message};
use hdrhistogram::Histogram;

use crate::bridge::{Bridge, DriverArgs};
use crate::error::{CliError, Result};
use crate::json::{self, HookTypeArg};
use crate::output;

#[derive(Debug, Args)]
#[command(after_help = "\
The latency of each call is measured around DispatchWithDriver (including freeing the result), so it
includes about 20-40 ns of clock reads. A progress line is drawn on standard error when it is a terminal.

Example:
  coprocess bench --driver target/release/libcoprocess_rust_driver.so --threads 2 --duration 5")]
pub struct BenchArgs {
    #[command(flatten)]
    pub driver: DriverArgs,
    /// The Object to dispatch: canonical JSON or a serialized Object (recognised by content).
    /// Default: the typical fixture (an authenticated POST with a 1 KiB JSON body, a session and
    /// Tyk's spec: 3347 bytes).
    #[arg(long, value_name = "FILE")]
    pub object: Option<PathBuf>,
    /// Sets the Object's hook_type.
    #[arg(long, value_enum, ignore_case = true, value_name = "HOOK")]
    pub hook_type: Option<HookTypeArg>,
    /// Dispatching threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub threads: u32,
    /// Seconds to measure.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds, value_name = "S")]
    pub duration: f64,
    /// Seconds to run before measuring.
    #[arg(long, default_value_t = 0.5, value_parser = parse_seconds, value_name = "S")]
    pub warmup: f64,
    /// Prints the results as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Never draw the progress line.
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_seconds(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{s} is out of range (0 to 86400 seconds)"));
    }
    Ok(v)
}

/// What one run measured.
#[derive(Debug)]
pub struct Report {
    pub calls: u64,
    pub elapsed: Duration,
    pub latency_ns: Histogram<u64>,
}

impl Report {
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.calls as f64 / secs
        } else {
            0.0
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 ns to 100 s with 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

pub fn run(args: BenchArgs) -> Result<()> {
    let (mut object, what) = match &args.object {
        Some(path) => {
            let (bytes, source) = json::read_input(path)?;
            (json::object_from_any(&bytes, &source)?, source)
        }
        None => (fixtures::typical_object(), "typical fixture".to_owned()),
    };
    if let Some(h) = args.hook_type {
        object.hook_type = HookType::from(h) as i32;
    }
    let input = object.encode_to_vec();
    let hook = HookType::try_from(object.hook_type)
        .map(|h| h.as_str_name().to_owned())
        .unwrap_or_else(|_| object.hook_type.to_string());

    let bridge = Bridge::load(&args.driver)?;
    // One call first, so a driver that refuses this Object fails with its message, not a statistic.
    bridge.dispatch(&input)?;

    let progress = !args.no_progress && std::io::stderr().is_terminal();
    let report = measure(&bridge, &input, &args, progress)?;
    drop(bridge);

    let h = &report.latency_ns;
    let pct = |q: f64| h.value_at_quantile(q);
    if args.json {
        let v = serde_json::json!({
            "driver": args.driver.driver.display().to_string(),
            "object": what,
            "object_bytes": input.len(),
            "hook_type": hook,
            "threads": args.threads,
            "seconds": report.elapsed.as_secs_f64(),
            "calls": report.calls,
            "calls_per_second": report.throughput(),
            "latency_ns": {
                "min": h.min(), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
                "p999": pct(0.999), "max": h.max(), "mean": h.mean(),
            },
        });
        output::line(&v.to_string())?;
    } else {
        let text = format!(
            "driver      {}\nobject      {what}: {} bytes, hook {hook}\n\
             threads     {}, {:.2} s measured after {:.2} s warm-up\n\
             calls       {}\nthroughput  {} calls/s\n\
             latency     min {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            args.driver.driver.display(),
            input.len(),
            args.threads,
            report.elapsed.as_secs_f64(),
            args.warmup,
            group(report.calls),
            group(report.throughput() as u64),
            nanos(h.min()),
            nanos(pct(0.5)),
            nanos(pct(0.9)),
            nanos(pct(0.99)),
            nanos(pct(0.999)),
            nanos(h.max())
        );
        output::line(&text)?;
    }
    Ok(())
}

/// Runs the dispatching threads (and the progress line) and merges what they measured.
fn measure(bridge: &Bridge, input: &[u8], args: &BenchArgs, progress: bool) -> Result<Report> {
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let failure: Mutex<Option<CliError>> = Mutex::new(None);
    let merged = Mutex::new(new_histogram());

    std::thread::scope(|s| {
        for _ in 0..args.threads {
            s.spawn(|| {
                let mut hist = new_histogram();
                let mut local = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    if let Err(e) = bridge.dispatch(input) {
                        stop.store(true, Ordering::Relaxed);
                        failure
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        break;
                    }
                    if t0 >= measure_from {
                        hist.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
                        local += 1;
                        if local == 256 {
                            calls.fetch_add(local, Ordering::Relaxed);
                            local = 0;
                        }
                    }
                }
                calls.fetch_add(local, Ordering::Relaxed);
                let mut m = merged.lock().unwrap_or_else(|p| p.into_inner());
                // Both histograms have the same bounds, so adding cannot fail.
                let _ = m.add(&hist);
            });
        }
        if progress {
            s.spawn(|| draw_progress(&stop, &calls, measure_from, end, duration));
        }
    });
    let elapsed = Instant::now()
        .min(end)
        .saturating_duration_since(measure_from);
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(CliError::new(format!(
            "dispatch failed during the benchmark: {e}"
        )));
    }
    let latency_ns = merged.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(Report {
        calls: latency_ns.len(),
        elapsed,
        latency_ns,
    })
}

/// The progress line on standard error (only drawn on a terminal), until `end` or a failure.
fn draw_progress(
    stop: &AtomicBool,
    calls: &AtomicU64,
    measure_from: Instant,
    end: Instant,
    duration: Duration,
) {
    const WIDTH: usize = 30;
    let mut err = std::io::stderr();
    loop {
        let now = Instant::now();
        if now >= end || stop.load(Ordering::Relaxed) {
            break;
        }
        let line = if now < measure_from {
            "  warming up...".to_owned()
        } else {
            let done = now - measure_from;
            let frac = (done.as_secs_f64() / duration.as_secs_f64().max(1e-9)).min(1.0);
            let filled = (frac * WIDTH as f64) as usize;
            let n = calls.load(Ordering::Relaxed);
            format!(
                "  [{}{}] {:.1}/{:.1} s  {} calls  {} calls/s",
                "#".repeat(filled),
                "-".repeat(WIDTH - filled),
                done.as_secs_f64(),
                duration.as_secs_f64(),
                group(n),
                group((n as f64 / done.as_secs_f64().max(1e-9)) as u64)
            )
        };
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        std::thread::sleep(Duration::from_millis(200).min(end.saturating_duration_since(now)));
    }
    let _ = write!(err, "\r\x1b[K");
    let _ = err.flush();
}

/// 1234567 -> "1,234,567".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in ns, in the unit that reads best.
fn nanos(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.2} µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(nanos(850), "850 ns");
        assert_eq!(nanos(1_250), "1.25 µs");
        assert_eq!(nanos(3_500_000), "3.50 ms");
        assert_eq!(nanos(2_000_000_000), "2.00 s");
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("0.25"), Ok(0.25));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
