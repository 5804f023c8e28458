//! The driver's config JSON (the string given to `CoProcessLoadDriver`).

use std::path::PathBuf;

use serde::Deserialize;

/// `{"bundle_root": PATH, "python_path": [DIR, ...], "python_path_prefix": DIR, "python_version": V}`,
/// all optional. The last two are tyk.conf's `coprocess_options` of the same names, which the bridge
/// hands to this driver.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A directory with one sub-directory per bundle, keyed by directory name (`spec["bundle_hash"]`).
    #[serde(default)]
    pub bundle_root: Option<PathBuf>,
    /// Directories put in front of `sys.path` (e.g. a virtualenv's site-packages).
    #[serde(default)]
    pub python_path: Vec<String>,
    /// Tyk's install directory (`/opt/tyk-gateway`): as in Tyk, its `coprocess/python`,
    /// `coprocess/python/tyk` and `coprocess/python/proto` go on the module path, so modules kept
    /// there for Tyk's Python plugins import here too.
    #[serde(default)]
    pub python_path_prefix: Option<String>,
    /// The Python version Tyk would load (`3.11`): this driver runs the interpreter it is linked
    /// with, and says so in the log when that is another version.
    #[serde(default)]
    pub python_version: Option<String>,
}

impl Config {
    pub fn parse(json: &str) -> Result<Config, String> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let config: Config = serde_json::from_str(json)
            .map_err(|e| format!("python driver config {json:?} is invalid: {e}"))?;
        if let Some(root) = &config.bundle_root {
            if !root.is_dir() {
                return Err(format!(
                    "python driver: bundle_root {} is not a directory",
                    root.display()
                ));
            }
        }
        Ok(config)
    }

    /// The directories put in front of `sys.path`, in order: `python_path`, then those Tyk derives from
    /// `python_path_prefix` (gateway/coprocess_python.go).
    pub fn module_path(&self) -> Vec<String> {
        let mut path = self.python_path.clone();
        if let Some(prefix) = self.python_path_prefix.as_deref().filter(|p| !p.is_empty()) {
            let base = std::path::Path::new(prefix)
                .join("coprocess")
                .join("python");
            for dir in [base.clone(), base.join("tyk"), base.join("proto")] {
                path.push(dir.to_string_lossy().into_owned());
            }
        }
        path
    }

    /// A warning when `python_version` names another version than `running` (major, minor).
    pub fn version_note(&self, running: (u8, u8)) -> Option<String> {
        let wanted = self.python_version.as_deref()?.trim();
        let have = format!("{}.{}", running.0, running.1);
        let within = |long: &str, short: &str| {
            long.strip_prefix(short)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        };
        let same = wanted.is_empty() || within(wanted, &have) || within(&have, wanted);
        (!same).then(|| {
            format!("python_version is {wanted:?} but the driver runs Python {have}, which it was built with")
        })
    }

    /// The bundle root as text for Python (non-UTF-8 paths are refused with a clear error).
    pub fn bundle_root_text(&self) -> Result<Option<String>, String> {
        self.bundle_root
            .as_ref()
            .map(|p| {
                p.to_str().map(str::to_owned).ok_or_else(|| {
                    format!("python driver: bundle_root {} is not UTF-8", p.display())
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_means_no_bundles() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
    }

    #[test]
    fn bundle_root_must_be_a_directory() {
        let dir = std::env::temp_dir();
        let json = serde_json::json!({ "bundle_root": dir, "python_path": ["/x"] }).to_string();
        let c = Config::parse(&json).unwrap();
        assert_eq!(c.bundle_root.as_deref(), Some(dir.as_path()));
        assert_eq!(c.python_path, vec!["/x".to_owned()]);
        let err = Config::parse(r#"{"bundle_root": "/no/such/dir"}"#).unwrap_err();
        assert!(err.contains("/no/such/dir is not a directory"), "{err}");
    }

    #[test]
    fn tyk_conf_python_options_are_understood() {
        let c = Config::parse(
            r#"{"python_path": ["/a"], "python_path_prefix": "/opt/tyk", "python_version": "3.11"}"#,
        )
        .unwrap();
        assert_eq!(
            c.module_path(),
            [
                "/a",
                "/opt/tyk/coprocess/python",
                "/opt/tyk/coprocess/python/tyk",
                "/opt/tyk/coprocess/python/proto"
            ]
        );
        assert_eq!(c.version_note((3, 11)), None);
        assert!(c.version_note((3, 12)).unwrap().contains("Python 3.12"));
        let patch = Config::parse(r#"{"python_version": "3.11.4"}"#).unwrap();
        assert_eq!(patch.version_note((3, 11)), None);
        assert_eq!(Config::default().version_note((3, 1)), None);
        let major = Config::parse(r#"{"python_version": "3"}"#).unwrap();
        assert_eq!(major.version_note((3, 12)), None);
        assert!(major.version_note((2, 7)).is_some());
    }

    #[test]
    fn unknown_keys_and_bad_json_are_errors() {
        assert!(Config::parse(r#"{"bundle_rot": "/tmp"}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(Config::parse("[1]").is_err());
    }
}
