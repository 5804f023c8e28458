//! The bridge's process-wide state: drivers, host services and configuration. The C exports use the one
//! global instance; tests may build their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::api::{ApiDefinition, ApiRegistry};
use crate::config::{driver_config_text, effective_driver_config, BridgeConfig};
use crate::driver::bindings::CoProcessHostApi;
use crate::driver::{Registry, ReloadOutcome};
use crate::error::{Error, Result, COPROCESS_ERR_INVALID_CONFIG, COPROCESS_ERR_STORE};
use crate::events::EventSink;
use crate::logging::{Level, LogSink};
use crate::store::{
    MemoryLimits, MemoryStore, Namespace, Notifier, RedisStore, Store, StoreError, Throttle,
};

pub struct Runtime {
    pub registry: Registry,
    pub events: EventSink,
    pub logs: Arc<LogSink>,
    /// Redis when configured, else `None`: the embedded store. Read on the API path without a lock;
    /// `None` after shutdown, so that no snapshot is allocated (see `driver::registry`'s NO_ROUTES).
    redis: ArcSwapOption<RedisStore>,
    /// The embedded store, kept while Redis is in use so that switching back finds it.
    memory: Arc<MemoryStore>,
    /// Store failures are logged at most once a second (each still reaches CoProcessLastError).
    store_failures_logged: Throttle,
    config: RwLock<BridgeConfig>,
    enabled: AtomicBool,
    /// APIs loaded with `CoProcessLoadApi` (routing by `spec["APIID"]`, hook chains).
    pub apis: ApiRegistry,
    /// Failed hooks on the API path come back as error codes instead of 403/500 Objects.
    plain_errors: AtomicBool,
    /// What the ID extractor reads on every call (tyk.conf's `hash_key_function`, the extraction
    /// bounds), published by `configure`; `None` means the defaults (and holds no allocation).
    auth: ArcSwapOption<AuthSettings>,
}

/// The settings the ID extractor reads on every CustomKeyCheck.
#[derive(Debug, Default)]
pub struct AuthSettings {
    /// tyk.conf's `hash_key_function` (ID-extractor session ids).
    pub hash_key_function: Option<String>,
    /// `id_extractor_limits`, or the defaults.
    pub extract_limits: crate::id_extractor::ExtractLimits,
}

static DEFAULT_AUTH: LazyLock<AuthSettings> = LazyLock::new(AuthSettings::default);

/// The [`AuthSettings`] current when it was taken, borrowed (no lock, no reference count).
pub struct AuthRef(arc_swap::Guard<Option<Arc<AuthSettings>>>);

impl std::ops::Deref for AuthRef {
    type Target = AuthSettings;

    fn deref(&self) -> &AuthSettings {
        self.0.as_deref().unwrap_or(&DEFAULT_AUTH)
    }
}

/// The store current when it was taken: Redis or the embedded one, borrowed (no lock, no reference
/// count).
pub struct StoreRef<'a> {
    redis: arc_swap::Guard<Option<Arc<RedisStore>>>,
    memory: &'a MemoryStore,
}

impl std::ops::Deref for StoreRef<'_> {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        match self.redis.as_deref() {
            Some(redis) => redis,
            None => self.memory,
        }
    }
}

static GLOBAL: LazyLock<Runtime> =
    LazyLock::new(|| Runtime::new(&crate::ffi::driver_host::HOST_API));

/// The runtime behind the C exports.
pub fn global() -> &'static Runtime {
    &GLOBAL
}

impl Runtime {
    pub fn new(host: &'static CoProcessHostApi) -> Runtime {
        let logs = Arc::new(LogSink::default());
        let memory = Arc::new(MemoryStore::default());
        memory.notices.set(Some(log_notices(&logs)));
        Runtime {
            registry: Registry::new(host),
            events: EventSink::default(),
            logs,
            redis: ArcSwapOption::empty(),
            memory,
            store_failures_logged: Throttle::new(Duration::from_secs(1)),
            config: RwLock::new(BridgeConfig::default()),
            enabled: AtomicBool::new(true),
            apis: ApiRegistry::default(),
            plain_errors: AtomicBool::new(false),
            auth: ArcSwapOption::empty(),
        }
    }

