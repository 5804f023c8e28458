//! Plugin bundles end to end (DESIGN §10), through the bridge's C exports: a real HTTP server on
//! loopback serves bundles; CoProcessInit sets tyk.conf's bundle keys; CoProcessLoadApi fetches,
//! verifies, unpacks and loads them; Dispatch runs their hooks.
//!
//! Bundles are made by an independent implementation of Tyk's format (tests/fixtures/bundles/
//! make_bundle.py: Python's zipfile, hashlib and `openssl dgst -sha256 -sign`) and by our builder,
//! whose signatures `openssl dgst -sha256 -verify` checks. Tests needing python3 (with protobuf, for
//! the Python driver) or openssl skip loudly without them.

mod abi;
mod common;

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use abi::*;
use coprocess_bridge::bundle::{build, bundle_hash, verify};
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::ffi::host::{CoProcessInit, CoProcessLoadApi};
use coprocess_bridge::proto::{HookType, Message, MiniRequestObject, Object, ReturnOverrides};
use coprocess_bridge::runtime::global;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// A static file server on loopback that counts requests

struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, h, s) = (dir.to_path_buf(), hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    h.fetch_add(1, Ordering::SeqCst);
                    let _ = respond(conn, &dir);
                }
            }
        });
        Server {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/bundles/", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(conn: TcpStream, dir: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let file = path
        .strip_prefix("/bundles/")
        .filter(|p| !p.contains(".."))
        .map(|p| dir.join(p));
    let mut conn = conn;
    match file.and_then(|f| fs::read(f).ok()) {
        Some(body) => {
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/zip\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            conn.write_all(&body)
        }
        None => conn.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// One test's world: served bundles, sources, middleware_path, under target/<profile>/bundle-tests

/// The bridge's configuration is process-wide: one test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

struct World {
    root: PathBuf,
    served: PathBuf,
    project: PathBuf,
    mw: PathBuf,
    server: Server,
}

fn fixtures() -> PathBuf {
    common::repo_root().join("tests/fixtures/bundles")
}

impl World {
    fn new(test: &str) -> World {
        let root = common::target_dir()
            .join("bundle-tests")
            .join(format!("{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (served, project, mw) = (root.join("served"), root.join("project"), root.join("mw"));
        for d in [&served, &project, &mw] {
            fs::create_dir_all(d).unwrap();
        }
        let server = Server::start(&served);
        World {
            root,
            served,
            project,
            mw,
            server,
        }
    }

    /// CoProcessInit with the bundle keys; `key` is a fixture file name.
    fn init(&self, key: Option<&str>, extra: Value) {
        let mut config = json!({
            "enable_bundle_downloader": true,
            "bundle_base_url": self.server.base_url(),
            "middleware_path": self.mw,
            "bundle_fetch_retries": 1,
            "bundle_fetch_backoff_ms": 10,
            "bundle_fetch_timeout_ms": 3000,
        });
        if let Some(k) = key {
            config["public_key_path"] = json!(fixtures().join(k));
        }
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        let text = CString::new(config.to_string()).unwrap();
        assert_eq!(CoProcessInit(text.as_ptr()), 0, "{}", last_error());
    }

    /// Writes the project: `middleware.py` and a manifest naming `driver` and `pre` hooks.
    fn write_project(&self, driver: &str, pre: &[&str], middleware: &str) -> PathBuf {
        let manifest = json!({
            "file_list": ["middleware.py", "helper.py", "lib/data.txt"],
            "custom_middleware": {
                "driver": driver,
                "pre": pre.iter().map(|n| json!({"name": n, "path": "middleware.py"})).collect::<Vec<_>>(),
            },
        });
        fs::create_dir_all(self.project.join("lib")).unwrap();
        fs::write(self.project.join("middleware.py"), middleware).unwrap();
        fs::write(self.project.join("helper.py"), "TAG = 'helper'\n").unwrap();
        fs::write(self.project.join("lib/data.txt"), "in a sub-folder\n").unwrap();
        let path = self.project.join("manifest.json");
        fs::write(&path, manifest.to_string()).unwrap();
        path
    }

    /// Serves a bundle built by make_bundle.py (`args`: --key, --tamper, --evil).
    fn publish_independent(&self, name: &str, args: &[&str]) {
        let mut cmd = Command::new("python3");
        cmd.arg(fixtures().join("make_bundle.py"))
            .arg(self.served.join(name))
            .arg(self.project.join("manifest.json"));
        for a in args {
            if a.ends_with(".pem") {
                cmd.arg(fixtures().join(a));
            } else {
                cmd.arg(a);
            }
        }
        let out = common::run(&mut cmd);
        assert!(out.status.success(), "{}", common::describe(&out));
    }

    /// Serves a bundle built by our builder, signed with the test key when `signed`.
    fn publish_ours(&self, name: &str, signed: bool) {
        let key = verify::PrivateKey::load(&fixtures().join("test_private.pem")).unwrap();
        let built =
            build::build(&self.project.join("manifest.json"), signed.then_some(&key)).unwrap();
        fs::write(self.served.join(name), built.archive).unwrap();
    }

    fn bundle_dir(&self, name: &str) -> PathBuf {
        self.mw.join("bundles").join(bundle_hash(name))
    }

    /// Everything under the world's root except the server's and the project's folders.
    fn written(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut pending = vec![self.root.clone()];
        while let Some(dir) = pending.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p == self.served || p == self.project {
                    continue;
                }
                out.push(p.strip_prefix(&self.root).unwrap().display().to_string());
                if p.is_dir() && !p.is_symlink() {
                    pending.push(p);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

fn load_api(definition: &Value) -> Result<(), (i32, String)> {
    let text = CString::new(definition.to_string()).unwrap();
    match CoProcessLoadApi(text.as_ptr()) {
        0 => Ok(()),
        rc => Err((rc, last_error())),
    }
}

fn classic(api_id: &str, bundle: &str) -> Value {
    json!({"api_id": api_id, "org_id": "org-1", "name": api_id, "custom_middleware_bundle": bundle})
}

fn oas(api_id: &str, bundle: &str) -> Value {
    json!({"openapi": "3.0.3", "info": {"title": api_id, "version": "1"}, "paths": {},
        "x-tyk-api-gateway": {"info": {"id": api_id, "orgId": "org-1", "name": api_id},
            "middleware": {"global": {"pluginConfig": {"bundle": {"enabled": true, "path": bundle}}}}}})
}

fn pre_object(api_id: &str) -> Vec<u8> {
    Object {
        hook_type: HookType::Pre as i32,
        request: Some(MiniRequestObject {
            method: "GET".into(),
            url: "/x".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: HashMap::from([
            ("APIID".to_string(), api_id.to_string()),
            ("OrgID".to_string(), "org-1".to_string()),
        ]),
        ..Default::default()
    }
    .encode_to_vec()
}

fn set_headers_of(out: &[u8]) -> HashMap<String, String> {
    Object::decode(out).unwrap().request.unwrap().set_headers
}

// ---------------------------------------------------------------------------------------------
// Drivers: the Python driver (needs python3 + protobuf) and the Rust example (no bundle support)

fn python_driver() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        let ok = Command::new("python3")
            .args(["-c", "import google.protobuf"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            let lib = common::build_workspace_cdylib("coprocess-python-driver", "coprocess_python");
            load("python", &lib, Some("{}")).unwrap();
        }
        ok
    });
    if !ok {
        common::report_skip("python3 with the protobuf package");
    }
    ok
}

fn native_driver() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let lib = common::build_workspace_cdylib(
            "coprocess-rust-driver-example",
            "coprocess_rust_driver",
        );
        load("native", &lib, None).unwrap();
    });
}

const MIDDLEWARE: &str = r#"
from tyk.decorators import *
import helper

@Hook
def BundlePre(request, session, spec):
    request.add_header("X-Bundle", "VERSION")
    request.add_header("X-Bundle-Hash", spec.get("bundle_hash", "none"))
    request.add_header("X-Helper", helper.TAG)
    return request, session
"#;

fn middleware(version: &str) -> String {
    MIDDLEWARE.replace("VERSION", version)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn an_independently_signed_bundle_loads_and_runs_its_python_hooks() {
    let _one = serial();
    if !python_driver() || common::skip_without("openssl") {
        return;
    }
    let w = World::new("independent");
    w.write_project("python", &["BundlePre"], &middleware("v1"));
    w.publish_independent("py.zip", &["--key", "test_rsa_private.pem"]);
    w.init(Some("test_public.pem"), json!({}));
    load_api(&classic("classic-api", "py.zip")).unwrap();
    let out = dispatch(&pre_object("classic-api")).unwrap();
    let headers = set_headers_of(&out);
    assert_eq!(headers["X-Bundle"], "v1");
    assert_eq!(headers["X-Bundle-Hash"], bundle_hash("py.zip"));
    assert_eq!(headers["X-Helper"], "helper");
    assert!(w.bundle_dir("py.zip").join("lib/data.txt").is_file());
    let api = global().apis.get("classic-api").unwrap();
    assert_eq!(api.pre[0].name, "BundlePre");
    assert_eq!(
        api.bundle_hash.as_deref(),
        Some(bundle_hash("py.zip").as_str())
    );

    // The same bundle from an OAS definition: no second download, the unpacked copy verifies.
    let hits = w.server.hits();
    load_api(&oas("oas-api", "py.zip")).unwrap();
    assert_eq!(w.server.hits(), hits, "the unpacked copy is reused");
    let headers = set_headers_of(&dispatch(&pre_object("oas-api")).unwrap());
    assert_eq!(headers["X-Bundle"], "v1");
    global().apis.unload("classic-api").unwrap();
    global().apis.unload("oas-api").unwrap();
}

#[test]
fn our_builders_signature_verifies_with_openssl() {
    if common::skip_without("openssl") {
        return;
    }
    let w = World::new("openssl-verify");
    let manifest = w.write_project("python", &["BundlePre"], &middleware("v1"));
    let key = verify::PrivateKey::load(&fixtures().join("test_private.pem")).unwrap();
    let built = build::build(&manifest, Some(&key)).unwrap();
    let data = [
        fs::read(w.project.join("middleware.py")).unwrap(),
        fs::read(w.project.join("helper.py")).unwrap(),
        fs::read(w.project.join("lib/data.txt")).unwrap(),
    ]
    .concat();
    fs::write(w.root.join("data.bin"), &data).unwrap();
    use base64::Engine as _;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&built.signature)
        .unwrap();
    fs::write(w.root.join("sig.bin"), sig).unwrap();
    for public in ["test_public.pem", "test_rsa_public.pem"] {
        let out = common::run(
            Command::new("openssl")
                .args(["dgst", "-sha256", "-verify"])
                .arg(fixtures().join(public))
                .arg("-signature")
                .arg(w.root.join("sig.bin"))
                .arg(w.root.join("data.bin")),
        );
        let shown = common::describe(&out);
        if public == "test_rsa_public.pem" && !out.status.success() {
            // OpenSSL builds that cannot read PKCS#1 public keys for dgst: the PKIX one suffices.
            continue;
        }
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
            "{shown}"
        );
    }
    let md5 = common::run(
        Command::new("openssl")
            .args(["dgst", "-md5", "-r"])
            .arg(w.root.join("data.bin")),
    );
    let md5 = String::from_utf8_lossy(&md5.stdout);
    assert_eq!(md5.split_whitespace().next(), Some(built.checksum.as_str()));
}

/// Loads `bundle` for API `api_id` and expects a bundle error naming the bundle, `step` and `why`.
/// The API is not loaded; nothing exists outside `mw/bundles` (besides the served folders), no
/// temporary folder is left, and only a bundle that verified (refused at the driver step) stays
/// unpacked.
fn expect_refused(w: &World, api_id: &str, bundle: &str, step: &str, why: &str) {
    let (rc, message) = load_api(&classic(api_id, bundle)).unwrap_err();
    assert_eq!(rc, COPROCESS_ERR_BUNDLE as i32, "{message}");
    let prefix = format!("API '{api_id}': bundle '{bundle}': {step}: ");
    assert!(
        message.starts_with(&prefix),
        "wanted {prefix}...{why}, got: {message}"
    );
    assert!(message.contains(why), "wanted {why} in: {message}");
    assert!(
        global().apis.get(api_id).is_none(),
        "{api_id} must not be loaded"
    );
    let unpacked = format!("mw/bundles/{}", bundle_hash(bundle));
    for path in w.written() {
        let allowed = path == "mw"
            || path == "mw/bundles"
            || (path.starts_with("mw/bundles/") && !path.starts_with("mw/bundles/."));
        assert!(allowed, "after {bundle}: {path} exists");
        assert!(!path.ends_with("evil.py"), "after {bundle}: {path} exists");
        if step != "driver" {
            assert!(
                !path.starts_with(&unpacked),
                "after {bundle}: {path} exists"
            );
        }
    }
}

#[test]
fn bad_bundles_are_refused_with_nothing_left_on_disk() {
    let _one = serial();
    if common::skip_without("python3") || common::skip_without("openssl") {
        return;
    }
    native_driver();
    let w = World::new("refused");
    w.write_project("native", &["BundlePre"], &middleware("v1"));
    let signed = ["--key", "test_private.pem"];
    w.publish_independent(
        "tampered.zip",
        &["--key", "test_private.pem", "--tamper", "middleware.py"],
    );
    w.publish_independent("unsigned.zip", &[]);
    w.publish_independent("signed.zip", &signed);
    w.publish_independent("slip.zip", &["--evil", "../../evil.py:file"]);
    w.publish_independent("abs.zip", &["--evil", "/tmp/evil.py:file"]);
    w.publish_independent("link.zip", &["--evil", "lib/link.py:symlink"]);
    w.publish_independent("bomb.zip", &["--evil", "zeros.bin:bomb"]);
    w.publish_independent(
        "extra.zip",
        &["--key", "test_private.pem", "--evil", "sneaky.py:file"],
    );
    // A driver no test loads (the Lua tests load "lua").
    w.write_project("otto", &["BundlePre"], &middleware("v1"));
    w.publish_independent("otto.zip", &signed);

    w.init(Some("test_public.pem"), json!({}));
    expect_refused(&w, "a1", "tampered.zip", "verify", "checksum mismatch");
    expect_refused(&w, "a2", "unsigned.zip", "verify", "not signed");
    expect_refused(
        &w,
        "a3",
        "extra.zip",
        "verify",
        "'sneaky.py' is in the bundle but not in file_list",
    );
    expect_refused(&w, "a4", "missing.zip", "fetch", "HTTP status 404");
    expect_refused(&w, "a5", "otto.zip", "driver", "no driver named 'otto'");
    w.init(Some("other_public.pem"), json!({}));
    expect_refused(
        &w,
        "a6",
        "signed.zip",
        "verify",
        "does not verify with the configured public key",
    );
    w.init(None, json!({}));
    expect_refused(
        &w,
        "a7",
        "slip.zip",
        "unpack",
        "entry '../../evil.py' climbs out of the bundle",
    );
    expect_refused(
        &w,
        "a8",
        "abs.zip",
        "unpack",
        "entry '/tmp/evil.py' is an absolute path",
    );
    expect_refused(
        &w,
        "a9",
        "link.zip",
        "unpack",
        "entry 'lib/link.py' is a symbolic link",
    );
    expect_refused(&w, "a10", "bomb.zip", "unpack", "zip bomb");
    assert!(
        !Path::new("/tmp/evil.py").exists()
            || fs::read("/tmp/evil.py").unwrap() != b"evil = True\n"
    );
}

#[test]
fn server_down_with_and_without_an_unpacked_copy() {
    let _one = serial();
    if !python_driver() {
        return;
    }
    let w = World::new("server-down");
    w.write_project("python", &["BundlePre"], &middleware("v1"));
    w.publish_ours("b.zip", true);
    w.init(Some("test_public.pem"), json!({}));
    load_api(&classic("down-1", "b.zip")).unwrap();
    let out = dispatch(&pre_object("down-1")).unwrap();
    assert_eq!(
        set_headers_of(&out)["X-Bundle"],
        "v1",
        "the manifest's hook ran"
    );

    // The server goes away: the verified copy keeps the API loadable.
    let port = w.server.port;
    let mut w = w;
    drop(std::mem::replace(
        &mut w.server,
        Server::start(&w.root.join("nowhere")),
    ));
    let dead = format!("http://127.0.0.1:{port}/bundles/");
    w.init(Some("test_public.pem"), json!({"bundle_base_url": dead}));
    load_api(&classic("down-1", "b.zip")).unwrap();
    // Without a copy, the fetch fails after its retries.
    let (rc, message) = load_api(&classic("down-2", "other.zip")).unwrap_err();
    assert_eq!(rc, COPROCESS_ERR_BUNDLE as i32);
    assert!(
        message.starts_with("API 'down-2': bundle 'other.zip': fetch: GET"),
        "{message}"
    );
    assert!(message.contains("(after 2 attempts)"), "{message}");
    // A copy tampered with while the server is down: refused, and the API is unloaded.
    fs::write(w.bundle_dir("b.zip").join("middleware.py"), "evil = True\n").unwrap();
    let (rc, message) = load_api(&classic("down-1", "b.zip")).unwrap_err();
    assert_eq!(rc, COPROCESS_ERR_BUNDLE as i32);
    assert!(
        message.contains("the unpacked copy does not verify: verify: checksum mismatch"),
        "{message}"
    );
    assert!(global().apis.get("down-1").is_none());
}

#[test]
fn a_changed_bundle_is_picked_up_by_name_when_its_copy_fails_and_on_reload() {
    let _one = serial();
    if !python_driver() {
        return;
    }
    let w = World::new("reload");
    w.write_project("python", &["BundlePre"], &middleware("v1"));
    w.publish_ours("v1.zip", true);
    w.write_project("python", &["BundlePre"], &middleware("v2"));
    w.publish_ours("v2.zip", true);
    w.init(Some("test_public.pem"), json!({}));
    load_api(&classic("r", "v1.zip")).unwrap();
    assert_eq!(
        set_headers_of(&dispatch(&pre_object("r")).unwrap())["X-Bundle"],
        "v1"
    );
    // A new bundle name, as Tyk reloads: the new bundle is fetched and its hooks run.
    load_api(&classic("r", "v2.zip")).unwrap();
    assert_eq!(
        set_headers_of(&dispatch(&pre_object("r")).unwrap())["X-Bundle"],
        "v2"
    );
    // Same name, but the unpacked copy was changed on disk: fetched again and verified.
    let copy = w.bundle_dir("v2.zip").join("middleware.py");
    fs::write(&copy, middleware("evil")).unwrap();
    let hits = w.server.hits();
    load_api(&classic("r", "v2.zip")).unwrap();
    assert_eq!(w.server.hits(), hits + 1);
    assert_eq!(fs::read_to_string(&copy).unwrap(), middleware("v2"));
    assert_eq!(
        set_headers_of(&dispatch(&pre_object("r")).unwrap())["X-Bundle"],
        "v2"
    );

    // Reload() checks every bundle in use before drivers re-read them: a changed copy is fetched
    // again, and the drivers never see the changed files.
    fs::write(&copy, middleware("evil")).unwrap();
    coprocess_bridge::ffi::host::Reload();
    assert_eq!(fs::read_to_string(&copy).unwrap(), middleware("v2"));
    let out = dispatch(&pre_object("r")).unwrap();
    assert_eq!(set_headers_of(&out)["X-Bundle"], "v2");
    // One that cannot be fetched again is removed and its API unloaded.
    fs::write(&copy, middleware("evil")).unwrap();
    fs::remove_file(w.served.join("v2.zip")).unwrap();
    coprocess_bridge::ffi::host::Reload();
    assert!(global().apis.get("r").is_none(), "the API is unloaded");
    assert!(
        !w.bundle_dir("v2.zip").exists(),
        "the unverifiable copy is gone"
    );
    // The Python driver, asked directly, still runs the verified version it had loaded.
    let mut direct = Object::decode(pre_object("r").as_slice()).unwrap();
    direct.hook_name = "BundlePre".into();
    direct
        .spec
        .insert("bundle_hash".into(), bundle_hash("v2.zip"));
    let out = dispatch_with("python", &direct.encode_to_vec()).unwrap();
    assert_eq!(set_headers_of(&out)["X-Bundle"], "v2");
}

#[test]
fn https_verifies_certificates_unless_bundle_insecure_skip_verify() {
    let _one = serial();
    if !python_driver() || common::skip_without("openssl") {
        return;
    }
    let w = World::new("https");
    w.write_project("python", &["BundlePre"], &middleware("tls"));
    // `openssl s_server -WWW` serves files under its working directory: <tls>/bundles/<name>.
    let tls = w.root.join("tls");
    fs::create_dir_all(tls.join("bundles")).unwrap();
    w.publish_ours("t.zip", true);
    fs::copy(w.served.join("t.zip"), tls.join("bundles/t.zip")).unwrap();
    let made = common::run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .current_dir(&tls),
    );
    assert!(made.status.success(), "{}", common::describe(&made));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args([
            "s_server", "-quiet", "-WWW", "-cert", "cert.pem", "-key", "key.pem",
        ])
        .args(["-accept", &port.to_string()])
        .current_dir(&tls)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "openssl s_server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let base = json!({"bundle_base_url": format!("https://127.0.0.1:{port}/bundles/")});
    w.init(Some("test_public.pem"), base.clone());
    let refused = load_api(&classic("tls", "t.zip"));
    let mut insecure = base;
    insecure["bundle_insecure_skip_verify"] = json!(true);
    w.init(Some("test_public.pem"), insecure);
    let accepted = load_api(&classic("tls", "t.zip"));
    let _ = server.kill();
    let _ = server.wait();

    let (rc, message) = refused.unwrap_err();
    assert_eq!(rc, COPROCESS_ERR_BUNDLE as i32);
    assert!(
        message.starts_with("API 'tls': bundle 't.zip': fetch: GET https://"),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("certificate") || message.contains("UnknownIssuer"),
        "{message}"
    );
    accepted.unwrap();
    let out = dispatch(&pre_object("tls")).unwrap();
    assert_eq!(set_headers_of(&out)["X-Bundle"], "tls");
    global().apis.unload("tls").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Lua bundles: built by our builder (`coprocess bundle build`), served, loaded through
// CoProcessDriverLoadBundle

fn lua_driver() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let lib = common::build_workspace_cdylib("coprocess-lua-driver", "coprocess_lua");
        load("lua", &lib, Some("{}")).unwrap();
    });
}

