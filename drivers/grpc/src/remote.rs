//! The remote Dispatchers: one lazily connected tonic channel per address, picked round-robin. A call
//! that cannot reach its server moves on to the next address; every call ends by its deadline.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coprocess_driver::proto::Event;
use coprocess_grpc_service::tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity,
};
use coprocess_grpc_service::tonic::{Code, Request, Status};
use coprocess_grpc_service::{DispatcherClient, RawObject, Target};
use tokio::runtime::Runtime;

use crate::config::{Config, TlsConfig};

/// How long an idle HTTP/2 connection may stay silent before a ping checks it, and how long the ping
/// may take: a server that vanished without closing the socket is noticed within these.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The message size most gRPC servers accept unless configured otherwise (grpcio, grpc-go, tonic).
const GRPC_DEFAULT_LIMIT: usize = 4 * 1024 * 1024;

struct Remote {
    target: Target,
    client: DispatcherClient<Channel>,
}

pub struct Remotes {
    remotes: Vec<Remote>,
    next: AtomicUsize,
    timeout: Duration,
    max_message_bytes: usize,
    runtime: Runtime,
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("grpc driver: cannot read tls.{what} {path}: {e}"))
}

fn tls_config(tls: &TlsConfig) -> Result<ClientTlsConfig, String> {
    let mut c = ClientTlsConfig::new();
    c = match &tls.ca_file {
        Some(f) => c.ca_certificate(Certificate::from_pem(read(f, "ca_file")?)),
        None => c.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        c = c.identity(Identity::from_pem(
            read(cert, "cert_file")?,
            read(key, "key_file")?,
        ));
    }
    if let Some(d) = &tls.domain {
        c = c.domain_name(d.clone());
    }
    Ok(c)
}

/// Whether a failed call never reached a server (so another address may take it).
fn unreachable(status: &Status) -> bool {
    status.code() == Code::Unavailable
}

/// Whether the call ran out of time: the server's deadline, or tonic's own enforcement of the
/// `grpc-timeout` we send (a `Cancelled` status saying so).
fn expired(status: &Status) -> bool {
    match status.code() {
        Code::DeadlineExceeded => true,
        Code::Cancelled => status.message().contains("Timeout expired"),
        _ => false,
    }
}

impl Remotes {
    pub fn new(config: &Config) -> Result<Remotes, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.runtime_threads)
            .thread_name("coprocess-grpc")
            .enable_all()
            .build()
            .map_err(|e| format!("grpc driver: cannot start its tokio runtime: {e}"))?;
        let tls = config.tls.as_ref().map(tls_config).transpose()?;
        // Lazy channels spawn their workers on the runtime they are made in.
        let _entered = runtime.enter();
        let mut remotes = Vec::with_capacity(config.servers.len());
        for target in &config.servers {
            let uri = target.endpoint_uri(tls.is_some());
            let mut endpoint = Endpoint::from_shared(uri.clone())
                .map_err(|e| format!("grpc driver: bad server address {target} ({uri}): {e}"))?
                .connect_timeout(config.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT);
            let tls = match (&tls, target.wants_tls()) {
                (Some(t), _) => Some(t.clone()),
                (None, true) => Some(ClientTlsConfig::new().with_native_roots()),
                (None, false) => None,
            };
            if let Some(t) = tls {
                endpoint = endpoint
                    .tls_config(t)
                    .map_err(|e| format!("grpc driver: TLS setup for {target} failed: {e}"))?;
            }
            let client = DispatcherClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(config.max_message_bytes)
                .max_encoding_message_size(config.max_message_bytes);
            remotes.push(Remote {
                target: target.clone(),
                client,
            });
        }
        drop(_entered);
        Ok(Remotes {
            remotes,
            next: AtomicUsize::new(0),
            timeout: config.timeout,
            max_message_bytes: config.max_message_bytes,
            runtime,
        })
    }

    /// Tries the addresses in round-robin order, starting with the next one, until one answers, all
    /// are unreachable, or the deadline passes. `call` makes one attempt.
    fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, String>
    where
        F: FnMut(DispatcherClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let n = self.remotes.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut unreachable_errors = Vec::new();
        for i in 0..n {
            let remote = &self.remotes[(first + i) % n];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let attempt = call(remote.client.clone(), left);
            match self
                .runtime
                .block_on(async { tokio::time::timeout(left, attempt).await })
            {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(status)) if expired(&status) => {
                    return Err(self.timed_out(what, &remote.target))
                }
                Ok(Err(status)) if unreachable(&status) => {
                    unreachable_errors.push(format!("{}: {}", remote.target, describe(&status)));
                }
                Ok(Err(status)) => {
                    return Err(format!(
                        "{what} on gRPC server {} failed: {}",
                        remote.target,
                        describe(&status)
                    ))
                }
                Err(_) => return Err(self.timed_out(what, &remote.target)),
            }
        }
        if unreachable_errors.is_empty() {
            return Err(self.timed_out(what, &self.remotes[first].target));
        }
        Err(format!(
            "{what} failed: no gRPC server reachable ({})",
            unreachable_errors.join("; ")
        ))
    }

    fn timed_out(&self, what: &str, target: &Target) -> String {
        format!(
            "{what} on gRPC server {target} timed out after {} ms (timeout_ms)",
            self.timeout.as_millis()
        )
    }

    /// Runs a hook remotely: the serialized Object goes out as it is, and the answer comes back as the
    /// server serialized it (the bridge checks it is a well-formed Object, without decoding it).
    pub fn dispatch(&self, object: &[u8]) -> Result<Vec<u8>, String> {
        // Checked here rather than left to the encoder, whose failure reaches us as a bare HTTP/2
        // stream reset.
        if object.len() > self.max_message_bytes {
            return Err(format!(
                "Dispatch not sent: the Object is {} bytes, more than max_message_bytes ({})",
                object.len(),
                self.max_message_bytes
            ));
        }
        let bytes = coprocess_grpc_service::tonic::codegen::Bytes::copy_from_slice(object);
        let reply = self
            .call("Dispatch", |mut client, left| {
                let mut request = Request::new(RawObject(bytes.clone()));
                request.set_timeout(left);
                async move { client.dispatch(request).await }
            })
            .map_err(|e| {
                if object.len() > GRPC_DEFAULT_LIMIT && !e.contains("OutOfRange") {
                    format!(
                        "{e} (the Object was {} bytes: the server may refuse messages that large; \
                         gRPC servers accept 4 MiB unless configured otherwise)",
                        object.len()
                    )
                } else {
                    e
                }
            })?;
        Ok(reply.into_inner().0.to_vec())
    }

    /// Delivers an event (JSON text) to one server.
    pub fn dispatch_event(&self, event_json: &str) -> Result<(), String> {
        self.call("DispatchEvent", |mut client, left| {
            let mut request = Request::new(Event {
                payload: event_json.to_owned(),
            });
            request.set_timeout(left);
            async move { client.dispatch_event(request).await }
        })
        .map(drop)
    }

    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.remotes.iter().map(|r| &r.target)
    }
}

/// A status in words: the code, the server's message, and the transport's cause when there is one.
fn describe(status: &Status) -> String {
    let mut s = format!("{:?}", status.code());
    if !status.message().is_empty() {
        s.push_str(": ");
        s.push_str(status.message());
    }
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let text = e.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = e.source();
    }
    s
}
