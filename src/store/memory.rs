//! The embedded store: a mutex-guarded map with lazy expiry plus an occasional sweep, so keys written once
//! and never read again do not pile up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Namespace, Store, StoreError};

/// Every this many writes, expired entries are swept out.
const SWEEP_EVERY: u32 = 1024;

/// One map per [`Namespace`], so no key a plugin passes reaches the auth cache.
#[derive(Default)]
pub struct MemoryStore {
    spaces: [Mutex<Inner>; 2],
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

    fn lock(&self, ns: Namespace) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent (single-step updates),
        // so a poisoned lock is still usable.
        self.spaces[ns.index()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn set_at(&self, ns: Namespace, key: &str, value: &str, ttl: Option<Duration>, now: Instant) {
        let mut inner = self.lock(ns);
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

    fn get_at(&self, ns: Namespace, key: &str, now: Instant) -> Option<String> {
        let mut inner = self.lock(ns);
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
        Namespace::ALL
            .iter()
            .map(|&ns| self.lock(ns).entries.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (on `CoProcessShutdown`).
    pub fn clear(&self) {
        for ns in Namespace::ALL {
            self.lock(ns).entries.clear();
        }
    }
}

impl Store for MemoryStore {
    fn set(
        &self,
        ns: Namespace,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.set_at(ns, key, value, ttl, Instant::now());
        Ok(())
    }

    fn get(&self, ns: Namespace, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get_at(ns, key, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const D: Namespace = Namespace::Data;

    #[test]
    fn values_expire_after_their_ttl() {
        let s = MemoryStore::new();
        let t0 = Instant::now();
        s.set_at(D, "k", "v", Some(Duration::from_secs(10)), t0);
        s.set_at(D, "forever", "x", None, t0);
        assert_eq!(
            s.get_at(D, "k", t0 + Duration::from_secs(9)).as_deref(),
            Some("v")
        );
        assert_eq!(s.get_at(D, "k", t0 + Duration::from_secs(10)), None);
        assert_eq!(s.len(), 1, "an expired key is removed when read");
        let far = t0 + Duration::from_secs(1_000_000);
        assert_eq!(s.get_at(D, "forever", far).as_deref(), Some("x"));
        assert_eq!(s.get_at(D, "absent", t0), None);
    }

    #[test]
    fn overwriting_replaces_value_and_ttl() {
        let s = MemoryStore::new();
        let t0 = Instant::now();
        s.set_at(D, "k", "a", Some(Duration::from_secs(1)), t0);
        s.set_at(D, "k", "b", None, t0);
        assert_eq!(
            s.get_at(D, "k", t0 + Duration::from_secs(5)).as_deref(),
            Some("b")
        );
    }

    #[test]
    fn writes_sweep_out_expired_keys() {
        let s = MemoryStore::new();
        let t0 = Instant::now();
        for i in 0..100 {
            s.set_at(D, &format!("old{i}"), "v", Some(Duration::from_secs(1)), t0);
        }
        let later = t0 + Duration::from_secs(2);
        for i in 0..SWEEP_EVERY {
            s.set_at(D, &format!("new{i}"), "v", None, later);
        }
        assert_eq!(
            s.len(),
            SWEEP_EVERY as usize,
            "the 100 expired keys were swept"
        );
    }

    #[test]
    fn namespaces_are_separate() {
        let s = MemoryStore::new();
        let t0 = Instant::now();
        s.set_at(D, "k", "plugin", None, t0);
        assert_eq!(s.get_at(Namespace::AuthCache, "k", t0), None);
        s.set_at(Namespace::AuthCache, "k", "session", None, t0);
        assert_eq!(s.get_at(D, "k", t0).as_deref(), Some("plugin"));
        assert_eq!(
            s.get_at(Namespace::AuthCache, "k", t0).as_deref(),
            Some("session")
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
