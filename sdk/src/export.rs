//! The glue behind `export_driver!`: the C entry points, generic over the driver type. Every entry point
//! checks its pointers and catches panics, so nothing unwinds into the bridge.

use std::any::Any;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};

use coprocess_proto::Message;

use crate::host::{Host, Level};
use crate::sys::{CoProcessHostApi, CoProcessMessage, COPROCESS_DRIVER_WHOLE_OBJECT};
use crate::{Call, Driver, Reply};

/// Return codes of a failed call (any non-zero value means failure to the bridge).
const FAILED: c_int = 1;
const PANICKED: c_int = 2;

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A malloc'd buffer being filled; freed on drop unless handed over, so a `fill` that panics leaks
/// nothing.
struct Filling {
    ptr: *mut u8,
}

impl Filling {
    fn hand_over(self) -> *mut u8 {
        let p = self.ptr;
        std::mem::forget(self);
        p
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from malloc below and has not been handed over.
        unsafe { libc::free(self.ptr.cast()) }
    }
}

/// Allocates `len` bytes with malloc and lets `fill` initialise them (as `MaybeUninit`: the memory is
/// not initialised yet, so no `&mut [u8]` may exist over it). `fill` returns whether it wrote exactly
/// `len` bytes. NULL when out of memory or when `fill` fell short.
fn malloc_filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> bool) -> *mut u8 {
    // SAFETY: plain allocation of at least one byte; checked for NULL below.
    let p = unsafe { libc::malloc(len.max(1)) } as *mut u8;
    if p.is_null() {
        return p;
    }
    let buffer = Filling { ptr: p };
    // SAFETY: `p` holds `len` bytes owned by nobody else yet; MaybeUninit<u8> needs no initialisation.
    let dst = unsafe { std::slice::from_raw_parts_mut(p.cast::<MaybeUninit<u8>>(), len) };
    if fill(dst) {
        buffer.hand_over()
    } else {
        std::ptr::null_mut()
    }
}

/// Copies `parts`, one after the other, into `dst`; true when they fill it exactly.
fn copy_parts(dst: &mut [MaybeUninit<u8>], parts: &[&[u8]]) -> bool {
    let mut at = 0;
    for part in parts {
        let Some(slot) = dst.get_mut(at..at + part.len()) else {
            return false;
        };
        // SAFETY: `slot` has exactly `part.len()` bytes; `u8` and `MaybeUninit<u8>` share a layout;
        // a borrowed slice and a fresh malloc'd buffer cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(part.as_ptr(), slot.as_mut_ptr().cast(), part.len())
        };
        at += part.len();
    }
    at == dst.len()
}

fn too_large(len: usize) -> String {
    format!("the result ({len} bytes) is too large for the driver ABI")
}

/// Hands `len` malloc'd bytes to the bridge through `out`.
fn hand_over(
    out: &mut CoProcessMessage,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> bool,
) -> c_int {
    let Ok(length) = c_int::try_from(len) else {
        return fail(out, &too_large(len));
    };
    let p = malloc_filled(len, fill);
    if p.is_null() {
        return fail(
            out,
            "out of memory, or the reply was shorter than announced",
        );
    }
    out.p_data = p.cast();
    out.length = length;
    0
}

/// Reports a failure to the bridge: a malloc'd message in `out`, and a non-zero code.
fn fail(out: &mut CoProcessMessage, message: &str) -> c_int {
    fail_with(out, message, FAILED)
}

fn fail_with(out: &mut CoProcessMessage, message: &str, code: c_int) -> c_int {
    let bytes = message.as_bytes();
    let p = malloc_filled(bytes.len(), |dst| copy_parts(dst, &[bytes]));
    if !p.is_null() {
        out.p_data = p.cast();
        out.length = c_int::try_from(bytes.len()).unwrap_or(0);
    }
    code
}

/// What `CoProcessDriverDispatchPatch` returns when `out` holds a whole Object.
const WHOLE_OBJECT: c_int = COPROCESS_DRIVER_WHOLE_OBJECT as c_int;

