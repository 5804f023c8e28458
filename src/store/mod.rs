//! Key/value storage behind `TykStoreData`/`TykGetData` and the drivers' `store_data`/`get_data`.
//!
//! One trait so the embedded in-memory store and a shared backend (Redis) are interchangeable.

mod memory;

pub use memory::MemoryStore;

use std::time::Duration;

/// A string store with per-key expiry.
pub trait Store: Send + Sync {
    /// Stores `value` under `key`; `ttl` of `None` keeps it until overwritten.
    fn set(&self, key: &str, value: &str, ttl: Option<Duration>);
    /// The value under `key`, or `None` when absent or expired.
    fn get(&self, key: &str) -> Option<String>;
}

/// Tyk's TTL convention: seconds, and 0 (or less) means "no expiry".
pub fn ttl_from_seconds(ttl: i64) -> Option<Duration> {
    (ttl > 0).then(|| Duration::from_secs(ttl as u64))
}
