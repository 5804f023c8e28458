//! `libcoprocess_lua.so`: a coprocess-bridge driver that embeds LuaJIT and runs Tyk Lua plugin bundles
//! unchanged (`function MyPreMiddleware(request, session, spec) ... return request, session end`).
//!
//! Config JSON: `{"bundle_root": PATH, "timeout_ms": N, "max_instructions": N}`. Every directory under
//! `bundle_root` is a bundle (`manifest.json` + the `.lua` files of its `file_list`), keyed by its
//! directory name, which the gateway sends as `spec["bundle_hash"]`.
//!
//! Each bridge thread keeps its own Lua state (`state.rs`), with the bundles loaded once; no lock is
//! held while Lua runs. The bundle list (`bundles.rs`) is shared: a reload swaps it, and each state
//! loads a bundle's new version the next time that bundle is called on its thread.

mod bundle;
mod bundles;
mod cjson;
mod config;
mod host_api;
mod lazy;
mod record;
mod state;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use coprocess_driver::{export_driver, Call, Driver, Error, Host, Level, Reply, Result};

use crate::bundles::Registry;
use crate::config::Config;
use crate::state::LuaState;

/// What the driver instance and the thread-local states share.
struct Shared {
    id: u64,
    host: Host,
    config: Config,
    registry: Registry,
}

pub struct LuaDriver {
    shared: Arc<Shared>,
}

thread_local! {
    /// This thread's Lua state for each driver instance (the `Weak` notices an instance shut down).
    static STATES: RefCell<Vec<(u64, Weak<Shared>, LuaState)>> = const { RefCell::new(Vec::new()) };
}

impl Shared {
    /// Runs `f` with this thread's Lua state for this instance, creating it on first use.
    fn with_state<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut LuaState) -> std::result::Result<R, String>,
    ) -> std::result::Result<R, String> {
        STATES.with(|states| {
            let Ok(mut states) = states.try_borrow_mut() else {
                return Err(
                    "lua driver: called again from inside a Lua call on the same thread".into(),
                );
            };
            let index = match states.iter().position(|(id, _, _)| *id == self.id) {
                Some(i) => i,
                None => {
                    // States of instances that were shut down go with this (rare) event.
                    states.retain(|(_, owner, _)| owner.strong_count() > 0);
                    let state = LuaState::new(self.host, self.config.budget())?;
                    states.push((self.id, Arc::downgrade(self), state));
                    states.len() - 1
                }
            };
            f(&mut states[index].2)
        })
    }
}

impl Driver for LuaDriver {
    fn new(host: Host, config: &str) -> Result<Self> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let config = Config::parse(config)?;
        let registry = Registry::new(host, &config)?;
        Ok(LuaDriver {
            shared: Arc::new(Shared {
                id: IDS.fetch_add(1, Ordering::Relaxed),
                host,
                config,
                registry,
            }),
        })
    }

    fn dispatch(&self, call: &Call) -> Result<Reply> {
        let bundles = self.shared.registry.current();
        let bundle = bundles.route(call).map_err(Error::from)?;
        let source = bundle.source().map_err(Error::from)?;
        self.shared
            .with_state(|state| state.dispatch(source, call))
            .map_err(Error::from)
    }

    fn event(&self, event_json: &str) {
        let event: serde_json::Value = match serde_json::from_str(event_json) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                self.shared.host.log(
                    Level::Error,
                    "lua driver: ignoring an event that is not a JSON object",
                );
                return;
            }
        };
        let Some(handler) = event.get("handler_name").and_then(|h| h.as_str()) else {
            self.shared
                .host
                .log(Level::Debug, "lua driver: an event without handler_name");
            return;
        };
        let bundles = self.shared.registry.current();
        let sources: Vec<_> = bundles
            .all()
            .filter(|b| b.defines(handler))
            .filter_map(|b| b.source().ok())
            .collect();
        if sources.is_empty() {
            self.shared.host.log(
                Level::Debug,
                &format!("lua driver: no event handler named '{handler}'"),
            );
            return;
        }
        let result = self.shared.with_state(|state| {
            state.event(&sources, handler, &event);
            Ok(())
        });
        if let Err(e) = result {
            self.shared.host.log(Level::Error, &e);
        }
    }

    fn reload(&self) {
        self.shared.registry.reload();
    }

    fn load_bundle(&self, path: &str) -> Result<()> {
        self.shared.registry.load_bundle(path).map_err(Error::from)
    }

    fn shutdown(&self) {
        self.shared.registry.clear();
    }
}

export_driver!(LuaDriver);
