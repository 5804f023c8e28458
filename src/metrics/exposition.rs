//! The metrics as text: Prometheus' text exposition format (version 0.0.4) and JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use super::histogram::{Totals, BUCKET_BOUNDS_NS, KINDS, SAMPLE_ONE_IN, TIME_EVERY_CALL_NS};
use super::series::SeriesKey;
use super::ReloadCounts;

/// Everything counted, at one moment.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub series: Vec<(SeriesKey, Totals)>,
    pub events_to_handler: u64,
    pub events_queued: u64,
    pub events_dropped: u64,
    pub reloads: BTreeMap<String, ReloadCounts>,
    pub store_read_errors: u64,
    pub store_write_errors: u64,
}

/// The `kind` label of a failure slot: the status name without its prefix, e.g. "driver_failed".
pub fn kind_label(slot: usize) -> String {
    use crate::error::CoProcessStatus::*;
    const STATUSES: [crate::error::CoProcessStatus; KINDS - 1] = [
        COPROCESS_OK,
        COPROCESS_ERR_NULL_ARGUMENT,
        COPROCESS_ERR_INVALID_LENGTH,
        COPROCESS_ERR_INVALID_OBJECT,
        COPROCESS_ERR_UNKNOWN_DRIVER,
        COPROCESS_ERR_NO_DRIVER,
        COPROCESS_ERR_DRIVER_FAILED,
        COPROCESS_ERR_DRIVER_BAD_OUTPUT,
        COPROCESS_ERR_LOAD_FAILED,
        COPROCESS_ERR_INVALID_CONFIG,
        COPROCESS_ERR_INVALID_UTF8,
        COPROCESS_ERR_ALREADY_EXISTS,
        COPROCESS_ERR_EMPTY,
        COPROCESS_ERR_DISABLED,
        COPROCESS_ERR_PANIC,
        COPROCESS_ERR_INVALID_JSON,
        COPROCESS_ERR_INVALID_API,
        COPROCESS_ERR_UNKNOWN_API,
        COPROCESS_ERR_STORE,
        COPROCESS_ERR_BUNDLE,
    ];
    match STATUSES.get(slot) {
        Some(status) => {
            let name = format!("{status:?}");
            let short = name
                .strip_prefix("COPROCESS_ERR_")
                .or_else(|| name.strip_prefix("COPROCESS_"))
                .unwrap_or(&name);
            short.to_ascii_lowercase()
        }
        None => "other".to_owned(),
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn series_labels(key: &SeriesKey) -> String {
    format!(
        "api=\"{}\",hook=\"{}\",driver=\"{}\"",
        label_value(&key.api),
        label_value(&key.hook),
        label_value(&key.driver)
    )
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The Prometheus text exposition.
pub fn prometheus(s: &Snapshot) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "coprocess_build_info",
        "gauge",
        "The bridge's version and driver ABI version.",
    );
    let _ = writeln!(
        out,
        "coprocess_build_info{{version=\"{}\",driver_abi=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::driver::bindings::COPROCESS_DRIVER_ABI_VERSION
    );

    family(
        &mut out,
        "coprocess_hook_calls_total",
        "counter",
        "Hooks run by a driver, by API (\"\" outside an API), hook and driver.",
    );
    for (key, t) in &s.series {
        let _ = writeln!(
            out,
            "coprocess_hook_calls_total{{{}}} {}",
            series_labels(key),
            t.calls()
        );
    }

    family(
        &mut out,
        "coprocess_hook_failures_total",
        "counter",
        "Hooks that failed, by kind (the status code: driver_failed, driver_bad_output, panic...).",
    );
    for (key, t) in &s.series {
        for (slot, &n) in t.failures.iter().enumerate().filter(|(_, &n)| n > 0) {
            let _ = writeln!(
                out,
                "coprocess_hook_failures_total{{{},kind=\"{}\"}} {n}",
                series_labels(key),
                kind_label(slot)
            );
        }
    }

    family(
        &mut out,
        "coprocess_hook_duration_seconds",
        "histogram",
        &format!(
            "Time of a hook's driver call, checks of its input and output included. Calls under \
             {} us are timed one in {} at random; an untimed call counts with its thread's last \
             timed one.",
            TIME_EVERY_CALL_NS / 1000,
            SAMPLE_ONE_IN
        ),
    );
    for (key, t) in &s.series {
        let labels = series_labels(key);
        let mut cumulative = 0;
        for (bound, n) in BUCKET_BOUNDS_NS.iter().zip(&t.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "coprocess_hook_duration_seconds_bucket{{{labels},le=\"{}\"}} {cumulative}",
                seconds(*bound)
            );
        }
        let _ = writeln!(
            out,
            "coprocess_hook_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            t.calls()
        );
        let _ = writeln!(
            out,
            "coprocess_hook_duration_seconds_sum{{{labels}}} {}",
            seconds(t.sum_ns)
        );
        let _ = writeln!(
            out,
            "coprocess_hook_duration_seconds_count{{{labels}}} {}",
            t.calls()
        );
    }

    family(
        &mut out,
        "coprocess_auth_cache_lookups_total",
        "counter",
        "CustomKeyCheck lookups in the ID extractor's session cache, by result (hit or miss).",
    );
    for (key, t) in &s.series {
        if t.cache_hits + t.cache_misses == 0 {
            continue;
        }
        let labels = series_labels(key);
        let _ = writeln!(
            out,
            "coprocess_auth_cache_lookups_total{{{labels},result=\"hit\"}} {}",
            t.cache_hits
        );
        let _ = writeln!(
            out,
            "coprocess_auth_cache_lookups_total{{{labels},result=\"miss\"}} {}",
            t.cache_misses
        );
    }

    family(
        &mut out,
        "coprocess_events_delivered_total",
        "counter",
        "Events delivered, to the host's handler or to the queue CoProcessNextEvent drains.",
    );
    let _ = writeln!(
        out,
        "coprocess_events_delivered_total{{to=\"handler\"}} {}",
        s.events_to_handler
    );
    let _ = writeln!(
        out,
        "coprocess_events_delivered_total{{to=\"queue\"}} {}",
        s.events_queued
    );
    family(
        &mut out,
        "coprocess_events_dropped_total",
        "counter",
        "Queued events dropped because the queue was full (the oldest go first).",
    );
    let _ = writeln!(out, "coprocess_events_dropped_total {}", s.events_dropped);

    family(
        &mut out,
        "coprocess_reloads_total",
        "counter",
        "Driver reloads (Reload), by driver.",
    );
    for (driver, c) in &s.reloads {
        let _ = writeln!(
            out,
            "coprocess_reloads_total{{driver=\"{}\"}} {}",
            label_value(driver),
            c.reloads
        );
    }
    family(
        &mut out,
        "coprocess_reload_failures_total",
        "counter",
        "Reloads whose new driver version failed to load (the old one kept serving), by driver.",
    );
    for (driver, c) in &s.reloads {
        let _ = writeln!(
            out,
            "coprocess_reload_failures_total{{driver=\"{}\"}} {}",
            label_value(driver),
            c.failures
        );
    }

    family(
        &mut out,
        "coprocess_store_errors_total",
        "counter",
        "Store operations that failed (e.g. Redis unreachable), by operation.",
    );
    let _ = writeln!(
        out,
        "coprocess_store_errors_total{{op=\"read\"}} {}",
        s.store_read_errors
    );
    let _ = writeln!(
        out,
        "coprocess_store_errors_total{{op=\"write\"}} {}",
        s.store_write_errors
    );
    out
}

