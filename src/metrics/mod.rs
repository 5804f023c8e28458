//! What the bridge counts, for operators: per (API, hook, driver) calls, failures by kind and a
//! latency histogram, auth-cache hits and misses; events delivered and dropped; reloads and their
//! failures; store errors. Read with `CoProcessMetrics` as Prometheus text or JSON ([`exposition`]).
//!
//! Cost on the dispatch path: a few plain stores into the calling thread's own cell ([`series`]),
//! found through a thread-local map (no lock, no shared cache line), and for a sample of the calls
//! two clock reads (see [`timed`]). Everything else counted here happens off that path (events,
//! reloads, store errors) and uses shared atomics or a lock.
//!
//! Labels: `api` is the api_id of a loaded API ("" for Objects not routed to one); `hook` is the
//! hook's name from the API definition, else the Object's hook type ("Pre", "CustomKeyCheck"...),
//! never a name taken from the Object, so callers cannot create series; `driver` is the name the
//! driver was loaded under.

pub mod exposition;
pub mod histogram;
pub mod series;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use crate::driver::ReloadOutcome;
use crate::error::Result;
use crate::events::Delivery;

use histogram::Cell;
use series::SeriesSet;

/// Per-driver reload counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReloadCounts {
    pub reloads: u64,
    pub failures: u64,
}

#[derive(Default)]
pub struct Metrics {
    series: Arc<SeriesSet>,
    events_to_handler: AtomicU64,
    events_queued: AtomicU64,
    events_dropped: AtomicU64,
    reloads: Mutex<BTreeMap<String, ReloadCounts>>,
    store_read_errors: AtomicU64,
    store_write_errors: AtomicU64,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process's metrics (what `CoProcessMetrics` reports).
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// Whether hook calls are counted (CoProcessInit's `"hook_metrics"`, default on).
static PER_CALL: AtomicBool = AtomicBool::new(true);

/// Turns the per-hook counts (calls, failures, latency, auth cache: all the counting on the
/// dispatch path) on or off; events, reloads and store errors are always counted.
pub fn set_per_call_enabled(on: bool) {
    PER_CALL.store(on, Relaxed);
}

#[inline]
pub fn per_call_enabled() -> bool {
    PER_CALL.load(Relaxed)
}

/// Runs one driver call and records it in the global metrics: the `hook` label, the status it
/// failed with, and its latency (just runs it when per-hook counts are off).
///
/// Not every call is timed: two clock reads cost about as much as the rest of a fast native
/// dispatch. A call is timed when its thread's last timed call of the series took at least
/// [`histogram::TIME_EVERY_CALL_NS`] (and always the first), otherwise one in
/// [`histogram::SAMPLE_ONE_IN`] at random; an untimed call is counted in the histogram with the
/// latency of the last timed one. Calls and failures are counted exactly.
///
/// Inlined so that with the counts off a call costs one load and a branch; the counting itself
/// ([`Ticket`]) stays out of line.
#[inline]
pub fn timed<T>(
    api: &str,
    hook: &str,
    driver: &str,
    call: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if !per_call_enabled() {
        return call();
    }
    let Some(ticket) = Ticket::take(api, hook, driver) else {
        return call(); // the thread is being torn down
    };
    let started = ticket.time_it.then(Instant::now);
    let result = call();
    let failure = result.as_ref().err().map(|e| e.status.code());
    ticket.record(api, hook, driver, started, failure);
    result
}

/// One call's place in its series, taken before the call: whether to time it, and the calling
/// thread's cell to record it in.
struct Ticket {
    time_it: bool,
    slot: Option<series::Slot>,
}

impl Ticket {
    #[inline(never)]
    fn take(api: &str, hook: &str, driver: &str) -> Option<Ticket> {
        let (time_it, slot) = global()
            .series
            .with_cell_slot(api, hook, driver, Cell::take_turn)?;
        Some(Ticket { time_it, slot })
    }

    #[inline(never)]
    fn record(
        self,
        api: &str,
        hook: &str,
        driver: &str,
        started: Option<Instant>,
        failure: Option<i32>,
    ) {
        let ns = started.map(|t| u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let record = |cell: &Cell| match ns {
            Some(ns) => cell.record_call(ns, failure),
            None => cell.record_untimed(failure),
        };
        let series = &global().series;
        match self.slot {
            Some(slot) => series.with_slot(slot, record),
            None => series.with_cell(api, hook, driver, record),
        };
    }
}

/// The `hook` label of an Object's hook type.
pub fn hook_type_label(hook_type: i32) -> &'static str {
    coprocess_proto::HookType::try_from(hook_type)
        .map(|h| h.as_str_name())
        .unwrap_or("Unknown")
}

impl Metrics {
    pub fn record_call(&self, api: &str, hook: &str, driver: &str, ns: u64, failure: Option<i32>) {
        self.series
            .with_cell(api, hook, driver, |c| c.record_call(ns, failure));
    }

