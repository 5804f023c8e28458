//! Starting CPython inside a process that did not plan for it.
//!
//! The bridge opens drivers with `dlopen(RTLD_LOCAL)`, so libpython (a dependency of this driver) is
//! loaded with local symbol visibility. CPython's own extension modules (`_struct`, `math`, the `upb`
//! module of `protobuf`...) are not linked against libpython and need its symbols in the global
//! scope; so before initialising, libpython is re-opened with `RTLD_GLOBAL | RTLD_NOLOAD`.
//!
//! When the process already runs Python (a Python host that loaded the bridge through ctypes), the
//! driver uses that interpreter: `Py_IsInitialized()` is true and nothing is initialised twice. The
//! host must then call the bridge without holding the GIL (ctypes.CDLL releases it; PyDLL holds it,
//! which also works since attaching is re-entrant, but serialises the host's threads).
//!
//! The interpreter is never finalised (CPython cannot be re-initialised reliably), and this library
//! pins itself in memory (`RTLD_NODELETE`): Python keeps objects whose code lives here (the host API
//! type), so unmapping it after `CoProcessDriverShutdown` or a reload would crash later.

use std::ffi::{c_void, CStr};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::Python;

/// Initialises the interpreter once per process (per copy of this library). Returns a note for the log
/// when something was unusual but not fatal.
pub fn ensure_initialized() -> Result<Option<String>, String> {
    static DONE: OnceLock<Result<Option<String>, String>> = OnceLock::new();
    DONE.get_or_init(initialize).clone()
}

fn initialize() -> Result<Option<String>, String> {
    let mut notes = Vec::new();
    if let Err(e) = pin_library(ensure_initialized as *const c_void, libc::RTLD_NODELETE) {
        notes.push(format!("could not pin the python driver in memory: {e}"));
    }
    // SAFETY: Py_IsInitialized may be called at any time, even before initialisation.
    let running = unsafe { ffi::Py_IsInitialized() } != 0;
    if !running {
        if let Err(e) = pin_library(ffi::Py_IsInitialized as *const c_void, libc::RTLD_GLOBAL) {
            notes.push(format!(
                "libpython's symbols could not be made global ({e}); extension modules may fail to import"
            ));
        }
    }
    Python::initialize();
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}

/// Re-opens the shared object that contains `symbol` with `RTLD_NOLOAD | RTLD_NOW | extra_flags`.
/// The handle is deliberately never closed.
fn pin_library(symbol: *const c_void, extra_flags: libc::c_int) -> Result<(), String> {
    // SAFETY: an all-zero Dl_info is a valid value for dladdr to fill.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `symbol` is the address of a function of a loaded object; `info` is writable.
    if unsafe { libc::dladdr(symbol, &mut info) } == 0 || info.dli_fname.is_null() {
        return Err("dladdr found no shared object".into());
    }
    // SAFETY: dladdr filled dli_fname with a NUL-terminated path owned by the dynamic loader.
    let file = unsafe { CStr::from_ptr(info.dli_fname) };
    // SAFETY: RTLD_NOLOAD only changes flags of an object already loaded; no code runs.
    let handle = unsafe {
        libc::dlopen(
            file.as_ptr(),
            libc::RTLD_NOLOAD | libc::RTLD_NOW | extra_flags,
        )
    };
    if handle.is_null() {
        return Err(format!("dlopen({}) failed", file.to_string_lossy()));
    }
    Ok(())
}

/// Gives the calling thread a Python thread state that outlives one call, when it has none.
///
/// Attaching a thread that has no thread state creates one, and detaching deletes it again; on
/// Python 3.11 that also maps and unmaps the frame stack, so a gateway thread would pay for it on
/// every hook. Instead each bridge thread keeps one (with the GIL released: it is only taken around
/// Python work) until the thread exits. Threads that Python itself owns (a Python host's threads)
/// already have one and are left alone.
pub fn keep_thread_state() {
    thread_local! {
        static KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        static GUARD: std::cell::RefCell<Option<KeptThreadState>> = const { std::cell::RefCell::new(None) };
    }
    if KEPT.with(|k| k.replace(true)) {
        return;
    }
    // SAFETY: the interpreter is initialised (drivers are created first); the GIL is not held by
    // this thread here (callers are outside any attach).
    let kept = unsafe {
        if ffi::PyGILState_GetThisThreadState().is_null() {
            let _ = ffi::PyGILState_Ensure();
            ffi::PyEval_SaveThread();
            true
        } else {
            false
        }
    };
    if kept {
        // try_with: during thread teardown the slot may be gone; then the state is simply kept.
        let _ = GUARD.try_with(|g| *g.borrow_mut() = Some(KeptThreadState));
    }
}

/// Deletes the kept thread state when its thread exits.
struct KeptThreadState;

impl Drop for KeptThreadState {
    fn drop(&mut self) {
        // SAFETY: this thread made its thread state in `keep_thread_state` and released the GIL;
        // re-taking it and releasing the last reference deletes the state (and releases the GIL).
        // Skipped when the interpreter is gone (finalised by a Python host) or the state was
        // already deleted.
        unsafe {
            if ffi::Py_IsInitialized() == 0 {
                return;
            }
            let state = ffi::PyGILState_GetThisThreadState();
            if state.is_null() {
                return;
            }
            ffi::PyEval_RestoreThread(state);
            ffi::PyGILState_Release(ffi::PyGILState_STATE::PyGILState_UNLOCKED);
        }
    }
}
