//! Event delivery: drivers' `trigger_event` and `TykTriggerEvent` reach the host's event handler, or wait
//! in a bounded queue the host drains with `CoProcessNextEvent` when no handler is set.
//!
//! The queue is bounded twice: by a number of events (`event_queue_capacity`, default 1024) and by the
//! bytes they hold (`event_queue_max_bytes`, default 16 MiB). When either is reached the oldest events
//! are dropped to make room (the newest say most about the present); an event larger than the byte
//! bound on its own is refused. Both are counted (`dropped`) and reported in the log by the caller.

use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::handler_slot::{Call, HandlerSlot};

/// `void (*)(const char* event_name, const char* payload, void* user_data)`.
/// NULL (`None`) means "no handler".
pub type CoProcessEventHandler = Option<
    unsafe extern "C" fn(event_name: *const c_char, payload: *const c_char, user_data: *mut c_void),
>;

/// Default number of events kept when no handler is set.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// Default bound on the bytes (names and payloads) of queued events.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 16 << 20;

/// One event: a name and a payload (usually JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub payload: String,
}

impl Event {
    fn bytes(&self) -> usize {
        self.name.len() + self.payload.len()
    }
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    bytes: usize,
}

pub struct EventSink {
    handler: HandlerSlot,
    queue: Mutex<Queue>,
    capacity: AtomicUsize,
    max_bytes: AtomicUsize,
    dropped: AtomicU64,
}

impl Default for EventSink {
    fn default() -> Self {
        EventSink {
            handler: HandlerSlot::default(),
            queue: Mutex::new(Queue::default()),
            capacity: AtomicUsize::new(DEFAULT_QUEUE_CAPACITY),
            max_bytes: AtomicUsize::new(DEFAULT_QUEUE_MAX_BYTES),
            dropped: AtomicU64::new(0),
        }
    }
}

/// What happened to an emitted event.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Handled,
    Queued,
    /// Queued, but the queue was full: `dropped` older events were dropped to make room.
    QueuedDroppingOldest {
        dropped: u64,
    },
    /// Not queued: the event alone is larger than the queue's byte bound.
    TooLarge,
}

impl EventSink {
    /// Sets (or with `None` clears) the host's handler. When it returns, the previous handler is not
    /// running on another thread and will not be called again (see `HandlerSlot`).
    pub fn set_handler(&self, func: CoProcessEventHandler, user_data: *mut c_void) {
        self.handler.set(func, user_data);
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    pub fn set_max_bytes(&self, max_bytes: usize) {
        self.max_bytes.store(max_bytes.max(1), Ordering::Relaxed);
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes.load(Ordering::Relaxed)
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers an event to the handler (called on this thread), or queues it. An event raised from
    /// handlers nested too deep on this thread is queued.
    pub fn emit(&self, name: &str, payload: &str) -> Delivery {
        let call = self.handler.call(|func, user_data| {
            let name = CString::new(name.replace('\0', " ")).unwrap_or_default();
            let payload = CString::new(payload.replace('\0', " ")).unwrap_or_default();
            // SAFETY: the host registered `func` for exactly this signature; the strings live for the call.
            unsafe { func(name.as_ptr(), payload.as_ptr(), user_data) };
        });
        let delivery = if call == Call::Made {
            Delivery::Handled
        } else {
            self.enqueue(Event {
                name: name.to_owned(),
                payload: payload.to_owned(),
            })
        };
        crate::metrics::global().record_event(&delivery);
        delivery
    }

    fn enqueue(&self, event: Event) -> Delivery {
        let (capacity, max_bytes) = (self.capacity(), self.max_bytes());
        let size = event.bytes();
        if size > max_bytes {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Delivery::TooLarge;
        }
        let mut queue = self.lock_queue();
        let mut dropped = 0;
        while queue.events.len() >= capacity || queue.bytes + size > max_bytes {
            let Some(old) = queue.events.pop_front() else {
                break;
            };
            queue.bytes -= old.bytes();
            dropped += 1;
        }
        queue.bytes += size;
        queue.events.push_back(event);
        drop(queue);
        if dropped == 0 {
            return Delivery::Queued;
        }
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        Delivery::QueuedDroppingOldest { dropped }
    }

    /// The oldest queued event, if any.
    pub fn next(&self) -> Option<Event> {
        let mut queue = self.lock_queue();
        let event = queue.events.pop_front()?;
        queue.bytes -= event.bytes();
        Some(event)
    }

    /// Events dropped (oldest evicted, or too large) since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Forgets queued events (on `CoProcessShutdown`).
    pub fn clear(&self) {
        *self.lock_queue() = Queue::default();
    }

    /// The log line for a delivery that lost events, for the caller to log; rate-limited to the first
    /// loss and every power-of-two total after it, so an event storm cannot flood the log too.
    pub fn loss_report(&self, delivery: &Delivery) -> Option<String> {
        let lost = match delivery {
            Delivery::QueuedDroppingOldest { dropped } => *dropped,
            Delivery::TooLarge => 1,
            _ => return None,
        };
        let total = self.dropped();
        let before = total.saturating_sub(lost);
        // Report when the running total reaches or passes a power of two.
        if total.checked_ilog2() == before.checked_ilog2() {
            return None;
        }
        let what = match delivery {
            Delivery::TooLarge => format!(
                "an event larger than event_queue_max_bytes ({} bytes) was dropped",
                self.max_bytes()
            ),
            _ => format!(
                "the event queue is full (event_queue_capacity {}, event_queue_max_bytes {}): the \
                 oldest event was dropped",
                self.capacity(),
                self.max_bytes()
            ),
        };
        Some(format!(
            "{what}; {total} events dropped so far. Set an event handler \
             (CoProcessSetEventHandler) or drain the queue with CoProcessNextEvent"
        ))
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
        assert_eq!(
            sink.emit("c", "3"),
            Delivery::QueuedDroppingOldest { dropped: 1 }
        );
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

    #[test]
    fn queued_bytes_are_bounded_too() {
        let sink = EventSink::default();
        sink.set_max_bytes(10);
        assert_eq!(sink.emit("a", "1234"), Delivery::Queued); // 5 bytes
        assert_eq!(sink.emit("b", "1234"), Delivery::Queued); // 10 bytes
        assert_eq!(
            sink.emit("c", "12"),
            Delivery::QueuedDroppingOldest { dropped: 1 }
        );
        assert_eq!(sink.emit("d", "12345678901"), Delivery::TooLarge);
        assert_eq!(sink.dropped(), 2);
        assert_eq!(sink.next().unwrap().name, "b");
        assert_eq!(sink.next().unwrap().name, "c");
        assert_eq!(sink.next(), None);
        assert_eq!(sink.emit("e", "123456789"), Delivery::Queued, "room again");
    }

    #[test]
    fn losses_are_reported_at_powers_of_two() {
        let sink = EventSink::default();
        sink.set_capacity(1);
        let reports: Vec<bool> = (0..9)
            .map(|i| {
                let d = sink.emit("e", &i.to_string());
                sink.loss_report(&d).is_some()
            })
            .collect();
        // Totals after each emit: 0, 1, 2, 3, 4, 5, 6, 7, 8.
        assert_eq!(
            reports,
            [false, true, true, false, true, false, false, false, true]
        );
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
