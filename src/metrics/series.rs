//! Series keyed by (API, hook, driver), counted per thread: each thread finds its own cell for a
//! series in a thread-local map and writes it without locking. The registry lock is taken when a
//! thread meets a series for the first time, when a thread ends (its counts are folded into the
//! series' retired totals, so nothing is lost and dead threads leave nothing behind) and to read.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHasher;

use super::histogram::{Cell, Totals};

/// Series beyond this many are counted together under [`OVERFLOW`] labels: labels come from
/// configuration (API ids, hook names, driver names), but no configuration may make memory grow
/// without bound.
pub(crate) const MAX_SERIES: usize = 10_000;
pub(crate) const OVERFLOW: &str = "_other";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub api: Box<str>,
    pub hook: Box<str>,
    pub driver: Box<str>,
}

impl SeriesKey {
    fn new(api: &str, hook: &str, driver: &str) -> SeriesKey {
        SeriesKey {
            api: api.into(),
            hook: hook.into(),
            driver: driver.into(),
        }
    }

    fn overflow() -> SeriesKey {
        SeriesKey::new(OVERFLOW, OVERFLOW, OVERFLOW)
    }

    fn is(&self, api: &str, hook: &str, driver: &str) -> bool {
        same_label(&self.hook, hook)
            && same_label(&self.api, api)
            && same_label(&self.driver, driver)
    }
}

/// `a == b` for the short labels compared on every metered call, without a call into libc's
/// `memcmp`: perf put ≈ 100 ns of a dispatch on three such calls (glibc's vector `memcmp` on a
/// path otherwise run with SSE code), far more than the bytes compared. Whole words only: a tail
/// shorter than a word is compared as the (overlapping) last word, or two overlapping halves.
#[inline]
fn same_label(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_ne_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if word(a, i) != word(b, i) {
                return false;
            }
            i += 8;
        }
        return word(a, n - 8) == word(b, n - 8);
    }
    if n >= 4 {
        return half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4);
    }
    // Under 4 bytes, one at a time; `black_box` keeps the compiler from turning it into `memcmp`.
    (0..n).all(|j| std::hint::black_box(a[j]) == b[j])
}

#[derive(Default)]
struct Series {
    live: Vec<Arc<Cell>>,
    retired: Totals,
}

/// All series of one metrics instance.
pub struct SeriesSet {
    id: u64,
    registry: Mutex<BTreeMap<SeriesKey, Series>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Default for SeriesSet {
    fn default() -> Self {
        SeriesSet {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry: Mutex::new(BTreeMap::new()),
        }
    }
}

struct Entry {
    set: Arc<SeriesSet>,
    /// `set.id`, kept here so that checking an entry does not follow the `Arc`.
    set_id: u64,
    /// The labels the thread asked for; the cell is in the overflow series when `overflow`.
    labels: SeriesKey,
    overflow: bool,
    cell: Arc<Cell>,
    /// The entry the thread asked for right after this one last time (`usize::MAX`: none yet).
    next: usize,
}

impl Entry {
    fn registry_key(&self) -> SeriesKey {
        if self.overflow {
            SeriesKey::overflow()
        } else {
            self.labels.clone()
        }
    }

    /// Whether this is the cell of the series (api, hook, driver) of the set `id`.
    fn is(&self, id: u64, api: &str, hook: &str, driver: &str) -> bool {
        self.set_id == id && self.labels.is(api, hook, driver)
    }
}

/// How many recently used entries a thread checks before it hashes the labels.
const RECENT: usize = 4;

/// The calling thread's cells. Entries are only added while the thread lives, so an index into
/// `entries` (a [`Slot`]) names the same cell until the thread ends.
struct Local {
    entries: Vec<Entry>,
    /// Indexes into `entries`, by a hash of (set, api, hook, driver).
    by_hash: HashMap<u64, Vec<usize>, BuildHasherDefault<PassThrough>>,
    /// The entries found last, newest first (`usize::MAX`: none): a thread that runs the same few
    /// hooks again, such as the hooks of a chain one after another, skips the hash.
    recent: [usize; RECENT],
    /// The entry found last (`usize::MAX`: none): its `next` is the guess for the following call,
    /// right whenever the thread runs the same sequence of series again (a chain's hooks in order).
    last: usize,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            entries: Vec::new(),
            by_hash: HashMap::default(),
            recent: [usize::MAX; RECENT],
            last: usize::MAX,
        }
    }
}

