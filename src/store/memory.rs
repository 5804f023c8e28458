//! The embedded store, bounded and without long locks.
//!
//! Each [`Namespace`] has its own budget ([`MemoryLimits`]: entries and bytes) and its own
//! [`SHARDS`] shards, each a mutex-guarded table; no lock ever covers more than one shard. A key is
//! hashed once per call, with a keyed hash ([`KeyHasher`]: keys are chosen by clients and plugins), and
//! that one hash picks the shard and finds the entry in it. Expiry never scans: a read drops the
//! expired entry it finds, and each shard keeps its entries that have a TTL ordered by deadline, so
//! every write also drops at most [`SWEEP_BATCH`] expired entries from the front of its shard's order.
//!
//! A write that would exceed the budget first drops every expired entry of the namespace (again from
//! the fronts of the deadline orders, one shard at a time). If that is not enough:
//! - plugin data ([`Namespace::Data`]) refuses the write with an error, as Redis does under
//!   `maxmemory` with its default `noeviction` policy: a plugin learns it, nothing it stored vanishes;
//! - the auth cache ([`Namespace::AuthCache`]) evicts the sessions closest to their deadline: an
//!   evicted session only costs one more call of the auth plugin.
//!
//! Both are counted ([`MemoryStore::stats`]) and reported through the notifier (the bridge's log),
//! at most once per [`NOTICE_INTERVAL`] with the counts since the last notice.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;
use hashbrown::HashTable;

use super::{Namespace, Notices, Store, StoreError};
use crate::logging::Level;

/// Shards per namespace: enough that 2–64 gateway threads rarely meet on one lock.
pub const SHARDS: usize = 16;
/// Expired entries a write removes from its shard, at most.
pub const SWEEP_BATCH: usize = 8;
/// Bytes an entry costs beyond its key and value (map slot, allocation headers, deadline), roughly.
pub const ENTRY_OVERHEAD: usize = 64;
/// Refusals and evictions are logged at most this often.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(10);

/// The budget of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    pub max_entries: usize,
    /// Keys, values and [`ENTRY_OVERHEAD`] per entry (a key with a TTL counts twice, for its place
    /// in the deadline order).
    pub max_bytes: usize,
}

impl Default for MemoryLimits {
    /// What a gateway host can afford per namespace without noticing: a million entries, 256 MiB.
    fn default() -> Self {
        MemoryLimits {
            max_entries: 1_000_000,
            max_bytes: 256 << 20,
        }
    }
}

/// Counters of one namespace since the store was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub entries: usize,
    pub bytes: usize,
    /// Writes refused because the namespace was full.
    pub refused: u64,
    /// Entries evicted (auth cache) to make room.
    pub evicted: u64,
    /// Expired entries removed.
    pub expired: u64,
}

pub struct MemoryStore {
    spaces: [Space; 2],
    epoch: Instant,
    /// Where notices about a full namespace go (the bridge's log).
    pub notices: Notices,
}

/// The keyed hash of the store's keys: foldhash (a few ns for a session key, where SipHash took tens),
/// seeded from the OS's randomness through std's `RandomState`, so that nobody who does not know the
/// seed can choose keys that collide (HashDoS).
struct KeyHasher(SeedableRandomState);

impl KeyHasher {
    fn random() -> KeyHasher {
        static SHARED: OnceLock<SharedSeed> = OnceLock::new();
        let entropy = std::collections::hash_map::RandomState::new();
        let shared = SHARED.get_or_init(|| SharedSeed::from_u64(entropy.hash_one(0u8)));
        KeyHasher(SeedableRandomState::with_seed(
            entropy.hash_one(1u8),
            shared,
        ))
    }

    fn hash(&self, key: &str) -> u64 {
        self.0.hash_one(key)
    }
}

/// The shard of a key's hash: from bits the table does not use to place entries (it uses the low
/// bits and the top seven), so that the entries of one shard still spread over its table.
fn shard_of(hash: u64) -> usize {
    (hash >> 40) as usize % SHARDS
}

struct Space {
    ns: Namespace,
    shards: Vec<Mutex<Shard>>,
    hasher: KeyHasher,
    max_entries: AtomicUsize,
    max_bytes: AtomicUsize,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    refused: AtomicU64,
    evicted: AtomicU64,
    expired: AtomicU64,
    /// Refusals + evictions already reported, and when (ms since `epoch`; 0 = never).
    reported: AtomicU64,
    last_notice_ms: AtomicU64,
}

