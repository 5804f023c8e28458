//! The C API of `api.h` as a table of function pointers, filled by `dlopen` (what a foreign host
//! does) or handed in by a program that links the bridge and takes the pointers of its exports.

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

use libloading::Library;

/// `struct CoProcessMessage` of api.h: `length` bytes at `p_data`.
#[repr(C)]
#[derive(Debug)]
pub struct CoProcessMessage {
    pub p_data: *mut c_void,
    pub length: c_int,
}

/// `CoProcessLogHandler` of api.h.
pub type LogHandler = unsafe extern "C" fn(*const c_char, *const c_char, *mut c_void);

/// `Dispatch`.
pub type DispatchFn = unsafe extern "C" fn(*const CoProcessMessage, *mut CoProcessMessage) -> c_int;
/// `DispatchWithDriver`.
pub type DispatchWithDriverFn =
    unsafe extern "C" fn(*const c_char, *const CoProcessMessage, *mut CoProcessMessage) -> c_int;
/// `CoProcessMessageFree`.
pub type MessageFreeFn = unsafe extern "C" fn(*mut CoProcessMessage);

/// The api.h functions a host calls, with the signatures api.h declares.
#[derive(Clone, Copy)]
pub struct CApi {
    pub init: unsafe extern "C" fn(*const c_char) -> c_int,
    pub load_driver: unsafe extern "C" fn(*const c_char, *const c_char, *const c_char) -> c_int,
    pub dispatch: unsafe extern "C" fn(*const CoProcessMessage, *mut CoProcessMessage) -> c_int,
    pub dispatch_with_driver: unsafe extern "C" fn(
        *const c_char,
        *const CoProcessMessage,
        *mut CoProcessMessage,
    ) -> c_int,
    pub dispatch_event: unsafe extern "C" fn(*const c_char),
    pub message_free: unsafe extern "C" fn(*mut CoProcessMessage),
    pub free: unsafe extern "C" fn(*mut c_void),
    pub last_error: unsafe extern "C" fn() -> *const c_char,
    pub clear_last_error: unsafe extern "C" fn(),
    pub set_log_handler: unsafe extern "C" fn(Option<LogHandler>, *mut c_void),
    pub next_event: unsafe extern "C" fn(*mut *mut c_char, *mut *mut c_char) -> c_int,
    pub shutdown: unsafe extern "C" fn(),
    pub load_api: unsafe extern "C" fn(*const c_char) -> c_int,
    pub list_apis: unsafe extern "C" fn() -> *mut c_char,
    pub metrics: unsafe extern "C" fn(c_int) -> *mut c_char,
    pub version: unsafe extern "C" fn() -> *const c_char,
}

fn symbol<T: Copy>(lib: &Library, path: &Path, name: &str) -> Result<T, String> {
    let cname = format!("{name}\0");
    // SAFETY: every symbol is looked up with the signature api.h declares for it (the field types of
    // `CApi`).
    unsafe { lib.get::<T>(cname.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("{}: missing symbol {name}: {e}", path.display()))
}

impl CApi {
    /// Opens the bridge library at `path` with `dlopen` and looks up every function by name.
    ///
    /// The library stays mapped for the rest of the process: unloading a Rust cdylib whose
    /// thread-locals other threads still hold crashes them at thread exit, and every [`crate::Answer`]
    /// may outlive the handle that made it.
    pub fn open(path: &Path) -> Result<CApi, String> {
        let path = path
            .canonicalize()
            .map_err(|e| format!("bridge library {}: {e}", path.display()))?;
        // SAFETY: loading the bridge runs no initialisers beyond Rust's std ones.
        let lib = unsafe { Library::new(&path) }
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let api = CApi {
            init: symbol(&lib, &path, "CoProcessInit")?,
            load_driver: symbol(&lib, &path, "CoProcessLoadDriver")?,
            dispatch: symbol(&lib, &path, "Dispatch")?,
            dispatch_with_driver: symbol(&lib, &path, "DispatchWithDriver")?,
            dispatch_event: symbol(&lib, &path, "DispatchEvent")?,
            message_free: symbol(&lib, &path, "CoProcessMessageFree")?,
            free: symbol(&lib, &path, "CoProcessFree")?,
            last_error: symbol(&lib, &path, "CoProcessLastError")?,
            clear_last_error: symbol(&lib, &path, "CoProcessClearLastError")?,
            set_log_handler: symbol(&lib, &path, "CoProcessSetLogHandler")?,
            next_event: symbol(&lib, &path, "CoProcessNextEvent")?,
            shutdown: symbol(&lib, &path, "CoProcessShutdown")?,
            load_api: symbol(&lib, &path, "CoProcessLoadApi")?,
            list_apis: symbol(&lib, &path, "CoProcessListApis")?,
            metrics: symbol(&lib, &path, "CoProcessMetrics")?,
            version: symbol(&lib, &path, "CoProcessVersion")?,
        };
        std::mem::forget(lib);
        Ok(api)
    }
}