impl Local {
    /// The entry that followed the last one found last time, if it has these labels.
    fn find_predicted(&self, id: u64, api: &str, hook: &str, driver: &str) -> Option<usize> {
        let next = self.entries.get(self.last)?.next;
        self.entries
            .get(next)
            .is_some_and(|e| e.is(id, api, hook, driver))
            .then_some(next)
    }

    /// Entry `i` is the one found now: it becomes the predicted successor of the previous one.
    fn note_found(&mut self, i: usize) {
        if let Some(previous) = self.entries.get_mut(self.last) {
            previous.next = i;
        }
        self.last = i;
    }

    /// An entry of `recent` with these labels.
    fn find_recent(&self, id: u64, api: &str, hook: &str, driver: &str) -> Option<usize> {
        self.recent.iter().copied().find(|&i| {
            self.entries
                .get(i)
                .is_some_and(|e| e.is(id, api, hook, driver))
        })
    }

    /// Makes entry `i` the newest of `recent`.
    fn note_recent(&mut self, i: usize) {
        self.recent.rotate_right(1);
        self.recent[0] = i;
    }

    fn find(&self, id: u64, api: &str, hook: &str, driver: &str, hash: u64) -> Option<usize> {
        self.by_hash.get(&hash).and_then(|indexes| {
            indexes
                .iter()
                .copied()
                .find(|&i| self.entries[i].is(id, api, hook, driver))
        })
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        for entry in &self.entries {
            entry.set.retire(&entry.registry_key(), &entry.cell);
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// The calling thread's cell of one series, as found by [`SeriesSet::with_cell_slot`]: reaching it
/// again through the slot costs no lookup. Only meaningful on the thread that found it (not `Send`).
#[derive(Clone, Copy)]
pub struct Slot {
    index: usize,
    _this_thread: PhantomData<*const ()>,
}

/// The map keys are already hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl SeriesSet {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<SeriesKey, Series>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the calling thread's cell of the series. Does nothing (`None`) on a thread that
    /// is being torn down (its thread-locals are gone).
    pub fn with_cell<R>(
        self: &Arc<Self>,
        api: &str,
        hook: &str,
        driver: &str,
        f: impl FnOnce(&Cell) -> R,
    ) -> Option<R> {
        self.with_cell_slot(api, hook, driver, f).map(|(r, _)| r)
    }

    /// [`Self::with_cell`], also returning the cell's [`Slot`] for [`Self::with_slot`] (`None` for a
    /// series the thread does not keep: see `MAX_SERIES`).
    pub fn with_cell_slot<R>(
        self: &Arc<Self>,
        api: &str,
        hook: &str,
        driver: &str,
        f: impl FnOnce(&Cell) -> R,
    ) -> Option<(R, Option<Slot>)> {
        LOCAL
            .try_with(|local| {
                let mut local = local.borrow_mut();
                let slot = |index| Slot {
                    index,
                    _this_thread: PhantomData,
                };
                if let Some(i) = local.find_predicted(self.id, api, hook, driver) {
                    local.last = i;
                    return (f(&local.entries[i].cell), Some(slot(i)));
                }
                if let Some(i) = local.find_recent(self.id, api, hook, driver) {
                    local.note_found(i);
                    return (f(&local.entries[i].cell), Some(slot(i)));
                }
                let mut h = FxHasher::default();
                (self.id, api, hook, driver).hash(&mut h);
                let hash = h.finish();
                if let Some(i) = local.find(self.id, api, hook, driver, hash) {
                    local.note_recent(i);
                    local.note_found(i);
                    return (f(&local.entries[i].cell), Some(slot(i)));
                }
                let labels = SeriesKey::new(api, hook, driver);
                let (overflow, cell) = self.register(&labels);
                let r = f(&cell);
                let entry = Entry {
                    set: Arc::clone(self),
                    set_id: self.id,
                    labels,
                    overflow,
                    cell,
                    next: usize::MAX,
                };
                if local.entries.len() < 2 * MAX_SERIES {
                    let i = local.entries.len();
                    local.entries.push(entry);
                    local.by_hash.entry(hash).or_default().push(i);
                    local.note_recent(i);
                    local.note_found(i);
                    (r, Some(slot(i)))
                } else {
                    // Not kept: the cell goes back to the registry's retired totals at once.
                    self.retire(&entry.registry_key(), &entry.cell);
                    (r, None)
                }
            })
            .ok()
    }

    /// Runs `f` on the cell `slot` names, found earlier on this thread in this set. `None` on a
    /// thread being torn down, or for a slot of another set.
    pub fn with_slot<R>(&self, slot: Slot, f: impl FnOnce(&Cell) -> R) -> Option<R> {
        LOCAL
            .try_with(|local| {
                let local = local.borrow();
                let e = local.entries.get(slot.index)?;
                (e.set_id == self.id).then(|| f(&e.cell))
            })
            .ok()
            .flatten()
    }

    /// A new cell for the calling thread in the series, or in the overflow series (`true`).
    fn register(&self, labels: &SeriesKey) -> (bool, Arc<Cell>) {
        let mut registry = self.lock();
        let overflow = registry.len() >= MAX_SERIES && !registry.contains_key(labels);
        let key = if overflow {
            SeriesKey::overflow()
        } else {
            labels.clone()
        };
        let cell = Arc::new(Cell::default());
        registry
            .entry(key)
            .or_default()
            .live
            .push(Arc::clone(&cell));
        (overflow, cell)
    }

    /// A thread is done with `cell`: its counts move to the series' retired totals.
    fn retire(&self, key: &SeriesKey, cell: &Arc<Cell>) {
        let mut registry = self.lock();
        if let Some(series) = registry.get_mut(key) {
            cell.add_to(&mut series.retired);
            series.live.retain(|c| !Arc::ptr_eq(c, cell));
        }
    }

    /// Every series with its totals over all threads, sorted by key.
    pub fn snapshot(&self) -> Vec<(SeriesKey, Totals)> {
        self.lock()
            .iter()
            .map(|(key, series)| {
                let mut totals = series.retired.clone();
                for cell in &series.live {
                    cell.add_to(&mut totals);
                }
                (key.clone(), totals)
            })
            .collect()
    }

    /// Cells currently held by live threads (for tests).
    #[cfg(test)]
    pub fn live_cells(&self) -> usize {
        self.lock().values().map(|s| s.live.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(set: &SeriesSet, api: &str) -> u64 {
        set.snapshot()
            .iter()
            .filter(|(k, _)| &*k.api == api)
            .map(|(_, t)| t.calls())
            .sum()
    }

    #[test]
    fn threads_count_into_their_own_cells_and_leave_their_counts_when_they_end() {
        let set = Arc::new(SeriesSet::default());
        // Joined explicitly: a join waits for the thread's thread-locals to be destroyed.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let set = Arc::clone(&set);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        set.with_cell("api", "Pre", "native", |c| c.record_call(10, None));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(calls(&set, "api"), 4000);
        assert_eq!(set.live_cells(), 0, "ended threads fold their cells");
        set.with_cell("api", "Pre", "native", |c| c.record_call(10, Some(6)));
        let snap = set.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].1.calls(), 4001);
        assert_eq!(snap[0].1.failures[6], 1);
    }

    #[test]
    fn labels_compare_as_strings_do() {
        let labels = [
            "",
            "a",
            "Pre",
            "Pre2",
            "Pre-x",
            "abcdefg",
            "12345678",
            "123456789",
            "0123456789abcdef",
            "0123456789abcdefg",
            "MyPreMiddleware",
            "é",
        ];
        for a in labels {
            for b in labels {
                assert_eq!(same_label(a, b), a == b, "{a:?} vs {b:?}");
            }
            let mut changed = a.as_bytes().to_vec();
            for at in 0..changed.len() {
                changed[at] ^= 1;
                assert!(!same_label(
                    a,
                    std::str::from_utf8(&changed).unwrap_or("\u{0}")
                ));
                changed[at] ^= 1;
            }
        }
    }

    /// The recent entries shortcut: the last few series a thread used are found without hashing,
    /// older ones through the hashed lookup, and both reach the same cells.
    #[test]
    fn recent_series_are_found_with_or_without_the_shortcut() {
        let set = Arc::new(SeriesSet::default());
        let hooks: Vec<String> = (0..RECENT + 2).map(|i| format!("hook-{i}")).collect();
        let recent = |hook: &str| {
            LOCAL.with(|l| {
                l.borrow()
                    .find_recent(set.id, "recent-api", hook, "d")
                    .is_some()
            })
        };
        // Once: repeating the sequence would find them all by prediction instead.
        for hook in &hooks {
            set.with_cell("recent-api", hook, "d", |c| c.record_call(1, None));
        }
        assert!(!recent(&hooks[0]), "too old for the shortcut: hashed");
        assert!(hooks[2..].iter().all(|h| recent(h)), "the shortcut");
        set.with_cell("recent-api", &hooks[0], "d", |c| c.record_call(1, None));
        set.with_cell("recent-api", &hooks[5], "d", |c| c.record_call(1, None));
        assert!(recent(&hooks[0]), "found by hash, now recent");
        let calls: Vec<u64> = set.snapshot().iter().map(|(_, t)| t.calls()).collect();
        assert_eq!(calls, [2, 1, 1, 1, 1, 2]);
    }

    /// The predicted-successor shortcut: a thread that repeats a sequence of series finds each one
    /// from the one before; a call out of sequence falls back to the other lookups, reaches the
    /// right cell and becomes the new prediction.
    #[test]
    fn a_repeated_sequence_is_predicted_and_a_call_out_of_it_falls_back() {
        let set = Arc::new(SeriesSet::default());
        let predicted = |hook: &str| {
            LOCAL.with(|l| {
                l.borrow()
                    .find_predicted(set.id, "sequence-api", hook, "d")
                    .is_some()
            })
        };
        let count = |hook: &str| {
            set.with_cell("sequence-api", hook, "d", |c| c.record_call(1, None));
        };
        for _ in 0..2 {
            ["a", "b", "c"].into_iter().for_each(count);
        }
        assert!(predicted("a"), "the shortcut: a followed c last time");
        assert!(!predicted("b"));
        count("b");
        assert!(predicted("c"), "b's successor is still c");
        count("c");
        assert!(predicted("b"), "c was followed by b this time");
        let calls: Vec<u64> = set.snapshot().iter().map(|(_, t)| t.calls()).collect();
        assert_eq!(calls, [2, 3, 3]);
    }

    #[test]
    fn labels_are_compared_whole() {
        let set = Arc::new(SeriesSet::default());
        set.with_cell("ab", "c", "d", |c| c.record_call(1, None));
        set.with_cell("a", "bc", "d", |c| c.record_call(1, None));
        assert_eq!(set.snapshot().len(), 2);
    }

    #[test]
    fn two_sets_do_not_share_cells() {
        let (a, b) = (
            Arc::new(SeriesSet::default()),
            Arc::new(SeriesSet::default()),
        );
        a.with_cell("x", "Pre", "d", |c| c.record_call(1, None));
        assert_eq!(calls(&a, "x"), 1);
        assert_eq!(calls(&b, "x"), 0);
    }

    #[test]
    fn series_beyond_the_limit_are_counted_as_overflow() {
        let set = Arc::new(SeriesSet::default());
        let worker = Arc::clone(&set);
        std::thread::spawn(move || {
            let set = worker;
            {
                for i in 0..MAX_SERIES + 5 {
                    set.with_cell(&format!("api-{i}"), "Pre", "d", |c| c.record_call(1, None));
                }
                // An overflowing series is found again in the thread's map, not registered twice.
                set.with_cell("api-late", "Pre", "d", |c| c.record_call(1, None));
                set.with_cell("api-late", "Pre", "d", |c| c.record_call(1, None));
                assert_eq!(
                    set.live_cells(),
                    MAX_SERIES + 6,
                    "one cell per overflowing label set"
                );
            }
        })
        .join()
        .unwrap();
        let snap = set.snapshot();
        assert_eq!(snap.len(), MAX_SERIES + 1);
        assert_eq!(calls(&set, OVERFLOW), 7);
        assert_eq!(set.live_cells(), 0);
    }
}