    /// Applies a configuration: the store first (a Redis that cannot be reached fails the call and
    /// changes nothing), then settings, then loads listed drivers not loaded yet (so calling it twice with
    /// the same text is harmless). Stops at the first driver that fails to load.
    pub fn configure(&self, cfg: BridgeConfig) -> Result<()> {
        self.configure_store(&cfg)?;
        self.enabled
            .store(cfg.enable_coprocess.unwrap_or(true), Ordering::Relaxed);
        crate::metrics::set_per_call_enabled(cfg.hook_metrics.unwrap_or(true));
        if let Some(n) = cfg.event_queue_capacity {
            self.events.set_capacity(n);
        }
        if let Some(n) = cfg.event_queue_max_bytes {
            self.events.set_max_bytes(n);
        }
        if let Some(level) = &cfg.log_level {
            self.logs.set_min_level(Level::parse(level));
        }
        self.auth.store(Some(Arc::new(AuthSettings {
            hash_key_function: cfg.hash_key_function.clone(),
            extract_limits: cfg.id_extractor_limits.unwrap_or_default(),
        })));
        let drivers = cfg.drivers.clone();
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = cfg;
        let loaded = self.registry.names();
        for d in drivers.iter().filter(|d| !loaded.contains(&d.name)) {
            self.load_driver(&d.name, &d.path, driver_config_text(&d.config).as_deref())?;
        }
        Ok(())
    }

    /// Loads a driver; its config inherits the global options it does not set itself.
    pub fn load_driver(&self, name: &str, path: &str, config_json: Option<&str>) -> Result<()> {
        let inherited = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .inherited_driver_options(name, path);
        let config = effective_driver_config(config_json, &inherited);
        self.registry.load(name, path, config.as_deref())?;
        self.logs
            .log(Level::Info, format!("loaded driver '{name}' from {path}"));
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Whether failed hooks on the API path are reported as error codes (see `CoProcessSetPlainErrors`).
    pub fn plain_errors(&self) -> bool {
        self.plain_errors.load(Ordering::Relaxed)
    }

    pub fn set_plain_errors(&self, on: bool) {
        self.plain_errors.store(on, Ordering::Relaxed);
    }

    /// The ID extractor's settings: `hash_key_function` and the bounds on each extraction.
    pub fn auth_settings(&self) -> AuthRef {
        AuthRef(self.auth.load())
    }

    /// The store in use (for one call: hold it no longer).
    pub fn store(&self) -> StoreRef<'_> {
        StoreRef {
            redis: self.redis.load(),
            memory: &self.memory,
        }
    }