    /// A CustomKeyCheck answered from the ID extractor's cache (`hit`) or not.
    pub fn record_auth_cache(&self, api: &str, hook: &str, driver: &str, hit: bool) {
        if !per_call_enabled() {
            return;
        }
        self.series
            .with_cell(api, hook, driver, |c| c.record_cache(hit));
    }

    pub fn record_event(&self, delivery: &Delivery) {
        match delivery {
            Delivery::Handled => self.events_to_handler.fetch_add(1, Relaxed),
            Delivery::Queued => self.events_queued.fetch_add(1, Relaxed),
            Delivery::QueuedDroppingOldest { dropped } => {
                self.events_dropped.fetch_add(*dropped, Relaxed);
                self.events_queued.fetch_add(1, Relaxed)
            }
            Delivery::TooLarge => self.events_dropped.fetch_add(1, Relaxed),
        };
    }

    pub fn record_reloads(&self, outcomes: &[ReloadOutcome]) {
        let mut reloads = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
        for outcome in outcomes {
            let (name, failed) = match outcome {
                ReloadOutcome::HookCalled(n) | ReloadOutcome::Reopened(n) => (n, false),
                ReloadOutcome::Failed(n, _) => (n, true),
                ReloadOutcome::Nested => continue,
            };
            let counts = reloads.entry(name.clone()).or_default();
            counts.reloads += 1;
            counts.failures += u64::from(failed);
        }
    }

    /// A store call failed: a read (`TykGetData`, `get_data`) or a write.
    pub fn record_store_error(&self, write: bool) {
        let counter = if write {
            &self.store_write_errors
        } else {
            &self.store_read_errors
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Everything, summed over threads.
    pub fn snapshot(&self) -> exposition::Snapshot {
        exposition::Snapshot {
            series: self.series.snapshot(),
            events_to_handler: self.events_to_handler.load(Relaxed),
            events_queued: self.events_queued.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            reloads: self
                .reloads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            store_read_errors: self.store_read_errors.load(Relaxed),
            store_write_errors: self.store_write_errors.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_counted_shows_in_the_snapshot() {
        let m = Metrics::default();
        m.record_call("api", "Auth", "native", 1_500, None);
        m.record_call("api", "Auth", "native", 1_500, Some(6));
        m.record_auth_cache("api", "Auth", "native", true);
        m.record_event(&Delivery::Handled);
        m.record_event(&Delivery::QueuedDroppingOldest { dropped: 1 });
        m.record_reloads(&[
            ReloadOutcome::HookCalled("native".into()),
            ReloadOutcome::Failed("native".into(), "bad".into()),
        ]);
        m.record_store_error(false);
        let s = m.snapshot();
        assert_eq!(s.series.len(), 1);
        let (key, t) = &s.series[0];
        assert_eq!(
            (&*key.api, &*key.hook, &*key.driver),
            ("api", "Auth", "native")
        );
        assert_eq!((t.calls(), t.failures[6], t.cache_hits), (2, 1, 1));
        assert_eq!(
            (s.events_to_handler, s.events_queued, s.events_dropped),
            (1, 1, 1)
        );
        assert_eq!(
            s.reloads["native"],
            ReloadCounts {
                reloads: 2,
                failures: 1
            }
        );
        assert_eq!((s.store_read_errors, s.store_write_errors), (1, 0));
    }

    /// `timed`'s shortcut: most fast calls skip the clock, yet every call and failure is counted;
    /// slow calls are all timed.
    #[test]
    fn timed_counts_every_call_and_times_a_sample_of_fast_ones() {
        use crate::error::{Error, COPROCESS_ERR_DRIVER_FAILED};
        let api = "timed-sampling-test";
        let calls = 3_200u64;
        for i in 0..calls {
            let r = timed(api, "Pre", "d", || match i % 100 {
                0 => Err(Error::new(COPROCESS_ERR_DRIVER_FAILED, "no")),
                _ => Ok(()),
            });
            assert_eq!(r.is_err(), i % 100 == 0);
        }
        for _ in 0..5 {
            timed(api, "Post", "d", || {
                std::thread::sleep(std::time::Duration::from_micros(20));
                Ok(())
            })
            .unwrap();
        }
        let snapshot = global().snapshot();
        let totals = |hook: &str| {
            snapshot
                .series
                .iter()
                .find(|(k, _)| &*k.api == api && &*k.hook == hook)
                .map(|(_, t)| t.clone())
                .unwrap()
        };
        let fast = totals("Pre");
        assert_eq!(fast.calls(), calls);
        assert_eq!(
            fast.failures[COPROCESS_ERR_DRIVER_FAILED as usize],
            calls / 100
        );
        assert!(
            fast.timed >= 1 && fast.timed < calls / 4,
            "{} of {calls} fast calls timed",
            fast.timed
        );
        let slow = totals("Post");
        assert_eq!((slow.calls(), slow.timed), (5, 5));
        assert!(slow.sum_ns >= 5 * 20_000);
    }

    #[test]
    fn hook_type_labels() {
        assert_eq!(hook_type_label(1), "Pre");
        assert_eq!(hook_type_label(4), "CustomKeyCheck");
        assert_eq!(hook_type_label(77), "Unknown");
    }
}
