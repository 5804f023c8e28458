//! Making a bundle as Tyk's `tyk bundle build` does: the `file_list` files (read relative to the
//! manifest's folder) and `manifest.json` with `checksum` and, given a key, `signature` filled in.

use std::fs;
use std::io::{Cursor, Write};
use std::path::Path;

use serde_json::Value;
use zip::write::SimpleFileOptions;

use super::manifest::{Manifest, MANIFEST, MAX_MANIFEST_BYTES};
use super::unpack::Limits;
use super::verify::{self, PrivateKey};

/// A built bundle.
#[derive(Debug, Clone)]
pub struct Built {
    /// The zip archive's bytes.
    pub archive: Vec<u8>,
    pub checksum: String,
    /// Empty when built unsigned.
    pub signature: String,
}

/// Builds the bundle described by the manifest at `manifest_path`, signed with `key` when given.
pub fn build(manifest_path: &Path, key: Option<&PrivateKey>) -> Result<Built, String> {
    let text = fs::read(manifest_path)
        .map_err(|e| format!("cannot read the manifest {}: {e}", manifest_path.display()))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "{} is larger than {MAX_MANIFEST_BYTES} bytes",
            manifest_path.display()
        ));
    }
    let manifest = Manifest::parse(&text)?;
    check_buildable(&manifest)?;
    let base = manifest_path.parent().unwrap_or(Path::new(""));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let digests = verify::digest_files(
        base,
        &manifest.file_list,
        Limits::default().max_unpacked_bytes,
    )?;
    let signature = match key {
        Some(key) => key.sign(&digests)?,
        None => String::new(),
    };
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let failed = |e: &dyn std::fmt::Display| format!("writing the zip: {e}");
    for name in &manifest.file_list {
        let data = fs::read(base.join(name)).map_err(|e| format!("cannot read '{name}': {e}"))?;
        zip.start_file(name.as_str(), options)
            .map_err(|e| failed(&e))?;
        zip.write_all(&data).map_err(|e| failed(&e))?;
    }
    zip.start_file(MANIFEST, options).map_err(|e| failed(&e))?;
    zip.write_all(
        manifest
            .to_json_with(&digests.md5_hex, &signature)
            .as_bytes(),
    )
    .map_err(|e| failed(&e))?;
    let archive = zip.finish().map_err(|e| failed(&e))?.into_inner();
    Ok(Built {
        archive,
        checksum: digests.md5_hex,
        signature,
    })
}

/// Tyk's bundler checks: at least one hook, a driver, no file listed twice.
fn check_buildable(m: &Manifest) -> Result<(), String> {
    let cm = &m.custom_middleware;
    let list_len = |k: &str| cm.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    let named = |k: &str| {
        cm.get(k)
            .and_then(|h| h.get("name"))
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
    };
    let hooks = ["pre", "post", "post_key_auth", "response"]
        .iter()
        .map(|k| list_len(k))
        .sum::<usize>()
        + usize::from(named("auth_check"))
        + usize::from(named("traffic_logs"));
    if hooks == 0 {
        return Err("the manifest defines no hooks (custom_middleware: pre, post, post_key_auth, auth_check, response)".into());
    }
    if m.driver().is_none() {
        return Err("the manifest names no driver (custom_middleware.driver)".into());
    }
    for (i, name) in m.file_list.iter().enumerate() {
        if m.file_list[..i].contains(name) {
            return Err(format!("file_list lists '{name}' twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::verify::tests::{TEST_PRIVATE_PEM, TEST_PUBLIC_PEM};
    use crate::bundle::verify::PublicKey;

    fn project(manifest: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("manifest.json"), manifest).unwrap();
        fs::write(dir.path().join("middleware.py"), "print('hi')\n").unwrap();
        fs::create_dir(dir.path().join("lib")).unwrap();
        fs::write(dir.path().join("lib/h.py"), "X = 1\n").unwrap();
        dir
    }

    const MANIFEST_TEXT: &str = r#"{"file_list": ["middleware.py", "lib/h.py"],
        "custom_middleware": {"driver": "python", "pre": [{"name": "P"}]}}"#;

    #[test]
    fn built_bundles_unpack_and_verify() {
        let dir = project(MANIFEST_TEXT);
        let key = PrivateKey::from_pem(TEST_PRIVATE_PEM).unwrap();
        let built = build(&dir.path().join("manifest.json"), Some(&key)).unwrap();
        let out = tempfile::tempdir().unwrap();
        let files =
            crate::bundle::unpack::unpack(&built.archive, out.path(), &Limits::default()).unwrap();
        assert_eq!(files, ["middleware.py", "lib/h.py", "manifest.json"]);
        let m = crate::bundle::read_manifest(out.path()).unwrap();
        assert_eq!(m.checksum, built.checksum);
        assert_eq!(m.signature, built.signature);
        let d = verify::digest_files(out.path(), &m.file_list, 1 << 20).unwrap();
        let public = PublicKey::from_pem(TEST_PUBLIC_PEM).unwrap();
        verify::check(&m, &d, Some(&public)).unwrap();

        let unsigned = build(&dir.path().join("manifest.json"), None).unwrap();
        assert_eq!(unsigned.checksum, built.checksum);
        assert!(unsigned.signature.is_empty());
    }

    #[test]
    fn tyk_bundler_checks() {
        let e = |m: &str| build(&project(m).path().join("manifest.json"), None).unwrap_err();
        assert!(
            e(r#"{"file_list": [], "custom_middleware": {"driver": "python"}}"#)
                .contains("no hooks")
        );
        assert!(e(r#"{"custom_middleware": {"pre": [{"name": "P"}]}}"#).contains("no driver"));
        assert!(e(r#"{"file_list": ["nope.py"], "custom_middleware": {"driver": "python", "pre": [{"name": "P"}]}}"#)
            .contains("'nope.py'"));
        assert!(e(r#"{"file_list": ["middleware.py", "middleware.py"], "custom_middleware": {"driver": "python", "pre": [{"name": "P"}]}}"#)
            .contains("twice"));
    }
}
