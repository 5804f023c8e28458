//! Dispatch without a driver name goes to the only loaded driver. This file is its own process, so the
//! global driver set is known exactly.

mod abi;
mod common;

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::CoProcessShutdown;

#[test]
fn unnamed_dispatch_needs_exactly_one_driver() {
    let driver = common::build_c_driver(
        &common::repo_root().join("tests/drivers/test_driver.c"),
        &[],
    );

    let (code, msg) = dispatch(&pre_object()).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_NO_DRIVER as i32);
    assert_eq!(msg, "no driver is loaded: call CoProcessLoadDriver first");

    load("first", &driver, None).unwrap();
    let out = dispatch(&pre_object()).unwrap();
    assert_eq!(set_header(&out, "X-Test-Driver").as_deref(), Some("v1"));

    load("second", &driver, None).unwrap();
    let (code, msg) = dispatch(&pre_object()).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_NO_DRIVER as i32);
    assert_eq!(
        msg,
        "several drivers are loaded (first, second): name one with DispatchWithDriver"
    );
    assert!(dispatch_with("second", &pre_object()).is_ok());

    CoProcessShutdown();
    assert_eq!(
        dispatch(&pre_object()).unwrap_err().0,
        COPROCESS_ERR_NO_DRIVER as i32
    );
    load("again", &driver, None).unwrap();
    assert!(
        dispatch(&pre_object()).is_ok(),
        "the bridge is usable again after shutdown"
    );
}
