//! Bundles on disk: a directory with `manifest.json` and the `.lua` files its `file_list` names, read
//! into memory once per version. Nothing here runs Lua: `state.rs` loads the sources into states.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

/// One version of a bundle, read from disk.
#[derive(Debug)]
pub struct BundleSource {
    /// The directory name: what the gateway sends as `spec["bundle_hash"]`.
    pub key: String,
    pub path: PathBuf,
    /// Unique per version read in this process: a Lua state reloads a bundle when it changes.
    pub version: u64,
    /// The `.lua` files of `file_list`, in list order: (name in the list, source).
    pub files: Vec<(String, String)>,
    /// Hook names the manifest's `custom_middleware` names (for warnings about missing functions).
    pub manifest_hooks: Vec<String>,
    /// `custom_middleware.driver` ("lua" expected; anything else is loaded with a warning).
    pub driver: String,
    /// Everything read (manifest and files): a reload compares it to see whether the bundle changed.
    snapshot: Vec<u8>,
}

#[derive(Debug, Default, Deserialize)]
struct Manifest {
    #[serde(default)]
    file_list: Vec<String>,
    #[serde(default)]
    custom_middleware: CustomMiddleware,
}

#[derive(Debug, Default, Deserialize)]
struct CustomMiddleware {
    #[serde(default)]
    pre: Vec<HookEntry>,
    #[serde(default)]
    post: Vec<HookEntry>,
    #[serde(default)]
    post_key_auth: Vec<HookEntry>,
    #[serde(default)]
    response: Vec<HookEntry>,
    #[serde(default)]
    auth_check: Option<HookEntry>,
    #[serde(default)]
    driver: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct HookEntry {
    #[serde(default)]
    name: String,
}

static VERSIONS: AtomicU64 = AtomicU64::new(1);

/// A `file_list` entry as a path inside the bundle: relative, no `..`.
fn inside(bundle: &Path, name: &str) -> Result<PathBuf, String> {
    let relative = Path::new(name);
    if name.is_empty()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "file_list entry {name:?} is not a path inside the bundle"
        ));
    }
    Ok(bundle.join(relative))
}

impl BundleSource {
    /// Reads the bundle at `path`, keyed `key`. Errors say what is wrong in an operator's words.
    pub fn read(key: &str, path: &Path) -> Result<BundleSource, String> {
        let manifest_path = path.join("manifest.json");
        let manifest_bytes = fs::read(&manifest_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("no manifest.json in {}", path.display())
            } else {
                format!("manifest.json is unreadable: {e}")
            }
        })?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| format!("manifest.json is invalid: {e}"))?;
        let mut snapshot = manifest_bytes;
        let mut listed: Vec<&String> = manifest
            .file_list
            .iter()
            .filter(|f| f.ends_with(".lua"))
            .collect();
        let fallback = String::from("middleware.lua");
        if listed.is_empty() && path.join(&fallback).is_file() {
            listed.push(&fallback);
        }
        if listed.is_empty() {
            return Err("file_list names no .lua file (and there is no middleware.lua)".into());
        }
        let mut files = Vec::with_capacity(listed.len());
        for name in listed {
            let file = inside(path, name)?;
            let bytes = fs::read(&file).map_err(|e| format!("file_list names {name}: {e}"))?;
            snapshot.push(0);
            snapshot.extend_from_slice(name.as_bytes());
            snapshot.push(0);
            snapshot.extend_from_slice(&bytes);
            let source =
                String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8 text"))?;
            files.push((name.clone(), source));
        }
        let cm = &manifest.custom_middleware;
        let manifest_hooks = cm
            .pre
            .iter()
            .chain(&cm.post)
            .chain(&cm.post_key_auth)
            .chain(&cm.response)
            .chain(cm.auth_check.as_ref())
            .map(|h| h.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        Ok(BundleSource {
            key: key.to_owned(),
            path: path.to_path_buf(),
            version: VERSIONS.fetch_add(1, Ordering::Relaxed),
            files,
            manifest_hooks,
            driver: cm.driver.clone().unwrap_or_default(),
            snapshot,
        })
    }

    /// Whether the bundle on disk still is exactly this version (an unreadable one is not).
    pub fn unchanged_on_disk(&self) -> bool {
        BundleSource::read(&self.key, &self.path).is_ok_and(|now| now.snapshot == self.snapshot)
    }
}

/// The bundle directories under `root`: (key, path), sorted, dot-directories left out.
pub fn scan(root: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let entries = fs::read_dir(root).map_err(|e| format!("cannot list {}: {e}", root.display()))?;
    let mut dirs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            (!name.starts_with('.')).then(|| (name, e.path()))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The key of a bundle directory given to `CoProcessLoadBundle`: its name.
pub fn key_of(path: &Path) -> Result<String, String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("{} has no usable directory name", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in files {
            let p = dir.path().join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, contents).unwrap();
        }
        dir
    }

    const MANIFEST: &str = r#"{"file_list": ["middleware.lua", "lib/util.lua", "README.md"],
        "custom_middleware": {"driver": "lua", "pre": [{"name": "MyPre"}], "auth_check": {"name": "MyAuth"}}}"#;

    #[test]
    fn reads_the_lua_files_of_file_list_in_order() {
        let dir = bundle(&[
            ("manifest.json", MANIFEST),
            ("middleware.lua", "-- main"),
            ("lib/util.lua", "return {}"),
            ("README.md", "not lua"),
        ]);
        let b = BundleSource::read("k", dir.path()).unwrap();
        let names: Vec<&str> = b.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["middleware.lua", "lib/util.lua"]);
        assert_eq!(b.manifest_hooks, ["MyPre", "MyAuth"]);
        assert!(b.unchanged_on_disk());
        fs::write(dir.path().join("lib/util.lua"), "return 1").unwrap();
        assert!(!b.unchanged_on_disk());
    }

    #[test]
    fn missing_files_and_escapes_are_errors() {
        let dir = bundle(&[("manifest.json", MANIFEST), ("middleware.lua", "")]);
        let err = BundleSource::read("k", dir.path()).unwrap_err();
        assert!(err.contains("file_list names lib/util.lua"), "{err}");

        let dir = bundle(&[("manifest.json", r#"{"file_list": ["../x.lua"]}"#)]);
        let err = BundleSource::read("k", dir.path()).unwrap_err();
        assert!(err.contains("not a path inside the bundle"), "{err}");

        let dir = bundle(&[("manifest.json", "{")]);
        let err = BundleSource::read("k", dir.path()).unwrap_err();
        assert!(err.contains("manifest.json is invalid"), "{err}");

        let dir = bundle(&[]);
        let err = BundleSource::read("k", dir.path()).unwrap_err();
        assert!(err.contains("no manifest.json"), "{err}");
    }

    #[test]
    fn middleware_lua_is_the_default_file() {
        let dir = bundle(&[("manifest.json", "{}"), ("middleware.lua", "x = 1")]);
        let b = BundleSource::read("k", dir.path()).unwrap();
        assert_eq!(b.files, [("middleware.lua".to_owned(), "x = 1".to_owned())]);
    }
}
