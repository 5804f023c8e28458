//! DispatchEvent with arbitrary text (Tyk event JSON as seeds): the bridge checks the JSON and hands it
//! to the C driver, which re-raises it as an event queued for CoProcessNextEvent (drained here so the
//! bounded queue is exercised without filling memory).
#![no_main]

use coprocess_bridge::ffi::host::{CoProcessFree, CoProcessNextEvent, DispatchEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coprocess_fuzz::setup();
    let text = coprocess_fuzz::c_string(data);
    DispatchEvent(text.as_ptr());
    let (mut name, mut payload) = (std::ptr::null_mut(), std::ptr::null_mut());
    while CoProcessNextEvent(&mut name, &mut payload) == 0 {
        CoProcessFree(name.cast());
        CoProcessFree(payload.cast());
    }
});
