//! The driver's config JSON (the string given to `CoProcessLoadDriver`).

use std::path::PathBuf;

use serde::Deserialize;

/// `{"bundle_root": PATH, "python_path": [DIR, ...]}`, both optional.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A directory with one sub-directory per bundle, keyed by directory name (`spec["bundle_hash"]`).
    #[serde(default)]
    pub bundle_root: Option<PathBuf>,
    /// Directories put in front of `sys.path` (e.g. a virtualenv's site-packages).
    #[serde(default)]
    pub python_path: Vec<String>,
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
    fn unknown_keys_and_bad_json_are_errors() {
        assert!(Config::parse(r#"{"bundle_rot": "/tmp"}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(Config::parse("[1]").is_err());
    }
}
