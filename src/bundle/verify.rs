//! Tyk's bundle integrity check (gateway `DeepVerify`, goverify): `checksum` is the lowercase hex MD5
//! of the `file_list` files' bytes concatenated in list order; `signature` is base64 (standard,
//! padded) of an RSA PKCS#1 v1.5 signature over the SHA-256 of those same bytes. Keys are PEM:
//! `PUBLIC KEY` (PKIX) or `RSA PUBLIC KEY` (PKCS#1); `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY`.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::sha2::{Digest as _, Sha256};
use rsa::Pkcs1v15Sign;

use super::manifest::Manifest;

/// The two digests of a bundle's content, computed in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Lowercase hex MD5: the manifest's `checksum`.
    pub md5_hex: String,
    /// SHA-256: what the signature signs.
    pub sha256: [u8; 32],
}

/// Hashes the `file_list` files under `dir` in list order. Each must be a regular file (a symbolic
/// link is refused, so a check never reads outside the bundle); at most `max_bytes` in all.
pub fn digest_files(dir: &Path, file_list: &[String], max_bytes: u64) -> Result<Digests, String> {
    let mut md5 = Md5::new();
    let mut sha = Sha256::new();
    let mut remaining = max_bytes;
    let mut buf = vec![0u8; 64 * 1024];
    for name in file_list {
        let path = dir.join(name);
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| format!("file_list names '{name}', which cannot be read: {e}"))?;
        if !meta.is_file() {
            return Err(format!(
                "file_list names '{name}', which is not a regular file"
            ));
        }
        let mut file = fs::File::open(&path)
            .map_err(|e| format!("file_list names '{name}', which cannot be read: {e}"))?;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading '{name}': {e}")),
            };
            remaining = remaining
                .checked_sub(n as u64)
                .ok_or_else(|| format!("the listed files exceed {max_bytes} bytes"))?;
            md5.update(&buf[..n]);
            sha.update(&buf[..n]);
        }
    }
    Ok(Digests {
        md5_hex: hex(&md5.finalize()),
        sha256: sha.finalize().into(),
    })
}

/// Lowercase hex, as Go's `%x`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An RSA public key that bundles must be signed with.
#[derive(Debug, Clone)]
pub struct PublicKey(rsa::PublicKey);

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` (PKIX) or `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: &str) -> Result<PublicKey, String> {
        let label = pem_label(pem).ok_or("no PEM block found")?;
        let key = match label {
            "PUBLIC KEY" => rsa::PublicKey::from_public_key_pem(pem)
                .map_err(|e| format!("not an RSA PUBLIC KEY (PKIX): {e}"))?,
            "RSA PUBLIC KEY" => rsa::PublicKey::from_pkcs1_pem(pem)
                .map_err(|e| format!("not an RSA PUBLIC KEY (PKCS#1): {e}"))?,
            other => return Err(format!("a '{other}' PEM block is not a public key")),
        };
        Ok(PublicKey(key))
    }

    /// Reads and parses the key file at `path`.
    pub fn load(path: &Path) -> Result<PublicKey, String> {
        let text = read_key_file(path)?;
        PublicKey::from_pem(&text).map_err(|why| format!("public key {}: {why}", path.display()))
    }
}

/// An RSA private key a bundle is signed with.
#[derive(Debug, Clone)]
pub struct PrivateKey(rsa::PrivateKey);

impl PrivateKey {
    /// Parses a PEM `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1).
    pub fn from_pem(pem: &str) -> Result<PrivateKey, String> {
        let label = pem_label(pem).ok_or("no PEM block found")?;
        let key = match label {
            "PRIVATE KEY" => rsa::PrivateKey::from_pkcs8_pem(pem)
                .map_err(|e| format!("not an RSA PRIVATE KEY (PKCS#8): {e}"))?,
            "RSA PRIVATE KEY" => rsa::PrivateKey::from_pkcs1_pem(pem)
                .map_err(|e| format!("not an RSA PRIVATE KEY (PKCS#1): {e}"))?,
            other => return Err(format!("a '{other}' PEM block is not a private key")),
        };
        Ok(PrivateKey(key))
    }

    pub fn load(path: &Path) -> Result<PrivateKey, String> {
        let text = read_key_file(path)?;
        PrivateKey::from_pem(&text).map_err(|why| format!("private key {}: {why}", path.display()))
    }

