//! Calls into the bridge through its real C exports (the same functions a C host links), wrapped so tests
//! read well: every failure comes back as (status code, CoProcessLastError text).
#![allow(dead_code)]

use std::ffi::{c_char, CStr, CString};
use std::path::Path;

use coprocess_bridge::ffi::host::*;
use coprocess_bridge::ffi::tyk_api::*;
use coprocess_bridge::message::CoProcessMessage;
use coprocess_bridge::proto::{fixtures, HookType, Message, Object};

pub type Failure = (i32, String);

pub fn last_error() -> String {
    // SAFETY: CoProcessLastError always returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(CoProcessLastError()) }
        .to_string_lossy()
        .into_owned()
}

fn check(rc: i32) -> Result<(), Failure> {
    if rc == 0 {
        Ok(())
    } else {
        Err((rc, last_error()))
    }
}

pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub fn load(name: &str, path: &Path, config: Option<&str>) -> Result<(), Failure> {
    let name = c(name);
    let path = c(path.to_str().unwrap());
    let config = config.map(c);
    check(CoProcessLoadDriver(
        name.as_ptr(),
        path.as_ptr(),
        config.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
    ))
}

/// Takes a Dispatch result: copies the bytes and frees the malloc'd buffer with CoProcessMessageFree.
fn take(rc: i32, mut out: CoProcessMessage) -> Result<Vec<u8>, Failure> {
    if rc != 0 {
        assert!(
            out.p_data.is_null() && out.length == 0,
            "a failed dispatch leaves out = {{NULL, 0}}"
        );
        return Err((rc, last_error()));
    }
    let bytes = if out.p_data.is_null() {
        Vec::new()
    } else {
        // SAFETY: on success out holds `length` malloc'd bytes.
        unsafe { std::slice::from_raw_parts(out.p_data as *const u8, out.length as usize) }.to_vec()
    };
    CoProcessMessageFree(&mut out);
    assert!(out.p_data.is_null() && out.length == 0);
    Ok(bytes)
}

fn message_of(bytes: &[u8]) -> CoProcessMessage {
    CoProcessMessage {
        p_data: bytes.as_ptr() as *mut _,
        length: bytes.len() as i32,
    }
}

pub fn dispatch(input: &[u8]) -> Result<Vec<u8>, Failure> {
    let msg = message_of(input);
    let mut out = CoProcessMessage::empty();
    let rc = Dispatch(&msg, &mut out);
    take(rc, out)
}

pub fn dispatch_with(driver: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
    let msg = message_of(input);
    let mut out = CoProcessMessage::empty();
    let name = c(driver);
    let rc = DispatchWithDriver(name.as_ptr(), &msg, &mut out);
    take(rc, out)
}

/// A small Pre-hook Object, serialized.
pub fn pre_object() -> Vec<u8> {
    let mut o = fixtures::small_object();
    o.hook_type = HookType::Pre as i32;
    o.encode_to_vec()
}

/// The value a driver put in `request.set_headers[name]`.
pub fn set_header(output: &[u8], name: &str) -> Option<String> {
    let o = Object::decode(output).expect("driver output decodes");
    o.request?.set_headers.get(name).cloned()
}

pub fn store(key: &str, value: &str, ttl: i32) {
    let (k, v) = (c(key), c(value));
    TykStoreData(k.as_ptr() as *mut c_char, v.as_ptr() as *mut c_char, ttl);
}

pub fn get(key: &str) -> String {
    let k = c(key);
    let p = TykGetData(k.as_ptr() as *mut c_char);
    assert!(!p.is_null());
    // SAFETY: TykGetData returns a malloc'd NUL-terminated string, freed right after.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    CoProcessFree(p as *mut _);
    s
}

pub fn next_event() -> Option<(String, String)> {
    let mut name: *mut c_char = std::ptr::null_mut();
    let mut payload: *mut c_char = std::ptr::null_mut();
    if CoProcessNextEvent(&mut name, &mut payload) != 0 {
        return None;
    }
    // SAFETY: on success both are malloc'd NUL-terminated strings, freed right after.
    let ev = unsafe {
        (
            CStr::from_ptr(name).to_string_lossy().into_owned(),
            CStr::from_ptr(payload).to_string_lossy().into_owned(),
        )
    };
    CoProcessFree(name as *mut _);
    CoProcessFree(payload as *mut _);
    Some(ev)
}
