//! Dispatch through the C exports: input checks, routing by name, and every way a driver can fail.

mod abi;
mod common;

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::{Dispatch, DispatchWithDriver};
use coprocess_bridge::message::CoProcessMessage;
use coprocess_bridge::proto::{fixtures, Message, Object};

/// Loads the test driver built with `defines` under `name`.
fn loaded(name: &str, defines: &[&str]) -> String {
    load(name, &common::c_test_driver(defines), None).unwrap();
    name.to_string()
}

#[test]
fn a_good_object_comes_back_changed_by_the_driver_and_the_input_is_untouched() {
    let d = loaded("pass", &["VERSION_TAG=\"pass\""]);
    for object in [
        fixtures::small_object(),
        fixtures::typical_object(),
        fixtures::large_object(),
    ] {
        let input = object.encode_to_vec();
        let before = input.clone();
        let out = dispatch_with(&d, &input).unwrap();
        assert_eq!(
            input, before,
            "the input is borrowed, not consumed or changed"
        );
        let decoded = Object::decode(out.as_slice()).unwrap();
        let mut expected = object.clone();
        expected
            .request
            .get_or_insert_with(Default::default)
            .set_headers
            .insert("X-Test-Driver".into(), "pass".into());
        assert_eq!(decoded, expected);
    }
}

#[test]
fn null_pointers_and_negative_lengths_are_refused() {
    let d = c(&loaded("nulls", &[]));
    let input = pre_object();
    let good = CoProcessMessage {
        p_data: input.as_ptr() as *mut _,
        length: input.len() as i32,
    };
    let mut out = CoProcessMessage {
        p_data: std::ptr::dangling_mut(),
        length: 99,
    };

    assert_eq!(
        DispatchWithDriver(d.as_ptr(), std::ptr::null(), &mut out),
        COPROCESS_ERR_NULL_ARGUMENT as i32
    );
    assert_eq!(last_error(), "Dispatch: in is NULL");
    assert!(
        out.p_data.is_null() && out.length == 0,
        "out is cleared on failure"
    );

    assert_eq!(
        DispatchWithDriver(d.as_ptr(), &good, std::ptr::null_mut()),
        COPROCESS_ERR_NULL_ARGUMENT as i32
    );
    assert_eq!(last_error(), "Dispatch: out is NULL");

    assert_eq!(
        DispatchWithDriver(std::ptr::null(), &good, &mut out),
        COPROCESS_ERR_NULL_ARGUMENT as i32
    );
    assert_eq!(last_error(), "DispatchWithDriver: driver is NULL");

    let negative = CoProcessMessage {
        p_data: input.as_ptr() as *mut _,
        length: -4,
    };
    assert_eq!(
        DispatchWithDriver(d.as_ptr(), &negative, &mut out),
        COPROCESS_ERR_INVALID_LENGTH as i32
    );
    assert_eq!(last_error(), "Dispatch: in: length is negative (-4)");

    let null_data = CoProcessMessage {
        p_data: std::ptr::null_mut(),
        length: 12,
    };
    assert_eq!(
        DispatchWithDriver(d.as_ptr(), &null_data, &mut out),
        COPROCESS_ERR_NULL_ARGUMENT as i32
    );
    assert_eq!(
        last_error(),
        "Dispatch: in: p_data is NULL but length is 12"
    );

    assert_eq!(
        Dispatch(std::ptr::null(), std::ptr::null_mut()),
        COPROCESS_ERR_NULL_ARGUMENT as i32
    );
}

#[test]
fn an_empty_input_is_an_empty_object() {
    let d = loaded("empty", &["VERSION_TAG=\"e\""]);
    let out = dispatch_with(&d, &[]).unwrap();
    assert_eq!(set_header(&out, "X-Test-Driver").as_deref(), Some("e"));
}

#[test]
fn bytes_that_are_not_an_object_never_reach_the_driver() {
    // This driver fails every call: reaching it would give DRIVER_FAILED, not INVALID_OBJECT.
    let d = loaded("guarded", &["FAULT_DISPATCH_FAILS"]);
    let cases: [(&[u8], &str); 4] = [
        (
            b"\xff\xff\xff",
            "input is not a well-formed coprocess.Object",
        ),
        (b"\x1a\x05ab", "input is not a well-formed coprocess.Object"),
        // hook_name (field 2) with invalid UTF-8
        (
            b"\x12\x02\xc3\x28",
            "input is not a well-formed coprocess.Object",
        ),
        // field number 0
        (b"\x00\x01", "input is not a well-formed coprocess.Object"),
    ];
    for (bytes, prefix) in cases {
        let (code, msg) = dispatch_with(&d, bytes).unwrap_err();
        assert_eq!(
            code, COPROCESS_ERR_INVALID_OBJECT as i32,
            "{bytes:x?}: {msg}"
        );
        assert!(msg.starts_with(prefix), "{msg}");
    }
    let (_, msg) = dispatch_with(&d, b"\x12\x02\xc3\x28").unwrap_err();
    assert!(
        msg.contains("UTF-8"),
        "the message says what is wrong: {msg}"
    );
}

#[test]
fn an_unknown_driver_is_named_with_the_loaded_ones() {
    loaded("known", &[]);
    let (code, msg) = dispatch_with("unknown-driver", &pre_object()).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_UNKNOWN_DRIVER as i32);
    assert!(
        msg.starts_with("no driver named 'unknown-driver' is loaded (loaded: "),
        "{msg}"
    );
    assert!(msg.contains("known"), "{msg}");
}

#[test]
fn a_failing_driver_s_own_message_reaches_last_error() {
    let d = loaded("fails", &["FAULT_DISPATCH_FAILS"]);
    let (code, msg) = dispatch_with(&d, &pre_object()).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DRIVER_FAILED as i32);
    assert_eq!(msg, "driver 'fails' failed (code 3): backend unavailable");
}

#[test]
fn garbage_output_is_an_error_and_is_freed() {
    let d = loaded("garbage", &["FAULT_GARBAGE"]);
    let (code, msg) = dispatch_with(&d, &pre_object()).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DRIVER_BAD_OUTPUT as i32);
    assert!(
        msg.starts_with(
            "driver 'garbage' returned bytes that are not a well-formed coprocess.Object: "
        ),
        "{msg}"
    );
}

#[test]
fn impossible_output_shapes_are_errors() {
    let d = loaded("negative", &["FAULT_NEGATIVE_LENGTH"]);
    let (code, msg) = dispatch_with(&d, &pre_object()).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DRIVER_BAD_OUTPUT as i32);
    assert_eq!(msg, "driver 'negative' returned a negative length (-5)");

    let d = loaded("nullwithlength", &["FAULT_NULL_WITH_LENGTH"]);
    let (code, msg) = dispatch_with(&d, &pre_object()).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_DRIVER_BAD_OUTPUT as i32);
    assert_eq!(
        msg,
        "driver 'nullwithlength' returned a NULL p_data with length 10"
    );
}

#[test]
fn many_threads_dispatch_at_once() {
    let d = loaded("threads", &["VERSION_TAG=\"t\""]);
    let input = fixtures::typical_object().encode_to_vec();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..500 {
                    let out = dispatch_with(&d, &input).unwrap();
                    assert_eq!(set_header(&out, "X-Test-Driver").as_deref(), Some("t"));
                }
            });
        }
    });
}
