//! A host callback (function + `user_data`) that may be replaced while other threads call it.
//!
//! The promise hosts rely on to free `user_data`: when [`HandlerSlot::set`] returns, the callback it
//! replaced is not running and will not run again. `set` waits for the calls in flight on other
//! threads; calls on the calling thread itself (a handler that replaces handlers) cannot finish first
//! and are not waited for, so that case cannot deadlock — the handler is still on that thread's stack
//! and finishes when it returns.
//!
//! Callbacks nested more than [`MAX_NESTING`] deep on one thread (a log handler that logs through
//! `CoProcessLog`, recursively) are not made: the caller gets [`Call::TooDeep`] instead of a stack
//! overflow.

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// `void (*)(const char*, const char*, void* user_data)`: the shape of both host handlers.
pub type HostCallback = unsafe extern "C" fn(*const c_char, *const c_char, *mut c_void);

/// How deep host callbacks may nest on one thread.
pub const MAX_NESTING: usize = 8;

struct Entry {
    func: HostCallback,
    user_data: usize,
    /// Calls of this entry started and not yet returned, on any thread.
    in_flight: AtomicUsize,
}

thread_local! {
    // Const-initialised and without destructors: usable at any point of a thread's life, exit included.
    /// Addresses of the entries this thread is inside, innermost last.
    static INSIDE: Cell<[usize; MAX_NESTING]> = const { Cell::new([0; MAX_NESTING]) };
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// How many times the calling thread is inside `entry` right now.
fn own_calls(entry: &Entry) -> usize {
    let addr = entry as *const Entry as usize;
    let depth = DEPTH.get();
    INSIDE.get()[..depth].iter().filter(|&&a| a == addr).count()
}

/// What happened to a callback request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// The callback ran.
    Made,
    /// No callback is set.
    NoHandler,
    /// Callbacks are already nested `MAX_NESTING` deep on this thread: not made.
    TooDeep,
}

#[derive(Default)]
pub struct HandlerSlot {
    current: RwLock<Option<Arc<Entry>>>,
}

/// Leaves an entry: runs on return and on unwind alike.
struct InFlight {
    entry: Arc<Entry>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get() - 1);
        self.entry.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl HandlerSlot {
    /// Installs `func` with `user_data` (`None` removes the callback), then waits until the callback it
    /// replaced has no call in flight on another thread.
    pub fn set(&self, func: Option<HostCallback>, user_data: *mut c_void) {
        let entry = func.map(|func| {
            Arc::new(Entry {
                func,
                user_data: user_data as usize,
                in_flight: AtomicUsize::new(0),
            })
        });
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|p| p.into_inner()),
            entry,
        );
        if let Some(old) = old {
            wait_for_calls(&old);
        }
    }

    pub fn is_set(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Calls the callback through `call(func, user_data)`, which passes its own arguments. The entry is
    /// counted in flight before the lock is released, so a concurrent `set` sees this call.
    pub fn call(&self, call: impl FnOnce(HostCallback, *mut c_void)) -> Call {
        let depth = DEPTH.get();
        if depth >= MAX_NESTING {
            return Call::TooDeep;
        }
        let entry = {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            let Some(entry) = current.as_ref() else {
                return Call::NoHandler;
            };
            entry.in_flight.fetch_add(1, Ordering::SeqCst);
            entry.clone()
        };
        let mut inside = INSIDE.get();
        inside[depth] = Arc::as_ptr(&entry) as usize;
        INSIDE.set(inside);
        DEPTH.set(depth + 1);
        let guard = InFlight { entry };
        call(guard.entry.func, guard.entry.user_data as *mut c_void);
        drop(guard);
        Call::Made
    }
}

/// Waits until `old` runs nowhere but (possibly) further up this thread's own stack. The `Acquire` load
/// pairs with the `Release` decrement: what the last call did happens before `set` returns.
fn wait_for_calls(old: &Entry) {
    let own = own_calls(old);
    let mut spins = 0u32;
    while old.in_flight.load(Ordering::Acquire) > own {
        if spins < 64 {
            std::thread::yield_now();
            spins += 1;
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    unsafe extern "C" fn slow(_: *const c_char, _: *const c_char, ud: *mut c_void) {
        // SAFETY: the tests pass a pointer to a live AtomicBool pair.
        let (started, done) = unsafe { &*(ud as *const (AtomicBool, AtomicBool)) };
        started.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        done.store(true, Ordering::SeqCst);
    }

    fn call_with_nulls(slot: &HandlerSlot) -> Call {
        // SAFETY: the callbacks in these tests ignore their string arguments.
        slot.call(|f, ud| unsafe { f(std::ptr::null(), std::ptr::null(), ud) })
    }

    #[test]
    fn set_waits_for_calls_in_flight_on_other_threads() {
        let slot = HandlerSlot::default();
        let flags = (AtomicBool::new(false), AtomicBool::new(false));
        slot.set(Some(slow), &flags as *const _ as *mut c_void);
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(call_with_nulls(&slot), Call::Made));
            while !flags.0.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            slot.set(None, std::ptr::null_mut());
            assert!(
                flags.1.load(Ordering::SeqCst),
                "set returned while the old handler was running"
            );
        });
        assert_eq!(call_with_nulls(&slot), Call::NoHandler);
    }

    static SLOT: HandlerSlot = HandlerSlot {
        current: RwLock::new(None),
    };

    unsafe extern "C" fn swaps_itself(_: *const c_char, _: *const c_char, ud: *mut c_void) {
        // SAFETY: the test passes a live AtomicUsize.
        let n = unsafe { &*(ud as *const AtomicUsize) };
        n.fetch_add(1, Ordering::SeqCst);
        SLOT.set(Some(recurse), ud);
        // The replacement runs nested inside the old one without deadlocking.
        assert_eq!(call_with_nulls(&SLOT), Call::Made);
    }

    unsafe extern "C" fn recurse(_: *const c_char, _: *const c_char, ud: *mut c_void) {
        // SAFETY: as above.
        unsafe { &*(ud as *const AtomicUsize) }.fetch_add(1, Ordering::SeqCst);
        let _ = call_with_nulls(&SLOT);
    }

    #[test]
    fn a_handler_may_replace_itself_and_recursion_is_bounded() {
        let n = AtomicUsize::new(0);
        SLOT.set(Some(swaps_itself), &n as *const _ as *mut c_void);
        assert_eq!(call_with_nulls(&SLOT), Call::Made);
        // One call of swaps_itself, then `recurse` nested until the depth limit.
        assert_eq!(n.load(Ordering::SeqCst), MAX_NESTING);
        SLOT.set(None, std::ptr::null_mut());
        assert_eq!(DEPTH.get(), 0);
    }
}
