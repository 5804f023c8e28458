//! The latency buckets and the per-thread cell one (API, hook, driver) series records into.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the latency buckets, in nanoseconds (1 µs to 10 s, 1-2.5-5 steps); a last,
/// unbounded bucket catches the rest.
pub(crate) const BUCKET_BOUNDS_NS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

pub(crate) const BUCKETS: usize = BUCKET_BOUNDS_NS.len() + 1;

/// Failure kinds are status codes (`CoProcessStatus`, 0 to 19); the last slot takes any other code.
pub(crate) const KINDS: usize = 21;

/// The bucket a latency falls in.
pub fn bucket_of(ns: u64) -> usize {
    BUCKET_BOUNDS_NS.partition_point(|&bound| bound < ns)
}

/// Calls at least this slow are timed every time: two clock reads cost under 1% of them.
pub(crate) const TIME_EVERY_CALL_NS: u64 = 10_000;

/// Faster calls are timed one in `SAMPLE_ONE_IN` on average (at random, see [`Cell::record_call`]).
pub(crate) const SAMPLE_ONE_IN: u64 = 16;

/// One thread's counts for one series. Only its owning thread writes it (so an increment is a load
/// and a store, no locked instruction); readers sum the cells of all threads. Aligned to a cache line
/// so that no two threads' cells share one.
#[derive(Default)]
#[repr(align(64))]
pub struct Cell {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    failures: [AtomicU64; KINDS],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    /// Calls whose latency was measured (the others are counted with the last measured one).
    timed: AtomicU64,
    /// Untimed calls to make before the next timed one (0 in a new cell: its first call is timed).
    untimed_left: AtomicU64,
    /// The bucket and latency of the last timed call, which each untimed call is counted with.
    held_bucket: AtomicU64,
    held_ns: AtomicU64,
}

/// Adds to a counter only one thread writes.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

impl Cell {
    /// Whether the owning thread's next call in this series is to be timed; if not, one fewer
    /// untimed call is left.
    pub fn take_turn(&self) -> bool {
        let left = self.untimed_left.load(Relaxed);
        if left == 0 {
            return true;
        }
        self.untimed_left.store(left - 1, Relaxed);
        false
    }

    /// One timed call: its latency, and the status it failed with (`None`: it succeeded). Also
    /// decides how many calls go untimed before the next timed one: none after a call of at least
    /// [`TIME_EVERY_CALL_NS`], else 0 to `2 * SAMPLE_ONE_IN - 2` (uniformly, mean
    /// `SAMPLE_ONE_IN - 1`), drawn from the latency's low bits so that no periodic pattern of calls
    /// lines up with the sampling.
    pub fn record_call(&self, ns: u64, failure: Option<i32>) {
        let bucket = bucket_of(ns);
        bump(&self.buckets[bucket], 1);
        bump(&self.sum_ns, ns);
        bump(&self.timed, 1);
        self.held_bucket.store(bucket as u64, Relaxed);
        self.held_ns.store(ns, Relaxed);
        let untimed = if ns >= TIME_EVERY_CALL_NS {
            0
        } else {
            (ns.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % (2 * SAMPLE_ONE_IN - 1)
        };
        self.untimed_left.store(untimed, Relaxed);
        self.record_failure(failure);
    }

    /// One call that was not timed: counted in the bucket of the last timed call, its latency
    /// added to the sum, so that the histogram's count stays the number of calls.
    pub fn record_untimed(&self, failure: Option<i32>) {
        let bucket = self.held_bucket.load(Relaxed) as usize;
        bump(&self.buckets[bucket.min(BUCKETS - 1)], 1);
        bump(&self.sum_ns, self.held_ns.load(Relaxed));
        self.record_failure(failure);
    }

    fn record_failure(&self, failure: Option<i32>) {
        if let Some(code) = failure {
            let kind = usize::try_from(code)
                .ok()
                .filter(|&k| k < KINDS - 1)
                .unwrap_or(KINDS - 1);
            bump(&self.failures[kind], 1);
        }
    }

    pub fn record_cache(&self, hit: bool) {
        bump(
            if hit {
                &self.cache_hits
            } else {
                &self.cache_misses
            },
            1,
        );
    }

    /// Adds this cell's counts into `into` (several threads' cells add into one `Totals`).
    pub fn add_to(&self, into: &mut Totals) {
        for (t, b) in into.buckets.iter_mut().zip(&self.buckets) {
            *t += b.load(Relaxed);
        }
        into.sum_ns += self.sum_ns.load(Relaxed);
        for (t, f) in into.failures.iter_mut().zip(&self.failures) {
            *t += f.load(Relaxed);
        }
        into.cache_hits += self.cache_hits.load(Relaxed);
        into.cache_misses += self.cache_misses.load(Relaxed);
        into.timed += self.timed.load(Relaxed);
    }
}

/// Summed counts of one series.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub buckets: [u64; BUCKETS],
    pub sum_ns: u64,
    pub failures: [u64; KINDS],
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Calls whose latency was measured (see [`Cell::record_call`]).
    pub timed: u64,
}

