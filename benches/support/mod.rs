//! What the dispatch and scaling benches share: building the drivers they load, calling a driver
//! directly (the baseline) and through the bridge.

// Each bench compiles its own copy of this module and uses part of it.
#![allow(dead_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use coprocess_bridge::driver::bindings::CoProcessHostApi;
use coprocess_bridge::ffi::driver_host::HOST_API;
use coprocess_bridge::ffi::host::{CoProcessLoadDriver, CoProcessMessageFree, DispatchWithDriver};
use coprocess_bridge::message::CoProcessMessage;

type InitFn =
    unsafe extern "C" fn(*const CoProcessHostApi, *const c_char, *mut *mut c_void) -> c_int;
type DispatchFn =
    unsafe extern "C" fn(*mut c_void, *const CoProcessMessage, *mut CoProcessMessage) -> c_int;

pub fn target_dir() -> PathBuf {
    // target/<profile>/deps/<bench>-<hash> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Compiles benches/drivers/pass_through.c: a driver that hands back a malloc'd copy of its input.
pub fn build_pass_through() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = target_dir().join("bench-pass_through.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
        ])
        .arg(root.join("include"))
        .arg(root.join("benches/drivers/pass_through.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run cc");
    assert!(status.success(), "compiling the pass-through driver failed");
    out
}

/// Builds a workspace driver crate in release and returns its `lib<lib>.so`.
pub fn build_crate(package: &str, lib: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "building {package} failed");
    target_dir().join(format!("lib{lib}.so"))
}

/// Loads `path` into the bridge under `name`.
pub fn load(name: &str, path: &Path, config: &str) {
    let (n, p, c) = (
        CString::new(name).unwrap(),
        CString::new(path.to_str().unwrap()).unwrap(),
        CString::new(config).unwrap(),
    );
    assert_eq!(
        CoProcessLoadDriver(n.as_ptr(), p.as_ptr(), c.as_ptr()),
        0,
        "loading {name}"
    );
}

/// The same driver file opened directly, as a baseline: no bridge in between.
pub struct Direct {
    _library: libloading::Library,
    dispatch: DispatchFn,
    instance: *mut c_void,
}

// SAFETY: the driver ABI requires drivers to accept calls on one instance from any thread.
unsafe impl Sync for Direct {}

impl Direct {
    pub fn open(path: &Path) -> Direct {
        // SAFETY: benchmark-only loading of drivers built just above.
        unsafe {
            let library = libloading::Library::new(path).unwrap();
            let init: InitFn = *library.get(b"CoProcessDriverInit\0").unwrap();
            let dispatch: DispatchFn = *library.get(b"CoProcessDriverDispatch\0").unwrap();
            let mut instance = std::ptr::null_mut();
            assert_eq!(init(&HOST_API, c"{}".as_ptr(), &mut instance), 0);
            Direct {
                _library: library,
                dispatch,
                instance,
            }
        }
    }

    pub fn call(&self, input: &[u8]) {
        let msg = message(input);
        let mut out = CoProcessMessage::empty();
        // SAFETY: a loaded driver, valid messages; the output is malloc'd and freed right here.
        let rc = unsafe { (self.dispatch)(self.instance, &msg, &mut out) };
        assert_eq!(rc, 0);
        CoProcessMessageFree(black_box(&mut out));
    }
}

fn message(input: &[u8]) -> CoProcessMessage {
    CoProcessMessage {
        p_data: input.as_ptr() as *mut c_void,
        length: input.len() as c_int,
    }
}

/// One `DispatchWithDriver` call; the output is freed as a host would.
pub fn bridge_call(driver: &CString, input: &[u8]) {
    let msg = message(input);
    let mut out = CoProcessMessage::empty();
    assert_eq!(DispatchWithDriver(driver.as_ptr(), &msg, &mut out), 0);
    CoProcessMessageFree(black_box(&mut out));
}
