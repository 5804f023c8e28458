//! A Rust closure as the bridge's log handler (CoProcessSetLogHandler takes a C function and a
//! `user_data` pointer).

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

use crate::bridge::LogSink;
use crate::capi::CApi;

/// The installed sink, boxed twice so that `user_data` is a thin pointer. Kept here until the next
/// install, when the bridge guarantees it no longer runs.
static INSTALLED: Mutex<Option<Box<Box<LogSink>>>> = Mutex::new(None);

unsafe extern "C" fn trampoline(
    message: *const c_char,
    level: *const c_char,
    user_data: *mut c_void,
) {
    let text = |p: *const c_char| {
        if p.is_null() {
            std::borrow::Cow::Borrowed("")
        } else {
            // SAFETY: the bridge passes NUL-terminated strings valid during this call.
            unsafe { CStr::from_ptr(p) }.to_string_lossy()
        }
    };
    // SAFETY: `user_data` is the `Box<Box<LogSink>>` installed with this trampoline; it stays alive
    // until CoProcessSetLogHandler has replaced it, which waits for calls in flight.
    let sink = unsafe { &*(user_data as *const Box<LogSink>) };
    sink(&text(level), &text(message));
}

pub(crate) fn install(api: &CApi, sink: Option<Box<LogSink>>) {
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    let boxed = sink.map(Box::new);
    let user_data = boxed.as_ref().map_or(std::ptr::null_mut(), |b| {
        &**b as *const Box<LogSink> as *mut c_void
    });
    let handler = boxed
        .as_ref()
        .map(|_| trampoline as crate::capi::LogHandler);
    // SAFETY: `user_data` points to the boxed sink kept in INSTALLED until the next install; when the
    // call returns the previous handler is not running and will not run again (api.h).
    unsafe { (api.set_log_handler)(handler, user_data) };
    *installed = boxed;
}
