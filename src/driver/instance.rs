//! One initialised driver instance: its library (kept mapped through an `Arc`), the opaque instance
//! pointer, and safe wrappers around each ABI call.

use std::ffi::{c_int, c_void, CStr};
use std::sync::Arc;

use super::bindings::{CoProcessHostApi, COPROCESS_DRIVER_WHOLE_OBJECT};
use super::loader::DriverLibrary;
use crate::error::{
    Error, Result, COPROCESS_ERR_DRIVER_BAD_OUTPUT, COPROCESS_ERR_DRIVER_FAILED,
    COPROCESS_ERR_LOAD_FAILED,
};
use crate::message::{CoProcessMessage, MallocBuf};

/// Longest driver-provided error text copied into `CoProcessLastError`.
const MAX_DRIVER_MESSAGE: usize = 4096;

/// What `CoProcessDriverDispatchPatch` returns when its answer is a whole Object.
const WHOLE_OBJECT: c_int = COPROCESS_DRIVER_WHOLE_OBJECT as c_int;

/// What a successful dispatch handed back, not yet checked.
#[derive(Debug)]
pub enum Output {
    /// A serialized Object: from `CoProcessDriverDispatch`, or from `CoProcessDriverDispatchPatch`
    /// returning `COPROCESS_DRIVER_WHOLE_OBJECT`.
    Whole(MallocBuf),
    /// Object fields that, appended to the input, form the answer (`CoProcessDriverDispatchPatch`).
    Patch(MallocBuf),
}

pub struct DriverInstance {
    name: Arc<str>,
    library: Arc<DriverLibrary>,
    handle: *mut c_void,
}

// SAFETY: the driver ABI requires drivers to accept calls on one instance from any thread concurrently
// (coprocess_driver.h, "Threads"); the handle is an opaque token the bridge never dereferences.
unsafe impl Send for DriverInstance {}
// SAFETY: as above.
unsafe impl Sync for DriverInstance {}

impl std::fmt::Debug for DriverInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverInstance")
            .field("name", &self.name)
            .field("library", &self.library)
            .finish()
    }
}

