//! Python callers of the bridge, for real: the Cython module of examples/cython/ (built here with
//! Cython and the system C compiler against api.h/api.pxd, linked to the bridge's cdylib) and the
//! ctypes host examples/python_host.py (Google's protobuf runtime, message classes built from
//! `coprocess_proto::FILE_DESCRIPTOR_SET`), both driving the example C driver through a real Python.
//!
//! Needs `python3` with the `Cython` and `protobuf` packages and Python's C headers; each test that
//! misses one prints a loud `SKIPPED: <test>: <what> not installed` instead of passing silently.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;

/// The Python interpreter: `$PYTHON`, or `python3`.
fn python() -> String {
    std::env::var("PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

fn python_command() -> Command {
    let mut cmd = Command::new(python());
    // Output as it happens, and no stray .pyc files in the source tree.
    cmd.env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// Whether `python3 -c "import <module>"` works.
fn python_imports(module: &str) -> bool {
    python_command()
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// `true` (after a loud skip line) unless Python and every `(module, pip package)` are installed.
fn skip_without_python(modules: &[(&str, &str)]) -> bool {
    if !tool_available(&python()) {
        report_skip(&python());
        return true;
    }
    for (module, package) in modules {
        if !python_imports(module) {
            report_skip(&format!(
                "the Python package {package} (`pip install {package}`)"
            ));
            return true;
        }
    }
    false
}

fn c_driver() -> PathBuf {
    build_c_driver(&repo_root().join("examples/c_driver/c_driver.c"), &[])
}

/// The schema as a FileDescriptorSet file, for python_host.py's `--descriptor-set`:
/// `target/<profile>/python-callers/coprocess.fds`, written atomically (concurrent writers write the
/// same bytes).
fn descriptor_set() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = target_dir().join("python-callers");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let path = dir.join("coprocess.fds");
        let tmp = dir.join(format!(".coprocess.fds.tmp-{}", std::process::id()));
        fs::write(&tmp, coprocess_proto::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
        fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("moving {}: {e}", path.display()));
        path
    })
    .clone()
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the example printed a failed check (its lines start with `ok    ` or `FAIL  `).
fn has_failed_check(stdout: &str) -> bool {
    stdout.lines().any(|line| line.starts_with("FAIL"))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Cython

/// Python's include directory and extension-module suffix (`.cpython-311-x86_64-linux-gnu.so`).
fn python_build_config() -> Option<(PathBuf, String)> {
    let out = run(python_command().args([
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['include']); \
         print(sysconfig.get_config_var('EXT_SUFFIX'))",
    ]));
    assert!(
        out.status.success(),
        "asking Python for its build config:\n{}",
        describe(&out)
    );
    let text = stdout_of(&out);
    let mut lines = text.lines();
    let include = PathBuf::from(lines.next()?.trim());
    let suffix = lines.next()?.trim().to_owned();
    include
        .join("Python.h")
        .is_file()
        .then_some((include, suffix))
}

/// Cythonizes examples/cython/tyk_bridge.pyx (cimporting the root's api.pxd) and compiles it with the
/// system C compiler against api.h, linked to the bridge cdylib with an rpath. Pointer and prototype
/// mismatches between api.pxd and api.h are compile errors. Returns the directory holding the module
/// (it lives as long as the returned guard).
fn build_cython_module(python_include: &Path, ext_suffix: &str) -> tempfile::TempDir {
    let root = repo_root();
    let dir = tempfile::Builder::new()
        .prefix("coprocess-cython-")
        .tempdir()
        .expect("a temporary directory");
    let c_file = dir.path().join("tyk_bridge.c");
    let out = run(python_command()
        .current_dir(&root)
        .args(["-m", "cython", "-3", "-I"])
        .arg(&root)
        .arg(root.join("examples/cython/tyk_bridge.pyx"))
        .arg("-o")
        .arg(&c_file));
    assert!(out.status.success(), "cython failed:\n{}", describe(&out));

    let lib_dir = bridge_cdylib()
        .parent()
        .expect("the bridge has a directory")
        .to_path_buf();
    let module = dir.path().join(format!("tyk_bridge{ext_suffix}"));
    let mut rpath = std::ffi::OsString::from("-Wl,-rpath,");
    rpath.push(&lib_dir);
    let out = run(cc_command()
        .args(["-shared", "-fPIC", "-O1", "-g"])
        // What matters for a binding: every call and pointer assignment agrees with api.h.
        .args([
            "-Werror=implicit-function-declaration",
            "-Werror=incompatible-pointer-types",
            "-Werror=int-conversion",
            "-Werror=discarded-qualifiers",
        ])
        .arg("-I")
        .arg(python_include)
        .arg("-I")
        .arg(&root)
        .arg(&c_file)
        .arg("-o")
        .arg(&module)
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lcoprocess_bridge")
        .arg(rpath));
    assert!(
        out.status.success(),
        "compiling the Cython module failed:\n{}",
        describe(&out)
    );
    dir
}

#[test]
fn cython_module_triggers_events_and_dispatches_through_the_bridge() {
    if skip_without_python(&[("Cython", "cython")]) {
        return;
    }
    let Some((include, suffix)) = python_build_config() else {
        report_skip("Python's C headers (Python.h; Debian: python3-dev)");
        return;
    };
    let module_dir = build_cython_module(&include, &suffix);
    let out = run(python_command()
        .current_dir(repo_root())
        .env("PYTHONPATH", module_dir.path())
        .arg(repo_root().join("examples/cython/demo.py"))
        .arg(c_driver()));
    let stdout = stdout_of(&out);
    assert!(
        out.status.success() && stdout.contains("all checks passed") && !has_failed_check(&stdout),
        "examples/cython/demo.py failed:\n{}",
        describe(&out)
    );
    for check in [
        "call(): TykTriggerEvent('my event', 'my payload') reached the event queue",
        "an exception in a handler is reported through sys.unraisablehook",
        "log lines reach the Python log handler",
        "the driver set request header X-Cython-Host: tyk_bridge",
        "load_api()/list_apis(): the API definition is loaded with its Pre hook",
        "800 dispatches from 4 threads all agree",
        "dispatch_event() reached the driver, which raised CDriverEvent back to Python",
        "malformed input raises BridgeError(COPROCESS_ERR_INVALID_OBJECT)",
    ] {
        assert!(
            stdout.contains(&format!("ok    {check}")),
            "missing check `{check}`:\n{}",
            describe(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ctypes + protobuf

fn python_host() -> Command {
    let mut cmd = python_command();
    cmd.current_dir(repo_root())
        .arg(repo_root().join("examples/python_host.py"))
        .env_remove("COPROCESS_BRIDGE_LIB")
        .env_remove("COPROCESS_DRIVER")
        .env_remove("COPROCESS_DESCRIPTOR_SET");
    cmd
}

fn assert_python_host_passed(out: &Output) {
    let stdout = stdout_of(out);
    assert!(
        out.status.success() && stdout.contains("all checks passed") && !has_failed_check(&stdout),
        "examples/python_host.py failed:\n{}",
        describe(out)
    );
    for check in [
        "the driver set request header X-Python-Host: ctypes",
        "everything else in the Object came back as sent",
        "TykTriggerEvent reached the ctypes event handler",
        "DispatchEvent reached the driver, whose CDriverEvent reached the handler",
        "a truncated Object is refused with COPROCESS_ERR_INVALID_OBJECT and a message",
    ] {
        assert!(
            stdout.contains(&format!("ok    {check}")),
            "missing check `{check}`:\n{}",
            describe(out)
        );
    }
    // The answer, printed by google.protobuf.json_format, carries the driver's header.
    assert!(
        stdout.contains(r#""setHeaders": {"X-Python-Host": "ctypes"}"#),
        "{}",
        describe(out)
    );
}

#[test]
fn python_host_dispatches_a_protobuf_object_through_the_bridge() {
    if skip_without_python(&[("google.protobuf", "protobuf")]) {
        return;
    }
    let out = run(python_host()
        .arg("--bridge")
        .arg(bridge_cdylib())
        .arg("--driver")
        .arg(c_driver())
        .arg("--descriptor-set")
        .arg(descriptor_set()));
    assert_python_host_passed(&out);
}

#[test]
fn python_host_takes_its_paths_from_the_environment() {
    if skip_without_python(&[("google.protobuf", "protobuf")]) {
        return;
    }
    let out = run(python_host()
        .env("COPROCESS_BRIDGE_LIB", bridge_cdylib())
        .env("COPROCESS_DRIVER", c_driver())
        .env("COPROCESS_DESCRIPTOR_SET", descriptor_set()));
    assert_python_host_passed(&out);
}

#[test]
fn python_host_reports_what_it_cannot_load_in_one_line() {
    if skip_without_python(&[("google.protobuf", "protobuf")]) {
        return;
    }
    let missing = "/nonexistent/coprocess/driver.so";
    let cases: [(&str, Vec<PathBuf>, &str); 3] = [
        (
            "a missing driver",
            vec![bridge_cdylib(), missing.into(), descriptor_set()],
            "CoProcessLoadDriver failed with status 8",
        ),
        (
            "a missing bridge",
            vec![missing.into(), c_driver(), descriptor_set()],
            missing,
        ),
        (
            "a file that is no descriptor set",
            vec![bridge_cdylib(), c_driver(), c_driver()],
            "is not an encoded FileDescriptorSet",
        ),
    ];
    for (what, paths, expected) in cases {
        let out = run(python_host()
            .arg("--bridge")
            .arg(&paths[0])
            .arg("--driver")
            .arg(&paths[1])
            .arg("--descriptor-set")
            .arg(&paths[2]));
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", describe(&out));
        assert!(
            stderr.starts_with("python_host: error: ")
                && stderr.contains(expected)
                && stderr.trim_end().lines().count() == 1,
            "{what}: expected one line with `{expected}`:\n{}",
            describe(&out)
        );
    }

    let out = run(python_host().arg("--bridge").arg(bridge_cdylib()));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr_of(&out).contains("--driver (or $COPROCESS_DRIVER) is required"),
        "{}",
        describe(&out)
    );
}