#[derive(Default)]
struct Shard {
    /// The entries, each found by its key's hash (kept in the entry: the table never rehashes a key).
    map: HashTable<Entry>,
    /// Entries with a TTL by (deadline, sequence number), each with its key's hash: the front is the
    /// next to expire. A deadline is unique, so it and the hash find the entry in `map`.
    deadlines: BTreeMap<(Instant, u64), u64>,
    seq: u64,
}

struct Entry {
    hash: u64,
    key: String,
    value: String,
    deadline: Option<(Instant, u64)>,
}

fn cost(key: &str, value: &str, ttl: bool) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD + if ttl { key.len() } else { 0 }
}

impl Entry {
    fn cost(&self) -> usize {
        cost(&self.key, &self.value, self.deadline.is_some())
    }
}

impl Shard {
    fn get(&self, hash: u64, key: &str) -> Option<&Entry> {
        self.map.find(hash, |e| e.key == key)
    }

    fn remove(&mut self, hash: u64, key: &str) -> Option<(Entry, usize)> {
        let (e, _) = self.map.find_entry(hash, |e| e.key == key).ok()?.remove();
        if let Some(d) = e.deadline {
            self.deadlines.remove(&d);
        }
        let c = e.cost();
        Some((e, c))
    }

    fn insert(&mut self, entry: Entry) {
        self.map.insert_unique(entry.hash, entry, |e| e.hash);
    }

    /// Removes the entry with this deadline (already taken off the deadline order); returns its cost.
    fn remove_deadline(&mut self, deadline: (Instant, u64), hash: u64) -> Option<usize> {
        let found = self.map.find_entry(hash, |e| e.deadline == Some(deadline));
        let (e, _) = found.ok()?.remove();
        Some(e.cost())
    }

    /// Removes up to `limit` entries whose deadline is at or before `now`; returns (count, bytes).
    fn drop_expired(&mut self, now: Instant, limit: usize) -> (usize, usize) {
        let (mut n, mut bytes) = (0, 0);
        while n < limit {
            match self.deadlines.first_key_value() {
                Some((&(t, _), _)) if t <= now => {}
                _ => break,
            }
            let (deadline, hash) = self.deadlines.pop_first().expect("just seen");
            if let Some(c) = self.remove_deadline(deadline, hash) {
                bytes += c;
                n += 1;
            }
        }
        (n, bytes)
    }

    /// Removes the entry closest to its deadline; returns its cost.
    fn evict_soonest(&mut self) -> Option<usize> {
        let (deadline, hash) = self.deadlines.pop_first()?;
        self.remove_deadline(deadline, hash)
    }
}

