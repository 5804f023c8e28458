//! The embedded store: a mutex-guarded map with lazy expiry plus an occasional sweep, so keys written once
//! and never read again do not pile up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Store, StoreError};

/// Every this many writes, expired entries are swept out.
const SWEEP_EVERY: u32 = 1024;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    writes_since_sweep: u32,
}

struct Entry {
    value: String,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent (single-step updates),
        // so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_at(&self, key: &str, value: &str, ttl: Option<Duration>, now: Instant) {
        let mut inner = self.lock();
        inner.writes_since_sweep += 1;
        if inner.writes_since_sweep >= SWEEP_EVERY {
            inner.writes_since_sweep = 0;
            inner.entries.retain(|_, e| e.is_live(now));
        }
        let entry = Entry {
            value: value.to_owned(),
            expires_at: ttl.map(|d| now + d),
        };
        inner.entries.insert(key.to_owned(), entry);
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<String> {
        let mut inner = self.lock();
        match inner.entries.get(key) {
            Some(e) if e.is_live(now) => Some(e.value.clone()),
            Some(_) => {
                inner.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Number of entries held, expired or not (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (on `CoProcessShutdown`).
    pub fn clear(&self) {
        self.lock().entries.clear();
    }
}

impl Store for MemoryStore {
    fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), StoreError> {
        self.set_at(key, value, ttl, Instant::now());
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get_at(key, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_after_their_ttl() {
        let s = MemoryStore::new();
        let t0 = Instant::now();
        s.set_at("k", "v", Some(Duration::from_secs(10)), t0);
        s.set_at("forever", "x", None, t0);
        assert_eq!(
            s.get_at("k", t0 + Duration::from_secs(9)).as_deref(),
            Some("v")
        );
        assert_eq!(s.get_at("k", t0 + Duration::from_secs(10)), None);
        assert_eq!(s.len(), 1, "an expired key is removed when read");
        let far = t0 + Duration::from_secs(1_000_000);
        assert_eq!(s.get_at("forever", far).as_deref(), Some("x"));
        assert_eq!(s.get_at("absent", t0), None);
    }

    #[test]
    fn overwriting_replaces_value_and_ttl() {
        let s = MemoryStore::new();
        let t0 = Instant::now();
        s.set_at("k", "a", Some(Duration::from_secs(1)), t0);
        s.set_at("k", "b", None, t0);
        assert_eq!(
            s.get_at("k", t0 + Duration::from_secs(5)).as_deref(),
            Some("b")
        );
    }

    #[test]
    fn writes_sweep_out_expired_keys() {
        let s = MemoryStore::new();
        let t0 = Instant::now();
        for i in 0..100 {
            s.set_at(&format!("old{i}"), "v", Some(Duration::from_secs(1)), t0);
        }
        let later = t0 + Duration::from_secs(2);
        for i in 0..SWEEP_EVERY {
            s.set_at(&format!("new{i}"), "v", None, later);
        }
        assert_eq!(
            s.len(),
            SWEEP_EVERY as usize,
            "the 100 expired keys were swept"
        );
    }

    #[test]
    fn ttl_convention_matches_tyk() {
        assert_eq!(super::super::ttl_from_seconds(0), None);
        assert_eq!(super::super::ttl_from_seconds(-3), None);
        assert_eq!(
            super::super::ttl_from_seconds(5),
            Some(Duration::from_secs(5))
        );
    }
}
