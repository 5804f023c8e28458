//! Helpers for the CLI's tests: run the `coprocess` binary, build the drivers it loads, and talk to
//! Python's protobuf runtime. The root crate's `tests/common` is reused for the loud skips and for
//! building workspace cdylibs.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use serde_json::Value;

use crate::common;

/// The workspace root (the CLI lives in `cli/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// A scratch directory for this test binary's files.
pub fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coprocess-cli-tests");
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    dir
}

/// A fresh file path in [`scratch`], unique per process and call.
pub fn scratch_file(name: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    scratch().join(format!(
        "{}-{}-{name}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes `bytes` to a fresh scratch file and returns its path.
pub fn write_scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_file(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Compiles a C driver (`-I include`, warnings are errors) into the scratch directory, keyed by the
/// source text and the defines; the file is put in place atomically, so concurrent tests may ask.
pub fn build_c_driver(source: &Path, defines: &[&str]) -> PathBuf {
    let root = workspace_root();
    let source = root.join(source);
    let text =
        std::fs::read(&source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let header = std::fs::read(root.join("include/coprocess_driver.h")).expect("the driver header");
    let mut h = DefaultHasher::new();
    (text, header, defines).hash(&mut h);
    let stem = source.file_stem().unwrap().to_string_lossy().into_owned();
    let lib = scratch().join(format!("{stem}-{:016x}.so", h.finish()));
    if lib.is_file() {
        return lib;
    }
    let tmp = scratch_file(&format!("{stem}.tmp.so"));
    let mut cmd = common::cc_command();
    cmd.args([
        "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "-I",
    ])
    .arg(root.join("include"));
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    cmd.arg("-o").arg(&tmp).arg(&source);
    let out = common::run(&mut cmd);
    assert!(
        out.status.success(),
        "compiling {}:\n{}",
        source.display(),
        common::describe(&out)
    );
    std::fs::rename(&tmp, &lib).expect("moving the driver into place");
    lib
}

/// The tests' own driver (cli/tests/drivers/test_driver.c) with `defines`; none = pass-through.
pub fn test_driver(defines: &[&str]) -> PathBuf {
    build_c_driver(Path::new("cli/tests/drivers/test_driver.c"), defines)
}

/// examples/c_driver: adds `X-Coprocess-Driver: c` on Pre hooks, re-raises events as CDriverEvent.
pub fn c_driver() -> PathBuf {
    build_c_driver(Path::new("examples/c_driver/c_driver.c"), &[])
}

/// examples/rust_driver, built with cargo (once per test binary).
pub fn rust_driver() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        common::build_workspace_cdylib("coprocess-rust-driver-example", "coprocess_rust_driver")
    })
    .clone()
}

/// Runs `coprocess ARGS`, with `stdin` as its standard input.
pub fn coprocess_with_stdin<I, S>(args: I, stdin: &[u8]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_coprocess"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the coprocess binary");
    let mut input = child.stdin.take().expect("a stdin pipe");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().expect("waiting for coprocess");
    writer.join().expect("the stdin writer");
    out
}

/// Runs `coprocess ARGS` with an empty standard input.
pub fn coprocess<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    coprocess_with_stdin(args, b"")
}

/// Asserts success and returns stdout as text.
pub fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "expected success:\n{}",
        common::describe(out)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

/// Asserts the command failed with exit status 1, printed nothing on stdout, and said why in exactly
/// one line on stderr (no panic, no backtrace). Returns that line.
pub fn one_line_error(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1:\n{}",
        common::describe(out)
    );
    assert!(
        out.stdout.is_empty(),
        "expected no stdout:\n{}",
        common::describe(out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr:\n{}",
        common::describe(out)
    );
    let line = lines[0];
    assert!(line.starts_with("coprocess: error: "), "{line}");
    for bad in ["panicked", "backtrace", "internal error"] {
        assert!(!line.contains(bad), "{line}");
    }
    line.to_owned()
}

/// Parses JSON text, with the text in the panic message.
pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// `v` with every number as an f64, so `1` and `1.0` (Python's and Rust's spelling of a double) compare
/// equal, as they do as JSON values.
pub fn normalize_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Number(n)),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize_numbers).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normalize_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The JSON payload under "## Example Payload Received By The gRPC Server From Tyk Gateway" in the
/// README of the Python gRPC plugin for Tyk Gateway (a reference document of this project, "seed 004"),
/// copied verbatim into `cli/tests/fixtures/seeds_example_payload.json` so that the tests read nothing
/// outside the repository.
pub fn seeds_example_payload() -> String {
    include_str!("../fixtures/seeds_example_payload.json").to_owned()
}

/// Python with the protobuf package, or `None` after a loud SKIPPED line.
pub fn python_protobuf() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import google.protobuf.json_format"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(python)
    } else {
        common::report_skip(&format!(
            "{python} with the protobuf package (pip install protobuf)"
        ));
        None
    }
}

/// Runs cli/tests/pyjson.py (Google's json_format over our schema) and returns its stdout bytes.
pub fn pyjson(python: &str, mode: &str, input: &Path) -> Vec<u8> {
    static DESCRIPTORS: OnceLock<PathBuf> = OnceLock::new();
    let fds = DESCRIPTORS
        .get_or_init(|| write_scratch("coprocess.fds", coprocess_proto::FILE_DESCRIPTOR_SET));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pyjson.py");
    let out = common::run(
        Command::new(python)
            .arg(script)
            .arg(fds)
            .arg(mode)
            .arg(input),
    );
    assert!(
        out.status.success(),
        "pyjson.py {mode}:\n{}",
        common::describe(&out)
    );
    out.stdout
}