    /// Tyk's `signature` for content hashing to `digests`.
    pub fn sign(&self, digests: &Digests) -> Result<String, String> {
        let sig = self
            .0
            .sign(Pkcs1v15Sign::new::<Sha256>(), &digests.sha256)
            .map_err(|e| format!("signing failed: {e}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sig))
    }
}

fn read_key_file(path: &Path) -> Result<String, String> {
    let meta = fs::metadata(path).map_err(|e| format!("key file {}: {e}", path.display()))?;
    if meta.len() > 64 * 1024 {
        return Err(format!("key file {} is larger than 64 KiB", path.display()));
    }
    fs::read_to_string(path).map_err(|e| format!("key file {}: {e}", path.display()))
}

/// The label of the first `-----BEGIN <label>-----` line.
fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let len = pem[start..].find("-----")?;
    Some(&pem[start..start + len])
}

/// Checks `manifest` against the content digests, as Tyk's DeepVerify does: with a key, an unsigned
/// manifest is refused before anything else; the checksum must match; with a key, the signature must
/// verify.
pub fn check(
    manifest: &Manifest,
    digests: &Digests,
    key: Option<&PublicKey>,
) -> Result<(), String> {
    if key.is_some() && manifest.signature.is_empty() {
        return Err("the bundle is not signed, and a public key is configured".into());
    }
    if manifest.checksum != digests.md5_hex {
        return Err(format!(
            "checksum mismatch: manifest.json says '{}', the listed files hash to '{}'",
            manifest.checksum, digests.md5_hex
        ));
    }
    if let Some(PublicKey(key)) = key {
        let sig = base64::engine::general_purpose::STANDARD
            .decode(manifest.signature.trim())
            .map_err(|e| format!("the signature is not valid base64: {e}"))?;
        key.verify(Pkcs1v15Sign::new::<Sha256>(), &digests.sha256, &sig)
            .map_err(|_| {
                "the signature does not verify with the configured public key".to_string()
            })?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2048-bit test key pair (generated with `openssl genrsa 2048`), PKCS#8 and PKIX forms.
    pub(crate) const TEST_PRIVATE_PEM: &str =
        include_str!("../../tests/fixtures/bundles/test_private.pem");
    pub(crate) const TEST_PUBLIC_PEM: &str =
        include_str!("../../tests/fixtures/bundles/test_public.pem");
    const TEST_RSA_PUBLIC_PEM: &str =
        include_str!("../../tests/fixtures/bundles/test_rsa_public.pem");
    const TEST_RSA_PRIVATE_PEM: &str =
        include_str!("../../tests/fixtures/bundles/test_rsa_private.pem");
    const OTHER_PUBLIC_PEM: &str = include_str!("../../tests/fixtures/bundles/other_public.pem");

    fn bundle_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, data).unwrap();
        }
        dir
    }

    fn manifest(files: &[&str], checksum: &str, signature: &str) -> Manifest {
        let json =
            serde_json::json!({"file_list": files, "checksum": checksum, "signature": signature});
        Manifest::parse(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn digests_are_over_the_concatenated_files_in_list_order() {
        let dir = bundle_dir(&[("a.py", b"hello "), ("lib/b.py", b"world")]);
        let d = digest_files(dir.path(), &["a.py".into(), "lib/b.py".into()], 1 << 20).unwrap();
        // md5("hello world"), sha256("hello world")
        assert_eq!(d.md5_hex, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(
            hex(&d.sha256),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let e = digest_files(dir.path(), &["a.py".into()], 3).unwrap_err();
        assert!(e.contains("exceed 3 bytes"), "{e}");
        let e = digest_files(dir.path(), &["missing.py".into()], 99).unwrap_err();
        assert!(e.contains("'missing.py'"), "{e}");
    }

    #[test]
    fn keys_in_every_tyk_pem_form_sign_and_verify() {
        let dir = bundle_dir(&[("m.py", b"def f(): pass\n")]);
        let d = digest_files(dir.path(), &["m.py".into()], 1 << 20).unwrap();
        for private in [TEST_PRIVATE_PEM, TEST_RSA_PRIVATE_PEM] {
            let sig = PrivateKey::from_pem(private).unwrap().sign(&d).unwrap();
            let m = manifest(&["m.py"], &d.md5_hex, &sig);
            for public in [TEST_PUBLIC_PEM, TEST_RSA_PUBLIC_PEM] {
                check(&m, &d, Some(&PublicKey::from_pem(public).unwrap())).unwrap();
            }
            let other = PublicKey::from_pem(OTHER_PUBLIC_PEM).unwrap();
            assert_eq!(
                check(&m, &d, Some(&other)).unwrap_err(),
                "the signature does not verify with the configured public key"
            );
        }
    }

    #[test]
    fn unsigned_tampered_and_garbled_bundles_are_refused() {
        let dir = bundle_dir(&[("m.py", b"x")]);
        let d = digest_files(dir.path(), &["m.py".into()], 99).unwrap();
        let key = PublicKey::from_pem(TEST_PUBLIC_PEM).unwrap();
        let unsigned = manifest(&["m.py"], &d.md5_hex, "");
        check(&unsigned, &d, None).unwrap();
        assert!(check(&unsigned, &d, Some(&key))
            .unwrap_err()
            .contains("not signed"));
        let wrong = manifest(&["m.py"], "00", "");
        assert!(check(&wrong, &d, None)
            .unwrap_err()
            .starts_with("checksum mismatch"));
        let garbled = manifest(&["m.py"], &d.md5_hex, "!!!");
        assert!(check(&garbled, &d, Some(&key))
            .unwrap_err()
            .contains("base64"));
        assert!(PublicKey::from_pem(TEST_PRIVATE_PEM)
            .unwrap_err()
            .contains("not a public key"));
        assert!(PrivateKey::from_pem(TEST_PUBLIC_PEM)
            .unwrap_err()
            .contains("not a private key"));
        assert_eq!(
            PublicKey::from_pem("junk").unwrap_err(),
            "no PEM block found"
        );
    }
}
