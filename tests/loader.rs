//! Loading drivers through CoProcessLoadDriver: every failure names the file and what is wrong.

mod abi;
mod common;

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;

fn load_err(name: &str, path: &std::path::Path) -> (i32, String) {
    load(name, path, None).expect_err("load must fail")
}

#[test]
fn a_missing_file_is_named() {
    let (code, msg) = load_err("missing", std::path::Path::new("/nonexistent/driver.so"));
    assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
    assert!(
        msg.starts_with("cannot load driver library /nonexistent/driver.so:"),
        "{msg}"
    );
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notalib.so");
    std::fs::write(&path, b"this is not ELF").unwrap();
    let (code, msg) = load_err("notalib", &path);
    assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
    let canonical = path.canonicalize().unwrap();
    assert!(
        msg.starts_with(&format!(
            "cannot load driver library {}:",
            canonical.display()
        )),
        "{msg}"
    );
}

#[test]
fn a_library_without_the_version_symbol_is_not_a_driver() {
    let path = common::c_test_driver(&["FAULT_NO_VERSION"]);
    let (code, msg) = load_err("noversion", &path);
    assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
    assert_eq!(
        msg,
        format!(
            "{} is not a coprocess driver: it does not export CoProcessDriverAbiVersion",
            path.display()
        )
    );
}

#[test]
fn a_wrong_abi_version_is_refused_before_symbols_are_checked() {
    let path = common::c_test_driver(&["FAULT_WRONG_VERSION"]);
    let (code, msg) = load_err("wrongversion", &path);
    assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
    assert_eq!(
        msg,
        format!(
            "driver library {} has ABI version 99; this bridge supports version 1",
            path.display()
        )
    );
}

#[test]
fn each_missing_required_symbol_is_named() {
    for (define, symbol) in [
        ("FAULT_NO_INIT", "CoProcessDriverInit"),
        ("FAULT_NO_DISPATCH", "CoProcessDriverDispatch"),
    ] {
        let path = common::c_test_driver(&[define]);
        let (code, msg) = load_err(&format!("missing-{symbol}"), &path);
        assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
        assert_eq!(
            msg,
            format!(
                "driver library {} does not export required symbol {symbol}",
                path.display()
            )
        );
    }
}

#[test]
fn a_failing_init_is_an_error_with_its_code() {
    let path = common::c_test_driver(&["FAULT_INIT_FAILS"]);
    let (code, msg) = load_err("initfails", &path);
    assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
    assert_eq!(
        msg,
        format!(
            "driver 'initfails' ({}) failed to initialise: CoProcessDriverInit returned 7",
            path.display()
        )
    );
    assert!(
        dispatch_with("initfails", &pre_object()).is_err(),
        "a failed driver is not registered"
    );
}

#[test]
fn null_and_bad_arguments_are_errors_not_crashes() {
    use coprocess_bridge::ffi::host::CoProcessLoadDriver;
    let path = c(common::c_test_driver(&[]).to_str().unwrap());
    assert_eq!(
        CoProcessLoadDriver(std::ptr::null(), path.as_ptr(), std::ptr::null()),
        COPROCESS_ERR_NULL_ARGUMENT as i32
    );
    assert_eq!(last_error(), "CoProcessLoadDriver: name is NULL");
    assert_eq!(
        CoProcessLoadDriver(c("x").as_ptr(), std::ptr::null(), std::ptr::null()),
        COPROCESS_ERR_NULL_ARGUMENT as i32
    );
    assert_eq!(last_error(), "CoProcessLoadDriver: path is NULL");
    let bad_utf8 = [0xffu8, 0xfe, 0];
    assert_eq!(
        CoProcessLoadDriver(
            bad_utf8.as_ptr() as *const _,
            path.as_ptr(),
            std::ptr::null()
        ),
        COPROCESS_ERR_INVALID_UTF8 as i32
    );
    assert_eq!(last_error(), "CoProcessLoadDriver: name is not valid UTF-8");
    let (code, msg) = load("", &common::c_test_driver(&[]), None).unwrap_err();
    assert_eq!(
        (code, msg.as_str()),
        (COPROCESS_ERR_LOAD_FAILED as i32, "driver name is empty")
    );
}

#[test]
fn a_name_can_be_taken_only_once() {
    let path = common::c_test_driver(&[]);
    load("taken", &path, None).unwrap();
    let (code, msg) = load("taken", &path, None).unwrap_err();
    assert_eq!(code, COPROCESS_ERR_ALREADY_EXISTS as i32);
    assert_eq!(msg, "a driver named 'taken' is already loaded");
}

#[test]
fn the_same_file_under_two_names_gives_two_instances() {
    let path = common::build_c_driver(
        &common::repo_root().join("examples/c_driver/c_driver.c"),
        &[],
    );
    load(
        "twin-a",
        &path,
        Some(r#"{"header_name": "X-Twin", "header_value": "a"}"#),
    )
    .unwrap();
    load(
        "twin-b",
        &path,
        Some(r#"{"header_name": "X-Twin", "header_value": "b"}"#),
    )
    .unwrap();
    let a = dispatch_with("twin-a", &pre_object()).unwrap();
    let b = dispatch_with("twin-b", &pre_object()).unwrap();
    assert_eq!(set_header(&a, "X-Twin").as_deref(), Some("a"));
    assert_eq!(set_header(&b, "X-Twin").as_deref(), Some("b"));
}

#[test]
fn optional_symbols_are_optional() {
    use coprocess_bridge::ffi::host::CoProcessLoadBundle;
    let without = common::c_test_driver(&[]);
    load("no-optional", &without, None).unwrap();
    let rc = CoProcessLoadBundle(c("no-optional").as_ptr(), c("/bundles/x").as_ptr());
    assert_eq!(rc, COPROCESS_ERR_DRIVER_FAILED as i32);
    assert_eq!(
        last_error(),
        "driver 'no-optional' does not support bundles (no CoProcessDriverLoadBundle)"
    );

    let with = common::c_test_driver(&["WITH_OPTIONAL", "VERSION_TAG=\"opt\""]);
    load("with-optional", &with, None).unwrap();
    assert_eq!(
        CoProcessLoadBundle(c("with-optional").as_ptr(), c("/bundles/y").as_ptr()),
        0
    );
    assert_eq!(get("test_driver:bundle"), "/bundles/y");
    let rc = CoProcessLoadBundle(c("nobody").as_ptr(), c("/bundles/y").as_ptr());
    assert_eq!(rc, COPROCESS_ERR_UNKNOWN_DRIVER as i32);
}

#[test]
fn a_relative_path_is_resolved_not_searched() {
    // "libc.so.6" would be found by dlopen's search; the loader must treat it as a file path instead.
    let (code, msg) = load_err("relative", std::path::Path::new("libc.so.6"));
    assert_eq!(code, COPROCESS_ERR_LOAD_FAILED as i32);
    assert!(
        msg.starts_with("cannot load driver library libc.so.6:"),
        "{msg}"
    );
}
