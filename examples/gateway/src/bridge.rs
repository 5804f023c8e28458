//! The bridge, opened the way a foreign host opens it: `dlopen` of `libcoprocess_bridge.so` and a
//! lookup of each C function by name (no Rust linkage to the bridge crate). Only the functions the
//! gateway calls are looked up; their contracts are the ones `api.h` documents.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

use libloading::Library;

/// `struct CoProcessMessage` of api.h.
#[repr(C)]
struct CoProcessMessage {
    p_data: *mut c_void,
    length: c_int,
}

type InitFn = unsafe extern "C" fn(*const c_char) -> c_int;
type LoadApiFn = unsafe extern "C" fn(*const c_char) -> c_int;
type ListApisFn = unsafe extern "C" fn() -> *mut c_char;
type DispatchFn = unsafe extern "C" fn(*const CoProcessMessage, *mut CoProcessMessage) -> c_int;
type MessageFreeFn = unsafe extern "C" fn(*mut CoProcessMessage);
type LastErrorFn = unsafe extern "C" fn() -> *const c_char;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type MetricsFn = unsafe extern "C" fn(c_int) -> *mut c_char;

/// A failed bridge call: its status code and CoProcessLastError() text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for BridgeError {}

pub struct Bridge {
    init: InitFn,
    load_api: LoadApiFn,
    list_apis: ListApisFn,
    dispatch: DispatchFn,
    message_free: MessageFreeFn,
    last_error: LastErrorFn,
    free: FreeFn,
    metrics: MetricsFn,
    /// Keeps the library mapped for as long as the function pointers above are used.
    _library: Library,
}

fn symbol<T: Copy>(lib: &Library, path: &Path, name: &str) -> Result<T, String> {
    let cname = format!("{name}\0");
    // SAFETY: each symbol is looked up with the signature api.h declares for it.
    unsafe { lib.get::<T>(cname.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("{}: missing symbol {name}: {e}", path.display()))
}

impl Bridge {
    /// Opens the bridge library at `path`.
    pub fn open(path: &Path) -> Result<Bridge, String> {
        let path = path
            .canonicalize()
            .map_err(|e| format!("bridge library {}: {e}", path.display()))?;
        // SAFETY: loading the bridge runs no initialisers beyond Rust's std ones.
        let lib = unsafe { Library::new(&path) }
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Bridge {
            init: symbol(&lib, &path, "CoProcessInit")?,
            load_api: symbol(&lib, &path, "CoProcessLoadApi")?,
            list_apis: symbol(&lib, &path, "CoProcessListApis")?,
            dispatch: symbol(&lib, &path, "Dispatch")?,
            message_free: symbol(&lib, &path, "CoProcessMessageFree")?,
            last_error: symbol(&lib, &path, "CoProcessLastError")?,
            free: symbol(&lib, &path, "CoProcessFree")?,
            metrics: symbol(&lib, &path, "CoProcessMetrics")?,
            _library: lib,
        })
    }

    fn failure(&self, code: c_int) -> BridgeError {
        // SAFETY: CoProcessLastError returns a valid NUL-terminated string owned by the bridge.
        let message = unsafe { CStr::from_ptr((self.last_error)()) }
            .to_string_lossy()
            .into_owned();
        BridgeError { code, message }
    }

    fn status(&self, code: c_int) -> Result<(), BridgeError> {
        if code == 0 {
            Ok(())
        } else {
            Err(self.failure(code))
        }
    }

    fn text(s: &str) -> Result<CString, BridgeError> {
        CString::new(s).map_err(|_| BridgeError {
            code: -1,
            message: "text contains a NUL byte".into(),
        })
    }

    /// CoProcessInit(config_json).
    pub fn init(&self, config_json: &str) -> Result<(), BridgeError> {
        let c = Self::text(config_json)?;
        // SAFETY: a valid NUL-terminated string, borrowed for the call.
        self.status(unsafe { (self.init)(c.as_ptr()) })
    }

    /// CoProcessLoadApi(definition).
    pub fn load_api(&self, definition_json: &str) -> Result<(), BridgeError> {
        let c = Self::text(definition_json)?;
        // SAFETY: as above.
        self.status(unsafe { (self.load_api)(c.as_ptr()) })
    }

    /// CoProcessListApis(): the loaded APIs as JSON.
    pub fn list_apis(&self) -> String {
        // SAFETY: returns NULL or a malloc'd NUL-terminated string that we free with CoProcessFree.
        unsafe {
            let p = (self.list_apis)();
            if p.is_null() {
                return "[]".into();
            }
            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
            (self.free)(p as *mut c_void);
            s
        }
    }

    /// CoProcessMetrics(0): the bridge's metrics as Prometheus text.
    pub fn metrics(&self) -> String {
        // SAFETY: returns NULL or a malloc'd NUL-terminated string that we free with CoProcessFree.
        unsafe {
            let p = (self.metrics)(0);
            if p.is_null() {
                return String::new();
            }
            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
            (self.free)(p as *mut c_void);
            s
        }
    }

    /// Dispatch(in, out): runs a hook (or an API's chain) on a serialized coprocess.Object.
    pub fn dispatch(&self, object: &[u8]) -> Result<Vec<u8>, BridgeError> {
        let length = c_int::try_from(object.len()).map_err(|_| BridgeError {
            code: -1,
            message: "object too large".into(),
        })?;
        let input = CoProcessMessage {
            p_data: object.as_ptr() as *mut c_void,
            length,
        };
        let mut out = CoProcessMessage {
            p_data: std::ptr::null_mut(),
            length: 0,
        };
        // SAFETY: `input` borrows `object` for the call (Dispatch does not keep or free it); `out`
        // is ours and receives a malloc'd buffer on success.
        let code = unsafe { (self.dispatch)(&input, &mut out) };
        if code != 0 {
            return Err(self.failure(code));
        }
        let bytes = if out.p_data.is_null() || out.length <= 0 {
            Vec::new()
        } else {
            // SAFETY: on success `out` holds `length` readable bytes.
            unsafe { std::slice::from_raw_parts(out.p_data as *const u8, out.length as usize) }
                .to_vec()
        };
        // SAFETY: frees the buffer Dispatch allocated; `out` is not used afterwards.
        unsafe { (self.message_free)(&mut out) };
        Ok(bytes)
    }
}
