//! Dispatch with arbitrary bytes. Seeds are valid Objects (proto fixtures, and Objects routed to the
//! fuzz APIs' chains and ID extractors), so mutations reach the routing, chain editing, extraction and
//! output checks, not only the input validator. Invariants: no crash or hang; a successful answer is
//! an Object the bridge's own wire check accepts, for an input it accepted.
//! The wire check must also agree with prost's decode on every input, and `check_object` (the
//! check that also reads the routing values) with both.
#![no_main]

use coprocess_proto::{wire, Message, Object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coprocess_fuzz::setup();
    let valid = wire::validate_object(data).is_ok();
    let decoded = Object::decode(data);
    assert_eq!(valid, decoded.is_ok(), "wire check and prost disagree");
    match (wire::check_object(data), decoded) {
        (Ok(routing), Ok(object)) => {
            assert_eq!(routing.hook_type(), object.hook_type, "check_object's hook_type");
            assert_eq!(
                routing.api_id(),
                object.spec.get("APIID").map(String::as_str),
                "check_object's APIID"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!("check_object and prost disagree"),
    }
    if data.len() > i32::MAX as usize {
        return;
    }
    if let Ok(out) = coprocess_fuzz::dispatch(data) {
        assert!(valid, "an invalid Object was dispatched");
        assert!(
            wire::validate_object(&out).is_ok(),
            "the bridge handed back an Object its own check refuses"
        );
    }
});