/// Writes a reply as `CoProcessDriverDispatch` answers: a whole Object.
fn write_reply(input: &[u8], reply: Reply, out: &mut CoProcessMessage) -> c_int {
    match reply {
        Reply::Unchanged => hand_over(out, input.len(), |dst| copy_parts(dst, &[input])),
        Reply::Patch(patch) => {
            let tail = patch.as_bytes();
            hand_over(out, input.len() + tail.len(), |dst| {
                copy_parts(dst, &[input, tail])
            })
        }
        Reply::Encoded(bytes) => hand_over(out, bytes.len(), |dst| copy_parts(dst, &[&bytes])),
        Reply::Object(object) => {
            let len = object.encoded_len();
            // Encode straight into the buffer we hand over: no intermediate Vec, no extra copy.
            hand_over(out, len, |mut dst| {
                object.encode(&mut dst).is_ok() && dst.is_empty()
            })
        }
    }
}

/// Writes a reply as `CoProcessDriverDispatchPatch` answers: only what changes (nothing at all for an
/// unchanged input, so no allocation), or a whole Object under `COPROCESS_DRIVER_WHOLE_OBJECT` for the
/// replies a patch cannot state.
fn write_patch(input: &[u8], reply: Reply, out: &mut CoProcessMessage) -> c_int {
    match reply {
        Reply::Unchanged => 0,
        // The patch is already in C's heap: its block is the answer, no copy.
        Reply::Patch(patch) => match patch.into_malloced() {
            None => 0,
            Some((block, len)) => match c_int::try_from(len) {
                Ok(length) => {
                    out.p_data = block.cast();
                    out.length = length;
                    0
                }
                Err(_) => {
                    // SAFETY: the block `into_malloced` handed over, not given to the bridge.
                    unsafe { libc::free(block.cast()) };
                    fail(out, &too_large(len))
                }
            },
        },
        whole @ (Reply::Object(_) | Reply::Encoded(_)) => match write_reply(input, whole, out) {
            0 => WHOLE_OBJECT,
            failed => failed,
        },
    }
}

/// # Safety
/// Arguments as `CoProcessDriverInit` receives them from the bridge.
pub unsafe fn init<D: Driver>(
    host: *const CoProcessHostApi,
    config_json: *const c_char,
    instance: *mut *mut c_void,
) -> c_int {
    // SAFETY: the bridge keeps `host` valid until shutdown of this instance.
    let host = unsafe { Host::from_raw(host) };
    if instance.is_null() {
        host.log(Level::Error, "CoProcessDriverInit: instance is NULL");
        return FAILED;
    }
    let config = if config_json.is_null() {
        "{}"
    } else {
        // SAFETY: a NUL-terminated string valid for the call.
        match unsafe { CStr::from_ptr(config_json) }.to_str() {
            Ok(s) => s,
            Err(_) => {
                host.log(Level::Error, "driver config is not valid UTF-8");
                return FAILED;
            }
        }
    };
    match catch_unwind(AssertUnwindSafe(|| D::new(host, config))) {
        Ok(Ok(driver)) => {
            // SAFETY: checked non-NULL; the bridge owns the slot.
            unsafe { *instance = Box::into_raw(Box::new(Instance { host, driver })).cast() };
            0
        }
        Ok(Err(e)) => {
            host.log(Level::Error, &format!("driver init failed: {e}"));
            FAILED
        }
        Err(p) => {
            host.log(
                Level::Error,
                &format!("driver init panicked: {}", panic_text(p)),
            );
            PANICKED
        }
    }
}

/// What the opaque instance pointer holds: the driver and the host it was given, so the glue can log
/// failures that have no other way out (bundles, events).
struct Instance<D> {
    host: Host,
    driver: D,
}

/// The instance pointer `init` produced.
///
/// # Safety
/// `instance` must be NULL or a pointer returned by `init::<D>` and not yet shut down.
unsafe fn instance<'a, D: Driver>(instance: *mut c_void) -> Option<&'a Instance<D>> {
    // SAFETY: per the contract, a live Box<Instance<D>>.
    unsafe { (instance as *const Instance<D>).as_ref() }
}

/// # Safety
/// Arguments as `CoProcessDriverDispatch` receives them from the bridge.
pub unsafe fn dispatch<D: Driver>(
    instance: *mut c_void,
    input: *const CoProcessMessage,
    out: *mut CoProcessMessage,
) -> c_int {
    // SAFETY: forwarded as received.
    unsafe { run_hook::<D>(instance, input, out, write_reply) }
}

/// # Safety
/// Arguments as `CoProcessDriverDispatchPatch` receives them from the bridge.
pub unsafe fn dispatch_patch<D: Driver>(
    instance: *mut c_void,
    input: *const CoProcessMessage,
    out: *mut CoProcessMessage,
) -> c_int {
    // SAFETY: forwarded as received.
    unsafe { run_hook::<D>(instance, input, out, write_patch) }
}

