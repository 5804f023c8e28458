//! The driver's config JSON (the string given to `CoProcessLoadDriver`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `{"bundle_root": PATH, "timeout_ms": N, "max_instructions": N}`, all optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A directory with one sub-directory per bundle, keyed by directory name (`spec["bundle_hash"]`).
    pub bundle_root: Option<PathBuf>,
    /// Time budget of one call (hook, event handler, a bundle's top-level code), in milliseconds; 0
    /// means none.
    pub timeout_ms: u64,
    /// Instruction budget of one call (Lua VM instructions); 0 means none.
    pub max_instructions: u64,
}

/// A hook that runs for a second is stuck, not slow: the gateway's request would have timed out.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

impl Default for Config {
    fn default() -> Self {
        Config {
            bundle_root: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_instructions: 0,
        }
    }
}

impl Config {
    pub fn parse(json: &str) -> Result<Config, String> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let config: Config = serde_json::from_str(json)
            .map_err(|e| format!("lua driver config {json:?} is invalid: {e}"))?;
        if let Some(root) = &config.bundle_root {
            if !root.is_dir() {
                return Err(format!(
                    "lua driver: bundle_root {} is not a directory",
                    root.display()
                ));
            }
        }
        Ok(config)
    }

    /// The per-call budget the Lua states enforce.
    pub fn budget(&self) -> Budget {
        Budget {
            time: (self.timeout_ms > 0).then(|| Duration::from_millis(self.timeout_ms)),
            instructions: (self.max_instructions > 0).then_some(self.max_instructions),
        }
    }
}

/// How long one call may run: wall-clock time and/or VM instructions (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub time: Option<Duration>,
    pub instructions: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_means_no_bundles_and_the_default_budget() {
        for json in ["", "{}"] {
            let c = Config::parse(json).unwrap();
            assert_eq!(c, Config::default());
            assert_eq!(c.budget().time, Some(Duration::from_millis(1000)));
            assert_eq!(c.budget().instructions, None);
        }
    }

    #[test]
    fn budgets_and_bundle_root() {
        let dir = std::env::temp_dir();
        let json =
            serde_json::json!({"bundle_root": dir, "timeout_ms": 0, "max_instructions": 5000})
                .to_string();
        let c = Config::parse(&json).unwrap();
        assert_eq!(c.bundle_root.as_deref(), Some(dir.as_path()));
        assert_eq!(
            c.budget(),
            Budget {
                time: None,
                instructions: Some(5000)
            }
        );
        let err = Config::parse(r#"{"bundle_root": "/no/such/dir"}"#).unwrap_err();
        assert!(err.contains("/no/such/dir is not a directory"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::parse(r#"{"bundle_rot": "/tmp"}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(Config::parse(r#"{"timeout_ms": -1}"#).is_err());
        assert!(Config::parse("[1]").is_err());
    }
}