/// Writes a Lua plugin project in `dir` (manifest naming `pre` hooks, middleware.lua with `source`,
/// helper.lua) and serves it, built by our builder, as `name`.
fn publish_lua(w: &World, dir: &str, name: &str, pre: &[&str], source: &str) {
    let project = w.root.join(dir);
    fs::create_dir_all(&project).unwrap();
    let manifest = json!({
        "file_list": ["middleware.lua", "helper.lua"],
        "custom_middleware": {
            "driver": "lua",
            "pre": pre.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
        },
    });
    fs::write(project.join("manifest.json"), manifest.to_string()).unwrap();
    fs::write(project.join("middleware.lua"), source).unwrap();
    fs::write(
        project.join("helper.lua"),
        format!("return {{ tag = {dir:?} }}\n"),
    )
    .unwrap();
    let built = build::build(&project.join("manifest.json"), None).unwrap();
    fs::write(w.served.join(name), built.archive).unwrap();
}

const LUA_MIDDLEWARE: &str = r#"
local helper = require "helper"
WHO = helper.tag

function LuaBundlePre(request, session, spec)
  tyk.req.set_header("X-Lua-Bundle", WHO .. ":" .. spec.bundle_hash)
  return request, session
end
"#;

#[test]
fn a_built_lua_bundle_is_fetched_and_serves_its_hook() {
    let _one = serial();
    lua_driver();
    let w = World::new("lua-bundle");
    publish_lua(&w, "v1", "lua.zip", &["LuaBundlePre"], LUA_MIDDLEWARE);
    w.init(None, json!({}));
    load_api(&classic("lua-api", "lua.zip")).unwrap();
    let out = dispatch(&pre_object("lua-api")).unwrap();
    assert_eq!(
        set_headers_of(&out)["X-Lua-Bundle"],
        format!("v1:{}", bundle_hash("lua.zip"))
    );
    global().apis.unload("lua-api").unwrap();
}

