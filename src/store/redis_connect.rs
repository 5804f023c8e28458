//! How the Redis store reaches Redis: one server (a URL or an address), a master found through
//! Sentinel, or a Cluster; plain TCP or TLS (rustls). Every connection it opens has `timeout` on
//! connect, read and write, including the questions put to sentinels.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::{
    Client, ConnectionAddr, ConnectionInfo, ConnectionLike, IntoConnectionInfo,
    RedisConnectionInfo, RedisResult, TlsCertificates,
};

use super::redis_config::{Addr, RedisConfig, Tls, Topology};

/// An open connection of any topology.
pub enum Conn {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    pub fn as_like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => c.as_mut(),
        }
    }
}

pub struct Connector {
    kind: Kind,
    timeout: Duration,
}

enum Kind {
    Single(Client),
    Sentinel {
        sentinels: Vec<Client>,
        master_name: String,
        /// Builds the client for the address a sentinel names.
        master: NodeTemplate,
    },
    Cluster(ClusterClient),
}

/// What every data node connection shares: TLS, credentials, database.
#[derive(Clone)]
struct NodeTemplate {
    tls: Option<(bool, Option<TlsCertificates>)>,
    redis: RedisConnectionInfo,
}

impl NodeTemplate {
    fn client(&self, addr: &Addr) -> RedisResult<Client> {
        let info = (addr.host.as_str(), addr.port)
            .into_connection_info()?
            .set_redis_settings(self.redis.clone());
        match &self.tls {
            None => Client::open(info),
            Some((insecure, certs)) => {
                let info = info.set_addr(ConnectionAddr::TcpTls {
                    host: addr.host.clone(),
                    port: addr.port,
                    insecure: *insecure,
                    tls_params: None,
                });
                match certs {
                    Some(certs) => Client::build_with_tls(info, certs.clone()),
                    None => Client::open(info),
                }
            }
        }
    }

    fn info(&self, addr: &Addr) -> RedisResult<ConnectionInfo> {
        Ok(self.client(addr)?.get_connection_info().clone())
    }
}

fn read_file(what: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {path}: {e}"))
}

fn certificates(tls: &Tls) -> Result<Option<TlsCertificates>, String> {
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|p| read_file("ca_file", p))
        .transpose()?;
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read_file("cert_file", cert)?,
            client_key: read_file("key_file", key)?,
        }),
        (None, None) => None,
        _ => return Err("cert_file and key_file go together".into()),
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

/// rustls needs a process-wide crypto provider; the bridge uses ring (as the gRPC driver does).
fn install_crypto_provider() {
    // Err means one is installed already (by us or by the host's own rustls): either is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Connector {
    pub fn new(config: &RedisConfig) -> Result<Connector, String> {
        let mut redis = RedisConnectionInfo::default().set_db(config.database);
        if let Some(u) = &config.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &config.password {
            redis = redis.set_password(p);
        }
        let tls = match &config.tls {
            None => None,
            Some(tls) => {
                install_crypto_provider();
                Some((tls.insecure_skip_verify, certificates(tls)?))
            }
        };
        let template = NodeTemplate { tls, redis };
        let err = |e: redis::RedisError| e.to_string();
        let kind = match &config.topology {
            Topology::Url(url) => {
                if url.starts_with("rediss://") {
                    install_crypto_provider();
                }
                Kind::Single(Client::open(url.as_str()).map_err(err)?)
            }
            Topology::Server(addr) => Kind::Single(template.client(addr).map_err(err)?),
            Topology::Sentinel {
                sentinels,
                master_name,
                sentinel_password,
            } => {
                let mut sentinel = NodeTemplate {
                    tls: template.tls.clone(),
                    redis: RedisConnectionInfo::default(),
                };
                if let Some(p) = sentinel_password {
                    sentinel.redis = sentinel.redis.set_password(p);
                }
                Kind::Sentinel {
                    sentinels: sentinels
                        .iter()
                        .map(|a| sentinel.client(a))
                        .collect::<RedisResult<_>>()
                        .map_err(err)?,
                    master_name: master_name.clone(),
                    master: template,
                }
            }
            Topology::Cluster(nodes) => {
                let infos = nodes
                    .iter()
                    .map(|a| template.info(a))
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(err)?;
                let mut b = ClusterClientBuilder::new(infos)
                    .connection_timeout(config.timeout)
                    .response_timeout(config.timeout)
                    // A redirect is retried at once; a dead node is the breaker's business, not a
                    // reason to sleep through the library's default backoff (up to minutes).
                    .retries(2)
                    .min_retry_wait(5)
                    .max_retry_wait(50);
                if let Some(u) = &config.username {
                    b = b.username(u);
                }
                if let Some(p) = &config.password {
                    b = b.password(p);
                }
                if let Some((insecure, certs)) = &template.tls {
                    b = b.tls(if *insecure {
                        redis::TlsMode::Insecure
                    } else {
                        redis::TlsMode::Secure
                    });
                    if let Some(certs) = certs {
                        b = b.certs(certs.clone());
                    }
                }
                Kind::Cluster(b.build().map_err(err)?)
            }
        };
        Ok(Connector {
            kind,
            timeout: config.timeout,
        })
    }

    fn single(&self, client: &Client) -> RedisResult<redis::Connection> {
        let c = client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        Ok(c)
    }

    /// Opens one connection.
    pub fn open(&self) -> RedisResult<Conn> {
        match &self.kind {
            Kind::Single(client) => Ok(Conn::Single(self.single(client)?)),
            Kind::Cluster(client) => Ok(Conn::Cluster(Box::new(client.get_connection()?))),
            Kind::Sentinel {
                sentinels,
                master_name,
                master,
            } => self
                .open_master(sentinels, master_name, master)
                .map(Conn::Single),
        }
    }

    /// Asks the sentinels in turn where `master_name`'s master is, and connects to it once it says
    /// it is a master (a sentinel may lag behind a failover).
    fn open_master(
        &self,
        sentinels: &[Client],
        master_name: &str,
        master: &NodeTemplate,
    ) -> RedisResult<redis::Connection> {
        let mut last = None;
        for sentinel in sentinels {
            let addr = self.single(sentinel).and_then(|mut c| {
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(master_name)
                    .query::<Option<(String, u16)>>(&mut c)
            });
            let attempt = match addr {
                Ok(Some((host, port))) => master
                    .client(&Addr { host, port })
                    .and_then(|client| self.single(&client))
                    .and_then(|mut c| {
                        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c)?;
                        match role.first() {
                            Some(redis::Value::BulkString(r)) if r == b"master" => Ok(c),
                            _ => Err(redis::RedisError::from((
                                redis::ErrorKind::Io,
                                "the address a sentinel gave is not a master (yet)",
                            ))),
                        }
                    }),
                Ok(None) => Err(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "sentinel does not know master",
                    master_name.to_owned(),
                ))),
                Err(e) => Err(e),
            };
            match attempt {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no sentinels"))
        }))
    }
}
