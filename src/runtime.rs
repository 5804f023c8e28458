//! The bridge's process-wide state: drivers, host services and configuration. The C exports use the one
//! global instance; tests may build their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use crate::config::{driver_config_text, effective_driver_config, BridgeConfig};
use crate::driver::bindings::CoProcessHostApi;
use crate::driver::{Registry, ReloadOutcome};
use crate::error::Result;
use crate::events::EventSink;
use crate::logging::{Level, LogSink};
use crate::store::{MemoryStore, Store};

pub struct Runtime {
    pub registry: Registry,
    pub events: EventSink,
    pub logs: LogSink,
    store: RwLock<Arc<dyn Store>>,
    config: RwLock<BridgeConfig>,
    enabled: AtomicBool,
}

static GLOBAL: LazyLock<Runtime> =
    LazyLock::new(|| Runtime::new(&crate::ffi::driver_host::HOST_API));

/// The runtime behind the C exports.
pub fn global() -> &'static Runtime {
    &GLOBAL
}

impl Runtime {
    pub fn new(host: &'static CoProcessHostApi) -> Runtime {
        Runtime {
            registry: Registry::new(host),
            events: EventSink::default(),
            logs: LogSink::default(),
            store: RwLock::new(Arc::new(MemoryStore::new())),
            config: RwLock::new(BridgeConfig::default()),
            enabled: AtomicBool::new(true),
        }
    }

    /// Applies a configuration: settings first, then loads listed drivers not loaded yet (so calling it
    /// twice with the same text is harmless). Stops at the first driver that fails to load.
    pub fn configure(&self, cfg: BridgeConfig) -> Result<()> {
        self.enabled
            .store(cfg.enable_coprocess.unwrap_or(true), Ordering::Relaxed);
        if let Some(n) = cfg.event_queue_capacity {
            self.events.set_capacity(n);
        }
        if let Some(level) = &cfg.log_level {
            self.logs.set_min_level(Level::parse(level));
        }
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
            .inherited_driver_options();
        let config = effective_driver_config(config_json, &inherited);
        self.registry.load(name, path, config.as_deref())?;
        self.logs
            .log(Level::Info, &format!("loaded driver '{name}' from {path}"));
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Hot reload of every driver; failures are logged (the old version keeps serving) and returned.
    pub fn reload(&self) -> Vec<ReloadOutcome> {
        let outcomes = self.registry.reload();
        for o in &outcomes {
            match o {
                ReloadOutcome::Reopened(name) => self.logs.log(
                    Level::Info,
                    &format!("driver '{name}' changed on disk and was re-opened"),
                ),
                ReloadOutcome::Failed(name, why) => self.logs.log(
                    Level::Error,
                    &format!(
                        "reload of driver '{name}' failed, keeping the running version: {why}"
                    ),
                ),
                ReloadOutcome::HookCalled(_) => {}
            }
        }
        outcomes
    }

    /// Shuts every driver down and forgets state; the runtime can be configured again afterwards.
    pub fn shutdown(&self) {
        self.registry.shutdown();
        self.events.clear();
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(MemoryStore::new());
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = BridgeConfig::default();
        self.enabled.store(true, Ordering::Relaxed);
    }
}
