//! The install pipeline against file:// bundles: fresh, cached, stale, refused. HTTP and the drivers
//! are exercised by tests/bundles.rs.

use std::fs;

use super::verify::tests::{TEST_PRIVATE_PEM, TEST_PUBLIC_PEM};
use super::*;

struct Setup {
    _root: tempfile::TempDir,
    served: PathBuf,
    project: PathBuf,
    settings: Settings,
}

fn setup(signed_with_key: bool) -> Setup {
    let root = tempfile::tempdir().unwrap();
    let served = root.path().join("served");
    let project = root.path().join("project");
    fs::create_dir_all(&served).unwrap();
    fs::create_dir_all(&project).unwrap();
    fs::write(
        project.join("manifest.json"),
        r#"{"file_list": ["middleware.py"], "custom_middleware": {"driver": "python", "pre": [{"name": "P"}]}}"#,
    )
    .unwrap();
    fs::write(project.join("middleware.py"), "X = 1\n").unwrap();
    let key_path = root.path().join("public.pem");
    fs::write(&key_path, TEST_PUBLIC_PEM).unwrap();
    let config = BundleConfig {
        enable_bundle_downloader: Some(true),
        bundle_base_url: Some(url::Url::from_directory_path(&served).unwrap().to_string()),
        public_key_path: signed_with_key.then(|| key_path.display().to_string()),
        middleware_path: Some(root.path().join("mw").display().to_string()),
        ..Default::default()
    };
    Setup {
        settings: Settings::from_config(&config),
        _root: root,
        served,
        project,
    }
}

impl Setup {
    fn publish(&self, name: &str, signed: bool) {
        let key = PrivateKey::from_pem(TEST_PRIVATE_PEM).unwrap();
        let built =
            build::build(&self.project.join("manifest.json"), signed.then_some(&key)).unwrap();
        fs::write(self.served.join(name), built.archive).unwrap();
    }

    fn install(&self, name: &str) -> Result<Installed, BundleError> {
        install(&self.settings, name, &|_| {})
    }

    /// Entries of `<middleware_path>/bundles`, temporary folders included.
    fn bundles_dir_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.settings.bundles_dir())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

use verify::PrivateKey;

#[test]
fn installs_then_reuses_the_unpacked_copy() {
    let s = setup(true);
    s.publish("b.zip", true);
    let first = s.install("b.zip").unwrap();
    assert_eq!(first.hash, bundle_hash("b.zip"));
    assert_eq!(first.dir, s.settings.bundles_dir().join(&first.hash));
    assert_eq!(first.custom_middleware["pre"][0]["name"], "P");
    assert_eq!(
        fs::read(first.dir.join("middleware.py")).unwrap(),
        b"X = 1\n"
    );
    // Gone from the server: the unpacked copy still serves.
    fs::remove_file(s.served.join("b.zip")).unwrap();
    assert_eq!(s.install("b.zip").unwrap(), first);
    assert_eq!(s.bundles_dir_entries(), std::slice::from_ref(&first.hash));
}

#[test]
fn a_tampered_copy_is_fetched_again_or_refused() {
    let s = setup(true);
    s.publish("b.zip", true);
    let first = s.install("b.zip").unwrap();
    fs::write(first.dir.join("middleware.py"), "X = 'evil'\n").unwrap();
    let again = s.install("b.zip").unwrap();
    assert_eq!(
        fs::read(again.dir.join("middleware.py")).unwrap(),
        b"X = 1\n"
    );
    fs::write(first.dir.join("middleware.py"), "X = 'evil'\n").unwrap();
    fs::remove_file(s.served.join("b.zip")).unwrap();
    let e = s.install("b.zip").unwrap_err();
    assert_eq!((e.bundle.as_str(), e.step), ("b.zip", "fetch"));
    assert!(
        e.why.contains("does not verify: verify: checksum mismatch"),
        "{e}"
    );
    // An extra file the signature does not cover.
    s.publish("b.zip", true);
    let ok = s.install("b.zip").unwrap();
    fs::write(ok.dir.join("sneaky.py"), "import os\n").unwrap();
    fs::remove_file(s.served.join("b.zip")).unwrap();
    let e = s.install("b.zip").unwrap_err();
    assert!(
        e.why
            .contains("'sneaky.py' is in the bundle but not in file_list"),
        "{e}"
    );
}

#[test]
fn unsigned_bundles_are_refused_with_a_key_and_accepted_without() {
    let s = setup(true);
    s.publish("u.zip", false);
    let e = s.install("u.zip").unwrap_err();
    assert_eq!(e.step, "verify");
    assert!(e.why.contains("not signed"), "{e}");
    assert!(
        s.bundles_dir_entries().is_empty(),
        "{:?}",
        s.bundles_dir_entries()
    );
    let open = setup(false);
    open.publish("u.zip", false);
    open.install("u.zip").unwrap();
}

#[test]
fn several_bundles_install_into_one_folder() {
    let s = setup(false);
    s.publish("a.zip", false);
    s.publish("b.zip", false);
    let both = s.install("a.zip, b.zip").unwrap();
    assert_eq!(both.hash, bundle_hash("a.zip, b.zip"));
    assert!(both.dir.join("a/middleware.py").is_file());
    assert!(both.dir.join("b/manifest.json").is_file());
    assert_eq!(both.custom_middleware["pre"].as_array().unwrap().len(), 2);
    let e = s.install("a.zip,a.tar").unwrap_err();
    assert!(e.why.contains("same folder 'a'"), "{e}");
}

#[test]
fn downloader_disabled_or_unconfigured() {
    let mut s = setup(false);
    s.publish("b.zip", false);
    s.settings.downloader_enabled = false;
    let e = s.install("b.zip").unwrap_err();
    assert!(e.why.contains("enable_bundle_downloader"), "{e}");
    s.settings.downloader_enabled = true;
    s.settings.base_url = None;
    assert!(s
        .install("b.zip")
        .unwrap_err()
        .why
        .contains("bundle_base_url"));
    s.settings.public_key_path = Some("/no/such/key.pem".into());
    let e = s.install("b.zip").unwrap_err();
    assert_eq!(e.step, "public key");
}

#[test]
fn folder_names_follow_tyk() {
    assert_eq!(bundle_folder("plugins/auth.zip"), "plugins__auth");
    assert_eq!(bundle_folder("noext"), "noext");
    assert_eq!(bundle_folder("v1.2/b"), "v1.2__b");
    assert!(bundle_folder(".zip").starts_with("bundle_"));
    assert_eq!(bundle_names(" a.zip, ,b.zip "), ["a.zip", "b.zip"]);
    assert_eq!(bundle_hash(""), "d41d8cd98f00b204e9800998ecf8427e");
}

#[test]
fn check_archive_says_what_is_wrong() {
    let s = setup(false);
    s.publish("b.zip", true);
    let bytes = fs::read(s.served.join("b.zip")).unwrap();
    let key = PublicKey::from_pem(TEST_PUBLIC_PEM).unwrap();
    let m = check_archive(&bytes, Some(&key)).unwrap();
    assert_eq!(m.file_list, ["middleware.py"]);
    assert_eq!(check_archive(b"junk", None).unwrap_err().0, "unpack");
}
