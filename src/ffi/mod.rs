//! Every `extern "C"` function of the bridge, and nothing else. Each one is a thin shell: check the
//! pointers, convert arguments, call a safe module, turn the result into a status code. The boundary
//! macro makes sure a panic never unwinds into C.
//!
//! The exports are safe `extern "C" fn`s that dereference caller pointers: their callers are C programs,
//! for which `unsafe` means nothing; the pointer contracts are documented per function in `api.h`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod driver_host;
pub mod host;
pub mod last_error;
pub mod metrics;
pub mod tyk_api;
pub mod version;

use std::ffi::{c_char, CStr};

use crate::error::{Error, Result, COPROCESS_ERR_INVALID_UTF8, COPROCESS_ERR_NULL_ARGUMENT};

/// Runs `$body` under `catch_unwind`. A panic becomes COPROCESS_ERR_PANIC's message in
/// `CoProcessLastError` and the function returns `$on_panic`.
macro_rules! ffi_boundary {
    ($on_panic:expr, $body:block) => {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(payload) => {
                $crate::ffi::record_panic(payload);
                $on_panic
            }
        }
    };
}
pub(crate) use ffi_boundary;

/// Records a caught panic as this thread's last error.
pub(crate) fn record_panic(payload: Box<dyn std::any::Any + Send>) {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    crate::error::set_last_error(&format!(
        "internal error in coprocess-bridge (caught at the C boundary, the host keeps running): {what}"
    ));
}

/// Converts a result to a C status code, recording the message of a failure.
pub(crate) fn status(r: Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => crate::error::fail(e),
    }
}

/// Borrows a required C string argument as UTF-8.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    // SAFETY: forwarded contract.
    let c = unsafe { cstr_arg(p, what) }?;
    c.to_str().map_err(|_| {
        Error::new(
            COPROCESS_ERR_INVALID_UTF8,
            format!("{what} is not valid UTF-8"),
        )
    })
}

/// Borrows a required C string argument.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn cstr_arg<'a>(p: *const c_char, what: &str) -> Result<&'a CStr> {
    if p.is_null() {
        return Err(Error::new(
            COPROCESS_ERR_NULL_ARGUMENT,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-NULL, NUL-terminated per the caller's contract.
    Ok(unsafe { CStr::from_ptr(p) })
}

/// Borrows an optional C string argument (NULL = None) as UTF-8.
///
/// # Safety
/// As `str_arg`.
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { str_arg(p, what) }.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{last_error, COPROCESS_ERR_PANIC};

    fn exported_that_panics(fail: bool) -> i32 {
        ffi_boundary!(COPROCESS_ERR_PANIC as i32, {
            if fail {
                panic!("boom at the boundary");
            }
            0
        })
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        assert_eq!(exported_that_panics(false), 0);
        assert_eq!(exported_that_panics(true), COPROCESS_ERR_PANIC as i32);
        assert_eq!(
            last_error(),
            "internal error in coprocess-bridge (caught at the C boundary, the host keeps running): \
             boom at the boundary"
        );
    }

    #[test]
    fn string_arguments_are_checked() {
        // SAFETY: NULL and valid C strings only.
        unsafe {
            assert_eq!(
                str_arg(std::ptr::null(), "x").unwrap_err().message,
                "x is NULL"
            );
            assert_eq!(str_arg(c"ok".as_ptr(), "x").unwrap(), "ok");
            let bad = [0xc3u8, 0x28, 0];
            assert_eq!(
                str_arg(bad.as_ptr().cast(), "x").unwrap_err().message,
                "x is not valid UTF-8"
            );
            assert_eq!(opt_str_arg(std::ptr::null(), "x").unwrap(), None);
        }
    }
}