    /// `TykStoreData` and the drivers' `store_data`: always the plugins' namespace, never the auth
    /// cache's. A store failure is logged and returned.
    pub fn store_set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
        self.store()
            .set(Namespace::Data, key, value, ttl)
            .map_err(|e| self.store_failure("store", key, e))
    }

    /// `TykGetData` and the drivers' `get_data` (the plugins' namespace). A store failure is logged
    /// and returned.
    pub fn store_get(&self, key: &str) -> Result<Option<String>> {
        self.store()
            .get(Namespace::Data, key)
            .map_err(|e| self.store_failure("read", key, e))
    }

    fn store_failure(&self, what: &str, key: &str, e: StoreError) -> Error {
        crate::metrics::global().record_store_error(what != "read");
        let message = format!("could not {what} key '{key}': {e}");
        match self.store_failures_logged.admit(std::time::Instant::now()) {
            Some(0) => self.logs.log(Level::Error, &message),
            Some(n) => self.logs.log(
                Level::Error,
                format_args!("{message} ({n} more store failures in the last second not logged)"),
            ),
            None => {}
        }
        Error::new(COPROCESS_ERR_STORE, message)
    }

    /// Switches the store: Redis when configured, the embedded one (with new limits) when asked for,
    /// else keeps the current one.
    fn configure_store(&self, cfg: &BridgeConfig) -> Result<()> {
        if let Some(limits) = cfg.memory_limits()? {
            self.memory.set_limits(limits);
            self.redis.store(None);
            return Ok(());
        }
        let Some(redis) = cfg.redis_config()? else {
            return Ok(());
        };
        let current = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .redis_config();
        if current.ok().flatten().as_ref() == Some(&redis) {
            // CoProcessInit again with the same store: keep the connection.
            return Ok(());
        }
        let store = RedisStore::connect(redis).map_err(|e| {
            Error::new(
                COPROCESS_ERR_INVALID_CONFIG,
                format!("CoProcessInit config: {e}"),
            )
        })?;
        store.notices.set(Some(log_notices(&self.logs)));
        self.logs
            .log(Level::Info, format!("store: {}", store.describe()));
        self.redis.store(Some(Arc::new(store)));
        Ok(())
    }

    /// `CoProcessLoadApi`: registers an API definition. One that names a plugin bundle gets it
    /// installed (fetched, verified, unpacked: see `crate::bundle`), the manifest's hooks, and its
    /// driver's CoProcessDriverLoadBundle; any failure leaves the API unloaded.
    pub fn load_api(&self, definition_json: &str) -> Result<String> {
        let value: serde_json::Value = serde_json::from_str(definition_json).unwrap_or_default();
        let Some(name) = crate::bundle::definition::bundle_name(&value) else {
            return self.apis.load(definition_json);
        };
        let api_id = crate::bundle::definition::api_id(&value);
        if api_id.is_empty() {
            // Nothing to fetch for a definition that cannot load: the parser says what is missing.
            return self.apis.load(definition_json);
        }
        let loaded = self.load_bundled_api(&value, &name);
        if loaded.is_err() && self.apis.get(&api_id).is_some() {
            let _ = self.apis.unload(&api_id);
        }
        self.apis.insert(loaded?)
    }

    fn load_bundled_api(&self, value: &serde_json::Value, name: &str) -> Result<ApiDefinition> {
        use crate::bundle::{definition, install, BundleError, Settings};
        let settings = Settings::from_config(
            &self
                .config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .bundles,
        );
        let api_id = definition::api_id(value);
        let failed = |step, why: String| {
            BundleError {
                bundle: name.to_owned(),
                step,
                why,
            }
            .for_api(&api_id)
        };
        let installed = install(&settings, name, &|line| self.logs.log(Level::Info, line))
            .map_err(|e| e.for_api(&api_id))?;
        let mut api = definition::with_bundle_middleware(value, &installed.custom_middleware)
            .map_err(|e| failed("manifest", e.message))?;
        api.bundle_hash = Some(installed.hash.clone());
        api.bundle_name = Some(installed.name.clone());
        let driver = match &api.driver {
            Some(d) => self.registry.get(d),
            None => self.registry.only(),
        }
        .map_err(|e| failed("driver", e.message))?;
        if driver.supports_bundles() {
            let dir = std::ffi::CString::new(installed.dir.as_os_str().as_encoded_bytes())
                .map_err(|_| failed("driver", "the bundle path contains a NUL byte".into()))?;
            driver
                .load_bundle(&dir)
                .map_err(|e| failed("driver", e.message))?;
        } else {
            self.logs.log(Level::Info, format_args!(
                "API '{api_id}': driver '{}' takes no bundles (no CoProcessDriverLoadBundle); using the manifest's hooks only",
                driver.name()
            ));
        }
        Ok(api)
    }

    /// Before drivers re-read their bundles on Reload: every bundle in use must still verify (or is
    /// fetched again). One that cannot be made to verify is removed from disk, so no driver reloads
    /// unverified code (a driver keeps its loaded version), and the APIs using it are unloaded.
    fn reverify_bundles(&self) {
        let apis: Vec<_> = self
            .apis
            .all()
            .into_iter()
            .filter(|a| a.bundle_name.is_some())
            .collect();
        if apis.is_empty() {
            return;
        }
        let settings = crate::bundle::Settings::from_config(
            &self
                .config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .bundles,
        );
        let mut failed: std::collections::HashMap<String, String> = Default::default();
        let mut checked = std::collections::HashSet::new();
        for api in &apis {
            let name = api.bundle_name.as_deref().unwrap_or_default();
            if checked.insert(name.to_owned()) {
                let log = |line: &str| self.logs.log(Level::Info, line);
                if let Err(e) = crate::bundle::install(&settings, name, &log) {
                    let dir = settings
                        .bundles_dir()
                        .join(crate::bundle::bundle_hash(name));
                    let _ = std::fs::remove_dir_all(&dir);
                    failed.insert(name.to_owned(), e.to_string());
                }
            }
            if let Some(why) = failed.get(name) {
                self.logs.log(
                    Level::Error,
                    format_args!("Reload: API '{}' unloaded: {why}", api.api_id),
                );
                let _ = self.apis.unload(&api.api_id);
            }
        }
    }

    /// Hot reload of every driver; failures are logged (the old version keeps serving) and returned.
    pub fn reload(&self) -> Vec<ReloadOutcome> {
        self.reverify_bundles();
        let outcomes = self.registry.reload();
        crate::metrics::global().record_reloads(&outcomes);
        for o in &outcomes {
            match o {
                ReloadOutcome::Reopened(name) => self.logs.log(
                    Level::Info,
                    format!("driver '{name}' changed on disk and was re-opened"),
                ),
                ReloadOutcome::Failed(name, why) => self.logs.log(
                    Level::Error,
                    format!("reload of driver '{name}' failed, keeping the running version: {why}"),
                ),
                ReloadOutcome::Nested => self.logs.log(
                    Level::Warning,
                    "Reload() called from a driver's reload hook: ignored (a reload is running)",
                ),
                ReloadOutcome::HookCalled(_) => {}
            }
        }
        outcomes
    }

    /// Shuts every driver down and forgets state; the runtime can be configured again afterwards.
    pub fn shutdown(&self) {
        self.registry.shutdown();
        self.apis.clear();
        self.plain_errors.store(false, Ordering::Relaxed);
        self.auth.store(None);
        self.events.clear();
        self.memory.clear();
        self.memory.set_limits(MemoryLimits::default());
        self.redis.store(None);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = BridgeConfig::default();
        self.enabled.store(true, Ordering::Relaxed);
    }
}

/// A store's notices go to the bridge's log.
fn log_notices(logs: &Arc<LogSink>) -> Notifier {
    let logs = logs.clone();
    Arc::new(move |level, message| logs.log(level, message))
}