/// The same as JSON.
pub fn json(s: &Snapshot) -> Value {
    let hooks: Vec<Value> = s
        .series
        .iter()
        .map(|(key, t)| {
            let failures: serde_json::Map<String, Value> = t
                .failures
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(slot, &n)| (kind_label(slot), json!(n)))
                .collect();
            let mut cumulative = 0;
            let mut buckets: Vec<Value> = BUCKET_BOUNDS_NS
                .iter()
                .zip(&t.buckets)
                .map(|(bound, n)| {
                    cumulative += n;
                    json!({"le_seconds": seconds(*bound), "count": cumulative})
                })
                .collect();
            buckets.push(json!({"le_seconds": null, "count": t.calls()}));
            json!({
                "api": &*key.api,
                "hook": &*key.hook,
                "driver": &*key.driver,
                "calls": t.calls(),
                "failures": failures,
                "latency": {"sum_seconds": seconds(t.sum_ns), "buckets": buckets, "timed_calls": t.timed},
                "auth_cache": {"hits": t.cache_hits, "misses": t.cache_misses},
            })
        })
        .collect();
    let reloads: serde_json::Map<String, Value> = s
        .reloads
        .iter()
        .map(|(d, c)| {
            (
                d.clone(),
                json!({"reloads": c.reloads, "failures": c.failures}),
            )
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "driver_abi": crate::driver::bindings::COPROCESS_DRIVER_ABI_VERSION,
        "hooks": hooks,
        "events": {
            "delivered_to_handler": s.events_to_handler,
            "delivered_to_queue": s.events_queued,
            "dropped": s.events_dropped,
        },
        "reloads": reloads,
        "store_errors": {"read": s.store_read_errors, "write": s.store_write_errors},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn sample() -> Snapshot {
        let m = Metrics::default();
        m.record_call("a\"pi\n", "Pre", "na\\tive", 700, None);
        m.record_call("a\"pi\n", "Pre", "na\\tive", 30_000_000_000, Some(6));
        m.record_auth_cache("a\"pi\n", "Pre", "na\\tive", false);
        m.snapshot()
    }

    #[test]
    fn prometheus_text_has_escaped_labels_and_cumulative_buckets() {
        let text = prometheus(&sample());
        let labels = r#"api="a\"pi\n",hook="Pre",driver="na\\tive""#;
        for line in [
            format!("coprocess_hook_calls_total{{{labels}}} 2"),
            format!("coprocess_hook_failures_total{{{labels},kind=\"driver_failed\"}} 1"),
            format!("coprocess_hook_duration_seconds_bucket{{{labels},le=\"0.000001\"}} 1"),
            format!("coprocess_hook_duration_seconds_bucket{{{labels},le=\"10\"}} 1"),
            format!("coprocess_hook_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 2"),
            format!("coprocess_hook_duration_seconds_sum{{{labels}}} 30.0000007"),
            format!("coprocess_auth_cache_lookups_total{{{labels},result=\"miss\"}} 1"),
            "# TYPE coprocess_hook_duration_seconds histogram".to_owned(),
            "coprocess_events_dropped_total 0".to_owned(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn json_has_the_same_numbers() {
        let v = json(&sample());
        let hook = &v["hooks"][0];
        assert_eq!(hook["api"], "a\"pi\n");
        assert_eq!(hook["calls"], 2);
        assert_eq!(hook["failures"]["driver_failed"], 1);
        assert_eq!(hook["auth_cache"]["misses"], 1);
        let buckets = hook["latency"]["buckets"].as_array().unwrap();
        assert_eq!(buckets.last().unwrap()["count"], 2);
        assert_eq!(buckets[0]["count"], 1);
    }

    #[test]
    fn kind_labels() {
        assert_eq!(kind_label(6), "driver_failed");
        assert_eq!(kind_label(14), "panic");
        assert_eq!(kind_label(0), "ok");
        assert_eq!(kind_label(KINDS - 1), "other");
    }
}