impl Space {
    fn new(ns: Namespace, limits: MemoryLimits) -> Space {
        Space {
            ns,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: KeyHasher::random(),
            max_entries: AtomicUsize::new(limits.max_entries),
            max_bytes: AtomicUsize::new(limits.max_bytes),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            last_notice_ms: AtomicU64::new(0),
        }
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // Every update of a shard completes before its lock is released, except for a panic in an
        // allocation, after which the shard is still consistent: a poisoned lock stays usable.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn released(&self, entries: usize, bytes: usize) {
        self.entries.fetch_sub(entries, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Takes `entries`/`bytes` more from the budget, or nothing when they do not fit. The counters
    /// never pass the limits, not even for a moment.
    fn reserve(&self, entries: usize, bytes: usize) -> bool {
        let take = |counter: &AtomicUsize, n: usize, max: usize| {
            n == 0
                || counter
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                        (cur + n <= max).then_some(cur + n)
                    })
                    .is_ok()
        };
        if !take(
            &self.entries,
            entries,
            self.max_entries.load(Ordering::Relaxed),
        ) {
            return false;
        }
        if !take(&self.bytes, bytes, self.max_bytes.load(Ordering::Relaxed)) {
            self.entries.fetch_sub(entries, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// One write attempt under the key's shard lock; `false` when the budget refused it (nothing
    /// changed then).
    fn try_set(&self, key: &str, value: &str, ttl: Option<Duration>, now: Instant) -> bool {
        let hash = self.hasher.hash(key);
        let mut shard = self.lock(shard_of(hash));
        let (n, freed) = shard.drop_expired(now, SWEEP_BATCH);
        self.expired.fetch_add(n as u64, Ordering::Relaxed);
        self.released(n, freed);
        let new_cost = cost(key, value, ttl.is_some());
        let (old_entries, old_cost) = match shard.get(hash, key) {
            Some(e) => (1, e.cost()),
            None => (0, 0),
        };
        if !self.reserve(1 - old_entries, new_cost.saturating_sub(old_cost)) {
            return false;
        }
        shard.remove(hash, key);
        self.released(0, old_cost.saturating_sub(new_cost));
        let deadline = ttl.map(|d| {
            shard.seq += 1;
            (now + d, shard.seq)
        });
        if let Some(d) = deadline {
            shard.deadlines.insert(d, hash);
        }
        shard.insert(Entry {
            hash,
            key: key.to_owned(),
            value: value.to_owned(),
            deadline,
        });
        true
    }

    /// Drops every expired entry of the namespace, one shard at a time.
    fn drop_all_expired(&self, now: Instant) {
        for i in 0..SHARDS {
            let (n, bytes) = self.lock(i).drop_expired(now, usize::MAX);
            self.expired.fetch_add(n as u64, Ordering::Relaxed);
            self.released(n, bytes);
        }
    }

    /// Evicts the entries closest to their deadline (the earliest of the shards' fronts, each shard
    /// locked in turn) until `bytes` more and one more entry would fit or nothing is left to evict.
    fn evict_for(&self, bytes: usize) {
        let fits = || {
            self.entries.load(Ordering::Relaxed) < self.max_entries.load(Ordering::Relaxed)
                && self.bytes.load(Ordering::Relaxed) + bytes
                    <= self.max_bytes.load(Ordering::Relaxed)
        };
        while !fits() {
            let soonest = (0..SHARDS)
                .filter_map(|i| Some((self.lock(i).deadlines.first_key_value()?.0 .0, i)))
                .min();
            let Some((_, i)) = soonest else {
                return; // nothing with a deadline left
            };
            if let Some(c) = self.lock(i).evict_soonest() {
                self.evicted.fetch_add(1, Ordering::Relaxed);
                self.released(1, c);
            }
        }
    }

    fn get(&self, key: &str, now: Instant) -> Option<String> {
        let mut value = None;
        self.read(key, now, &mut |v| value = Some(v.to_owned()));
        value
    }

    /// Calls `f` with the live value under `key`, in place (under the shard's lock).
    fn read(&self, key: &str, now: Instant, f: &mut dyn FnMut(&str)) {
        let hash = self.hasher.hash(key);
        let mut shard = self.lock(shard_of(hash));
        let Some(e) = shard.get(hash, key) else {
            return;
        };
        if e.deadline.is_none_or(|(t, _)| now < t) {
            return f(&e.value);
        }
        let (_, c) = shard.remove(hash, key).expect("present");
        self.expired.fetch_add(1, Ordering::Relaxed);
        self.released(1, c);
    }

    fn stats(&self) -> MemoryStats {
        MemoryStats {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }

    fn limits(&self) -> MemoryLimits {
        MemoryLimits {
            max_entries: self.max_entries.load(Ordering::Relaxed),
            max_bytes: self.max_bytes.load(Ordering::Relaxed),
        }
    }

    fn clear(&self) {
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            let bytes: usize = shard.map.iter().map(Entry::cost).sum();
            let n = shard.map.len();
            *shard = Shard::default();
            self.released(n, bytes);
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(MemoryLimits::default())
    }
}

impl MemoryStore {
    /// A store with `limits` for each namespace.
    pub fn new(limits: MemoryLimits) -> Self {
        MemoryStore {
            spaces: Namespace::ALL.map(|ns| Space::new(ns, limits)),
            epoch: Instant::now(),
            notices: Notices::default(),
        }
    }

    /// Changes the budget of every namespace; entries already stored stay (later writes make room).
    pub fn set_limits(&self, limits: MemoryLimits) {
        for s in &self.spaces {
            s.max_entries.store(limits.max_entries, Ordering::Relaxed);
            s.max_bytes.store(limits.max_bytes, Ordering::Relaxed);
        }
    }

    pub fn limits(&self) -> MemoryLimits {
        self.spaces[0].limits()
    }

    pub fn stats(&self, ns: Namespace) -> MemoryStats {
        self.space(ns).stats()
    }

    fn space(&self, ns: Namespace) -> &Space {
        &self.spaces[ns.index()]
    }

    fn set_at(
        &self,
        ns: Namespace,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<(), StoreError> {
        let space = self.space(ns);
        if space.try_set(key, value, ttl, now) {
            return Ok(());
        }
        space.drop_all_expired(now);
        let needed = cost(key, value, ttl.is_some());
        // Evicting cannot make room for an entry larger than the whole budget.
        if ns == Namespace::AuthCache && needed <= space.limits().max_bytes {
            space.evict_for(needed);
        }
        if space.try_set(key, value, ttl, now) {
            self.notice(space, now);
            return Ok(());
        }
        space.refused.fetch_add(1, Ordering::Relaxed);
        self.notice(space, now);
        let l = space.limits();
        Err(StoreError(format!(
            "the embedded store's {} space is full ({} entries, {} bytes; limits {} entries, {} \
             bytes): write refused",
            ns.as_str(),
            space.entries.load(Ordering::Relaxed),
            space.bytes.load(Ordering::Relaxed),
            l.max_entries,
            l.max_bytes
        )))
    }

    /// Reports refusals and evictions not reported yet, at most once per [`NOTICE_INTERVAL`].
    fn notice(&self, space: &Space, now: Instant) {
        let s = space.stats();
        let total = s.refused + s.evicted;
        if total == space.reported.load(Ordering::Relaxed) {
            return; // room was made from expired entries alone
        }
        let now_ms = (now.saturating_duration_since(self.epoch).as_millis() as u64).max(1);
        let last = space.last_notice_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms < last + NOTICE_INTERVAL.as_millis() as u64 {
            return;
        }
        if space
            .last_notice_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another thread reports
        }
        let before = space.reported.swap(total, Ordering::Relaxed);
        let l = space.limits();
        let text = format!(
            "embedded store: the {} space is full (limits {} entries, {} bytes): {} writes refused \
             and {} entries evicted so far ({} since the last notice)",
            space.ns.as_str(),
            l.max_entries,
            l.max_bytes,
            s.refused,
            s.evicted,
            total.saturating_sub(before)
        );
        self.notices.send(Level::Warning, &text);
    }

    fn get_at(&self, ns: Namespace, key: &str, now: Instant) -> Option<String> {
        self.space(ns).get(key, now)
    }

    /// Number of entries held, expired or not, in every namespace (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.spaces.iter().map(|s| s.stats().entries).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (on `CoProcessShutdown`).
    pub fn clear(&self) {
        for s in &self.spaces {
            s.clear();
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
        self.set_at(ns, key, value, ttl, Instant::now())
    }

    fn get(&self, ns: Namespace, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get_at(ns, key, Instant::now()))
    }

    fn read(&self, ns: Namespace, key: &str, f: &mut dyn FnMut(&str)) -> Result<(), StoreError> {
        self.space(ns).read(key, Instant::now(), f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    const D: Namespace = Namespace::Data;
    const A: Namespace = Namespace::AuthCache;

    fn small(max_entries: usize, max_bytes: usize) -> MemoryStore {
        MemoryStore::new(MemoryLimits {
            max_entries,
            max_bytes,
        })
    }

    /// The accounting matches what the shards hold, and the deadline orders hold exactly the entries
    /// with a TTL.
    fn assert_consistent(s: &MemoryStore) {
        for space in &s.spaces {
            let (mut n, mut bytes) = (0, 0);
            for i in 0..SHARDS {
                let shard = space.lock(i);
                n += shard.map.len();
                bytes += shard.map.iter().map(Entry::cost).sum::<usize>();
                let with_ttl = shard.map.iter().filter(|e| e.deadline.is_some()).count();
                assert_eq!(shard.deadlines.len(), with_ttl);
                for (d, hash) in &shard.deadlines {
                    let e = shard.map.find(*hash, |e| e.deadline == Some(*d));
                    assert_eq!(e.map(|e| e.hash), Some(*hash));
                }
                for e in shard.map.iter() {
                    assert_eq!(e.hash, space.hasher.hash(&e.key));
                    assert_eq!(shard_of(e.hash), i, "in its key's shard");
                }
            }
            let st = space.stats();
            assert_eq!((st.entries, st.bytes), (n, bytes), "{:?}", space.ns);
        }
    }

    #[test]
    fn values_expire_after_their_ttl() {
        let s = MemoryStore::default();
        let t0 = Instant::now();
        s.set_at(D, "k", "v", Some(Duration::from_secs(10)), t0)
            .unwrap();
        s.set_at(D, "forever", "x", None, t0).unwrap();
        assert_eq!(
            s.get_at(D, "k", t0 + Duration::from_secs(9)).as_deref(),
            Some("v")
        );
        assert_eq!(s.get_at(D, "k", t0 + Duration::from_secs(10)), None);
        assert_eq!(s.len(), 1, "an expired key is removed when read");
        let far = t0 + Duration::from_secs(1_000_000);
        assert_eq!(s.get_at(D, "forever", far).as_deref(), Some("x"));
        assert_eq!(s.get_at(D, "absent", t0), None);
        assert_consistent(&s);
    }

    #[test]
    fn overwriting_replaces_value_and_ttl_without_growing_the_deadline_order() {
        let s = MemoryStore::default();
        let t0 = Instant::now();
        for i in 0..1000 {
            s.set_at(D, "k", &i.to_string(), Some(Duration::from_secs(1)), t0)
                .unwrap();
        }
        assert_consistent(&s);
        s.set_at(D, "k", "b", None, t0).unwrap();
        assert_eq!(
            s.get_at(D, "k", t0 + Duration::from_secs(5)).as_deref(),
            Some("b")
        );
        assert_consistent(&s);
    }

    #[test]
    fn namespaces_are_separate_with_separate_budgets() {
        let s = small(2, 1 << 20);
        let t0 = Instant::now();
        s.set_at(D, "k", "plugin", None, t0).unwrap();
        assert_eq!(s.get_at(A, "k", t0), None);
        s.set_at(D, "k2", "plugin", None, t0).unwrap();
        assert!(s.set_at(D, "k3", "x", None, t0).is_err(), "data is full");
        s.set_at(A, "k", "session", Some(Duration::from_secs(9)), t0)
            .unwrap();
        assert_eq!(s.get_at(D, "k", t0).as_deref(), Some("plugin"));
        assert_eq!(s.get_at(A, "k", t0).as_deref(), Some("session"));
    }

    #[test]
    fn writes_sweep_expired_keys_a_few_at_a_time() {
        let s = MemoryStore::default();
        let t0 = Instant::now();
        for i in 0..1000 {
            s.set_at(D, &format!("old{i}"), "v", Some(Duration::from_secs(1)), t0)
                .unwrap();
        }
        let later = t0 + Duration::from_secs(2);
        s.set_at(D, "new", "v", None, later).unwrap();
        let swept = s.stats(D).expired;
        assert!(
            (1..=SWEEP_BATCH as u64).contains(&swept),
            "one write removes at most {SWEEP_BATCH} expired entries: {swept}"
        );
        for i in 0..2000 {
            s.set_at(D, &format!("new{i}"), "v", None, later).unwrap();
        }
        assert_eq!(s.stats(D).expired, 1000, "all swept by later writes");
        assert_eq!(s.len(), 2001);
        assert_consistent(&s);
    }

    #[test]
    fn a_full_data_space_refuses_counts_and_notifies() {
        let s = small(10, 1 << 20);
        let notices = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = notices.clone();
        s.notices.set(Some(Arc::new(move |_, m: &str| {
            sink.lock().unwrap().push(m.to_owned())
        })));
        let t0 = Instant::now();
        for i in 0..10 {
            s.set_at(D, &format!("k{i}"), "v", None, t0).unwrap();
        }
        let e = s.set_at(D, "k10", "v", None, t0).unwrap_err();
        assert!(
            e.0.starts_with("the embedded store's data space is full (10 entries"),
            "{}",
            e.0
        );
        s.set_at(D, "k3", "overwrite", None, t0)
            .expect("an overwrite needs no room");
        for i in 11..20 {
            assert!(s.set_at(D, &format!("k{i}"), "v", None, t0).is_err());
        }
        assert_eq!(
            s.get_at(D, "k0", t0).as_deref(),
            Some("v"),
            "nothing evicted"
        );
        let st = s.stats(D);
        assert_eq!((st.entries, st.refused, st.evicted), (10, 10, 0));
        let notices = notices.lock().unwrap();
        assert_eq!(notices.len(), 1, "one notice per interval: {notices:?}");
        assert!(
            notices[0].contains("data space is full") && notices[0].contains("1 writes refused"),
            "{}",
            notices[0]
        );
        assert_consistent(&s);
    }

    #[test]
    fn expired_entries_make_room_before_anything_is_refused() {
        let s = small(10, 1 << 20);
        let t0 = Instant::now();
        for i in 0..10 {
            s.set_at(D, &format!("k{i}"), "v", Some(Duration::from_secs(1)), t0)
                .unwrap();
        }
        let later = t0 + Duration::from_secs(2);
        for i in 10..20 {
            s.set_at(D, &format!("k{i}"), "v", None, later).unwrap();
        }
        assert_eq!(s.stats(D).refused, 0);
        assert_consistent(&s);
    }

    #[test]
    fn the_byte_budget_counts_keys_and_values() {
        let s = small(1000, 1000);
        let t0 = Instant::now();
        let big = "x".repeat(600);
        s.set_at(D, "a", &big, None, t0).unwrap();
        let e = s.set_at(D, "b", &big, None, t0).unwrap_err();
        assert!(e.0.contains("limits 1000 entries, 1000 bytes"), "{}", e.0);
        s.set_at(D, "a", "small", None, t0).unwrap();
        s.set_at(D, "b", &big, None, t0)
            .expect("room freed by shrinking a");
        assert!(s.set_at(D, "c", &"y".repeat(2000), None, t0).is_err());
        assert_consistent(&s);
    }

    #[test]
    fn a_full_auth_cache_evicts_the_sessions_closest_to_their_deadline() {
        let s = small(3, 1 << 20);
        let t0 = Instant::now();
        for (k, secs) in [("s30", 30), ("s10", 10), ("s20", 20)] {
            s.set_at(A, k, "session", Some(Duration::from_secs(secs)), t0)
                .unwrap();
        }
        s.set_at(A, "s40", "session", Some(Duration::from_secs(40)), t0)
            .unwrap();
        assert_eq!(s.get_at(A, "s10", t0), None, "the soonest deadline went");
        for k in ["s20", "s30", "s40"] {
            assert!(s.get_at(A, k, t0).is_some(), "{k}");
        }
        let st = s.stats(A);
        assert_eq!((st.entries, st.evicted, st.refused), (3, 1, 0));
        assert_consistent(&s);
    }

    #[test]
    fn many_threads_never_exceed_the_budget() {
        let s = Arc::new(small(500, 1 << 20));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..400 {
                        let ttl = (i % 3 == 0).then(|| Duration::from_millis(1));
                        let _ = s.set(D, &format!("t{t}-{i}"), "value", ttl);
                        let _ = s.set(
                            A,
                            &format!("t{t}-{i}"),
                            "session",
                            Some(Duration::from_secs(60)),
                        );
                        assert!(s.stats(D).entries <= 500 && s.stats(A).entries <= 500);
                        let _ = s.get(D, &format!("t{t}-{}", i / 2));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let a = s.stats(A);
        assert!(a.entries <= 500 && a.entries > 400, "{a:?}");
        assert_eq!(
            a.entries as u64 + a.evicted + a.refused,
            3200,
            "every session is held, evicted or (raced out of its room) refused: {a:?}"
        );
        assert!(a.evicted > a.refused, "{a:?}");
        assert_consistent(&s);
        s.clear();
        assert_eq!(
            s.stats(D),
            MemoryStats {
                refused: s.stats(D).refused,
                expired: s.stats(D).expired,
                ..Default::default()
            }
        );
        assert_consistent(&s);
    }

    /// Keys are hashed with a secret seed of each store (no one can pick keys that collide in all
    /// of them), and the one hash per key spreads them over every shard and finds them there.
    #[test]
    fn keys_hash_with_a_seed_of_each_store_and_spread_over_the_shards() {
        let (a, b) = (KeyHasher::random(), KeyHasher::random());
        assert_ne!(
            a.hash("id-extractor-session:k"),
            b.hash("id-extractor-session:k")
        );
        let s = MemoryStore::default();
        let t0 = Instant::now();
        let key = |i: usize| format!("id-extractor-session:org{i:032x}");
        for i in 0..2000 {
            s.set_at(A, &key(i), "v", Some(Duration::from_secs(60)), t0)
                .unwrap();
        }
        let space = s.space(A);
        let sizes: Vec<usize> = (0..SHARDS).map(|i| space.lock(i).map.len()).collect();
        assert!(
            sizes.iter().all(|&n| n > 2000 / SHARDS / 2),
            "unevenly spread: {sizes:?}"
        );
        for i in 0..2000 {
            assert_eq!(s.get_at(A, &key(i), t0).as_deref(), Some("v"));
        }
        assert_consistent(&s);
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
