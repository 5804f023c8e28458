//! [`Bridge`]: safe calls into the bridge's C API, and [`Answer`], a Dispatch result read in place.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

use crate::capi::{CApi, CoProcessMessage};

/// A failed bridge call: its status code (api.h's `CoProcessStatus`, or -1 for a refusal on this
/// side) and the CoProcessLastError() text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeError {
    pub code: i32,
    pub message: String,
}

impl BridgeError {
    /// A refusal made before the bridge was called (an argument it could not be given).
    pub fn local(message: impl Into<String>) -> BridgeError {
        BridgeError {
            code: -1,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for BridgeError {}

/// The bridge's C API with safe signatures. Cheap to copy: it is a table of function pointers into a
/// library that stays loaded for the life of the process.
#[derive(Clone, Copy)]
pub struct Bridge {
    api: CApi,
}

/// A text argument as a C string; `what` names it in the error.
pub fn c_text(what: &str, s: &str) -> Result<CString, BridgeError> {
    CString::new(s).map_err(|_| BridgeError::local(format!("{what} contains a NUL byte")))
}

/// Copies a NUL-terminated string the bridge returned (NULL reads as "").
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for this call.
unsafe fn copy_text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Bridge {
    /// Opens `libcoprocess_bridge.so` (or another build of it) at `path` with dlopen.
    pub fn open(path: &Path) -> Result<Bridge, String> {
        CApi::open(path).map(Bridge::from_api)
    }

    /// A bridge whose functions the caller looked up itself (e.g. the exports of a linked bridge).
    pub fn from_api(api: CApi) -> Bridge {
        Bridge { api }
    }

    /// The message CoProcessLastError() holds for this thread ("unknown error" when it is empty).
    pub fn last_error(&self) -> String {
        // SAFETY: CoProcessLastError returns NULL or a NUL-terminated string owned by the bridge and
        // valid until the next failing call on this thread; it is copied at once.
        let msg = unsafe { copy_text((self.api.last_error)()) };
        if msg.is_empty() {
            "unknown error".into()
        } else {
            msg
        }
    }

    fn status(&self, code: c_int) -> Result<(), BridgeError> {
        if code == 0 {
            return Ok(());
        }
        Err(BridgeError {
            code,
            message: self.last_error(),
        })
    }

    /// Takes a malloc'd string the bridge returned, freeing it with CoProcessFree.
    ///
    /// # Safety
    /// `p` is NULL or a NUL-terminated string the bridge allocated and nobody else frees.
    unsafe fn take_text(&self, p: *mut c_char) -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: per this function's contract; freed once, right after the copy.
        unsafe {
            let s = copy_text(p);
            (self.api.free)(p.cast());
            Some(s)
        }
    }

    /// CoProcessVersion().
    pub fn version(&self) -> String {
        // SAFETY: a static NUL-terminated string.
        unsafe { copy_text((self.api.version)()) }
    }

    /// CoProcessInit(config_json).
    pub fn init(&self, config_json: &str) -> Result<(), BridgeError> {
        let c = c_text("the bridge config", config_json)?;
        // SAFETY: a NUL-terminated string borrowed for the call.
        self.status(unsafe { (self.api.init)(c.as_ptr()) })
    }

    /// CoProcessLoadDriver(name, path, config_json); `None` config is "{}".
    pub fn load_driver(
        &self,
        name: &str,
        path: &str,
        config_json: Option<&str>,
    ) -> Result<(), BridgeError> {
        let name = c_text("the driver name", name)?;
        let path = c_text("the driver path", path)?;
        let config = config_json
            .map(|c| c_text("the driver config", c))
            .transpose()?;
        let config_ptr = config.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: NUL-terminated strings (or NULL for the config) borrowed for the call.
        self.status(unsafe { (self.api.load_driver)(name.as_ptr(), path.as_ptr(), config_ptr) })
    }

    /// CoProcessLoadApi(definition).
    pub fn load_api(&self, definition_json: &str) -> Result<(), BridgeError> {
        let c = c_text("the API definition", definition_json)?;
        // SAFETY: a NUL-terminated string borrowed for the call.
        self.status(unsafe { (self.api.load_api)(c.as_ptr()) })
    }

    /// CoProcessListApis(): the loaded APIs as JSON.
    pub fn list_apis(&self) -> Result<String, BridgeError> {
        // SAFETY: NULL or a malloc'd string that we own.
        unsafe { self.take_text((self.api.list_apis)()) }
            .ok_or_else(|| BridgeError::local("CoProcessListApis returned NULL (out of memory)"))
    }

    /// CoProcessMetrics(format): COPROCESS_METRICS_PROMETHEUS (0) or COPROCESS_METRICS_JSON (1).
    pub fn metrics(&self, format: i32) -> Result<String, BridgeError> {
        // SAFETY: NULL or a malloc'd string that we own.
        unsafe { self.take_text((self.api.metrics)(format)) }.ok_or_else(|| BridgeError {
            code: -1,
            message: self.last_error(),
        })
    }

    /// Dispatch(in, out): runs a hook (or an API's chain) on a serialized coprocess.Object.
    pub fn dispatch(&self, object: &[u8]) -> Result<Answer, BridgeError> {
        self.dispatch_to(None, object)
    }

    /// DispatchWithDriver(driver, in, out), or Dispatch when `driver` is `None`.
    pub fn dispatch_to(&self, driver: Option<&CStr>, object: &[u8]) -> Result<Answer, BridgeError> {
        let length = c_int::try_from(object.len()).map_err(|_| {
            BridgeError::local(format!(
                "the Object is {} bytes: more than a CoProcessMessage can hold",
                object.len()
            ))
        })?;
        let input = CoProcessMessage {
            p_data: object.as_ptr() as *mut c_void,
            length,
        };
        let mut out = CoProcessMessage {
            p_data: std::ptr::null_mut(),
            length: 0,
        };
        // SAFETY: `input` borrows `object` for the call (the bridge neither keeps, writes nor frees
        // it); `out` is ours and receives a malloc'd buffer on success, {NULL, 0} on failure.
        let code = unsafe {
            match driver {
                Some(name) => (self.api.dispatch_with_driver)(name.as_ptr(), &input, &mut out),
                None => (self.api.dispatch)(&input, &mut out),
            }
        };
        self.status(code)?;
        Ok(Answer {
            msg: out,
            free: self.api.message_free,
        })
    }

    /// DispatchEvent(event_json). The bridge refuses text that is not JSON; the refusal is reported.
    pub fn dispatch_event(&self, event_json: &str) -> Result<(), BridgeError> {
        let json = c_text("the event", event_json)?;
        // SAFETY: CoProcessClearLastError takes no argument; DispatchEvent borrows a NUL-terminated
        // string for the call. DispatchEvent reports only through CoProcessLastError (api.h).
        let message = unsafe {
            (self.api.clear_last_error)();
            (self.api.dispatch_event)(json.as_ptr());
            copy_text((self.api.last_error)())
        };
        if message.is_empty() {
            Ok(())
        } else {
            Err(BridgeError { code: -1, message })
        }
    }

    /// Drains the bridge's event queue (events raised while no event handler is set): (name, payload).
    pub fn take_events(&self) -> Vec<(String, String)> {
        let mut events = Vec::new();
        loop {
            let mut name: *mut c_char = std::ptr::null_mut();
            let mut payload: *mut c_char = std::ptr::null_mut();
            // SAFETY: two out-pointers to our locals; written only on success.
            if unsafe { (self.api.next_event)(&mut name, &mut payload) } != 0 {
                return events;
            }
            // SAFETY: on success both are malloc'd NUL-terminated strings that we own.
            let pair = unsafe {
                (
                    self.take_text(name).unwrap_or_default(),
                    self.take_text(payload).unwrap_or_default(),
                )
            };
            events.push(pair);
        }
    }

    /// CoProcessSetLogHandler with a Rust closure: `sink(level, message)` receives every log line, from
    /// any thread. `None` restores the bridge's default (stderr). One sink per process: the previous
    /// one is dropped once the bridge says it can no longer run.
    pub fn set_log_sink(&self, sink: Option<Box<LogSink>>) {
        crate::log_sink::install(&self.api, sink)
    }

    /// CoProcessShutdown(): drivers' shutdown hooks run, they are unloaded, APIs are forgotten.
    pub fn shutdown(&self) {
        // SAFETY: takes no argument.
        unsafe { (self.api.shutdown)() }
    }
}

/// What [`Bridge::set_log_sink`] calls: `(level, message)`.
pub type LogSink = dyn Fn(&str, &str) + Send + Sync;

/// A Dispatch result: the bridge's malloc'd buffer, read in place and freed (CoProcessMessageFree)
/// on drop.
pub struct Answer {
    msg: CoProcessMessage,
    free: crate::capi::MessageFreeFn,
}

// SAFETY: the buffer is plain malloc'd memory owned by this value alone; it may be read and freed
// from any thread.
unsafe impl Send for Answer {}
// SAFETY: shared access only reads the buffer.
unsafe impl Sync for Answer {}

impl std::ops::Deref for Answer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match usize::try_from(self.msg.length) {
            Ok(len) if len > 0 && !self.msg.p_data.is_null() => {
                // SAFETY: a successful Dispatch leaves `length` readable bytes at `p_data`, owned by
                // us until drop.
                unsafe { std::slice::from_raw_parts(self.msg.p_data as *const u8, len) }
            }
            _ => &[],
        }
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Answer({} bytes)", self.len())
    }
}

impl AsRef<[u8]> for Answer {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        // SAFETY: frees the buffer Dispatch allocated, once; NULL is a no-op.
        unsafe { (self.free)(&mut self.msg) }
    }
}
