//! Plugin bundles (DESIGN §10), byte-compatible with Tyk's bundler and gateway: an API names a bundle
//! (`custom_middleware_bundle`, or OAS `pluginConfig.bundle`); the bridge fetches it from
//! `bundle_base_url`, unpacks it safely under `<middleware_path>/bundles/<md5 of the name>/`, checks
//! its checksum and signature, and the manifest's `custom_middleware` becomes the API's.
//!
//! Beyond Tyk: with a public key configured, unsigned or badly signed bundles are refused whether
//! fresh or cached, and so are files the signature does not cover; a cached copy that no longer
//! verifies is fetched again; entries that escape the folder, links, devices and zip bombs are
//! refused; an install is all or nothing (unpacked into a temporary folder, renamed into place).
//!
//! - [`manifest`]: `manifest.json`. [`verify`]: checksum, signature, keys. [`unpack`]: the zip.
//!   [`fetch`]: the download. [`definition`]: the API definition with the bundle applied.
//!   [`build`]: making a bundle (the `coprocess bundle build` command).

pub mod build;
pub mod definition;
pub mod fetch;
pub mod manifest;
pub mod unpack;
pub mod verify;

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use md5::{Digest as _, Md5};
use serde_json::Value;

use crate::config::BundleConfig;
use crate::error::{Error, COPROCESS_ERR_BUNDLE};
use fetch::FetchPolicy;
use manifest::{Manifest, MANIFEST, MAX_MANIFEST_BYTES};
use unpack::Limits;
use verify::PublicKey;

/// How bundles are fetched, checked and stored (tyk.conf's bundle keys, with the bridge's bounds).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `enable_bundle_downloader`: without it only already unpacked bundles can be used.
    pub downloader_enabled: bool,
    pub base_url: Option<String>,
    pub public_key_path: Option<PathBuf>,
    pub middleware_path: PathBuf,
    /// `skip_verify_existing_plugin_bundle` (honoured only without a public key).
    pub skip_verify_existing: bool,
    pub fetch: FetchPolicy,
    pub limits: Limits,
}

impl Settings {
    pub fn from_config(c: &BundleConfig) -> Settings {
        let fetch = FetchPolicy {
            insecure_skip_verify: c.bundle_insecure_skip_verify.unwrap_or(false),
            timeout: c
                .bundle_fetch_timeout_ms
                .map_or(FetchPolicy::default().timeout, Duration::from_millis),
            retries: c
                .bundle_fetch_retries
                .unwrap_or(FetchPolicy::default().retries),
            backoff: c
                .bundle_fetch_backoff_ms
                .map_or(FetchPolicy::default().backoff, Duration::from_millis),
            ..FetchPolicy::default()
        };
        Settings {
            downloader_enabled: c.enable_bundle_downloader.unwrap_or(false),
            base_url: c.bundle_base_url.clone().filter(|u| !u.is_empty()),
            public_key_path: c
                .public_key_path
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            middleware_path: PathBuf::from(c.middleware_path.as_deref().unwrap_or("middleware")),
            skip_verify_existing: c.skip_verify_existing_plugin_bundle.unwrap_or(false),
            limits: Limits {
                max_archive_bytes: fetch.max_bytes,
                ..Limits::default()
            },
            fetch,
        }
    }

    /// `<middleware_path>/bundles`.
    pub fn bundles_dir(&self) -> PathBuf {
        self.middleware_path.join("bundles")
    }
}

/// A failed bundle: which bundle, at which step, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    pub bundle: String,
    pub step: &'static str,
    pub why: String,
}

impl BundleError {
    fn new(bundle: &str, step: &'static str, why: impl Into<String>) -> BundleError {
        BundleError {
            bundle: bundle.to_owned(),
            step,
            why: why.into(),
        }
    }

    /// The bridge error for API `api_id`.
    pub fn for_api(&self, api_id: &str) -> Error {
        Error::new(COPROCESS_ERR_BUNDLE, format!("API '{api_id}': {self}"))
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bundle '{}': {}: {}", self.bundle, self.step, self.why)
    }
}

/// A bundle in place and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    /// The name the API gives (a comma-separated list for several bundles).
    pub name: String,
    /// md5 hex of the name: the folder name and `spec["bundle_hash"]`.
    pub hash: String,
    /// `<middleware_path>/bundles/<hash>`: what the driver's CoProcessDriverLoadBundle receives.
    pub dir: PathBuf,
    /// The manifest's `custom_middleware` (merged, for several bundles).
    pub custom_middleware: Value,
}

/// md5 hex of a bundle name (Tyk's `getHashedBundleName`).
pub fn bundle_hash(name: &str) -> String {
    verify::hex(&Md5::digest(name.as_bytes()))
}

/// The names in a `custom_middleware_bundle` value: comma-separated, trimmed, empty ones dropped.
pub fn bundle_names(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect()
}