#[test]
fn several_lua_bundles_of_one_api_each_serve_their_hooks_in_their_own_environment() {
    let _one = serial();
    lua_driver();
    let w = World::new("lua-bundles");
    let hook = |name: &str, header: &str| {
        format!(
            "{LUA_MIDDLEWARE}\nfunction {name}(request, session, spec)\n  \
             tyk.req.set_header({header:?}, WHO)\n  return request, session\nend\n"
        )
    };
    publish_lua(&w, "first", "a.zip", &["OnlyA"], &hook("OnlyA", "X-A"));
    publish_lua(&w, "second", "b.zip", &["OnlyB"], &hook("OnlyB", "X-B"));
    w.init(None, json!({}));
    // Tyk's multi-bundle form: one install folder with a sub-folder per bundle, handed to the
    // driver as one bundle (keyed by the list's hash, which spec["bundle_hash"] carries).
    let list = "a.zip,b.zip";
    load_api(&classic("lua-two", list)).unwrap();
    assert!(w.bundle_dir(list).join("a/manifest.json").is_file());
    let api = global().apis.get("lua-two").unwrap();
    let names: Vec<&str> = api.pre.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["OnlyA", "OnlyB"]);
    let headers = set_headers_of(&dispatch(&pre_object("lua-two")).unwrap());
    assert_eq!(
        (headers["X-A"].as_str(), headers["X-B"].as_str()),
        ("first", "second"),
        "each bundle's global WHO stays its own"
    );
    global().apis.unload("lua-two").unwrap();
}

