//! Helpers shared by the integration tests (each test file says `mod common;`).
//!
//! They locate the build outputs, compile C drivers and C hosts with the system C compiler, and
//! skip tests that need an optional tool *loudly*: a `SKIPPED: <test>: <tool> not installed` line on
//! stderr that the test harness does not capture.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;
use std::{env, fs};

/// The repository root: the workspace's directory (the one with Cargo.lock), above the manifest
/// directory of whichever member's tests include this module.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// `target/<profile>`: derived from the running test executable, `target/<profile>/deps/<exe>`, so
/// it follows `--release`, `--profile` and `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    let exe = env::current_exe().expect("the path of the running test executable");
    let dir = exe
        .parent()
        .expect("the test executable lives in a directory");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().expect("deps/ has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The bridge as a host links it. Cargo builds it for integration tests because the library's crate
/// types include `cdylib`, but it leaves it in `target/<profile>/deps/`: only `cargo build` (where
/// the library is a root unit) copies it up to `target/<profile>/`, so that copy may be stale or
/// missing under `cargo test`. The `deps/` one comes from the same compilation as the rlib linked
/// into this test.
pub fn bridge_cdylib() -> PathBuf {
    let deps = target_dir().join("deps").join("libcoprocess_bridge.so");
    if deps.is_file() {
        return deps;
    }
    let path = target_dir().join("libcoprocess_bridge.so");
    assert!(
        path.is_file(),
        "neither {} nor {} exists: cargo builds the bridge's cdylib before integration tests run",
        deps.display(),
        path.display()
    );
    path
}

/// The C compiler: `$CC`, or `cc`. `$CC` may carry arguments (`ccache gcc`).
pub fn cc() -> String {
    env::var("CC")
        .ok()
        .filter(|cc| !cc.trim().is_empty())
        .unwrap_or_else(|| "cc".to_owned())
}

/// A `Command` for the C compiler, splitting `$CC` into program and leading arguments.
pub fn cc_command() -> Command {
    let cc = cc();
    let mut words = cc.split_whitespace();
    let mut cmd = Command::new(words.next().expect("a non-empty $CC"));
    cmd.args(words);
    cmd
}

/// Where compiled C test artifacts go: `target/<profile>/c-artifacts`.
pub fn c_artifacts_dir() -> PathBuf {
    let dir = target_dir().join("c-artifacts");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Compiles a C driver into a shared library and returns its path:
/// `target/<profile>/c-artifacts/<stem>-<hash>.so`, where the hash covers the defines, the source
/// (path, mtime, contents), the driver header and the compiler. `defines` are `NAME` or `NAME=VALUE`
/// (a leading `-D` is accepted too); a string macro needs its quotes: `VERSION_TAG="v2"`.
///
/// Safe when many tests and test binaries build the same thing at once: each compiles to a unique
/// temporary name and links it into place atomically; an existing artifact is reused. Panics with
/// the compiler's output when compilation fails.
pub fn build_c_driver(source: &Path, defines: &[&str]) -> PathBuf {
    let root = repo_root();
    let mut args: Vec<OsString> = [
        "-shared", "-fPIC", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-std=c11",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push("-I".into());
    args.push(root.join("include").into());
    args.extend(define_args(defines));
    let deps = [root.join("include/coprocess_driver.h")];
    compile_cached(source, &args, &[], &deps, ".so")
}

/// The C test driver (`tests/drivers/test_driver.c`, its behaviour chosen by `defines`), built as by
/// [`build_c_driver`].
pub fn c_test_driver(defines: &[&str]) -> PathBuf {
    build_c_driver(&repo_root().join("tests/drivers/test_driver.c"), defines)
}

/// Compiles a C program linked against the bridge (`-lcoprocess_bridge`, with an rpath to the
/// directory of [`bridge_cdylib`]) and returns the executable's path, cached like
/// [`build_c_driver`]. Both the repository root (for `api.h`) and `include/` are on the include path.
pub fn build_c_host(source: &Path, defines: &[&str]) -> PathBuf {
    build_c_host_with_flags(source, defines, &[])
}

/// As [`build_c_host`], with extra compiler flags (e.g. `-fsanitize=address,undefined`), which
/// also key the cache.
pub fn build_c_host_with_flags(source: &Path, defines: &[&str], cflags: &[&str]) -> PathBuf {
    let root = repo_root();
    let lib_dir = bridge_cdylib()
        .parent()
        .expect("the bridge has a directory")
        .to_path_buf();
    let mut args: Vec<OsString> = ["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-std=c11"]
        .iter()
        .map(OsString::from)
        .collect();
    for dir in [root.clone(), root.join("include")] {
        args.push("-I".into());
        args.push(dir.into());
    }
    args.extend(define_args(defines));
    args.extend(cflags.iter().map(OsString::from));
    let mut rpath = OsString::from("-Wl,-rpath,");
    rpath.push(&lib_dir);
    let link: Vec<OsString> = vec![
        "-L".into(),
        lib_dir.clone().into(),
        "-lcoprocess_bridge".into(),
        rpath,
        "-pthread".into(),
    ];
    let deps = [root.join("api.h"), root.join("include/coprocess_driver.h")];
    compile_cached(source, &args, &link, &deps, "")
}

fn define_args(defines: &[&str]) -> Vec<OsString> {
    defines
        .iter()
        .map(|d| {
            if d.starts_with("-D") {
                OsString::from(d)
            } else {
                OsString::from(format!("-D{d}"))
            }
        })
        .collect()
}

/// Compiles `source` with `args` (before the source) and `link` (after it) unless an artifact with
/// the same inputs exists. `deps` are files whose contents also key the cache (headers).
fn compile_cached(
    source: &Path,
    args: &[OsString],
    link: &[OsString],
    deps: &[PathBuf],
    suffix: &str,
) -> PathBuf {
    let source = if source.is_absolute() {
        source.to_path_buf()
    } else {
        repo_root().join(source)
    };
    let contents =
        fs::read(&source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let mtime = fs::metadata(&source)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);

    let mut hasher = DefaultHasher::new();
    source.hash(&mut hasher);
    mtime.hash(&mut hasher);
    contents.hash(&mut hasher);
    cc().hash(&mut hasher);
    args.hash(&mut hasher);
    link.hash(&mut hasher);
    for dep in deps {
        dep.hash(&mut hasher);
        fs::read(dep).ok().hash(&mut hasher);
    }
    let stem = source
        .file_stem()
        .expect("a source file name")
        .to_string_lossy();
    let dir = c_artifacts_dir();
    let artifact = dir.join(format!("{stem}-{:016x}{suffix}", hasher.finish()));
    if artifact.exists() {
        return artifact;
    }

    // A unique temporary name per process and call: concurrent builders never share a file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{stem}.tmp-{}-{}{suffix}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let output = cc_command()
        .current_dir(repo_root())
        .args(args)
        .arg("-o")
        .arg(&tmp)
        .arg(&source)
        .args(link)
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler `{}`: {e}", cc()));
    if !output.status.success() {
        let _ = fs::remove_file(&tmp);
        panic!(
            "compiling {} failed ({}):\n{}{}",
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // hard_link fails when the name is taken, so a file somebody may already have loaded is never
    // replaced (glibc's dlopen identifies libraries by inode); rename is the fallback for file
    // systems without hard links.
    match fs::hard_link(&tmp, &artifact) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(_) => {
            if !artifact.exists() {
                fs::rename(&tmp, &artifact)
                    .unwrap_or_else(|e| panic!("moving {} into place: {e}", artifact.display()));
            }
        }
    }
    let _ = fs::remove_file(&tmp);
    artifact
}

/// Writes `contents` to `target/<profile>/c-artifacts/src/<name>` unless it already holds exactly
/// that (so its mtime, part of the build cache key, only changes with the text), atomically.
pub fn write_c_source(name: &str, contents: &str) -> PathBuf {
    let dir = c_artifacts_dir().join("src");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(name);
    if fs::read(&path).is_ok_and(|old| old == contents.as_bytes()) {
        return path;
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&tmp, contents).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("moving {}: {e}", path.display()));
    path
}

/// Whether `name` is an executable on `$PATH` (or, when it contains a `/`, at that path).
pub fn tool_available(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let is_executable = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        return is_executable(Path::new(name));
    }
    env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).any(|dir| is_executable(&dir.join(name))))
        .unwrap_or(false)
}

