//! Exports around the per-thread error message.

use crate::error::clear_last_error;

/// Sets this thread's CoProcessLastError() to "". The functions that return `void` (DispatchEvent,
/// TykStoreData) and TykGetData report a failure only through CoProcessLastError: a host clears it
/// before the call and finds a message after it exactly when that call failed. Thread-safe (the
/// message is per thread).
#[no_mangle]
pub extern "C" fn CoProcessClearLastError() {
    clear_last_error()
}