#[test]
fn several_python_bundles_of_one_api_each_serve_their_hooks() {
    let _one = serial();
    if !python_driver() {
        return;
    }
    let w = World::new("py-bundles");
    for (dir, name, hook, header) in [
        ("pa", "pa.zip", "PyOnlyA", "X-A"),
        ("pb", "pb.zip", "PyOnlyB", "X-B"),
    ] {
        let project = w.root.join(dir);
        fs::create_dir_all(&project).unwrap();
        let manifest = json!({"file_list": ["middleware.py"],
            "custom_middleware": {"driver": "python", "pre": [{"name": hook}]}});
        fs::write(project.join("manifest.json"), manifest.to_string()).unwrap();
        fs::write(
            project.join("middleware.py"),
            format!(
                "from tyk.decorators import *\nWHO = {dir:?}\n\n@Hook\ndef {hook}(request, session, spec):\n    \
                 request.add_header({header:?}, WHO)\n    return request, session\n"
            ),
        )
        .unwrap();
        let built = build::build(&project.join("manifest.json"), None).unwrap();
        fs::write(w.served.join(name), built.archive).unwrap();
    }
    w.init(None, json!({}));
    load_api(&classic("py-two", "pa.zip,pb.zip")).unwrap();
    let headers = set_headers_of(&dispatch(&pre_object("py-two")).unwrap());
    assert_eq!(
        (headers["X-A"].as_str(), headers["X-B"].as_str()),
        ("pa", "pb"),
        "each bundle's module keeps its own WHO"
    );
    global().apis.unload("py-two").unwrap();
}
