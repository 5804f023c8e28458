//! Key/value storage behind `TykStoreData`/`TykGetData`, the drivers' `store_data`/`get_data` and the
//! ID extractor's auth cache.
//!
//! One trait so the embedded in-memory store and Redis (for several gateway instances sharing state,
//! keys prefixed `coprocess-data:` as Tyk does) are interchangeable. Every call names a [`Namespace`]:
//! plugins reach only [`Namespace::Data`], so no key they pass can touch the auth cache.

mod breaker;
mod memory;
mod pool;
mod redis;
mod redis_config;
mod redis_connect;
mod throttle;

pub use self::redis::{Addr, RedisConfig, RedisStore, Tls, Topology};
pub use memory::{MemoryLimits, MemoryStats, MemoryStore};
pub use redis_config::MAX_POOL_SIZE;
pub use throttle::Throttle;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::logging::Level;

/// Receives a store's notices (Redis down or back, a full embedded store); the runtime logs them.
pub type Notifier = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// Where a store sends its notices; nowhere until a notifier is set.
#[derive(Default)]
pub struct Notices(RwLock<Option<Notifier>>);

impl Notices {
    pub fn set(&self, notifier: Option<Notifier>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = notifier;
    }

    pub fn send(&self, level: Level, message: &str) {
        let notifier = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(notify) = notifier {
            notify(level, message);
        }
    }
}

/// A store that could not do what was asked (a remote store's connection failed, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Separate key spaces of one store. A key in one never names an entry of the other, whatever its text
/// (Tyk likewise keeps sessions apart from `coprocess-data:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// What plugins store: `TykStoreData`/`TykGetData` and the drivers' `store_data`/`get_data`.
    Data,
    /// The ID extractor's auth cache: written only by the bridge, never addressable by a plugin.
    AuthCache,
}

impl Namespace {
    pub const ALL: [Namespace; 2] = [Namespace::Data, Namespace::AuthCache];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::Data => "data",
            Namespace::AuthCache => "auth cache",
        }
    }
}

/// A string store with per-key expiry.
pub trait Store: Send + Sync {
    /// Stores `value` under `key` in `ns`; `ttl` of `None` keeps it until overwritten.
    fn set(
        &self,
        ns: Namespace,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError>;
    /// The value under `key` in `ns`, or `None` when absent or expired.
    fn get(&self, ns: Namespace, key: &str) -> Result<Option<String>, StoreError>;
    /// Calls `f` with the value under `key` in `ns` when there is one (as `get` finds it). A store
    /// holding its values in memory lends it without a copy (the auth cache's hit path); `f` must
    /// not call the store.
    fn read(&self, ns: Namespace, key: &str, f: &mut dyn FnMut(&str)) -> Result<(), StoreError> {
        if let Some(value) = self.get(ns, key)? {
            f(&value);
        }
        Ok(())
    }
}

/// Tyk's TTL convention: seconds, and 0 (or less) means "no expiry".
pub fn ttl_from_seconds(ttl: i64) -> Option<Duration> {
    (ttl > 0).then(|| Duration::from_secs(ttl as u64))
}
