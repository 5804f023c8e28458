//! What the Redis store is told: where Redis is (one server, Sentinel or Cluster, as tyk.conf's
//! `storage` block can say), how to talk to it (credentials, TLS), key prefixes and the limits on
//! waiting (timeouts, pool, circuit breaker).

use std::time::Duration;

/// Tyk's prefix for coprocess data keys.
pub const DEFAULT_KEY_PREFIX: &str = "coprocess-data:";
/// The auth cache's prefix: apart from the plugins' keys.
pub const DEFAULT_AUTH_CACHE_PREFIX: &str = "coprocess-auth-cache:";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Connections open at once: enough for a gateway's worker threads without flooding Redis.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long a caller waits for a pooled connection to come free.
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_millis(200);
/// How long calls fail fast after Redis could not be reached, before one call tries again.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_millis(1000);
/// The most connections a config may ask for.
pub const MAX_POOL_SIZE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub host: String,
    pub port: u16,
}

impl Addr {
    /// `host:port` (or `[v6]:port`); the port defaults to 6379.
    pub fn parse(text: &str) -> Result<Addr, String> {
        let text = text.trim();
        let bad = || format!("'{text}' is not a host:port address");
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("'{text}': the port is not a number from 1 to 65535"))
        };
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']').ok_or_else(bad)?;
                match after.strip_prefix(':') {
                    Some(p) => (host, port(p)?),
                    None if after.is_empty() => (host, 6379),
                    None => return Err(bad()),
                }
            }
            None => match text.rsplit_once(':') {
                Some((host, p)) => (host, port(p)?),
                None => (text, 6379),
            },
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Addr {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server, by `redis://` / `rediss://` URL (credentials and database in the URL).
    Url(String),
    /// One server, by address.
    Server(Addr),
    /// The master Sentinel names (`master_name`), asked of `sentinels` in turn.
    Sentinel {
        sentinels: Vec<Addr>,
        master_name: String,
        sentinel_password: Option<String>,
    },
    /// A Redis Cluster, discovered from these nodes.
    Cluster(Vec<Addr>),
}

/// TLS towards Redis (and sentinels), as tyk.conf's `use_ssl` and friends say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// `ssl_insecure_skip_verify`: accept any certificate.
    pub insecure_skip_verify: bool,
    /// PEM files: the CA to trust instead of the system's, and a client certificate and key.
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub topology: Topology,
    /// For the data nodes (not in a URL topology, whose URL says it).
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
    pub tls: Option<Tls>,
    pub key_prefix: String,
    pub auth_cache_prefix: String,
    /// Connect, read and write timeout of every connection.
    pub timeout: Duration,
    pub pool_size: usize,
    pub pool_wait: Duration,
    pub retry_after: Duration,
}

impl RedisConfig {
    /// A config for one server by URL, with every other setting at its default.
    pub fn new(url: String, key_prefix: Option<String>, timeout_ms: Option<u64>) -> RedisConfig {
        RedisConfig {
            key_prefix: key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.into()),
            timeout: timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            ..RedisConfig::of(Topology::Url(url))
        }
    }

    /// `topology` with every other setting at its default.
    pub fn of(topology: Topology) -> RedisConfig {
        RedisConfig {
            topology,
            username: None,
            password: None,
            database: 0,
            tls: None,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
            auth_cache_prefix: DEFAULT_AUTH_CACHE_PREFIX.into(),
            timeout: DEFAULT_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            pool_wait: DEFAULT_POOL_WAIT,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }

    /// Refuses settings that cannot work or would be unsafe.
    pub fn check(&self) -> Result<(), String> {
        self.check_prefixes()?;
        if self.pool_size == 0 || self.pool_size > MAX_POOL_SIZE {
            return Err(format!(
                "pool_size {} is not between 1 and {MAX_POOL_SIZE}",
                self.pool_size
            ));
        }
        if self.timeout.is_zero() {
            return Err("the timeout must be above 0".into());
        }
        match &self.topology {
            Topology::Sentinel {
                sentinels,
                master_name,
                ..
            } if sentinels.is_empty() || master_name.is_empty() => {
                Err("Sentinel needs addrs (the sentinels) and master_name".into())
            }
            Topology::Cluster(nodes) if nodes.is_empty() => {
                Err("a cluster needs at least one address".into())
            }
            Topology::Cluster(_) if self.database != 0 => {
                Err("a Redis Cluster has only database 0".into())
            }
            _ => Ok(()),
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

    /// Where Redis is, without any password, for messages.
    pub fn shown(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let list = |addrs: &[Addr]| {
            addrs
                .iter()
                .map(Addr::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        match &self.topology {
            Topology::Url(url) => hide_password(url),
            Topology::Server(a) => format!("{scheme}://{a}/{}", self.database),
            Topology::Sentinel {
                sentinels,
                master_name,
                ..
            } => format!(
                "master '{master_name}' via sentinels {scheme}://{}",
                list(sentinels)
            ),
            Topology::Cluster(nodes) => format!("cluster {scheme}://{}", list(nodes)),
        }
    }
}

/// A URL without its password.
fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_password_hiding() {
        let c = RedisConfig::new("redis://:secret@db:6379/0".into(), None, None);
        assert_eq!(c.key_prefix, "coprocess-data:");
        assert_eq!(c.auth_cache_prefix, "coprocess-auth-cache:");
        assert_eq!(c.timeout, Duration::from_millis(1000));
        assert_eq!(c.shown(), "redis://…@db:6379/0");
        let c = RedisConfig::new("redis://db".into(), Some("p:".into()), Some(50));
        assert_eq!(
            (c.shown().as_str(), c.timeout),
            ("redis://db", Duration::from_millis(50))
        );
        let mut s = RedisConfig::of(Topology::Sentinel {
            sentinels: vec![Addr::parse("h1:26379").unwrap(), Addr::parse("h2").unwrap()],
            master_name: "mymaster".into(),
            sentinel_password: Some("spw".into()),
        });
        s.password = Some("pw".into());
        s.tls = Some(Tls::default());
        assert_eq!(
            s.shown(),
            "master 'mymaster' via sentinels rediss://h1:26379,h2:6379"
        );
    }

    #[test]
    fn addresses_parse_like_tyk_writes_them() {
        assert_eq!(
            Addr::parse("10.0.0.1:7000").unwrap(),
            Addr {
                host: "10.0.0.1".into(),
                port: 7000
            }
        );
        assert_eq!(Addr::parse("[::1]:7001").unwrap().host, "::1");
        assert_eq!(Addr::parse("redis").unwrap().port, 6379);
        for bad in ["", ":80", "h:x", "h:0", "h:70000"] {
            assert!(Addr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlapping_prefixes_and_impossible_settings_are_refused() {
        let mut c = RedisConfig::new("redis://db".into(), None, None);
        assert_eq!(c.check(), Ok(()));
        for (data, cache) in [("", "x:"), ("coprocess-", "coprocess-auth:"), ("a:", "a:")] {
            c.key_prefix = data.into();
            c.auth_cache_prefix = cache.into();
            let e = c.check().unwrap_err();
            assert!(e.contains("overlap"), "{e}");
        }
        let mut c = RedisConfig::of(Topology::Cluster(vec![]));
        assert!(c.check().unwrap_err().contains("at least one address"));
        c.topology = Topology::Cluster(vec![Addr::parse("h:1").unwrap()]);
        c.database = 2;
        assert!(c.check().unwrap_err().contains("only database 0"));
        c.database = 0;
        c.pool_size = 0;
        assert!(c.check().unwrap_err().contains("pool_size 0"));
    }
}
