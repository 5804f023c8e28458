//! Event delivery: drivers' `trigger_event` and `TykTriggerEvent` reach the host's event handler, or wait
//! in a bounded queue the host drains with `CoProcessNextEvent` when no handler is set.

use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

/// `void (*)(const char* event_name, const char* payload, void* user_data)`.
/// NULL (`None`) means "no handler".
pub type CoProcessEventHandler = Option<
    unsafe extern "C" fn(event_name: *const c_char, payload: *const c_char, user_data: *mut c_void),
>;

/// Default number of events kept when no handler is set.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

#[derive(Clone, Copy)]
struct Handler {
    func: unsafe extern "C" fn(*const c_char, *const c_char, *mut c_void),
    user_data: usize,
}

/// One event: a name and a payload (usually JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub payload: String,
}

pub struct EventSink {
    handler: RwLock<Option<Handler>>,
    queue: Mutex<VecDeque<Event>>,
    capacity: AtomicUsize,
    dropped: AtomicU64,
}

impl Default for EventSink {
    fn default() -> Self {
        EventSink {
            handler: RwLock::new(None),
            queue: Mutex::new(VecDeque::new()),
            capacity: AtomicUsize::new(DEFAULT_QUEUE_CAPACITY),
            dropped: AtomicU64::new(0),
        }
    }
}

/// What happened to an emitted event.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Handled,
    Queued,
    /// Queued, but the queue was full and its oldest event was dropped to make room.
    QueuedDroppingOldest,
}

impl EventSink {
    pub fn set_handler(&self, func: CoProcessEventHandler, user_data: *mut c_void) {
        let h = func.map(|func| Handler {
            func,
            user_data: user_data as usize,
        });
        *self.handler.write().unwrap_or_else(|p| p.into_inner()) = h;
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers an event to the handler (called on this thread), or queues it.
    pub fn emit(&self, name: &str, payload: &str) -> Delivery {
        let handler = *self.handler.read().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = handler {
            let name = CString::new(name.replace('\0', " ")).unwrap_or_default();
            let payload = CString::new(payload.replace('\0', " ")).unwrap_or_default();
            // SAFETY: the host registered `func` for exactly this signature; the strings live for the call.
            unsafe { (h.func)(name.as_ptr(), payload.as_ptr(), h.user_data as *mut c_void) };
            crate::metrics::global().record_event(&Delivery::Handled);
            return Delivery::Handled;
        }
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mut queue = self.lock_queue();
        let mut delivery = Delivery::Queued;
        while queue.len() >= capacity {
            queue.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
            delivery = Delivery::QueuedDroppingOldest;
        }
        queue.push_back(Event {
            name: name.to_owned(),
            payload: payload.to_owned(),
        });
        crate::metrics::global().record_event(&delivery);
        delivery
    }

    /// The oldest queued event, if any.
    pub fn next(&self) -> Option<Event> {
        self.lock_queue().pop_front()
    }

    /// Events dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Forgets queued events (on `CoProcessShutdown`).
    pub fn clear(&self) {
        self.lock_queue().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_bounded_and_fifo() {
        let sink = EventSink::default();
        sink.set_capacity(2);
        assert_eq!(sink.emit("a", "1"), Delivery::Queued);
        assert_eq!(sink.emit("b", "2"), Delivery::Queued);
        assert_eq!(sink.emit("c", "3"), Delivery::QueuedDroppingOldest);
        assert_eq!(sink.dropped(), 1);
        assert_eq!(sink.next().unwrap().name, "b");
        assert_eq!(
            sink.next(),
            Some(Event {
                name: "c".into(),
                payload: "3".into()
            })
        );
        assert_eq!(sink.next(), None);
    }

    unsafe extern "C" fn count(_: *const c_char, _: *const c_char, ud: *mut c_void) {
        // SAFETY: the test passes a pointer to a live AtomicUsize.
        unsafe { &*(ud as *const AtomicUsize) }.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_handler_bypasses_the_queue() {
        let sink = EventSink::default();
        let n = AtomicUsize::new(0);
        sink.set_handler(Some(count), &n as *const _ as *mut c_void);
        assert_eq!(sink.emit("x", "{}"), Delivery::Handled);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(sink.next(), None);
        sink.set_handler(None, std::ptr::null_mut());
        assert_eq!(sink.emit("x", "{}"), Delivery::Queued);
    }
}
