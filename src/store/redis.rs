//! The Redis store: what several gateway instances share (TykStoreData/TykGetData, drivers' store, the
//! auth cache). Plugin keys get Tyk's `coprocess-data:` prefix, the auth cache its own
//! (`coprocess-auth-cache:`); neither prefix may start the other, so no plugin key names a cache entry.
//!
//! Calls take a connection from a small pool (waiting at most `pool_wait` for one) so they run side by
//! side; every connection is bounded by the timeout. When Redis cannot be reached, a circuit breaker
//! makes calls fail at once for `retry_after`, then lets one call try again: while Redis is down no
//! caller waits out the connect timeout more than once per window. A connection that went stale (the
//! server restarted) is retried once on a fresh one; so is a write refused by a demoted master after a
//! Sentinel failover.

use std::time::Instant;

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, ServerErrorKind};

use super::breaker::{Admission, Breaker, Transition};
use super::pool::{AcquireError, Pool};
use super::redis_connect::{Conn, Connector};
use super::{Namespace, Notices, Store, StoreError};
use crate::logging::Level;

pub use super::redis_config::{Addr, RedisConfig, Tls, Topology};

pub struct RedisStore {
    config: RedisConfig,
    connector: Connector,
    pool: Pool<Conn>,
    breaker: Breaker,
    pub notices: Notices,
}

/// How a failed command leaves things.
enum Failure {
    /// Redis could not be reached or stopped answering.
    Unreachable,
    /// This server no longer takes writes (a demoted master): reconnect, likely elsewhere.
    Demoted,
    /// Redis answered with an error: it is up.
    Answered,
    /// Every pooled connection stayed busy: says nothing about Redis.
    Busy,
}

fn classify(e: &RedisError) -> Failure {
    if e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) {
        Failure::Demoted
    } else if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
    {
        Failure::Unreachable
    } else {
        Failure::Answered
    }
}

impl RedisStore {
    /// Connects now, so a wrong setting or an unreachable server is reported at configuration time.
    pub fn connect(config: RedisConfig) -> Result<RedisStore, StoreError> {
        config.check().map_err(StoreError)?;
        let connector = Connector::new(&config).map_err(|e| {
            StoreError(format!(
                "invalid Redis settings for {}: {e}",
                config.shown()
            ))
        })?;
        let store = RedisStore {
            pool: Pool::new(config.pool_size, config.pool_wait),
            breaker: Breaker::new(config.retry_after),
            notices: Notices::default(),
            connector,
            config,
        };
        store
            .run(|c| redis::cmd("PING").query::<String>(c))
            .map_err(|e| {
                StoreError(format!(
                    "cannot reach Redis at {}: {}",
                    store.config.shown(),
                    e.0
                ))
            })?;
        Ok(store)
    }

    pub fn describe(&self) -> String {
        format!(
            "redis at {}, keys prefixed '{}', auth cache '{}', {} connections at most",
            self.config.shown(),
            self.config.key_prefix,
            self.config.auth_cache_prefix,
            self.config.pool_size
        )
    }

    /// (open, idle) pooled connections, for tests and diagnostics.
    pub fn connections(&self) -> (usize, usize) {
        self.pool.counts()
    }

    /// Runs a command on a pooled connection, under the circuit breaker.
    fn run<T>(
        &self,
        f: impl Fn(&mut dyn ConnectionLike) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let admission = self
            .breaker
            .admit(Instant::now())
            .map_err(|e| StoreError(format!("redis: {e}")))?;
        let result = self.attempt(f);
        match &result {
            Ok(_) | Err((_, Failure::Answered)) => self.reachable(),
            Err((e, Failure::Unreachable)) => self.unreachable(e),
            // A probe that ended any other way (pool busy, demoted twice) keeps the breaker open.
            Err((e, _)) if admission == Admission::Probe => self.unreachable(e),
            Err(_) => {}
        }
        result.map_err(|(e, _)| StoreError(format!("redis: {e}")))
    }

    /// The command, retried once on a fresh connection when the pooled one had gone stale or the
    /// server had been demoted.
    fn attempt<T>(
        &self,
        f: impl Fn(&mut dyn ConnectionLike) -> RedisResult<T>,
    ) -> Result<T, (String, Failure)> {
        for attempt in 0..2 {
            let mut lease = match self.pool.acquire(|| self.connector.open()) {
                Ok(lease) => lease,
                Err(AcquireError::Busy { max, wait }) => {
                    return Err((
                        format!(
                            "all {max} connections stayed busy for {} ms",
                            wait.as_millis()
                        ),
                        Failure::Busy,
                    ))
                }
                Err(AcquireError::Connect(e)) => {
                    let failure = classify(&e);
                    return Err((e.to_string(), failure));
                }
            };
            let e = match f(lease.conn().as_like()) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let failure = classify(&e);
            if matches!(failure, Failure::Answered) {
                return Err((e.to_string(), failure));
            }
            let fresh = lease.fresh;
            lease.discard();
            self.pool.drop_idle();
            // A timeout is not retried (it would double the wait), nor a failure on a fresh connection.
            let retry = match failure {
                Failure::Demoted => true,
                _ => !fresh && !e.is_timeout(),
            };
            if attempt == 1 || !retry {
                return Err((e.to_string(), failure));
            }
        }
        unreachable!("the second attempt returns")
    }

    fn unreachable(&self, error: &str) {
        self.pool.drop_idle();
        if self.breaker.failed(Instant::now(), error) == Transition::Opened {
            self.notices.send(
                Level::Error,
                &format!(
                    "store: Redis at {} is unreachable ({error}); store calls fail at once for {} ms, \
                     then one call tries again",
                    self.config.shown(),
                    self.config.retry_after.as_millis()
                ),
            );
        }
    }

    fn reachable(&self) {
        let refused = self.breaker.refused();
        if self.breaker.succeeded() == Transition::Closed {
            self.notices.send(
                Level::Info,
                &format!(
                    "store: Redis at {} is reachable again ({refused} calls failed fast meanwhile)",
                    self.config.shown()
                ),
            );
        }
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
        ttl: Option<std::time::Duration>,
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
        assert!(
            e.0.starts_with("invalid Redis settings for notaurl"),
            "{}",
            e.0
        );
        let mut c = RedisConfig::new("redis://127.0.0.1:1/".into(), None, None);
        c.auth_cache_prefix = c.key_prefix.clone();
        let e = RedisStore::connect(c).err().unwrap();
        assert!(
            e.0.contains("overlap"),
            "refused before connecting: {}",
            e.0
        );
    }
}