/// The folder of one bundle among several (Tyk's `bundleSubdirName`): the name without its extension,
/// `/` and `\` turned into `__`.
pub fn bundle_folder(name: &str) -> String {
    let stem = match name.rfind('.') {
        Some(dot) if !name[dot..].contains('/') => &name[..dot],
        _ => name,
    };
    let clean = stem.replace(['/', '\\'], "__");
    if clean.is_empty() {
        let sum = <rsa::sha2::Sha256 as rsa::sha2::Digest>::digest(name.as_bytes());
        return format!("bundle_{}", verify::hex(&sum[..6]));
    }
    clean
}

/// One install at a time: two APIs naming the same bundle must not race on its folder.
static INSTALLS: Mutex<()> = Mutex::new(());

/// Makes bundle `name` (as the API names it) available and verified: an unpacked copy is reused when
/// it verifies; otherwise it is downloaded, unpacked into a temporary folder, verified and renamed
/// into place. `log` receives progress lines.
pub fn install(
    settings: &Settings,
    name: &str,
    log: &dyn Fn(&str),
) -> Result<Installed, BundleError> {
    let _one = INSTALLS.lock().unwrap_or_else(|p| p.into_inner());
    let names = bundle_names(name);
    let key = match &settings.public_key_path {
        Some(path) => {
            Some(PublicKey::load(path).map_err(|why| BundleError::new(name, "public key", why))?)
        }
        None => None,
    };
    let hash = bundle_hash(name);
    let dir = settings.bundles_dir().join(&hash);
    let parts = parts(&names, name)?;
    let mut stale = None;
    if dir.exists() {
        match check_all(&dir, &parts, key.as_ref(), settings, false) {
            Ok(custom_middleware) => {
                log(&format!(
                    "bundle '{name}': using the copy in {}",
                    dir.display()
                ));
                return Ok(Installed {
                    name: name.to_owned(),
                    hash,
                    dir,
                    custom_middleware,
                });
            }
            Err(e) => {
                log(&format!(
                    "bundle '{name}': the copy in {} does not verify ({}: {}); fetching it again",
                    dir.display(),
                    e.step,
                    e.why
                ));
                stale = Some(e);
            }
        }
    }
    let fresh = download(settings, name, &parts, &hash, key.as_ref(), log);
    let custom_middleware = match (fresh, stale) {
        (Ok(cm), _) => cm,
        (Err(e), None) => return Err(e),
        (Err(e), Some(old)) => {
            return Err(BundleError::new(
                &e.bundle,
                e.step,
                format!(
                    "{} (and the unpacked copy does not verify: {}: {})",
                    e.why, old.step, old.why
                ),
            ))
        }
    };
    log(&format!("bundle '{name}': installed in {}", dir.display()));
    Ok(Installed {
        name: name.to_owned(),
        hash,
        dir,
        custom_middleware,
    })
}

/// Each bundle and its folder relative to the install folder ("" for a single bundle).
fn parts<'a>(names: &[&'a str], whole: &str) -> Result<Vec<(&'a str, String)>, BundleError> {
    if names.len() == 1 && names[0] == whole {
        return Ok(vec![(names[0], String::new())]);
    }
    let mut parts: Vec<(&str, String)> = Vec::new();
    for name in names {
        let folder = bundle_folder(name);
        if let Some((other, _)) = parts.iter().find(|(_, f)| *f == folder) {
            return Err(BundleError::new(
                whole,
                "names",
                format!(
                    "bundles '{other}' and '{name}' would unpack into the same folder '{folder}'"
                ),
            ));
        }
        parts.push((name, folder));
    }
    Ok(parts)
}

/// Verifies every part under `root`; returns the (merged) custom_middleware.
fn check_all(
    root: &Path,
    parts: &[(&str, String)],
    key: Option<&PublicKey>,
    settings: &Settings,
    fresh: bool,
) -> Result<Value, BundleError> {
    let mut sections = Vec::new();
    for (name, folder) in parts {
        let dir = if folder.is_empty() {
            root.to_path_buf()
        } else {
            root.join(folder)
        };
        let manifest = check_unpacked(&dir, key, settings, fresh)
            .map_err(|(step, why)| BundleError::new(name, step, why))?;
        sections.push((name.to_string(), folder.clone(), manifest.custom_middleware));
    }
    if let [(_, _, only)] = sections.as_slice() {
        if parts[0].1.is_empty() {
            return Ok(only.clone());
        }
    }
    definition::merge_sections(&sections)
        .map_err(|why| BundleError::new(&parts_name(parts), "manifest", why))
}

fn parts_name(parts: &[(&str, String)]) -> String {
    parts.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",")
}

