//! The Redis store: what several gateway instances share (TykStoreData/TykGetData, drivers' store, the
//! auth cache). Plugin keys get Tyk's `coprocess-data:` prefix, the auth cache its own
//! (`coprocess-auth-cache:`); neither prefix may start the other, so no plugin key names a cache entry. One connection behind a mutex (calls are
//! serialised: enough for events, plugin state and cache misses; a pool would be the next step),
//! re-opened once when it dropped (the server restarted); every command is bounded by the configured
//! timeout, so a Redis that hangs gives an error, not a stuck gateway thread.

use std::sync::Mutex;
use std::time::Duration;

use super::{Namespace, Store, StoreError};

/// Tyk's prefix for coprocess data keys.
pub const DEFAULT_KEY_PREFIX: &str = "coprocess-data:";
/// The auth cache's prefix: apart from the plugins' keys.
pub const DEFAULT_AUTH_CACHE_PREFIX: &str = "coprocess-auth-cache:";
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
    pub auth_cache_prefix: String,
    pub timeout: Duration,
}

impl RedisConfig {
    pub fn new(url: String, key_prefix: Option<String>, timeout_ms: Option<u64>) -> RedisConfig {
        RedisConfig {
            url,
            key_prefix: key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.into()),
            auth_cache_prefix: DEFAULT_AUTH_CACHE_PREFIX.into(),
            timeout: timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        }
    }

    /// Refuses prefixes that would let a plugin key (`key_prefix` + anything) equal an auth-cache key
    /// (`auth_cache_prefix` + anything): that happens exactly when one prefix starts the other.
    pub fn check_prefixes(&self) -> Result<(), String> {
        let (data, cache) = (&self.key_prefix, &self.auth_cache_prefix);
        if data.starts_with(cache.as_str()) || cache.starts_with(data.as_str()) {
            return Err(format!(
                "key_prefix '{data}' and auth_cache_prefix '{cache}' overlap (one starts the other), \
                 so plugins could write auth-cache entries"
            ));
        }
        Ok(())
    }

    /// The URL without its password, for messages.
    fn shown_url(&self) -> String {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                format!("{}://…@{}", &self.url[..s], &self.url[at + 1..])
            }
            _ => self.url.clone(),
        }
    }
}

pub struct RedisStore {
    config: RedisConfig,
    client: redis::Client,
    connection: Mutex<Option<redis::Connection>>,
}

impl RedisStore {
    /// Connects now, so a wrong URL or an unreachable server is reported at configuration time.
    pub fn connect(config: RedisConfig) -> Result<RedisStore, StoreError> {
        config.check_prefixes().map_err(StoreError)?;
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| StoreError(format!("invalid Redis URL {}: {e}", config.shown_url())))?;
        let store = RedisStore {
            config,
            client,
            connection: Mutex::new(None),
        };
        let pong: String = store.run(|c| redis::cmd("PING").query(c)).map_err(|e| {
            StoreError(format!(
                "cannot reach Redis at {}: {}",
                store.config.shown_url(),
                e.0
            ))
        })?;
        debug_assert_eq!(pong, "PONG");
        Ok(store)
    }

    pub fn describe(&self) -> String {
        format!(
            "redis at {}, keys prefixed '{}', auth cache '{}'",
            self.config.shown_url(),
            self.config.key_prefix,
            self.config.auth_cache_prefix
        )
    }

    fn open(&self) -> redis::RedisResult<redis::Connection> {
        let c = self
            .client
            .get_connection_with_timeout(self.config.timeout)?;
        c.set_read_timeout(Some(self.config.timeout))?;
        c.set_write_timeout(Some(self.config.timeout))?;
        Ok(c)
    }

    /// Runs a command on the shared connection, opening it when needed and retrying once on a fresh
    /// connection after a failure.
    fn run<T>(
        &self,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = None;
        for _ in 0..2 {
            if slot.is_none() {
                match self.open() {
                    Ok(c) => *slot = Some(c),
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                }
            }
            match f(slot.as_mut().expect("opened above")) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    // A dropped connection is worth one more try on a fresh one; a timeout is not (it
                    // would double the wait), and neither is an answer Redis gave.
                    let retry = e.is_connection_dropped() || (e.is_io_error() && !e.is_timeout());
                    *slot = None;
                    if !retry {
                        return Err(StoreError(format!("redis: {e}")));
                    }
                    last = Some(e);
                }
            }
        }
        Err(StoreError(format!(
            "redis: {}",
            last.map_or_else(|| "unknown error".into(), |e| e.to_string())
        )))
    }

    fn key(&self, ns: Namespace, key: &str) -> String {
        let prefix = match ns {
            Namespace::Data => &self.config.key_prefix,
            Namespace::AuthCache => &self.config.auth_cache_prefix,
        };
        format!("{prefix}{key}")
    }
}

impl Store for RedisStore {
    fn set(
        &self,
        ns: Namespace,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let key = self.key(ns, key);
        self.run(|c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
            }
            cmd.query::<()>(c)
        })
    }

    fn get(&self, ns: Namespace, key: &str) -> Result<Option<String>, StoreError> {
        let key = self.key(ns, key);
        self.run(|c| redis::cmd("GET").arg(&key).query::<Option<String>>(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_password_hiding() {
        let c = RedisConfig::new("redis://:secret@db:6379/0".into(), None, None);
        assert_eq!(c.key_prefix, "coprocess-data:");
        assert_eq!(c.timeout, Duration::from_millis(1000));
        assert_eq!(c.shown_url(), "redis://…@db:6379/0");
        let c = RedisConfig::new("redis://db".into(), Some("p:".into()), Some(50));
        assert_eq!(
            (c.shown_url().as_str(), c.timeout),
            ("redis://db", Duration::from_millis(50))
        );
    }

    #[test]
    fn overlapping_prefixes_are_refused() {
        let mut c = RedisConfig::new("redis://db".into(), None, None);
        assert_eq!(c.check_prefixes(), Ok(()));
        for (data, cache) in [("", "x:"), ("coprocess-", "coprocess-auth:"), ("a:", "a:")] {
            c.key_prefix = data.into();
            c.auth_cache_prefix = cache.into();
            let e = c.check_prefixes().unwrap_err();
            assert!(e.contains("overlap"), "{e}");
            let e = RedisStore::connect(c.clone()).err().unwrap();
            assert!(
                e.0.contains("overlap"),
                "refused before connecting: {}",
                e.0
            );
        }
    }

    #[test]
    fn an_unreachable_server_is_a_clear_error() {
        // Port 1 on loopback: nothing listens there.
        let e = RedisStore::connect(RedisConfig::new(
            "redis://127.0.0.1:1/".into(),
            None,
            Some(200),
        ))
        .err()
        .expect("must fail");
        assert!(
            e.0.starts_with("cannot reach Redis at redis://127.0.0.1:1/"),
            "{}",
            e.0
        );
        let e = RedisStore::connect(RedisConfig::new("notaurl".into(), None, None))
            .err()
            .unwrap();
        assert!(e.0.starts_with("invalid Redis URL notaurl"), "{}", e.0);
    }
}
