//! A circuit breaker for the Redis store: after a connection failure, calls fail at once for a short
//! window instead of each waiting out the connect timeout; when the window ends one call (the probe)
//! tries Redis again while the others keep failing fast, and its success closes the breaker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Breaker {
    window: Duration,
    /// Fast path: nothing to check while closed.
    tripped: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the next probe may run (`None`: closed).
    retry_at: Option<Instant>,
    probing: bool,
    last_error: String,
    /// Calls refused since the breaker opened.
    refused: u64,
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The breaker is closed.
    Normal,
    /// The breaker is open and this caller tries Redis for everyone.
    Probe,
}

/// How a call that was let through ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    /// The breaker opened (or a probe failed and it stays open).
    Opened,
    /// A success after an open period closed it.
    Closed,
}

impl Breaker {
    pub fn new(window: Duration) -> Breaker {
        Breaker {
            window,
            tripped: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Single-field updates: a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a call through, or refuses it at once with the reason while Redis is known to be down.
    pub fn admit(&self, now: Instant) -> Result<Admission, String> {
        if !self.tripped.load(Ordering::Acquire) {
            return Ok(Admission::Normal);
        }
        let mut s = self.lock();
        let Some(retry_at) = s.retry_at else {
            return Ok(Admission::Normal);
        };
        if now >= retry_at && !s.probing {
            s.probing = true;
            return Ok(Admission::Probe);
        }
        s.refused += 1;
        let wait = retry_at.saturating_duration_since(now);
        Err(format!(
            "Redis unavailable, not tried (circuit open for {} ms after: {}); next try in {} ms",
            self.window.as_millis(),
            s.last_error,
            wait.as_millis()
        ))
    }

    /// Redis answered.
    pub fn succeeded(&self) -> Transition {
        if !self.tripped.load(Ordering::Acquire) {
            return Transition::None;
        }
        let mut s = self.lock();
        if s.retry_at.is_none() {
            return Transition::None;
        }
        *s = State::default();
        self.tripped.store(false, Ordering::Release);
        Transition::Closed
    }

    /// Redis could not be reached (or stopped answering): open for one window from `now`.
    pub fn failed(&self, now: Instant, error: &str) -> Transition {
        let mut s = self.lock();
        let was_closed = s.retry_at.is_none();
        s.retry_at = Some(now + self.window);
        s.probing = false;
        s.last_error = error.to_owned();
        self.tripped.store(true, Ordering::Release);
        if was_closed {
            Transition::Opened
        } else {
            Transition::None
        }
    }

    /// Calls refused since the breaker last opened.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_failure_lets_one_probe_through_per_window_and_closes_on_success() {
        let b = Breaker::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Ok(Admission::Normal));
        assert_eq!(b.failed(t0, "connection refused"), Transition::Opened);
        let e = b.admit(t0 + Duration::from_millis(500)).unwrap_err();
        assert!(
            e.contains("connection refused") && e.contains("next try in 500 ms"),
            "{e}"
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(t1), Ok(Admission::Probe));
        assert!(b.admit(t1).is_err(), "one probe at a time");
        assert_eq!(b.failed(t1, "still down"), Transition::None);
        assert!(
            b.admit(t1 + Duration::from_millis(999)).is_err(),
            "a new window"
        );
        assert_eq!(b.refused(), 3);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(b.admit(t2), Ok(Admission::Probe));
        assert_eq!(b.succeeded(), Transition::Closed);
        assert_eq!(b.admit(t2), Ok(Admission::Normal));
        assert_eq!(b.succeeded(), Transition::None);
    }
}
