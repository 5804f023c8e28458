//! The driver's config JSON (given to `CoProcessLoadDriver`):
//!
//! ```json
//! {"coprocess_grpc_server": "tcp://127.0.0.1:5555",   // or "unix:///path", "host:port", a list
//!  "timeout_ms": 10000, "connect_timeout_ms": 2000,
//!  "max_message_bytes": 16777216,
//!  "tls": {"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client.key", "domain": "name"},
//!  "runtime_threads": 2}
//! ```
//!
//! Only `coprocess_grpc_server` is required. A string holding several addresses separated by commas
//! or spaces counts as a list (so the `TYK_GW_COPROCESSOPTIONS_COPROCESSGRPCSERVER` variable, which the
//! bridge passes on to drivers, can name several).

use std::time::Duration;

use coprocess_grpc_service::Target;
use serde::Deserialize;
use serde_json::Value;

pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// gRPC's usual 4 MiB limit is the one Tyk users kept tripping over; 16 MiB leaves room for real bodies.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_RUNTIME_THREADS: usize = 2;

/// Options the bridge passes on from its global config to every driver; this driver ignores them quietly.
const INHERITED_ELSEWHERE: &[&str] = &["python_path_prefix", "python_version", "enable_coprocess"];

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA(s) that signed the server's certificate; the system's roots when absent.
    pub ca_file: Option<String>,
    /// PEM client certificate chain, for mutual TLS (with `key_file`).
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// The name to check the server's certificate against, when it is not the address's host.
    pub domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub servers: Vec<Target>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_message_bytes: usize,
    pub tls: Option<TlsConfig>,
    pub runtime_threads: usize,
    /// Keys that mean nothing to this driver (likely typos), for a warning.
    pub unknown_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Servers {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct Raw {
    coprocess_grpc_server: Option<Servers>,
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    max_message_bytes: Option<usize>,
    tls: Option<TlsConfig>,
    runtime_threads: Option<usize>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| format!("grpc driver config is not valid: {e}"))?;
        let addresses: Vec<String> = match raw.coprocess_grpc_server {
            None => Vec::new(),
            Some(Servers::One(s)) => s
                .split([',', ' ', '\t', '\n'])
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Servers::Many(v)) => v,
        };
        if addresses.is_empty() {
            return Err(
                "grpc driver config needs \"coprocess_grpc_server\": \"tcp://host:port\", \
                        \"unix:///path\", \"host:port\" or a list of them"
                    .into(),
            );
        }
        let servers = addresses
            .iter()
            .map(|a| Target::parse(a).map_err(|e| format!("coprocess_grpc_server {e}")))
            .collect::<Result<Vec<_>, _>>()?;

        let positive = |name: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(format!("grpc driver config: {name} must be greater than 0")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let timeout_ms = positive("timeout_ms", raw.timeout_ms, DEFAULT_TIMEOUT_MS)?;
        let connect_timeout_ms = positive(
            "connect_timeout_ms",
            raw.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT_MS.min(timeout_ms),
        )?;
        let max_message_bytes = positive(
            "max_message_bytes",
            raw.max_message_bytes.map(|n| n as u64),
            DEFAULT_MAX_MESSAGE_BYTES as u64,
        )? as usize;
        let runtime_threads = positive(
            "runtime_threads",
            raw.runtime_threads.map(|n| n as u64),
            DEFAULT_RUNTIME_THREADS as u64,
        )? as usize;
        if raw.tls.is_some() {
            if let Some(t) = servers.iter().find(|t| matches!(t, Target::Unix(_))) {
                return Err(format!(
                    "grpc driver config: tls is for TCP servers, not for {t}"
                ));
            }
        }
        if let Some(tls) = &raw.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(
                    "grpc driver config: tls.cert_file and tls.key_file go together".into(),
                );
            }
        }
        let unknown_keys = raw
            .rest
            .keys()
            .filter(|k| !INHERITED_ELSEWHERE.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok(Config {
            servers,
            timeout: Duration::from_millis(timeout_ms),
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            max_message_bytes,
            tls: raw.tls,
            runtime_threads,
            unknown_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_one_server() {
        let c = Config::parse(r#"{"coprocess_grpc_server": "tcp://127.0.0.1:5555"}"#).unwrap();
        assert_eq!(c.servers, vec![Target::parse("127.0.0.1:5555").unwrap()]);
        assert_eq!(c.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(
            c.connect_timeout,
            Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS)
        );
        assert_eq!(c.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        assert_eq!(c.tls, None);
        assert!(c.unknown_keys.is_empty());
    }

    #[test]
    fn lists_options_and_inherited_keys() {
        let c = Config::parse(
            r#"{"coprocess_grpc_server": ["unix:///tmp/a.sock", "h:1"], "timeout_ms": 250,
                "max_message_bytes": 1000, "runtime_threads": 1, "python_path_prefix": "/x",
                "timeout": 5}"#,
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert_eq!(
            c.connect_timeout,
            Duration::from_millis(250),
            "capped by timeout"
        );
        assert_eq!(c.max_message_bytes, 1000);
        assert_eq!(c.runtime_threads, 1);
        assert_eq!(c.unknown_keys, vec!["timeout".to_string()]);

        let c = Config::parse(r#"{"coprocess_grpc_server": "a:1, b:2 unix:///s"}"#).unwrap();
        assert_eq!(c.servers.len(), 3);
    }

    #[test]
    fn tls_section() {
        let c = Config::parse(
            r#"{"coprocess_grpc_server": "h:1", "tls": {"ca_file": "ca.pem", "domain": "d"}}"#,
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some("ca.pem"));
        assert_eq!(tls.domain.as_deref(), Some("d"));
    }

    #[test]
    fn mistakes_are_explained() {
        for (text, why) in [
            ("", "not valid"),
            ("[]", "not valid"),
            ("{}", "needs \"coprocess_grpc_server\""),
            (r#"{"coprocess_grpc_server": []}"#, "needs"),
            (r#"{"coprocess_grpc_server": " , "}"#, "needs"),
            (r#"{"coprocess_grpc_server": "nope"}"#, "no port"),
            (r#"{"coprocess_grpc_server": 5}"#, "not valid"),
            (
                r#"{"coprocess_grpc_server": "h:1", "timeout_ms": 0}"#,
                "timeout_ms must be",
            ),
            (
                r#"{"coprocess_grpc_server": "h:1", "timeout_ms": -1}"#,
                "not valid",
            ),
            (
                r#"{"coprocess_grpc_server": "h:1", "max_message_bytes": 0}"#,
                "max_message_bytes",
            ),
            (
                r#"{"coprocess_grpc_server": "h:1", "tls": {"cafile": "x"}}"#,
                "not valid",
            ),
            (
                r#"{"coprocess_grpc_server": "h:1", "tls": {"cert_file": "x"}}"#,
                "go together",
            ),
            (
                r#"{"coprocess_grpc_server": "unix:///s", "tls": {}}"#,
                "not for unix",
            ),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