/// Reads and verifies the unpacked bundle in `dir`. A fresh bundle always has its checksum checked
/// (as Tyk's DeepVerify); a cached one too, unless `skip_verify_existing` and no key. With a key,
/// the signature must verify and every file must be covered by it (listed in `file_list`).
fn check_unpacked(
    dir: &Path,
    key: Option<&PublicKey>,
    settings: &Settings,
    fresh: bool,
) -> Result<Manifest, (&'static str, String)> {
    let files = unpack::list_files(dir).map_err(|why| ("unpacked files", why))?;
    let manifest = read_manifest(dir).map_err(|why| ("manifest", why))?;
    if !fresh && key.is_none() && settings.skip_verify_existing {
        return Ok(manifest);
    }
    if key.is_some() {
        if let Some(extra) = files
            .iter()
            .find(|f| f.as_str() != MANIFEST && !manifest.file_list.contains(f))
        {
            return Err((
                "verify",
                format!("'{extra}' is in the bundle but not in file_list, so the signature does not cover it"),
            ));
        }
    }
    let digests =
        verify::digest_files(dir, &manifest.file_list, settings.limits.max_unpacked_bytes)
            .map_err(|why| ("verify", why))?;
    verify::check(&manifest, &digests, key).map_err(|why| ("verify", why))?;
    Ok(manifest)
}

/// The `manifest.json` of an unpacked bundle.
pub fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let meta = fs::symlink_metadata(&path).map_err(|e| format!("no readable {MANIFEST}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{MANIFEST} is not a regular file"));
    }
    let mut bytes = Vec::new();
    fs::File::open(&path)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {MANIFEST}: {e}"))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes"
        ));
    }
    Manifest::parse(&bytes)
}

/// Downloads, unpacks and verifies every part into a temporary folder, then renames it into place
/// (replacing a stale copy). Nothing is left behind on failure.
fn download(
    settings: &Settings,
    whole: &str,
    parts: &[(&str, String)],
    hash: &str,
    key: Option<&PublicKey>,
    log: &dyn Fn(&str),
) -> Result<Value, BundleError> {
    if !settings.downloader_enabled {
        return Err(BundleError::new(
            whole,
            "fetch",
            "the bundle downloader is disabled (enable_bundle_downloader) and no unpacked copy exists",
        ));
    }
    let Some(base) = settings.base_url.as_deref() else {
        return Err(BundleError::new(
            whole,
            "fetch",
            "no bundle_base_url is configured",
        ));
    };
    let bundles = settings.bundles_dir();
    fs::create_dir_all(&bundles).map_err(|e| {
        BundleError::new(
            whole,
            "unpack",
            format!("cannot create {}: {e}", bundles.display()),
        )
    })?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".tmp-{hash}-"))
        .tempdir_in(&bundles)
        .map_err(|e| {
            BundleError::new(
                whole,
                "unpack",
                format!(
                    "cannot create a temporary folder in {}: {e}",
                    bundles.display()
                ),
            )
        })?;
    for (name, folder) in parts {
        let url =
            fetch::bundle_url(base, name).map_err(|why| BundleError::new(name, "fetch", why))?;
        log(&format!("bundle '{name}': fetching {url}"));
        let bytes = fetch::fetch(&url, &settings.fetch)
            .map_err(|why| BundleError::new(name, "fetch", why))?;
        let dest = staging.path().join(folder);
        fs::create_dir_all(&dest).map_err(|e| {
            BundleError::new(
                name,
                "unpack",
                format!("cannot create {}: {e}", dest.display()),
            )
        })?;
        unpack::unpack(&bytes, &dest, &settings.limits)
            .map_err(|why| BundleError::new(name, "unpack", why))?;
    }
    let custom_middleware = check_all(staging.path(), parts, key, settings, true)?;
    let dir = bundles.join(hash);
    let failed = |e: std::io::Error| {
        BundleError::new(
            whole,
            "install",
            format!("cannot move the bundle into {}: {e}", dir.display()),
        )
    };
    // rename() replaces an empty directory: move a stale copy onto an empty temporary one (removed
    // with it), then the new copy into place.
    let old = if dir.exists() {
        let old = tempfile::Builder::new()
            .prefix(&format!(".old-{hash}-"))
            .tempdir_in(&bundles)
            .map_err(failed)?;
        fs::rename(&dir, old.path()).map_err(failed)?;
        Some(old)
    } else {
        None
    };
    fs::rename(staging.path(), &dir).map_err(failed)?;
    let _ = staging.keep();
    drop(old);
    Ok(custom_middleware)
}

/// Checks a bundle archive as a download is checked (`coprocess bundle verify`): unpacked into a
/// temporary folder (removed afterwards), manifest read, checksum and, with `key`, signature and
/// coverage verified. The error is `(step, why)`.
pub fn check_archive(
    archive: &[u8],
    key: Option<&PublicKey>,
) -> Result<Manifest, (&'static str, String)> {
    let settings = Settings::from_config(&BundleConfig::default());
    let dir = tempfile::tempdir()
        .map_err(|e| ("unpack", format!("cannot create a temporary folder: {e}")))?;
    unpack::unpack(archive, dir.path(), &settings.limits).map_err(|why| ("unpack", why))?;
    check_unpacked(dir.path(), key, &settings, true)
}

#[cfg(test)]
mod tests;
