//! `CoProcessMetrics`: the bridge's counters as Prometheus text or JSON.

use std::ffi::{c_char, c_int};

use crate::error::set_last_error;
use crate::ffi::ffi_boundary;
use crate::message::malloc_cstring;
use crate::metrics::{exposition, global};

/// `CoProcessMetrics` format: Prometheus' text exposition format (version 0.0.4).
pub const COPROCESS_METRICS_PROMETHEUS: c_int = 0;
/// `CoProcessMetrics` format: JSON.
pub const COPROCESS_METRICS_JSON: c_int = 1;

/// The bridge's metrics: per API, hook and driver the calls, failures by kind (status code) and a
/// latency histogram, and auth-cache hits and misses; events delivered and dropped; reloads and
/// their failures; store errors. `format` is COPROCESS_METRICS_PROMETHEUS (0, the text a
/// Prometheus server scrapes) or COPROCESS_METRICS_JSON (1). Returns a malloc'd NUL-terminated
/// string the caller frees with CoProcessFree (or free), or NULL for an unknown format (the reason
/// is in CoProcessLastError()) or when memory is exhausted. Calls and failures are counted exactly;
/// the latency histogram is sampled for fast hooks: a call under 10 µs is timed about one in 16
/// (every call after a slow one is timed), and each untimed call is counted in the bucket of its
/// series' last timed call, so the histogram's count still equals the calls. Counting costs the
/// dispatching threads no lock; this call sums every thread's counts. Thread-safe.
#[no_mangle]
pub extern "C" fn CoProcessMetrics(format: c_int) -> *mut c_char {
    ffi_boundary!(std::ptr::null_mut(), {
        let snapshot = global().snapshot();
        let text = match format {
            COPROCESS_METRICS_PROMETHEUS => exposition::prometheus(&snapshot),
            COPROCESS_METRICS_JSON => exposition::json(&snapshot).to_string(),
            other => {
                set_last_error(&format!(
                    "CoProcessMetrics: unknown format {other} (0 = Prometheus text, 1 = JSON)"
                ));
                return std::ptr::null_mut();
            }
        };
        malloc_cstring(&text)
    })
}
