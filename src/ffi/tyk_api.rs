//! Tyk's own `api.h` surface, unchanged, so code written against Tyk's header compiles and links.

use std::ffi::{c_char, c_int};

use super::{cstr_arg, ffi_boundary};
use crate::error::set_last_error;
use crate::logging::Level;
use crate::message::malloc_cstring;
use crate::runtime::global;
use crate::store::ttl_from_seconds;

/// Stores `value` under `key` for `ttl` seconds (0 or less = no expiry) in the bridge's store.
/// Ownership: both strings are borrowed (copied). NULL arguments, and a store that fails (Redis
/// unreachable), are reported in CoProcessLastError and the log.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn TykStoreData(key: *mut c_char, value: *mut c_char, ttl: c_int) {
    ffi_boundary!((), {
        // SAFETY: NULL or NUL-terminated strings.
        let args = unsafe {
            cstr_arg(key, "TykStoreData: key")
                .and_then(|k| Ok((k, cstr_arg(value, "TykStoreData: value")?)))
        };
        let stored = args.and_then(|(k, v)| {
            global().store_set(
                &k.to_string_lossy(),
                &v.to_string_lossy(),
                ttl_from_seconds(i64::from(ttl)),
            )
        });
        if let Err(e) = stored {
            set_last_error(&e.message);
        }
    })
}

/// Returns the value stored under `key`: a malloc'd NUL-terminated string the caller frees with
/// CoProcessFree or free(); "" (also malloc'd) when the key is absent or expired, or when the store
/// failed (Redis unreachable: the reason is in CoProcessLastError and the log). Returns NULL only for a
/// NULL key or when memory is exhausted. Thread-safe.
#[no_mangle]
pub extern "C" fn TykGetData(key: *mut c_char) -> *mut c_char {
    ffi_boundary!(std::ptr::null_mut(), {
        // SAFETY: NULL or a NUL-terminated string.
        match unsafe { cstr_arg(key, "TykGetData: key") } {
            Ok(k) => match global().store_get(&k.to_string_lossy()) {
                Ok(value) => malloc_cstring(value.as_deref().unwrap_or("")),
                Err(e) => {
                    // Tyk's contract has no error return here: "" as for an absent key, and the
                    // reason in CoProcessLastError and the log.
                    set_last_error(&e.message);
                    malloc_cstring("")
                }
            },
            Err(e) => {
                set_last_error(&e.message);
                std::ptr::null_mut()
            }
        }
    })
}

/// Raises a Tyk event: it reaches the host's event handler, or the event queue (CoProcessNextEvent).
/// The queue is bounded (`event_queue_capacity`, `event_queue_max_bytes` in CoProcessInit): when full,
/// the oldest event is dropped, counted and reported in the log at warning level.
/// Ownership: borrowed (copied). A NULL payload is sent as "". Thread-safe.
#[no_mangle]
pub extern "C" fn TykTriggerEvent(event_name: *mut c_char, payload: *mut c_char) {
    ffi_boundary!((), {
        // SAFETY: NULL or NUL-terminated strings.
        match unsafe { cstr_arg(event_name, "TykTriggerEvent: event_name") } {
            Ok(name) => {
                // SAFETY: as above.
                let payload = unsafe { cstr_arg(payload, "") }
                    .map(|p| p.to_string_lossy())
                    .unwrap_or_default();
                let events = &global().events;
                let delivery = events.emit(&name.to_string_lossy(), &payload);
                if let Some(line) = events.loss_report(&delivery) {
                    global().logs.log(Level::Warning, line);
                }
            }
            Err(e) => set_last_error(&e.message),
        }
    })
}

/// Logs `msg` at `level` ("debug", "info", "warning", "error"; NULL = "info") through the host's log
/// handler, or to stderr. Ownership: borrowed. Thread-safe.
#[no_mangle]
pub extern "C" fn CoProcessLog(msg: *mut c_char, level: *mut c_char) {
    ffi_boundary!((), {
        // SAFETY: NULL or NUL-terminated strings.
        match unsafe { cstr_arg(msg, "CoProcessLog: msg") } {
            Ok(m) => {
                // SAFETY: as above.
                let level = unsafe { cstr_arg(level, "") }
                    .map(|l| Level::parse(&l.to_string_lossy()))
                    .unwrap_or(Level::Info);
                global().logs.log(level, m.to_string_lossy());
            }
            Err(e) => set_last_error(&e.message),
        }
    })
}
