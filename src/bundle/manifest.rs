//! `manifest.json`, the description every Tyk bundle carries: `file_list`, `custom_middleware`,
//! `checksum`, `signature` (Tyk's `apidef.BundleManifest`).

use serde_json::{Map, Value};

use super::unpack::check_relative_path;

/// The manifest's file name inside a bundle.
pub const MANIFEST: &str = "manifest.json";

/// Largest manifest read (a manifest lists file names and hook names: kilobytes in practice).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// A parsed manifest. `raw` keeps the object as written, so a builder can fill in `checksum` and
/// `signature` without dropping fields it does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub file_list: Vec<String>,
    /// `custom_middleware` as JSON (an object; `{}` when absent).
    pub custom_middleware: Value,
    pub checksum: String,
    pub signature: String,
    pub raw: Map<String, Value>,
}

impl Manifest {
    /// Parses manifest bytes; every `file_list` entry must be a safe relative path.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("{MANIFEST} is not valid JSON: {e}"))?;
        let Value::Object(raw) = value else {
            return Err(format!("{MANIFEST} is not a JSON object"));
        };
        let text = |key: &str| -> Result<String, String> {
            match raw.get(key) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("{MANIFEST}: {key} must be a string")),
            }
        };
        let file_list = match raw.get("file_list") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(format!("{MANIFEST}: file_list entries must be strings")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(format!("{MANIFEST}: file_list must be an array")),
        };
        for name in &file_list {
            check_relative_path(name)
                .map_err(|why| format!("{MANIFEST}: file_list entry '{name}' {why}"))?;
            if name == MANIFEST {
                return Err(format!(
                    "{MANIFEST}: file_list must not list {MANIFEST} itself"
                ));
            }
        }
        let custom_middleware = match raw.get("custom_middleware") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err(format!("{MANIFEST}: custom_middleware must be an object")),
        };
        Ok(Manifest {
            file_list,
            custom_middleware,
            checksum: text("checksum")?,
            signature: text("signature")?,
            raw,
        })
    }

    /// `custom_middleware.driver`, when set and not empty.
    pub fn driver(&self) -> Option<&str> {
        self.custom_middleware
            .get("driver")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
    }

    /// The manifest as JSON text with `checksum` and `signature` set (what a builder writes).
    pub fn to_json_with(&self, checksum: &str, signature: &str) -> String {
        let mut raw = self.raw.clone();
        raw.insert("checksum".into(), Value::String(checksum.into()));
        raw.insert("signature".into(), Value::String(signature.into()));
        Value::Object(raw).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tyk_manifests() {
        let m = Manifest::parse(
            br#"{"file_list": ["middleware.py", "lib/helpers.py"],
                "custom_middleware": {"driver": "python", "pre": [{"name": "MyPre"}]},
                "checksum": "abc", "signature": ""}"#,
        )
        .unwrap();
        assert_eq!(m.file_list, ["middleware.py", "lib/helpers.py"]);
        assert_eq!(m.driver(), Some("python"));
        assert_eq!((m.checksum.as_str(), m.signature.as_str()), ("abc", ""));
        let json: Value = serde_json::from_str(&m.to_json_with("c", "s")).unwrap();
        assert_eq!(json["checksum"], "c");
        assert_eq!(json["signature"], "s");
        assert_eq!(json["custom_middleware"]["pre"][0]["name"], "MyPre");
        let empty = Manifest::parse(b"{}").unwrap();
        assert!(empty.file_list.is_empty() && empty.driver().is_none());
    }

    #[test]
    fn refuses_unsafe_or_malformed_manifests() {
        let err = |text: &str| Manifest::parse(text.as_bytes()).unwrap_err();
        assert!(err(r#"{"file_list": ["../etc/passwd"]}"#).contains("'../etc/passwd'"));
        assert!(err(r#"{"file_list": ["/etc/passwd"]}"#).contains("absolute"));
        assert!(err(r#"{"file_list": ["manifest.json"]}"#).contains("itself"));
        assert!(err(r#"{"file_list": "a.py"}"#).contains("must be an array"));
        assert!(err(r#"{"file_list": [1]}"#).contains("must be strings"));
        assert!(err(r#"{"checksum": 5}"#).contains("checksum must be a string"));
        assert!(err(r#"{"custom_middleware": []}"#).contains("must be an object"));
        assert!(err("[1]").contains("not a JSON object"));
        assert!(err("{").contains("not valid JSON"));
    }
}