/// The running test's name: libtest names each test's thread after the test.
pub fn current_test_name() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("<unknown test>")
        .to_owned()
}

/// Prints `SKIPPED: <test>: <tool> not installed`. It writes to the process's stderr directly:
/// libtest captures `eprintln!` of passing tests, which would make the skip silent.
pub fn report_skip(tool: &str) {
    let line = format!("\nSKIPPED: {}: {tool} not installed\n", current_test_name());
    let _ = io::stderr().write_all(line.as_bytes());
}

/// `true` when `tool` is missing, after reporting the skip: `if skip_without("valgrind") { return; }`.
pub fn skip_without(tool: &str) -> bool {
    if tool_available(tool) {
        return false;
    }
    report_skip(tool);
    true
}

/// Returns from the calling test, loudly, when `tool` is not installed:
/// `skip_unless_tool!("valgrind");`
#[macro_export]
macro_rules! skip_unless_tool {
    ($tool:expr) => {
        if $crate::common::skip_without($tool) {
            return;
        }
    };
}

/// Runs a command to completion, panicking with a clear message if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

/// Stdout and stderr of a finished command, for assertions and failure messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A cold debug build of a workspace member on a busy 2-core machine.
const BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// Runs `cargo build <what>` in the workspace, in the profile of the running tests (so the outputs
/// land in [`target_dir`]). Its output goes to the test's stderr unless `what` says `--quiet`.
/// Bounded in time; cargo's own lock serialises concurrent builds.
pub fn cargo_build(what: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").args(what).current_dir(repo_root());
    if target_dir().file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let mut build = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = build.try_wait().expect("waiting for cargo build") {
            break status;
        }
        if started.elapsed() > BUILD_TIMEOUT {
            let _ = build.kill();
            let _ = build.wait();
            panic!("cargo build {what:?} took over {BUILD_TIMEOUT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "cargo build {what:?} failed");
}

/// Builds a `cdylib` crate of this workspace with cargo (same profile as the tests) and returns the
/// library's path, `target/<profile>/lib<lib_name>.so`. `cargo test` does not produce other members'
/// cdylibs, so tests that load them ask for them here.
pub fn build_workspace_cdylib(package: &str, lib_name: &str) -> PathBuf {
    cargo_build(&["--quiet", "-p", package]);
    let lib = target_dir().join(format!("lib{lib_name}.so"));
    assert!(lib.is_file(), "{} was not produced", lib.display());
    lib
}

/// What Prometheus' own Python client (`prometheus_client.parser`) reads from an exposition:
/// `name{label=value,...}` (labels sorted) → value. `Exposition::Url` is fetched with urllib, as a
/// scraper would, requiring status 200 and the text format's Content-Type. `None`, after a loud
/// skip, when python3 or the `prometheus_client` package is missing; a parse failure panics.
pub fn prometheus_client_samples(exposition: Exposition) -> Option<HashMap<String, f64>> {
    const SCRIPT: &str = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
if len(sys.argv) > 1:
    with urllib.request.urlopen(sys.argv[1], timeout=20) as r:
        assert r.status == 200, r.status
        kind = r.headers["Content-Type"]
        assert kind.startswith("text/plain; version=0.0.4"), kind
        text = r.read().decode("utf-8")
else:
    text = sys.stdin.read()
out = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    if skip_without("python3") {
        return None;
    }
    let probe = run(Command::new("python3").args(["-c", "import prometheus_client"]));
    if !probe.status.success() {
        report_skip("prometheus_client (pip install prometheus_client)");
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SCRIPT]);
    let input = match exposition {
        Exposition::Url(url) => {
            cmd.arg(url);
            ""
        }
        Exposition::Text(text) => text,
    };
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run python3: {e}"));
    // A small input and a small answer: the pipes' buffers hold them, so write, then wait bounded.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("prometheus_client did not finish within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{input}",
        describe(&out)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the script prints JSON"))
}

/// Where [`prometheus_client_samples`] reads an exposition from.
pub enum Exposition<'a> {
    Text(&'a str),
    Url(&'a str),
}