impl DriverInstance {
    /// Calls `CoProcessDriverInit` with `config_json`.
    pub fn start(
        name: Arc<str>,
        library: Arc<DriverLibrary>,
        host: &'static CoProcessHostApi,
        config_json: &CStr,
    ) -> Result<DriverInstance> {
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: `init` has the ABI's signature; `host` is 'static; `config_json` is a valid C string
        // for the call; `handle` is a valid out-pointer.
        let rc = unsafe { (library.init)(host, config_json.as_ptr(), &mut handle) };
        if rc != 0 {
            return Err(Error::new(
                COPROCESS_ERR_LOAD_FAILED,
                format!(
                    "driver '{name}' ({}) failed to initialise: CoProcessDriverInit returned {rc}",
                    library.source.display()
                ),
            ));
        }
        Ok(DriverInstance {
            name,
            library,
            handle,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn library(&self) -> &Arc<DriverLibrary> {
        &self.library
    }

    /// Runs one hook, through `CoProcessDriverDispatchPatch` when the driver exports it. The input is
    /// borrowed; on success the driver's malloc'd output is returned as is. The caller checks it.
    pub fn dispatch(&self, input: &[u8]) -> Result<Output> {
        let input_msg = CoProcessMessage {
            // An empty input is {NULL, 0}: a C driver never sees Rust's dangling empty-slice pointer.
            p_data: if input.is_empty() {
                std::ptr::null_mut()
            } else {
                input.as_ptr() as *mut c_void
            },
            // The caller got `input` from a C int length or checked it; saturate defensively.
            length: i32::try_from(input.len()).unwrap_or(i32::MAX),
        };
        let (entry, patching) = match self.library.dispatch_patch {
            Some(patch) => (patch, true),
            None => (self.library.dispatch, false),
        };
        let mut out = CoProcessMessage::empty();
        // SAFETY: both entry points have the ABI's dispatch signature; `input_msg` points to `input`,
        // alive for the call; `out` is a valid, zeroed out-parameter; the library stays mapped through
        // `self.library`.
        let rc = unsafe { entry(self.handle, &input_msg, &mut out) };
        let output = self.take_output(out, input)?;
        match rc {
            0 if patching => Ok(Output::Patch(output)),
            0 => Ok(Output::Whole(output)),
            WHOLE_OBJECT if patching => Ok(Output::Whole(output)),
            _ => Err(self.failure(rc, output.as_slice())),
        }
    }

    /// A failed call's error, with the message the driver gave (if any).
    fn failure(&self, rc: c_int, message: &[u8]) -> Error {
        let detail = match message {
            [] => String::from("(no message)"),
            bytes => {
                let cut = &bytes[..bytes.len().min(MAX_DRIVER_MESSAGE)];
                String::from_utf8_lossy(cut)
                    .trim_end_matches('\0')
                    .to_owned()
            }
        };
        Error::new(
            COPROCESS_ERR_DRIVER_FAILED,
            format!("driver '{}' failed (code {rc}): {detail}", self.name),
        )
    }

    /// Takes ownership of what the driver put in `out`, refusing shapes that cannot be trusted. Output
    /// that points into the input (a pass-through written as `*out = *in`) is the caller's memory, not a
    /// malloc'd buffer handed over: it is refused and never freed.
    fn take_output(&self, out: CoProcessMessage, input: &[u8]) -> Result<MallocBuf> {
        let bad = |what: String| {
            Error::new(
                COPROCESS_ERR_DRIVER_BAD_OUTPUT,
                format!("driver '{}' returned {what}", self.name),
            )
        };
        if points_into(out.p_data, input) {
            return Err(bad(
                "its input buffer as output (out->p_data points into in->p_data): a driver must hand \
                 back a malloc'd copy (coprocess_driver.h)"
                    .into(),
            ));
        }
        if out.length < 0 {
            if !out.p_data.is_null() {
                // SAFETY: the ABI says a driver's p_data is malloc'd and handed over to us.
                unsafe { libc::free(out.p_data) };
            }
            return Err(bad(format!("a negative length ({})", out.length)));
        }
        if out.p_data.is_null() && out.length != 0 {
            return Err(bad(format!("a NULL p_data with length {}", out.length)));
        }
        // SAFETY: per the ABI, p_data is NULL or malloc'd with `length` bytes, and now ours.
        Ok(unsafe { MallocBuf::from_raw(out.p_data as *mut u8, out.length as usize) })
    }

    pub fn dispatch_event(&self, event_json: &CStr) {
        // SAFETY: ABI signature; the string is valid for the call; the library stays mapped.
        unsafe { (self.library.dispatch_event)(self.handle, event_json.as_ptr()) }
    }

    pub fn reload(&self) {
        // SAFETY: ABI signature; the library stays mapped.
        unsafe { (self.library.reload)(self.handle) }
    }

    /// Whether the driver exports `CoProcessDriverLoadBundle`.
    pub fn supports_bundles(&self) -> bool {
        self.library.load_bundle.is_some()
    }

    /// Calls the optional `CoProcessDriverLoadBundle`.
    pub fn load_bundle(&self, bundle_path: &CStr) -> Result<()> {
        let Some(load) = self.library.load_bundle else {
            return Err(Error::new(
                COPROCESS_ERR_DRIVER_FAILED,
                format!(
                    "driver '{}' does not support bundles (no CoProcessDriverLoadBundle)",
                    self.name
                ),
            ));
        };
        // SAFETY: ABI signature; the string is valid for the call.
        let rc = unsafe { load(self.handle, bundle_path.as_ptr()) };
        if rc != 0 {
            return Err(Error::new(
                COPROCESS_ERR_DRIVER_FAILED,
                format!(
                    "driver '{}' failed to load bundle {} (code {rc})",
                    self.name,
                    bundle_path.to_string_lossy()
                ),
            ));
        }
        Ok(())
    }
}

impl Drop for DriverInstance {
    /// The last reference is gone, so no call is in flight: shut the instance down.
    fn drop(&mut self) {
        if let Some(shutdown) = self.library.shutdown {
            // SAFETY: ABI signature; nothing else uses the handle any more.
            unsafe { shutdown(self.handle) }
        }
    }
}

/// Whether `p` lies inside `input` (an empty input was passed as NULL: nothing points into it).
fn points_into(p: *mut c_void, input: &[u8]) -> bool {
    let start = input.as_ptr() as usize;
    (start..start + input.len()).contains(&(p as usize))
}

/// What a successful dispatch handed back, for `bad output` checks by the caller.
pub fn bad_output(name: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        COPROCESS_ERR_DRIVER_BAD_OUTPUT,
        format!(
            "driver '{name}' returned bytes that are not a well-formed coprocess.Object: {why}"
        ),
    )
}

/// What a successful `CoProcessDriverDispatchPatch` handed back, for `bad output` checks by the caller.
pub fn bad_patch(name: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        COPROCESS_ERR_DRIVER_BAD_OUTPUT,
        format!("driver '{name}' returned a patch that is not well-formed coprocess.Object fields: {why}"),
    )
}