/// Runs the driver's hook on the input and answers through `write`.
///
/// # Safety
/// Arguments as `CoProcessDriverDispatch` receives them from the bridge.
unsafe fn run_hook<D: Driver>(
    instance: *mut c_void,
    input: *const CoProcessMessage,
    out: *mut CoProcessMessage,
    write: fn(&[u8], Reply, &mut CoProcessMessage) -> c_int,
) -> c_int {
    // SAFETY: the bridge passes a valid, zeroed out-parameter (or NULL, refused here).
    let Some(out) = (unsafe { out.as_mut() }) else {
        return FAILED;
    };
    // SAFETY: as above for `input` and `instance`.
    let (Some(input), Some(me)) = (unsafe { input.as_ref() }, unsafe {
        self::instance::<D>(instance)
    }) else {
        return fail(out, "CoProcessDriverDispatch: NULL instance or input");
    };
    let bytes: &[u8] = match usize::try_from(input.length) {
        Ok(0) => &[],
        Ok(_) if input.p_data.is_null() => return fail(out, "input p_data is NULL"),
        // SAFETY: the bridge hands `length` readable bytes, valid for the call.
        Ok(n) => unsafe { std::slice::from_raw_parts(input.p_data as *const u8, n) },
        Err(_) => return fail(out, "input length is negative"),
    };
    let call = Call::new(bytes);
    // The reply is written inside catch_unwind too: encoding runs the driver's types' code.
    let answered = catch_unwind(AssertUnwindSafe(|| {
        me.driver
            .dispatch(&call)
            .map(|reply| write(bytes, reply, &mut *out))
    }));
    match answered {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => fail(out, e.message()),
        Err(p) => fail_with(
            out,
            &format!("driver panicked: {}", panic_text(p)),
            PANICKED,
        ),
    }
}

/// # Safety
/// Arguments as `CoProcessDriverDispatchEvent` receives them from the bridge.
pub unsafe fn dispatch_event<D: Driver>(instance: *mut c_void, event_json: *const c_char) {
    // SAFETY: per the ABI.
    let Some(me) = (unsafe { self::instance::<D>(instance) }) else {
        return;
    };
    if event_json.is_null() {
        return;
    }
    // SAFETY: a NUL-terminated string valid for the call.
    let json = unsafe { CStr::from_ptr(event_json) }.to_string_lossy();
    // A panicking event handler loses that event only.
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| me.driver.event(&json))) {
        me.host.log(
            Level::Error,
            &format!("driver event handler panicked: {}", panic_text(p)),
        );
    }
}

/// # Safety
/// Arguments as `CoProcessDriverReload` receives them from the bridge.
pub unsafe fn reload<D: Driver>(instance: *mut c_void) {
    // SAFETY: per the ABI.
    if let Some(me) = unsafe { self::instance::<D>(instance) } {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| me.driver.reload())) {
            me.host.log(
                Level::Error,
                &format!("driver reload panicked: {}", panic_text(p)),
            );
        }
    }
}

/// # Safety
/// Arguments as `CoProcessDriverLoadBundle` receives them from the bridge.
pub unsafe fn load_bundle<D: Driver>(instance: *mut c_void, bundle_path: *const c_char) -> c_int {
    // SAFETY: per the ABI.
    let Some(me) = (unsafe { self::instance::<D>(instance) }) else {
        return FAILED;
    };
    if bundle_path.is_null() {
        return FAILED;
    }
    // SAFETY: a NUL-terminated string valid for the call.
    let path = unsafe { CStr::from_ptr(bundle_path) }.to_string_lossy();
    match catch_unwind(AssertUnwindSafe(|| me.driver.load_bundle(&path))) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            me.host
                .log(Level::Error, &format!("loading bundle {path} failed: {e}"));
            FAILED
        }
        Err(p) => {
            me.host.log(
                Level::Error,
                &format!("loading bundle {path} panicked: {}", panic_text(p)),
            );
            PANICKED
        }
    }
}

