//! Keeps store failures from flooding the log: while Redis is down every request fails, but one line a
//! second (with a count of the ones left out) says all there is to say.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Throttle {
    every: Duration,
    epoch: Instant,
    /// When the last line went out (ms since `epoch`, +1 so that 0 means never).
    last: AtomicU64,
    skipped: AtomicU64,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may go out now (`n` lines were left out since the last one).
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now_ms >= last + self.every.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        for _ in 0..5 {
            assert_eq!(t.admit(t0 + Duration::from_millis(500)), None);
        }
        assert_eq!(t.admit(t0 + Duration::from_millis(1001)), Some(5));
        assert_eq!(t.admit(t0 + Duration::from_millis(1002)), None);
    }
}
