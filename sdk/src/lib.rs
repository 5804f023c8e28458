//! Write coprocess-bridge drivers in Rust.
//!
//! ```
//! use coprocess_driver::{export_driver, Call, Driver, HookType, Host, ObjectPatch, Reply, Result};
//!
//! struct AddHeader;
//!
//! impl Driver for AddHeader {
//!     fn new(_host: Host, _config: &str) -> Result<Self> {
//!         Ok(AddHeader)
//!     }
//!     fn dispatch(&self, call: &Call) -> Result<Reply> {
//!         if call.hook_type() != HookType::Pre {
//!             return Ok(Reply::Unchanged);
//!         }
//!         Ok(ObjectPatch::new().set_header("X-Hello", "world").into())
//!     }
//! }
//! export_driver!(AddHeader);
//!
//! // hook_type = Pre (field 1, varint 1): the driver answers with a patch.
//! let reply = AddHeader.dispatch(&Call::new(&[0x08, 0x01])).unwrap();
//! assert_eq!(reply, Reply::Patch(ObjectPatch::new().set_header("X-Hello", "world")));
//! ```
//!
//! `export_driver!` emits the C symbols of `include/coprocess_driver.h`; build the crate as a `cdylib`
//! and load it with `CoProcessLoadDriver`. A hook either answers with a [`ObjectPatch`] (bytes appended
//! to the input, no decoding: the fast path for adding headers, return overrides, session fields) or
//! decodes the Object with [`Call::decode`], changes it and returns it ([`Reply::Object`]). The macro
//! exports the optional `CoProcessDriverDispatchPatch` too, so a patch reaches the bridge as it is:
//! the driver copies nothing of the input (the bridge appends the patch where it needs a whole Object)
//! and an unchanged input costs no allocation at all.
//!
//! # Panics
//! A panic in any hook is caught at the C boundary: that call fails with an error whose text says the
//! driver panicked and why (the host sees it in `CoProcessLastError`), and the driver keeps serving
//! later calls. Anything the panicking hook left half-changed in the driver's own state stays that way,
//! so keep shared state in structures that tolerate it (atomics, the host store, or a `Mutex` whose
//! poisoning you handle).

mod error;
mod export;
mod host;
mod malloc_bytes;
mod patch;
mod scan;
#[rustfmt::skip]
pub mod sys;

pub use coprocess_proto as proto;
pub use coprocess_proto::{HookType, Message, Object};
pub use error::{Error, Result};
pub use host::{Host, Level};
pub use patch::ObjectPatch;

#[doc(hidden)]
pub mod __private {
    pub use crate::export::*;
}

/// One call of a hook: the serialized Object as the bridge handed it over (already checked to be
/// well-formed), with cheap readers that do not decode it. The hook type and name are read once, when
/// the call is made: a driver asks for them several times per call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    bytes: &'a [u8],
    hook_type: HookType,
    hook_name: &'a str,
}

impl<'a> Call<'a> {
    /// Wraps serialized Object bytes (the export glue does this; tests of driver logic may too).
    pub fn new(bytes: &'a [u8]) -> Self {
        let (hook_type, hook_name) = scan::hook_type_and_name(bytes).unwrap_or_else(|| {
            use coprocess_proto::wire;
            (
                wire::hook_type(bytes),
                wire::hook_name(bytes).map(str::as_bytes),
            )
        });
        Call {
            bytes,
            hook_type: hook_type
                .and_then(|v| HookType::try_from(v).ok())
                .unwrap_or(HookType::Unknown),
            hook_name: hook_name
                .and_then(|n| std::str::from_utf8(n).ok())
                .unwrap_or(""),
        }
    }

    /// The serialized Object.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The hook type (Unknown when absent or out of range).
    pub fn hook_type(&self) -> HookType {
        self.hook_type
    }

    /// The hook name ("" when absent or not UTF-8).
    pub fn hook_name(&self) -> &'a str {
        self.hook_name
    }

    /// `spec[key]` (e.g. "APIID", "OrgID", "config_data"), read without decoding.
    pub fn spec(&self, key: &str) -> Option<&'a str> {
        coprocess_proto::wire::spec_value(self.bytes, key)
    }

    /// The whole Object, decoded.
    pub fn decode(&self) -> Result<Object> {
        Ok(Object::decode(self.bytes)?)
    }
}

