//! `coprocess bundle build|verify` run as a process: bundles it builds unpack and verify (with
//! openssl too), and every refusal is one line naming the step and the reason.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

fn keys() -> PathBuf {
    workspace_root().join("tests/fixtures/bundles")
}

/// A plugin project: manifest.json, middleware.py, lib/helper.py.
fn project() -> PathBuf {
    let dir = scratch_file("project");
    fs::create_dir_all(dir.join("lib")).unwrap();
    fs::write(
        dir.join("manifest.json"),
        r#"{"file_list": ["middleware.py", "lib/helper.py"],
            "custom_middleware": {"driver": "python", "pre": [{"name": "MyPre", "path": "middleware.py"}],
              "auth_check": {"name": "MyAuth"}}}"#,
    )
    .unwrap();
    fs::write(dir.join("middleware.py"), "from tyk.decorators import *\n").unwrap();
    fs::write(dir.join("lib/helper.py"), "TAG = 1\n").unwrap();
    dir
}

fn arg(p: &Path) -> &std::ffi::OsStr {
    p.as_os_str()
}

#[test]
fn build_then_verify_signed_and_unsigned() {
    let dir = project();
    let out = dir.join("signed.zip");
    let text = ok_stdout(&coprocess([
        "bundle".as_ref(),
        "build".as_ref(),
        "-m".as_ref(),
        arg(&dir.join("manifest.json")),
        "-o".as_ref(),
        arg(&out),
        "-k".as_ref(),
        arg(&keys().join("test_rsa_private.pem")),
    ]));
    assert!(
        text.starts_with(&format!("wrote {}", out.display())),
        "{text}"
    );
    assert!(text.contains(", signed)"), "{text}");
    let text = ok_stdout(&coprocess([
        "bundle".as_ref(),
        "verify".as_ref(),
        arg(&out),
        "--key".as_ref(),
        arg(&keys().join("test_public.pem")),
    ]));
    assert!(text.contains(": OK (checksum "), "{text}");
    assert!(text.contains("signature verified"), "{text}");
    assert!(text.contains("pre:MyPre, auth_check:MyAuth"), "{text}");
    assert!(
        text.contains("files   middleware.py, lib/helper.py"),
        "{text}"
    );

    let e = one_line_error(&coprocess([
        "bundle".as_ref(),
        "verify".as_ref(),
        arg(&out),
        "--key".as_ref(),
        arg(&keys().join("other_public.pem")),
    ]));
    assert!(e.contains("verify: the signature does not verify"), "{e}");

    let unsigned = dir.join("unsigned.zip");
    ok_stdout(&coprocess([
        "bundle".as_ref(),
        "build".as_ref(),
        "-m".as_ref(),
        arg(&dir.join("manifest.json")),
        "-o".as_ref(),
        arg(&unsigned),
        "-y".as_ref(),
    ]));
    let text = ok_stdout(&coprocess([
        "bundle".as_ref(),
        "verify".as_ref(),
        arg(&unsigned),
    ]));
    assert!(text.contains("unsigned"), "{text}");
    let e = one_line_error(&coprocess([
        "bundle".as_ref(),
        "verify".as_ref(),
        arg(&unsigned),
        "--key".as_ref(),
        arg(&keys().join("test_public.pem")),
    ]));
    assert!(e.contains("not signed"), "{e}");
}

#[test]
fn unsigned_builds_need_confirmation_and_bad_input_is_one_line() {
    let dir = project();
    let e = one_line_error(&coprocess([
        "bundle".as_ref(),
        "build".as_ref(),
        "-m".as_ref(),
        arg(&dir.join("manifest.json")),
        "-o".as_ref(),
        arg(&dir.join("x.zip")),
    ]));
    assert!(e.contains("pass -k PEM to sign it, or -y"), "{e}");
    assert!(!dir.join("x.zip").exists());

    fs::write(dir.join("manifest.json"), r#"{"file_list": ["nope.py"], "custom_middleware": {"driver": "python", "pre": [{"name": "P"}]}}"#).unwrap();
    let e = one_line_error(&coprocess([
        "bundle".as_ref(),
        "build".as_ref(),
        "-m".as_ref(),
        arg(&dir.join("manifest.json")),
        "-y".as_ref(),
    ]));
    assert!(e.contains("'nope.py'"), "{e}");

    let junk = write_scratch("junk.zip", b"not a zip");
    let e = one_line_error(&coprocess([
        "bundle".as_ref(),
        "verify".as_ref(),
        arg(&junk),
    ]));
    assert!(e.contains("unpack: not a readable zip archive"), "{e}");
}

#[test]
fn tampered_bundles_are_caught_and_openssl_agrees_with_the_signature() {
    if common::skip_without("openssl") || common::skip_without("python3") {
        return;
    }
    let dir = project();
    let zip = dir.join("b.zip");
    ok_stdout(&coprocess([
        "bundle".as_ref(),
        "build".as_ref(),
        "-m".as_ref(),
        arg(&dir.join("manifest.json")),
        "-o".as_ref(),
        arg(&zip),
        "-k".as_ref(),
        arg(&keys().join("test_private.pem")),
    ]));
    // Python's zipfile reads what we wrote: the signature over the listed files verifies with openssl,
    // and a copy with one file changed is refused by `verify`.
    let script = r##"
import base64, json, sys, zipfile
src, data_out, sig_out, tampered = sys.argv[1:5]
z = zipfile.ZipFile(src)
m = json.loads(z.read("manifest.json"))
open(data_out, "wb").write(b"".join(z.read(n) for n in m["file_list"]))
open(sig_out, "wb").write(base64.b64decode(m["signature"]))
with zipfile.ZipFile(tampered, "w") as t:
    for n in z.namelist():
        data = z.read(n)
        t.writestr(n, data + b"# changed\n" if n == "lib/helper.py" else data)
"##;
    let (data, sig, tampered) = (dir.join("data.bin"), dir.join("sig.bin"), dir.join("t.zip"));
    let out = common::run(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args([&zip, &data, &sig, &tampered]),
    );
    assert!(out.status.success(), "{}", common::describe(&out));
    let out = common::run(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(keys().join("test_public.pem"))
            .arg("-signature")
            .args([&sig, &data]),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
        "{}",
        common::describe(&out)
    );
    let e = one_line_error(&coprocess([
        "bundle".as_ref(),
        "verify".as_ref(),
        arg(&tampered),
    ]));
    assert!(e.contains("verify: checksum mismatch"), "{e}");
}

#[test]
fn help_shows_the_commands() {
    let text = ok_stdout(&coprocess(["bundle", "--help"]));
    assert!(text.contains("build") && text.contains("verify"), "{text}");
    let text = ok_stdout(&coprocess(["bundle", "build", "--help"]));
    for word in [
        "--manifest",
        "--output",
        "--key",
        "--skip-signing",
        "manifest.json",
        "bundle.zip",
    ] {
        assert!(text.contains(word), "{word} missing:\n{text}");
    }
}