impl Totals {
    /// Calls recorded (every call lands in one bucket).
    pub fn calls(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn add(&mut self, other: &Totals) {
        for (t, o) in self.buckets.iter_mut().zip(&other.buckets) {
            *t += o;
        }
        self.sum_ns += other.sum_ns;
        for (t, o) in self.failures.iter_mut().zip(&other.failures) {
            *t += o;
        }
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        self.timed += other.timed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_bucket_whose_bound_is_not_below_them() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(
            bucket_of(1_000),
            0,
            "a bound is inclusive (Prometheus `le`)"
        );
        assert_eq!(bucket_of(1_001), 1);
        assert_eq!(bucket_of(10_000_000_000), BUCKETS - 2);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_cell_counts_calls_failures_and_cache_lookups() {
        let cell = Cell::default();
        cell.record_call(700, None);
        cell.record_call(3_000, Some(6));
        cell.record_call(3_000, Some(99));
        cell.record_cache(true);
        cell.record_cache(false);
        cell.record_cache(false);
        let mut t = Totals::default();
        cell.add_to(&mut t);
        assert_eq!(t.calls(), 3);
        assert_eq!(t.buckets[0], 1);
        assert_eq!(t.buckets[2], 2);
        assert_eq!(t.sum_ns, 6_700);
        assert_eq!(t.failures[6], 1);
        assert_eq!(
            t.failures[KINDS - 1],
            1,
            "an unknown code is counted as other"
        );
        assert_eq!((t.cache_hits, t.cache_misses), (1, 2));
        let mut twice = t.clone();
        twice.add(&t);
        assert_eq!(twice.calls(), 6);
        assert_eq!(twice.timed, 6);
    }

    /// The sampling shortcut: fast calls are mostly not timed, yet each lands in the histogram (with
    /// the last timed latency); slow calls are all timed.
    #[test]
    fn fast_calls_are_sampled_and_slow_ones_all_timed() {
        let cell = Cell::default();
        let (mut timed, calls) = (0u64, 16_000u64);
        for _ in 0..calls {
            if cell.take_turn() {
                timed += 1;
                cell.record_call(700 + timed % 7, None);
            } else {
                cell.record_untimed(None);
            }
        }
        let mut t = Totals::default();
        cell.add_to(&mut t);
        assert_eq!(t.calls(), calls, "every call is in the histogram");
        assert_eq!(t.buckets[0], calls);
        assert_eq!(t.timed, timed);
        let expected = calls / SAMPLE_ONE_IN;
        assert!(
            (expected / 2..expected * 2).contains(&timed),
            "about one in {SAMPLE_ONE_IN} timed: {timed} of {calls}"
        );
        assert!((700 * calls..707 * calls).contains(&t.sum_ns));

        let slow = Cell::default();
        for i in 0..100 {
            assert!(slow.take_turn(), "call {i} of a slow series is timed");
            slow.record_call(TIME_EVERY_CALL_NS + i, Some(6));
        }
        let mut t = Totals::default();
        slow.add_to(&mut t);
        assert_eq!((t.calls(), t.timed, t.failures[6]), (100, 100, 100));
        // After a fast call the series goes back to sampling.
        slow.record_call(500, None);
        let untimed = (0..2 * SAMPLE_ONE_IN)
            .take_while(|_| !slow.take_turn())
            .count();
        assert!(untimed < 2 * SAMPLE_ONE_IN as usize - 1);
    }
}