/// What a hook hands back.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The input, unchanged.
    Unchanged,
    /// Changes stated as bytes appended to the input (no decode, no re-encode).
    Patch(ObjectPatch),
    /// A whole new Object (after `Call::decode` and changes). Boxed: an Object is large.
    Object(Box<Object>),
    /// An Object already serialized by other means (e.g. a language runtime's own protobuf library):
    /// handed over as is, without a decode and re-encode. The bridge checks that it is well-formed.
    Encoded(Vec<u8>),
}

impl From<ObjectPatch> for Reply {
    fn from(p: ObjectPatch) -> Self {
        Reply::Patch(p)
    }
}

impl From<Object> for Reply {
    fn from(o: Object) -> Self {
        Reply::Object(Box::new(o))
    }
}

/// A driver. One value is created per `CoProcessLoadDriver` (the same library loaded under two names
/// gives two values), and its methods are called from many threads at once.
pub trait Driver: Send + Sync + Sized + 'static {
    /// Creates the instance from the config JSON given to `CoProcessLoadDriver` ("{}" when none). An
    /// error makes the load fail.
    fn new(host: Host, config: &str) -> Result<Self>;

    /// Runs a hook.
    fn dispatch(&self, call: &Call) -> Result<Reply>;

    /// A Tyk event, as JSON: `{"message": {...}, "handler_name": "...", "spec": {...}}`.
    fn event(&self, _event_json: &str) {}

    /// Hot reload was requested.
    fn reload(&self) {}

    /// Load a plugin bundle (a directory).
    fn load_bundle(&self, path: &str) -> Result<()> {
        Err(Error::new(format!(
            "this driver does not load bundles ({path})"
        )))
    }

    /// The instance is being released; nothing is called afterwards.
    fn shutdown(&self) {}
}

/// Emits the C entry points of `include/coprocess_driver.h` for a [`Driver`] type. Use it once per
/// `cdylib`.
#[macro_export]
macro_rules! export_driver {
    ($driver:ty) => {
        #[no_mangle]
        pub extern "C" fn CoProcessDriverAbiVersion() -> u32 {
            $crate::sys::COPROCESS_DRIVER_ABI_VERSION
        }

        #[no_mangle]
        pub unsafe extern "C" fn CoProcessDriverInit(
            host: *const $crate::sys::CoProcessHostApi,
            config_json: *const ::std::ffi::c_char,
            instance: *mut *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded from the bridge, which follows the driver ABI.
            unsafe { $crate::__private::init::<$driver>(host, config_json, instance) }
        }

        #[no_mangle]
        pub unsafe extern "C" fn CoProcessDriverDispatch(
            instance: *mut ::std::ffi::c_void,
            input: *const $crate::sys::CoProcessMessage,
            out: *mut $crate::sys::CoProcessMessage,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded from the bridge, which follows the driver ABI.
            unsafe { $crate::__private::dispatch::<$driver>(instance, input, out) }
        }

        #[no_mangle]
        pub unsafe extern "C" fn CoProcessDriverDispatchPatch(
            instance: *mut ::std::ffi::c_void,
            input: *const $crate::sys::CoProcessMessage,
            out: *mut $crate::sys::CoProcessMessage,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded from the bridge, which follows the driver ABI.
            unsafe { $crate::__private::dispatch_patch::<$driver>(instance, input, out) }
        }

        #[no_mangle]
        pub unsafe extern "C" fn CoProcessDriverDispatchEvent(
            instance: *mut ::std::ffi::c_void,
            event_json: *const ::std::ffi::c_char,
        ) {
            // SAFETY: forwarded from the bridge, which follows the driver ABI.
            unsafe { $crate::__private::dispatch_event::<$driver>(instance, event_json) }
        }

        #[no_mangle]
        pub unsafe extern "C" fn CoProcessDriverReload(instance: *mut ::std::ffi::c_void) {
            // SAFETY: forwarded from the bridge, which follows the driver ABI.
            unsafe { $crate::__private::reload::<$driver>(instance) }
        }

        #[no_mangle]
        pub unsafe extern "C" fn CoProcessDriverLoadBundle(
            instance: *mut ::std::ffi::c_void,
            bundle_path: *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded from the bridge, which follows the driver ABI.
            unsafe { $crate::__private::load_bundle::<$driver>(instance, bundle_path) }
        }

        #[no_mangle]
        pub unsafe extern "C" fn CoProcessDriverShutdown(instance: *mut ::std::ffi::c_void) {
            // SAFETY: forwarded from the bridge, which follows the driver ABI.
            unsafe { $crate::__private::shutdown::<$driver>(instance) }
        }
    };
}
