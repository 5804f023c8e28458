//! Bridge configuration: a JSON object shaped like `tyk.conf`'s `coprocess_options` (given either bare or
//! wrapped as `{"coprocess_options": {...}}`), plus the bridge's own `drivers` list and knobs.
//! The `TYK_GW_COPROCESSOPTIONS_*` environment variables override the file, as in Tyk.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result, COPROCESS_ERR_INVALID_CONFIG};

/// Where `TykStoreData`/`TykGetData`, the drivers' store and the auth cache keep their data.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StoreConfig {
    /// "memory" (the default: embedded, per process) or "redis" (shared by several gateway instances).
    #[serde(rename = "type")]
    pub kind: String,
    /// For memory: entries per namespace (plugin data, auth cache); default 1,000,000.
    #[serde(default)]
    pub max_entries: Option<usize>,
    /// For memory: bytes (keys + values + 64 per entry) per namespace; default 256 MiB.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// For redis, one server: `redis[s]://[user:password@]host:port[/db]`. Or, as tyk.conf's `storage`
    /// says it, the fields below.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(flatten)]
    pub redis: RedisOptions,
    /// For redis: prefix of every plugin key (default `coprocess-data:`, as Tyk does).
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// For redis: prefix of the auth cache's keys (default `coprocess-auth-cache:`); must not overlap
    /// `key_prefix` (neither may start the other).
    #[serde(default)]
    pub auth_cache_prefix: Option<String>,
    /// For redis: connect/read/write timeout (default 1000 ms).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// For redis: connections open at once (default 16).
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// For redis: how long a call waits for a free connection (default 200 ms).
    #[serde(default)]
    pub pool_wait_ms: Option<u64>,
    /// For redis: after Redis could not be reached, calls fail at once this long before one call
    /// tries again (default 1000 ms).
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Fields none of the above took: refused (serde's deny_unknown_fields does not mix with flatten).
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// tyk.conf `storage` options for where Redis is and how to talk to it; the same names in `store`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RedisOptions {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// `host:port` list: the servers (one), the cluster's nodes, or the sentinels.
    #[serde(default)]
    pub addrs: Vec<String>,
    #[serde(default)]
    pub enable_cluster: bool,
    /// Sentinel: the monitored master's name (then `addrs` are the sentinels).
    #[serde(default)]
    pub master_name: Option<String>,
    #[serde(default)]
    pub sentinel_password: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub database: Option<i64>,
    #[serde(default)]
    pub use_ssl: bool,
    #[serde(default)]
    pub ssl_insecure_skip_verify: bool,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
}

/// tyk.conf's `storage` block, for configs copied from a gateway (used when `store` is absent).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TykStorage {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(flatten)]
    pub redis: RedisOptions,
    /// Seconds, as in Tyk.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// The most connections (Tyk's pool size); 0 = Tyk's "no limit", here the default.
    #[serde(default)]
    pub optimisation_max_active: Option<usize>,
}

