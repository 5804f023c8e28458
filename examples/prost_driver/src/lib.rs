//! A driver written directly against `include/coprocess_driver.h` (no SDK): it decodes every Object with
//! prost, sets `X-Prost-Driver: 1` in `request.set_headers`, and encodes the result into one malloc'd
//! buffer of exactly the encoded size (no intermediate Vec, so large Objects cause no extra churn).
//! It is the "decode, modify, encode" workload of `cargo bench --bench dispatch`.

use std::ffi::{c_char, c_int, c_void};

use coprocess_proto::{Message, Object};

#[repr(C)]
pub struct CoProcessMessage {
    p_data: *mut c_void,
    length: c_int,
}

#[no_mangle]
pub extern "C" fn CoProcessDriverAbiVersion() -> u32 {
    1
}

/// # Safety
/// Called by the bridge with the arguments of `coprocess_driver.h`.
#[no_mangle]
pub unsafe extern "C" fn CoProcessDriverInit(
    _host: *const c_void,
    _config: *const c_char,
    instance: *mut *mut c_void,
) -> c_int {
    if !instance.is_null() {
        // SAFETY: the bridge passes a valid out-pointer.
        unsafe { *instance = std::ptr::null_mut() };
    }
    0
}

fn fail(out: &mut CoProcessMessage, why: &str) -> c_int {
    // SAFETY: plain allocation, checked; the bridge frees it.
    let p = unsafe { libc::malloc(why.len().max(1)) } as *mut u8;
    if !p.is_null() {
        // SAFETY: `p` has room for `why.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(why.as_ptr(), p, why.len()) };
        out.p_data = p as *mut c_void;
        out.length = why.len() as c_int;
    }
    1
}

fn run(input: &CoProcessMessage, out: &mut CoProcessMessage) -> c_int {
    let bytes: &[u8] = if input.p_data.is_null() || input.length <= 0 {
        &[]
    } else {
        // SAFETY: the bridge hands a valid buffer of `length` bytes for the call.
        unsafe { std::slice::from_raw_parts(input.p_data as *const u8, input.length as usize) }
    };
    let mut object = match Object::decode(bytes) {
        Ok(o) => o,
        Err(e) => return fail(out, &format!("decode: {e}")),
    };
    object
        .request
        .get_or_insert_with(Default::default)
        .set_headers
        .insert("X-Prost-Driver".into(), "1".into());
    let len = object.encoded_len();
    // SAFETY: plain allocation, checked below; ownership passes to the bridge.
    let p = unsafe { libc::malloc(len.max(1)) } as *mut u8;
    if p.is_null() {
        return fail(out, "out of memory");
    }
    // SAFETY: `p` holds `len` writable bytes, exactly what the encoder writes.
    let mut dst = unsafe { std::slice::from_raw_parts_mut(p, len) };
    if object.encode(&mut dst).is_err() {
        // SAFETY: `p` came from malloc above.
        unsafe { libc::free(p as *mut c_void) };
        return fail(out, "encode failed");
    }
    out.p_data = p as *mut c_void;
    out.length = len as c_int;
    0
}

/// # Safety
/// Called by the bridge with the arguments of `coprocess_driver.h`.
#[no_mangle]
pub unsafe extern "C" fn CoProcessDriverDispatch(
    _instance: *mut c_void,
    input: *const CoProcessMessage,
    out: *mut CoProcessMessage,
) -> c_int {
    if input.is_null() || out.is_null() {
        return 1;
    }
    // A panic must not unwind into the bridge.
    std::panic::catch_unwind(|| {
        // SAFETY: both pointers are valid for the call (checked non-NULL above).
        run(unsafe { &*input }, unsafe { &mut *out })
    })
    .unwrap_or(1)
}

#[no_mangle]
pub extern "C" fn CoProcessDriverDispatchEvent(_instance: *mut c_void, _event_json: *const c_char) {
}

#[no_mangle]
pub extern "C" fn CoProcessDriverReload(_instance: *mut c_void) {}