/// # Safety
/// Arguments as `CoProcessDriverShutdown` receives them from the bridge; nothing uses the instance after.
pub unsafe fn shutdown<D: Driver>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: `instance` is the Box<Instance<D>> made by `init`, released exactly once here.
    let boxed = unsafe { Box::from_raw(instance as *mut Instance<D>) };
    let host = boxed.host;
    if let Err(p) = catch_unwind(AssertUnwindSafe(move || {
        boxed.driver.shutdown();
        drop(boxed);
    })) {
        host.log(
            Level::Error,
            &format!("driver shutdown panicked: {}", panic_text(p)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Host, ObjectPatch, Result};
    use coprocess_proto::{HookType, Object};

    /// Answers by hook name, as a driver might.
    struct ByName;

    impl Driver for ByName {
        fn new(_host: Host, _config: &str) -> Result<Self> {
            Ok(ByName)
        }
        fn dispatch(&self, call: &Call) -> Result<Reply> {
            match call.hook_name() {
                "patch" => Ok(ObjectPatch::new().set_header("X-A", "1").into()),
                "empty" => Ok(ObjectPatch::new().into()),
                "object" => {
                    let mut o = call.decode()?;
                    o.hook_name = "rewritten".into();
                    Ok(o.into())
                }
                "encoded" => Ok(Reply::Encoded(vec![0x12, 0x01, b'e'])),
                "fail" => Err(Error::new("no")),
                "panic" => panic!("on purpose"),
                _ => Ok(Reply::Unchanged),
            }
        }
    }

    /// Calls an entry point of a `ByName` instance; gives its code and what it put in `out`.
    fn call(
        entry: unsafe fn(*mut c_void, *const CoProcessMessage, *mut CoProcessMessage) -> c_int,
        input: &[u8],
    ) -> (c_int, Option<Vec<u8>>) {
        let mut instance = std::ptr::null_mut();
        // SAFETY: a NULL host gives a detached one; the config is a C string; `instance` is writable.
        assert_eq!(
            unsafe { init::<ByName>(std::ptr::null(), c"{}".as_ptr(), &mut instance) },
            0
        );
        let msg = CoProcessMessage {
            p_data: input.as_ptr() as *mut c_void,
            length: input.len() as c_int,
        };
        let mut out = CoProcessMessage {
            p_data: std::ptr::null_mut(),
            length: 0,
        };
        // SAFETY: a live instance, an input valid for the call, a zeroed out-parameter.
        let rc = unsafe { entry(instance, &msg, &mut out) };
        let bytes = (!out.p_data.is_null()).then(|| {
            // SAFETY: the entry point handed over `length` malloc'd bytes, freed here.
            let v =
                unsafe { std::slice::from_raw_parts(out.p_data as *const u8, out.length as usize) }
                    .to_vec();
            // SAFETY: as above.
            unsafe { libc::free(out.p_data) };
            v
        });
        // SAFETY: the instance `init` made, released once.
        unsafe { shutdown::<ByName>(instance) };
        (rc, bytes)
    }

    fn object(hook_name: &str) -> Vec<u8> {
        Object {
            hook_type: HookType::Pre as i32,
            hook_name: hook_name.into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// The patch entry point answers what the whole one answers, less the input: a patch as it is,
    /// nothing (not even an allocation) for an unchanged input, and a whole Object under its own code.
    #[test]
    fn the_patch_entry_point_answers_only_what_changes() {
        for name in ["patch", "empty", "unchanged"] {
            let input = object(name);
            let (rc, whole) = call(dispatch::<ByName>, &input);
            assert_eq!(rc, 0);
            let (rc, patch) = call(dispatch_patch::<ByName>, &input);
            assert_eq!(rc, 0, "{name}");
            let patch = patch.unwrap_or_default();
            assert_eq!(
                [input.as_slice(), &patch].concat(),
                whole.unwrap(),
                "{name}"
            );
            assert_eq!(patch.is_empty(), name != "patch", "{name}");
        }
        for name in ["object", "encoded"] {
            let input = object(name);
            let (_, whole) = call(dispatch::<ByName>, &input);
            assert_eq!(
                call(dispatch_patch::<ByName>, &input),
                (WHOLE_OBJECT, whole),
                "{name}"
            );
        }
        let (rc, message) = call(dispatch_patch::<ByName>, &object("fail"));
        assert_eq!((rc, message.as_deref()), (FAILED, Some(&b"no"[..])));
        let (rc, message) = call(dispatch_patch::<ByName>, &object("panic"));
        assert_eq!(rc, PANICKED);
        assert!(String::from_utf8(message.unwrap())
            .unwrap()
            .contains("on purpose"));
    }
}