impl RedisOptions {
    /// The Redis settings these options describe: a cluster, a master found through Sentinel, or one
    /// server (`addrs[0]`, else `host:port`).
    fn to_config(&self, what: &str) -> Result<crate::store::RedisConfig> {
        use crate::store::{Addr, RedisConfig, Tls, Topology};
        let mut addrs = self
            .addrs
            .iter()
            .map(|a| Addr::parse(a).map_err(|e| invalid(format!("{what}.addrs: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        if addrs.is_empty() {
            addrs.push(Addr {
                host: self.host.clone().unwrap_or_else(|| "localhost".into()),
                port: self.port.unwrap_or(6379),
            });
        }
        let topology = match &self.master_name {
            _ if self.enable_cluster => Topology::Cluster(addrs),
            Some(name) if !name.is_empty() => Topology::Sentinel {
                sentinels: addrs,
                master_name: name.clone(),
                sentinel_password: self.sentinel_password.clone().filter(|p| !p.is_empty()),
            },
            _ => Topology::Server(addrs.swap_remove(0)),
        };
        let mut config = RedisConfig::of(topology);
        config.username = self.username.clone().filter(|u| !u.is_empty());
        config.password = self.password.clone().filter(|p| !p.is_empty());
        config.database = self.database.unwrap_or(0);
        config.tls = self.use_ssl.then(|| Tls {
            insecure_skip_verify: self.ssl_insecure_skip_verify,
            ca_file: self.ca_file.clone().filter(|f| !f.is_empty()),
            cert_file: self.cert_file.clone().filter(|f| !f.is_empty()),
            key_file: self.key_file.clone().filter(|f| !f.is_empty()),
        });
        Ok(config)
    }
}

/// One driver to load at `CoProcessInit`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    pub name: String,
    pub path: String,
    /// The driver's own configuration: a JSON object (or a string holding JSON).
    #[serde(default)]
    pub config: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BridgeConfig {
    /// `false` makes every dispatch fail with COPROCESS_ERR_DISABLED. Default: enabled.
    #[serde(default)]
    pub enable_coprocess: Option<bool>,
    /// Handed to drivers whose own config lacks it (the gRPC driver).
    #[serde(default)]
    pub coprocess_grpc_server: Option<String>,
    /// Handed to drivers whose own config lacks it (the Python driver).
    #[serde(default)]
    pub python_path_prefix: Option<String>,
    #[serde(default)]
    pub python_version: Option<String>,
    /// Drivers to load now.
    #[serde(default)]
    pub drivers: Vec<DriverConfig>,
    /// How many events wait for `CoProcessNextEvent` when no event handler is set (default 1024; the
    /// oldest is dropped when full, counted and logged).
    #[serde(default)]
    pub event_queue_capacity: Option<usize>,
    /// Bound on the bytes (names + payloads) of those queued events (default 16 MiB).
    #[serde(default)]
    pub event_queue_max_bytes: Option<usize>,
    /// `false` stops the per-hook metrics (calls, failures, latency, auth cache), the only counting
    /// on the dispatch path. Default: on.
    #[serde(default)]
    pub hook_metrics: Option<bool>,
    /// Minimum log level delivered: debug, info, warning, error.
    #[serde(default)]
    pub log_level: Option<String>,
    /// The store: `{"type": "redis", "url": "redis://127.0.0.1:6379/0"}`; default the embedded one.
    #[serde(default)]
    pub store: Option<StoreConfig>,
    /// tyk.conf's `storage` block (`type` redis, `host`, `port`, `database`, `username`, `password`).
    #[serde(default)]
    pub storage: Option<TykStorage>,
    /// tyk.conf's `hash_key_function`: when set, ID-extractor session ids take Tyk's base64 JSON form.
    #[serde(default)]
    pub hash_key_function: Option<String>,
    /// Bounds on each ID extraction (body size, XML depth and elements); defaults when absent.
    #[serde(default)]
    pub id_extractor_limits: Option<crate::id_extractor::ExtractLimits>,
    /// Plugin bundles (tyk.conf root keys, DESIGN §10).
    #[serde(flatten)]
    pub bundles: BundleConfig,
}

/// tyk.conf's bundle settings, read at its root (`TYK_GW_*` variables override them).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BundleConfig {
    /// Download bundles named by APIs (`custom_middleware_bundle`); without it such APIs fail to load.
    #[serde(default)]
    pub enable_bundle_downloader: Option<bool>,
    /// Where bundles are fetched from: http://, https:// or file:// (the bundle name is appended).
    #[serde(default)]
    pub bundle_base_url: Option<String>,
    /// A PEM RSA public key: every bundle must then carry a valid signature, cached ones included.
    #[serde(default)]
    pub public_key_path: Option<String>,
    /// https:// without certificate verification (for this download client only).
    #[serde(default)]
    pub bundle_insecure_skip_verify: Option<bool>,
    /// Bundles unpack to `<middleware_path>/bundles/<md5 of the bundle name>/` (default `./middleware`).
    #[serde(default)]
    pub middleware_path: Option<String>,
    /// Reuse unpacked bundles without checking their checksum (ignored when a public key is set).
    #[serde(default)]
    pub skip_verify_existing_plugin_bundle: Option<bool>,
    /// The bridge's own download knobs: per-attempt timeout (default 5000 ms, as Tyk), retries after
    /// the first attempt (default 4) and the first backoff (default 500 ms, doubling up to 5 s).
    #[serde(default)]
    pub bundle_fetch_timeout_ms: Option<u64>,
    #[serde(default)]
    pub bundle_fetch_retries: Option<u32>,
    #[serde(default)]
    pub bundle_fetch_backoff_ms: Option<u64>,
}

impl BridgeConfig {
    /// Parses `text` (None = defaults) and applies environment overrides from `env`.
    pub fn parse(text: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<BridgeConfig> {
        let mut value: Value = match text.map(str::trim) {
            None | Some("") => Value::Object(Map::new()),
            Some(t) => {
                serde_json::from_str(t).map_err(|e| invalid(format!("not valid JSON: {e}")))?
            }
        };
        if !value.is_object() {
            return Err(invalid("must be a JSON object".into()));
        }
        // Accept tyk.conf's nesting: fields of "coprocess_options" sit beside the bridge's own.
        if let Some(Value::Object(opts)) = value
            .as_object_mut()
            .and_then(|m| m.remove("coprocess_options"))
        {
            let top = value.as_object_mut().expect("checked above");
            for (k, v) in opts {
                top.entry(k).or_insert(v);
            }
        }
        let mut cfg: BridgeConfig =
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        cfg.apply_env(env)?;
        if let Some(field) = cfg.store.as_ref().and_then(|s| s.unknown.keys().next()) {
            return Err(invalid(format!("store: unknown field `{field}`")));
        }
        if let Some(level) = &cfg.log_level {
            if !matches!(
                level.as_str(),
                "debug" | "info" | "warning" | "warn" | "error"
            ) {
                return Err(invalid(format!(
                    "log_level '{level}' is not one of debug, info, warning, error"
                )));
            }
        }
        Ok(cfg)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        const PREFIX: &str = "TYK_GW_COPROCESSOPTIONS_";
        if let Some(v) = env(&format!("{PREFIX}ENABLECOPROCESS")) {
            self.enable_coprocess = Some(parse_bool(&v).ok_or_else(|| {
                invalid(format!("{PREFIX}ENABLECOPROCESS='{v}' is not a boolean"))
            })?);
        }
        if let Some(v) = env(&format!("{PREFIX}COPROCESSGRPCSERVER")) {
            self.coprocess_grpc_server = Some(v);
        }
        if let Some(v) = env(&format!("{PREFIX}PYTHONPATHPREFIX")) {
            self.python_path_prefix = Some(v);
        }
        if let Some(v) = env(&format!("{PREFIX}PYTHONVERSION")) {
            self.python_version = Some(v);
        }
        self.bundles.apply_env(&env)
    }

    /// The Redis store to use, if `store` (or else tyk.conf's `storage`) asks for one.
    pub fn redis_config(&self) -> Result<Option<crate::store::RedisConfig>> {
        use crate::store::RedisConfig;
        let config = if let Some(store) = &self.store {
            match store.kind.as_str() {
                "memory" => return Ok(None),
                "redis" => {}
                other => {
                    return Err(invalid(format!(
                        "store.type '{other}' is not one of memory, redis"
                    )))
                }
            }
            let has_addrs = !store.redis.addrs.is_empty() || store.redis.host.is_some();
            let mut config = match (&store.url, has_addrs) {
                (Some(url), false) => RedisConfig::new(url.clone(), None, None),
                (None, true) => store.redis.to_config("store")?,
                (Some(_), true) => {
                    return Err(invalid(
                        "store: give either url or addrs/host, not both".into(),
                    ))
                }
                (None, false) => {
                    return Err(invalid(
                        "store.url (or addrs) is required for a redis store".into(),
                    ))
                }
            };
            let ms = |v: Option<u64>, default| v.map_or(default, std::time::Duration::from_millis);
            if let Some(p) = &store.key_prefix {
                config.key_prefix = p.clone();
            }
            if let Some(p) = &store.auth_cache_prefix {
                config.auth_cache_prefix = p.clone();
            }
            config.timeout = ms(store.timeout_ms, config.timeout);
            config.pool_size = store.pool_size.unwrap_or(config.pool_size);
            config.pool_wait = ms(store.pool_wait_ms, config.pool_wait);
            config.retry_after = ms(store.retry_after_ms, config.retry_after);
            config
        } else {
            match &self.storage {
                Some(st) if st.kind.as_deref().unwrap_or("redis") == "redis" => {
                    let mut config = st.redis.to_config("storage")?;
                    if let Some(secs) = st.timeout.filter(|&s| s > 0) {
                        config.timeout = std::time::Duration::from_secs(secs);
                    }
                    if let Some(n) = st.optimisation_max_active.filter(|&n| n > 0) {
                        config.pool_size = n.min(crate::store::MAX_POOL_SIZE);
                    }
                    config
                }
                _ => return Ok(None),
            }
        };
        config.check().map_err(|e| invalid(format!("store: {e}")))?;
        Ok(Some(config))
    }

    /// The embedded store's limits, when `store` asks for the embedded store.
    pub fn memory_limits(&self) -> Result<Option<crate::store::MemoryLimits>> {
        let Some(store) = self.store.as_ref().filter(|s| s.kind == "memory") else {
            return Ok(None);
        };
        let defaults = crate::store::MemoryLimits::default();
        let limits = crate::store::MemoryLimits {
            max_entries: store.max_entries.unwrap_or(defaults.max_entries),
            max_bytes: store.max_bytes.unwrap_or(defaults.max_bytes),
        };
        if limits.max_entries == 0 || limits.max_bytes == 0 {
            return Err(invalid(
                "store.max_entries and store.max_bytes must be above 0".into(),
            ));
        }
        Ok(Some(limits))
    }

    /// The global options the driver `name` (loaded from `path`) inherits when its own config does
    /// not set them: only those it understands, as tyk.conf's `coprocess_options` are meant for one
    /// driver each (python_path_prefix and python_version for the Python driver, coprocess_grpc_server
    /// for the gRPC driver). Other drivers get none: one that refuses unknown keys still loads.
    pub fn inherited_driver_options(&self, name: &str, path: &str) -> Map<String, Value> {
        let pairs: &[(&str, &Option<String>)] = match DriverKind::of(name, path) {
            DriverKind::Python => &[
                ("python_path_prefix", &self.python_path_prefix),
                ("python_version", &self.python_version),
            ],
            DriverKind::Grpc => &[("coprocess_grpc_server", &self.coprocess_grpc_server)],
            DriverKind::Other => &[],
        };
        let mut m = Map::new();
        for (k, v) in pairs {
            if let Some(v) = v {
                m.insert((*k).into(), Value::String(v.clone()));
            }
        }
        m
    }
}

impl BundleConfig {
    /// `TYK_GW_<KEY>` variables, named as Tyk's envconfig names them.
    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<()> {
        let flag = |name: &str| -> Result<Option<bool>> {
            env(name)
                .map(|v| {
                    parse_bool(&v).ok_or_else(|| invalid(format!("{name}='{v}' is not a boolean")))
                })
                .transpose()
        };
        if let Some(v) = flag("TYK_GW_ENABLEBUNDLEDOWNLOADER")? {
            self.enable_bundle_downloader = Some(v);
        }
        if let Some(v) = flag("TYK_GW_BUNDLEINSECURESKIPVERIFY")? {
            self.bundle_insecure_skip_verify = Some(v);
        }
        if let Some(v) = flag("TYK_GW_SKIPVERIFYEXISTINGPLUGINBUNDLE")? {
            self.skip_verify_existing_plugin_bundle = Some(v);
        }
        let text = [
            ("TYK_GW_BUNDLEBASEURL", &mut self.bundle_base_url),
            ("TYK_GW_PUBLICKEYPATH", &mut self.public_key_path),
            ("TYK_GW_MIDDLEWAREPATH", &mut self.middleware_path),
        ];
        for (name, field) in text {
            if let Some(v) = env(name) {
                *field = Some(v);
            }
        }
        Ok(())
    }
}

/// The drivers tyk.conf's options are meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriverKind {
    Python,
    Grpc,
    Other,
}

impl DriverKind {
    /// Told by the name the driver is loaded under (Tyk's driver names `python` and `grpc`) or by the
    /// file name of its library (`libcoprocess_python.so`, `libcoprocess_grpc.so`, as this workspace
    /// builds them).
    fn of(name: &str, path: &str) -> DriverKind {
        let file = std::path::Path::new(path)
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("");
        if name == "python" || file.starts_with("libcoprocess_python") {
            DriverKind::Python
        } else if name == "grpc" || file.starts_with("libcoprocess_grpc") {
            DriverKind::Grpc
        } else {
            DriverKind::Other
        }
    }
}

/// The config text a driver receives: its own config with the inherited options filled in. A config that
/// is not a JSON object is passed through untouched (drivers may take other formats).
pub fn effective_driver_config(
    own: Option<&str>,
    inherited: &Map<String, Value>,
) -> Option<String> {
    if inherited.is_empty() {
        return own.map(str::to_owned);
    }
    let mut obj = match own.map(serde_json::from_str::<Value>) {
        None => Map::new(),
        Some(Ok(Value::Object(m))) => m,
        Some(_) => return own.map(str::to_owned),
    };
    for (k, v) in inherited {
        obj.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Some(Value::Object(obj).to_string())
}

/// A driver entry's `config` as the text handed to the driver.
pub fn driver_config_text(config: &Option<Value>) -> Option<String> {
    match config {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => Some(v.to_string()),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn invalid(why: String) -> Error {
    Error::new(
        COPROCESS_ERR_INVALID_CONFIG,
        format!("CoProcessInit config: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn accepts_bare_and_tyk_conf_shapes() {
        let bare = BridgeConfig::parse(
            Some(r#"{"enable_coprocess": true, "coprocess_grpc_server": "tcp://127.0.0.1:5555"}"#),
            no_env,
        )
        .unwrap();
        let nested = BridgeConfig::parse(
            Some(r#"{"coprocess_options": {"enable_coprocess": true, "coprocess_grpc_server": "tcp://127.0.0.1:5555"}}"#),
            no_env,
        )
        .unwrap();
        assert_eq!(bare, nested);
        assert_eq!(bare.enable_coprocess, Some(true));
        assert_eq!(
            BridgeConfig::parse(None, no_env).unwrap(),
            BridgeConfig::default()
        );
    }

    #[test]
    fn drivers_list_and_errors_name_the_problem() {
        let cfg = BridgeConfig::parse(
            Some(r#"{"drivers": [{"name": "native", "path": "/x.so", "config": {"a": 1}}]}"#),
            no_env,
        )
        .unwrap();
        assert_eq!(cfg.drivers[0].name, "native");
        assert_eq!(
            driver_config_text(&cfg.drivers[0].config).as_deref(),
            Some(r#"{"a":1}"#)
        );
        let e = BridgeConfig::parse(Some("[1]"), no_env).unwrap_err();
        assert_eq!(e.message, "CoProcessInit config: must be a JSON object");
        let e = BridgeConfig::parse(Some(r#"{"drivers": [{"name": "x"}]}"#), no_env).unwrap_err();
        assert!(e.message.contains("missing field `path`"), "{}", e.message);
        let e = BridgeConfig::parse(Some("{"), no_env).unwrap_err();
        assert!(
            e.message
                .starts_with("CoProcessInit config: not valid JSON"),
            "{}",
            e.message
        );
        let e = BridgeConfig::parse(Some(r#"{"log_level": "loud"}"#), no_env).unwrap_err();
        assert!(e.message.contains("log_level 'loud'"), "{}", e.message);
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = |k: &str| match k {
            "TYK_GW_COPROCESSOPTIONS_ENABLECOPROCESS" => Some("false".to_string()),
            "TYK_GW_COPROCESSOPTIONS_COPROCESSGRPCSERVER" => Some("unix:///tmp/s".to_string()),
            _ => None,
        };
        let cfg = BridgeConfig::parse(Some(r#"{"enable_coprocess": true}"#), env).unwrap();
        assert_eq!(cfg.enable_coprocess, Some(false));
        assert_eq!(cfg.coprocess_grpc_server.as_deref(), Some("unix:///tmp/s"));
        let bad =
            |k: &str| (k == "TYK_GW_COPROCESSOPTIONS_ENABLECOPROCESS").then(|| "maybe".to_string());
        assert!(BridgeConfig::parse(None, bad)
            .unwrap_err()
            .message
            .contains("not a boolean"));
    }

    #[test]
    fn store_config_from_the_bridge_or_tyk_conf_shape() {
        use crate::store::{Addr, Tls, Topology};
        use std::time::Duration;
        let redis = |json: &str| {
            BridgeConfig::parse(Some(json), no_env)
                .map_err(|e| e.message)?
                .redis_config()
                .map_err(|e| e.message)
        };
        let addr = |s: &str| Addr::parse(s).unwrap();
        let r = redis(
            r#"{"store": {"type": "redis", "url": "redis://h:1/2", "key_prefix": "p:",
                "pool_size": 4, "pool_wait_ms": 10, "retry_after_ms": 300, "timeout_ms": 50}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.topology, Topology::Url("redis://h:1/2".into()));
        assert_eq!(
            (
                r.key_prefix.as_str(),
                r.pool_size,
                r.pool_wait,
                r.retry_after,
                r.timeout
            ),
            (
                "p:",
                4,
                Duration::from_millis(10),
                Duration::from_millis(300),
                Duration::from_millis(50)
            )
        );
        let r = redis(
            r#"{"storage": {"type": "redis", "host": "db", "port": 6380, "database": 3,
                "password": "pw", "timeout": 2, "optimisation_max_active": 5000}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.topology, Topology::Server(addr("db:6380")));
        assert_eq!(
            (r.password.as_deref(), r.database, r.key_prefix.as_str()),
            (Some("pw"), 3, "coprocess-data:")
        );
        assert_eq!(
            (r.timeout, r.pool_size),
            (Duration::from_secs(2), crate::store::MAX_POOL_SIZE),
            "Tyk's timeout is in seconds; the pool is capped"
        );
        let r = redis(
            r#"{"storage": {"addrs": ["s1:26379", "s2:26379"], "master_name": "mymaster",
                "sentinel_password": "spw", "use_ssl": true, "ssl_insecure_skip_verify": true}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r.topology,
            Topology::Sentinel {
                sentinels: vec![addr("s1:26379"), addr("s2:26379")],
                master_name: "mymaster".into(),
                sentinel_password: Some("spw".into())
            }
        );
        assert_eq!(
            r.tls,
            Some(Tls {
                insecure_skip_verify: true,
                ..Tls::default()
            })
        );
        let r = redis(
            r#"{"store": {"type": "redis", "enable_cluster": true, "addrs": ["n1:7000", "n2:7001"],
                "ca_file": "/ca.pem", "use_ssl": true}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r.topology,
            Topology::Cluster(vec![addr("n1:7000"), addr("n2:7001")])
        );
        assert_eq!(r.tls.unwrap().ca_file.as_deref(), Some("/ca.pem"));
        assert_eq!(BridgeConfig::default().redis_config().unwrap(), None);

        for (json, error) in [
            (
                r#"{"store": {"type": "memcached"}}"#,
                "store.type 'memcached'",
            ),
            (
                r#"{"store": {"type": "redis"}}"#,
                "store.url (or addrs) is required",
            ),
            (
                r#"{"store": {"type": "redis", "url": "redis://h", "addrs": ["h:1"]}}"#,
                "either url or addrs",
            ),
            (
                r#"{"store": {"type": "redis", "urll": "redis://h"}}"#,
                "unknown field `urll`",
            ),
            (
                r#"{"store": {"type": "redis", "addrs": ["h:x"]}}"#,
                "store.addrs: 'h:x'",
            ),
            (
                r#"{"storage": {"enable_cluster": true, "database": 1}}"#,
                "only database 0",
            ),
            (
                r#"{"store": {"type": "redis", "url": "redis://h", "key_prefix": ""}}"#,
                "overlap",
            ),
        ] {
            let e = redis(json).unwrap_err();
            assert!(e.contains(error), "{json}: {e}");
        }
    }

    #[test]
    fn memory_store_limits() {
        use crate::store::MemoryLimits;
        let limits = |json: &str| {
            BridgeConfig::parse(Some(json), no_env)
                .unwrap()
                .memory_limits()
        };
        assert_eq!(
            limits("{}").unwrap(),
            None,
            "no store: keep the current one"
        );
        assert_eq!(
            limits(r#"{"store": {"type": "memory"}}"#).unwrap(),
            Some(MemoryLimits::default())
        );
        assert_eq!(
            limits(r#"{"store": {"type": "memory", "max_entries": 10, "max_bytes": 4096}}"#)
                .unwrap(),
            Some(MemoryLimits {
                max_entries: 10,
                max_bytes: 4096
            })
        );
        let e = limits(r#"{"store": {"type": "memory", "max_entries": 0}}"#).unwrap_err();
        assert!(e.message.contains("must be above 0"), "{}", e.message);
        assert_eq!(
            limits(r#"{"store": {"type": "redis", "url": "redis://h"}}"#).unwrap(),
            None
        );
    }

    #[test]
    fn bundle_settings_from_tyk_conf_root_and_environment() {
        let text = r#"{"enable_bundle_downloader": true, "bundle_base_url": "http://b/",
            "public_key_path": "/k.pem", "middleware_path": "/mw",
            "coprocess_options": {"enable_coprocess": true}}"#;
        let cfg = BridgeConfig::parse(Some(text), no_env).unwrap();
        assert_eq!(cfg.bundles.enable_bundle_downloader, Some(true));
        assert_eq!(cfg.bundles.bundle_base_url.as_deref(), Some("http://b/"));
        assert_eq!(cfg.bundles.public_key_path.as_deref(), Some("/k.pem"));
        assert_eq!(cfg.bundles.middleware_path.as_deref(), Some("/mw"));
        assert_eq!(cfg.bundles.skip_verify_existing_plugin_bundle, None);
        let env = |k: &str| match k {
            "TYK_GW_BUNDLEBASEURL" => Some("file:///srv/".to_string()),
            "TYK_GW_BUNDLEINSECURESKIPVERIFY" => Some("true".to_string()),
            "TYK_GW_SKIPVERIFYEXISTINGPLUGINBUNDLE" => Some("1".to_string()),
            "TYK_GW_ENABLEBUNDLEDOWNLOADER" => Some("false".to_string()),
            _ => None,
        };
        let cfg = BridgeConfig::parse(Some(text), env).unwrap();
        assert_eq!(cfg.bundles.bundle_base_url.as_deref(), Some("file:///srv/"));
        assert_eq!(cfg.bundles.bundle_insecure_skip_verify, Some(true));
        assert_eq!(cfg.bundles.skip_verify_existing_plugin_bundle, Some(true));
        assert_eq!(cfg.bundles.enable_bundle_downloader, Some(false));
        let bad = |k: &str| (k == "TYK_GW_ENABLEBUNDLEDOWNLOADER").then(|| "sometimes".to_string());
        let e = BridgeConfig::parse(None, bad).unwrap_err();
        assert!(
            e.message
                .contains("TYK_GW_ENABLEBUNDLEDOWNLOADER='sometimes'"),
            "{}",
            e.message
        );
        let e = BridgeConfig::parse(Some(r#"{"bundle_base_url": 7}"#), no_env).unwrap_err();
        assert!(
            e.message.contains("bundle_base_url") || e.message.contains("invalid type"),
            "{}",
            e.message
        );
    }

    #[test]
    fn drivers_inherit_only_the_global_options_they_understand() {
        let cfg = BridgeConfig {
            coprocess_grpc_server: Some("tcp://h:1".into()),
            python_path_prefix: Some("/opt/tyk-gateway".into()),
            ..Default::default()
        };
        let inh = cfg.inherited_driver_options("grpc", "/x/anything.so");
        assert_eq!(
            effective_driver_config(None, &inh).as_deref(),
            Some(r#"{"coprocess_grpc_server":"tcp://h:1"}"#)
        );
        let own = r#"{"coprocess_grpc_server":"tcp://mine:2"}"#;
        assert_eq!(
            effective_driver_config(Some(own), &inh).as_deref(),
            Some(own)
        );
        assert_eq!(
            effective_driver_config(Some("not json"), &inh).as_deref(),
            Some("not json")
        );
        let py = cfg.inherited_driver_options("py", "/lib/libcoprocess_python.so");
        assert_eq!(
            effective_driver_config(Some("{}"), &py).as_deref(),
            Some(r#"{"python_path_prefix":"/opt/tyk-gateway"}"#)
        );
        let other = cfg.inherited_driver_options("native", "/lib/libmine.so");
        assert!(other.is_empty());
        assert_eq!(
            effective_driver_config(Some(r#"{"a":1}"#), &other).as_deref(),
            Some(r#"{"a":1}"#)
        );
    }
}
