//! Status codes and the thread-local "last error" message behind `CoProcessLastError`.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::fmt;

/// Result codes returned by the bridge's C functions. The numbers are stable: hosts may switch on them.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoProcessStatus {
    /// Success.
    COPROCESS_OK = 0,
    /// A required pointer argument was NULL.
    COPROCESS_ERR_NULL_ARGUMENT = 1,
    /// A length was negative, or too large for an `int`.
    COPROCESS_ERR_INVALID_LENGTH = 2,
    /// The input bytes are not a well-formed `coprocess.Object`.
    COPROCESS_ERR_INVALID_OBJECT = 3,
    /// No driver is loaded under the requested name.
    COPROCESS_ERR_UNKNOWN_DRIVER = 4,
    /// No driver could be chosen: none is loaded, or several are and the call did not name one.
    COPROCESS_ERR_NO_DRIVER = 5,
    /// The driver returned a non-zero code; its own message follows the driver name.
    COPROCESS_ERR_DRIVER_FAILED = 6,
    /// The driver returned something that is not a well-formed `coprocess.Object`.
    COPROCESS_ERR_DRIVER_BAD_OUTPUT = 7,
    /// A driver library could not be loaded (missing file or symbol, wrong ABI version, init failed).
    COPROCESS_ERR_LOAD_FAILED = 8,
    /// A configuration text was not valid JSON of the expected shape.
    COPROCESS_ERR_INVALID_CONFIG = 9,
    /// A string argument was not valid UTF-8.
    COPROCESS_ERR_INVALID_UTF8 = 10,
    /// A driver name is already taken.
    COPROCESS_ERR_ALREADY_EXISTS = 11,
    /// Nothing to return (e.g. the event queue is empty).
    COPROCESS_ERR_EMPTY = 12,
    /// Coprocess is disabled by configuration (`enable_coprocess: false`).
    COPROCESS_ERR_DISABLED = 13,
    /// A bug in the bridge was caught at the C boundary (a Rust panic); the host keeps running.
    COPROCESS_ERR_PANIC = 14,
    /// A JSON argument (an event) was not valid JSON.
    COPROCESS_ERR_INVALID_JSON = 15,
    /// An API definition (CoProcessLoadApi) is not valid; the message names the field.
    COPROCESS_ERR_INVALID_API = 16,
    /// No API is loaded under the given api_id (CoProcessUnloadApi).
    COPROCESS_ERR_UNKNOWN_API = 17,
    /// The store failed (e.g. Redis unreachable); the message says why.
    COPROCESS_ERR_STORE = 18,
    /// A plugin bundle could not be fetched, unpacked, verified or loaded (CoProcessLoadApi); the
    /// message names the bundle, the step and the reason.
    COPROCESS_ERR_BUNDLE = 19,
}

pub use CoProcessStatus::*;

impl CoProcessStatus {
    /// The code as the C functions return it.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// A failure: a status for the caller's `switch` and a message for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: CoProcessStatus,
    pub message: String,
}

impl Error {
    pub fn new(status: CoProcessStatus, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// What `CoProcessLastError` returns on a thread whose thread-locals are already destroyed (a call made
/// from a thread-exit destructor): the message of that failure cannot be kept any more.
const UNAVAILABLE: &CStr =
    c"(no error message: CoProcessLastError was called while this thread was exiting)";

/// Records `message` as this thread's last error. Interior NULs (which C cannot show) become spaces. On
/// a thread that is exiting (its thread-locals destroyed) the message is dropped.
pub fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = text;
        }
    });
}

/// Forgets this thread's last error (`CoProcessLastError` then returns ""). A no-op on an exiting thread.
pub fn clear_last_error() {
    set_last_error("");
}

/// Records `err` as this thread's last error and returns its code, for `return fail(err)` in exports.
pub fn fail(err: Error) -> i32 {
    set_last_error(&err.message);
    err.status.code()
}

/// This thread's last error message ("" when none). The pointer stays valid until the next failing call on
/// this thread (the buffer is replaced then, never freed in place while in use by the same thread). Never
/// panics: during thread exit it returns a static explanation.
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.try_borrow().map(|s| s.as_ptr()).ok())
        .ok()
        .flatten()
        .unwrap_or(UNAVAILABLE.as_ptr())
}

/// This thread's last error message as a Rust string (for tests and the CLI).
pub fn last_error() -> String {
    // SAFETY: `last_error_ptr` always returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(last_error_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_is_per_thread_and_nul_safe() {
        set_last_error("bad\0thing");
        assert_eq!(last_error(), "bad thing");
        std::thread::spawn(|| assert_eq!(last_error(), ""))
            .join()
            .unwrap();
        assert_eq!(fail(Error::new(COPROCESS_ERR_NO_DRIVER, "none")), 5);
        assert_eq!(last_error(), "none");
    }
}
