//! The services handed to drivers in `CoProcessDriverInit` (struct CoProcessHostApi). They are the Tyk
//! api.h functions behind `const` signatures: one implementation serves hosts and drivers alike.

use std::ffi::{c_char, c_int, c_void};

use super::host::CoProcessFree;
use super::tyk_api::{CoProcessLog, TykGetData, TykStoreData, TykTriggerEvent};
use crate::driver::bindings::{CoProcessHostApi, COPROCESS_DRIVER_ABI_VERSION};

/// Lives for the whole process, so the pointer a driver keeps never dangles.
pub static HOST_API: CoProcessHostApi = CoProcessHostApi {
    abi_version: COPROCESS_DRIVER_ABI_VERSION,
    trigger_event: Some(trigger_event),
    store_data: Some(store_data),
    get_data: Some(get_data),
    log: Some(log),
    free_data: Some(free_data),
};

// The Tyk functions only read their string arguments; the casts just bridge Tyk's non-const signatures.

unsafe extern "C" fn trigger_event(event_name: *const c_char, payload: *const c_char) {
    TykTriggerEvent(event_name as *mut c_char, payload as *mut c_char)
}

unsafe extern "C" fn store_data(key: *const c_char, value: *const c_char, ttl: c_int) {
    TykStoreData(key as *mut c_char, value as *mut c_char, ttl)
}

unsafe extern "C" fn get_data(key: *const c_char) -> *mut c_char {
    TykGetData(key as *mut c_char)
}

unsafe extern "C" fn log(message: *const c_char, level: *const c_char) {
    CoProcessLog(message as *mut c_char, level as *mut c_char)
}

unsafe extern "C" fn free_data(p: *mut c_void) {
    CoProcessFree(p)
}
