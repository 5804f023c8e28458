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
}

/// Adds to a counter only one thread writes.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

impl Cell {
    /// One call: its latency, and the status it failed with (`None`: it succeeded).
    pub fn record_call(&self, ns: u64, failure: Option<i32>) {
        bump(&self.buckets[bucket_of(ns)], 1);
        bump(&self.sum_ns, ns);
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
    }
}
