//! Safe access to the services the bridge hands a driver at init (`struct CoProcessHostApi`).

use std::ffi::{c_char, CStr, CString};

use crate::sys::CoProcessHostApi;

/// Log levels the host understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    /// The level a plugin names (Tyk's and Python's names, any case); unknown names are `Info`.
    pub fn from_name(name: &str) -> Level {
        match name.to_ascii_lowercase().as_str() {
            "debug" | "trace" => Level::Debug,
            "warning" | "warn" => Level::Warning,
            "error" | "critical" | "fatal" | "panic" => Level::Error,
            _ => Level::Info,
        }
    }

    fn as_cstr(self) -> &'static CStr {
        match self {
            Level::Debug => c"debug",
            Level::Info => c"info",
            Level::Warning => c"warning",
            Level::Error => c"error",
        }
    }
}

/// The bridge's services. Cheap to copy; valid until the driver instance is shut down (the bridge
/// promises the pointers live that long), so keep it in your driver struct.
#[derive(Clone, Copy)]
pub struct Host {
    api: *const CoProcessHostApi,
}

// SAFETY: the driver ABI says every host callback may be called from any thread at any time.
unsafe impl Send for Host {}
// SAFETY: as above.
unsafe impl Sync for Host {}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

/// Turns a Rust string into a C string, replacing interior NULs (C cannot carry them).
fn c(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

impl Host {
    /// Wraps the pointer the bridge passed to `CoProcessDriverInit`. A NULL pointer gives a host whose
    /// services do nothing (useful in unit tests of a driver).
    ///
    /// # Safety
    /// `api` must be NULL or point to a `CoProcessHostApi` that outlives every use of this `Host`.
    pub unsafe fn from_raw(api: *const CoProcessHostApi) -> Host {
        Host { api }
    }

    /// A host whose services do nothing: `get` returns `None`. For unit tests of driver logic.
    pub fn detached() -> Host {
        Host {
            api: std::ptr::null(),
        }
    }

    fn api(&self) -> Option<&CoProcessHostApi> {
        // SAFETY: `from_raw`'s contract: NULL or valid for our lifetime.
        unsafe { self.api.as_ref() }
    }

    /// The bridge's driver ABI version (0 for a detached host).
    pub fn abi_version(&self) -> u32 {
        self.api().map_or(0, |a| a.abi_version)
    }

    pub fn log(&self, level: Level, message: &str) {
        if let Some(f) = self.api().and_then(|a| a.log) {
            let m = c(message);
            // SAFETY: a host callback with valid C strings for the call.
            unsafe { f(m.as_ptr(), level.as_cstr().as_ptr()) }
        }
    }

    /// Stores `value` under `key`; `ttl_seconds` 0 keeps it until overwritten.
    pub fn store(&self, key: &str, value: &str, ttl_seconds: i32) {
        if let Some(f) = self.api().and_then(|a| a.store_data) {
            let (k, v) = (c(key), c(value));
            // SAFETY: a host callback with valid C strings for the call.
            unsafe { f(k.as_ptr(), v.as_ptr(), ttl_seconds) }
        }
    }

    /// The value under `key`; `None` when absent or expired (the host's "" answer).
    pub fn get(&self, key: &str) -> Option<String> {
        let api = self.api()?;
        let get = api.get_data?;
        let k = c(key);
        // SAFETY: a host callback with a valid C string; it returns NULL or a malloc'd C string.
        let p: *mut c_char = unsafe { get(k.as_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-NULL, NUL-terminated, owned by us until freed below.
        let value = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        match api.free_data {
            // SAFETY: release with the allocator that made it, as the ABI asks.
            Some(free) => unsafe { free(p.cast()) },
            // SAFETY: the ABI says get_data results are malloc'd.
            None => unsafe { libc::free(p.cast()) },
        }
        (!value.is_empty()).then_some(value)
    }

    /// Raises a Tyk event; it reaches the host's event handler.
    pub fn trigger_event(&self, name: &str, payload: &str) {
        if let Some(f) = self.api().and_then(|a| a.trigger_event) {
            let (n, p) = (c(name), c(payload));
            // SAFETY: a host callback with valid C strings for the call.
            unsafe { f(n.as_ptr(), p.as_ptr()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Level;

    #[test]
    fn levels_follow_tyk_and_python_names() {
        assert_eq!(Level::from_name("debug"), Level::Debug);
        assert_eq!(Level::from_name("INFO"), Level::Info);
        assert_eq!(Level::from_name("warn"), Level::Warning);
        assert_eq!(Level::from_name("warning"), Level::Warning);
        assert_eq!(Level::from_name("error"), Level::Error);
        assert_eq!(Level::from_name("critical"), Level::Error);
        assert_eq!(Level::from_name("whatever"), Level::Info);
    }
}
