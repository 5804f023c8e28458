//! `coprocess serve`: a gRPC `coprocess.Dispatcher` server (the service Tyk's gateway calls for gRPC
//! plugins) that runs in-process drivers through the bridge. A gateway that only speaks Tyk's gRPC
//! protocol can use native, Rust and Python drivers this way.
//!
//! Every call goes through the bridge's C exports (`Dispatch`, `DispatchWithDriver`, `DispatchEvent`),
//! on tokio's blocking pool (a driver may block: Python, I/O). Objects cross as bytes: no decode, no
//! encode on this side (the bridge checks input and output with its wire walk).
//!
//! Exposure: TCP listeners take rustls TLS (`--tls-cert`/`--tls-key`, client certificates with
//! `--tls-client-ca`); a non-loopback address without TLS is refused unless `--insecure`. At most
//! `--max-in-flight` calls run at once; a call over that waits up to `--in-flight-wait-ms`, then gets
//! RESOURCE_EXHAUSTED. Routing by `x-coprocess-driver` metadata skips API chains and the ID extractor,
//! so it is off unless `--route-by-metadata` (and never together with `--api`).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_grpc_service::tonic::codegen::Bytes;
use coprocess_grpc_service::tonic::transport::server::TcpIncoming;
use coprocess_grpc_service::tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use coprocess_grpc_service::tonic::{self, Request, Response, Status};
use coprocess_grpc_service::{Dispatcher, DispatcherServer, Listen, RawObject};
use coprocess_proto::{Event, EventReply};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::bridge::linked;
use crate::error::{CliError, Result};

/// gRPC request metadata that picks a driver by name, with `--route-by-metadata` (otherwise the bridge
/// routes like `Dispatch`: by the API's driver when API definitions are loaded, or to the only driver).
pub const DRIVER_METADATA: &str = "x-coprocess-driver";

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  coprocess serve --listen tcp://127.0.0.1:5555 --driver target/release/libcoprocess_rust_driver.so
  coprocess serve --listen unix:///run/coprocess.sock \\
      --driver python=target/release/libcoprocess_python.so --config 'python={\"bundle_root\": \"bundles\"}' \\
      --driver native=./libmy_driver.so --api api.json

Point Tyk at it as at any gRPC plugin server:
  \"coprocess_options\": {\"enable_coprocess\": true, \"coprocess_grpc_server\": \"tcp://127.0.0.1:5555\"}

With TLS (client certificates signed by ca.pem required):
  coprocess serve --listen tcp://0.0.0.0:5555 --driver libmy_driver.so \
      --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem

Calls go to the driver an API definition names (--api), or to the only driver; with
--route-by-metadata, to the driver named by the request's x-coprocess-driver metadata (which skips
API chains and the ID extractor). A TCP address other than loopback needs TLS or --insecure.
With --metrics-addr 127.0.0.1:9100, Prometheus scrapes http://127.0.0.1:9100/metrics.
SIGTERM or SIGINT: stop accepting, finish the calls in flight (up to --grace-ms), shut the drivers
down, exit 0.")]
pub struct ServeArgs {
    /// Where to listen: tcp://HOST:PORT, HOST:PORT or unix:///PATH (port 0 picks a free port; the
    /// address is printed as "listening on ADDRESS").
    #[arg(long, value_name = "ADDRESS")]
    pub listen: String,
    /// A driver library to load, under NAME (default: the file name without "lib" and extension).
    /// Repeat for several drivers.
    #[arg(long = "driver", value_name = "[NAME=]PATH", required = true)]
    pub drivers: Vec<String>,
    /// A driver's config JSON (handed to its init). NAME= may be left out with one driver. Repeatable.
    #[arg(long = "config", value_name = "[NAME=]JSON")]
    pub configs: Vec<String>,
    /// A Tyk API definition (classic or OAS JSON) to load, so calls are routed by API. Repeatable.
    #[arg(long = "api", value_name = "FILE")]
    pub apis: Vec<PathBuf>,
    /// The largest message accepted or sent, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// How long calls in flight may take to finish after SIGTERM/SIGINT, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub grace_ms: u64,
    /// Run drivers on the server's I/O threads instead of a pool of blocking threads: saves two
    /// thread switches a call, for drivers that answer in microseconds (native code). Leave it off
    /// for drivers that may block (Python, network calls): they would stall other connections.
    #[arg(long)]
    pub inline: bool,
    /// PEM certificate chain of the server: serve TLS (TCP only; with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate signed by one (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Listen on a non-loopback TCP address without TLS (anyone who reaches it can call the drivers).
    #[arg(long)]
    pub insecure: bool,
    /// The most calls (hooks and events) running at once.
    #[arg(long, value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// How long a call over --max-in-flight waits for a slot before RESOURCE_EXHAUSTED, in ms.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub in_flight_wait_ms: u64,
    /// Honour x-coprocess-driver request metadata (pick a driver by name). Such calls skip API
    /// chains and the ID extractor, so this cannot be combined with --api.
    #[arg(long, conflicts_with = "apis")]
    pub route_by_metadata: bool,
    /// Serve the bridge's metrics over HTTP on HOST:PORT: GET /metrics (Prometheus text) or
    /// /metrics?format=json. Printed as "metrics on http://HOST:PORT/metrics" (port 0 picks one).
    /// A non-loopback address needs --insecure.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

/// `[NAME=]PATH` → (name, path).
fn driver_spec(spec: &str) -> Result<(String, String)> {
    let (name, path) = match spec.split_once('=') {
        Some((n, p)) if !n.is_empty() && !n.contains('/') => (n.to_owned(), p.to_owned()),
        _ => {
            let stem = Path::new(spec)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let stem = stem.strip_prefix("lib").unwrap_or(stem);
            (stem.to_owned(), spec.to_owned())
        }
    };
    if name.is_empty() || path.is_empty() {
        return Err(CliError::new(format!(
            "--driver {spec}: expected [NAME=]PATH to a driver library"
        )));
    }
    Ok((name, path))
}

/// `[NAME=]JSON` → (name or None, JSON).
fn config_spec(spec: &str) -> (Option<String>, String) {
    if spec.trim_start().starts_with('{') {
        return (None, spec.to_owned());
    }
    match spec.split_once('=') {
        Some((n, json)) => (Some(n.to_owned()), json.to_owned()),
        None => (None, spec.to_owned()),
    }
}

/// The drivers to load: (name, path, config).
fn plan(args: &ServeArgs) -> Result<Vec<(String, String, Option<String>)>> {
    let mut drivers: Vec<(String, String, Option<String>)> = Vec::new();
    for spec in &args.drivers {
        let (name, path) = driver_spec(spec)?;
        if drivers.iter().any(|(n, _, _)| *n == name) {
            return Err(CliError::new(format!(
                "two drivers are named '{name}': give them names (--driver NAME=PATH)"
            )));
        }
        drivers.push((name, path, None));
    }
    for spec in &args.configs {
        let (name, json) = config_spec(spec);
        serde_json::from_str::<serde_json::Value>(&json)
            .map_err(|e| CliError::new(format!("--config {spec}: not valid JSON: {e}")))?;
        let slot = match name {
            Some(n) => drivers
                .iter_mut()
                .find(|(d, _, _)| *d == n)
                .ok_or_else(|| {
                    CliError::new(format!("--config {n}=...: no driver is named '{n}'"))
                })?,
            None if drivers.len() == 1 => &mut drivers[0],
            None => {
                return Err(CliError::new(
                    "--config without NAME= is ambiguous with several drivers: write NAME=JSON",
                ))
            }
        };
        if slot.2.replace(json).is_some() {
            return Err(CliError::new(format!(
                "driver '{}' has two --config options",
                slot.0
            )));
        }
    }
    Ok(drivers)
}

fn load_drivers(args: &ServeArgs) -> Result<Vec<String>> {
    let bridge = linked();
    let mut names = Vec::new();
    for (name, path, config) in plan(args)? {
        bridge
            .load_driver(&name, &path, config.as_deref())
            .map_err(|e| {
                CliError::new(format!(
                    "loading driver '{name}' from {path}: {}",
                    e.message
                ))
            })?;
        names.push(name);
    }
    for file in &args.apis {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::new(format!("--api {}: {e}", file.display())))?;
        bridge
            .load_api(&text)
            .map_err(|e| CliError::new(format!("--api {}: {}", file.display(), e.message)))?;
    }
    Ok(names)
}

/// The gRPC status for a bridge failure.
fn status_for(code: i32, message: String) -> Status {
    let is = |s: coprocess_bridge::error::CoProcessStatus| code == s.code();
    if is(COPROCESS_ERR_INVALID_OBJECT) || is(COPROCESS_ERR_INVALID_LENGTH) {
        Status::invalid_argument(message)
    } else if is(COPROCESS_ERR_UNKNOWN_DRIVER) {
        Status::not_found(message)
    } else if is(COPROCESS_ERR_NO_DRIVER) || is(COPROCESS_ERR_DISABLED) {
        Status::failed_precondition(message)
    } else {
        Status::internal(message)
    }
}

/// One hook through the bridge (blocking: runs on tokio's blocking pool, or inline with `--inline`).
/// The answer goes to gRPC without a copy: the bridge's buffer is freed when gRPC is done with it.
fn dispatch_blocking(driver: Option<String>, input: Bytes) -> std::result::Result<Bytes, Status> {
    let driver = driver
        .map(CString::new)
        .transpose()
        .map_err(|_| Status::invalid_argument("the driver name contains a NUL byte"))?;
    match linked().dispatch_to(driver.as_deref(), &input) {
        Ok(answer) => Ok(Bytes::from_owner(answer)),
        Err(e) if e.code < 0 => Err(Status::out_of_range(e.message)),
        Err(e) => Err(status_for(e.code, e.message)),
    }
}

struct BridgeDispatcher {
    /// Call drivers on the I/O thread (`--inline`) rather than on the blocking pool.
    inline: bool,
    /// Whether `x-coprocess-driver` metadata picks the driver (`--route-by-metadata`).
    route_by_metadata: bool,
    /// One permit per call in flight (`--max-in-flight`).
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
    /// How long a call waits for a permit.
    in_flight_wait: Duration,
}

impl BridgeDispatcher {
    /// A slot for one call. The permit moves into the blocking call, so a client that gives up does
    /// not free the slot while its driver call still runs.
    async fn slot(&self) -> std::result::Result<OwnedSemaphorePermit, Status> {
        let permit =
            tokio::time::timeout(self.in_flight_wait, self.in_flight.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(Status::unavailable("the server is stopping")),
            Err(_) => Err(Status::resource_exhausted(format!(
                "{} calls in flight, the most this server runs at once (--max-in-flight); \
                 try again later",
                self.max_in_flight
            ))),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, Status> + Send + 'static,
) -> std::result::Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("the dispatching thread failed: {e}")))?
}

#[tonic::async_trait]
impl Dispatcher for BridgeDispatcher {
    async fn dispatch(
        &self,
        request: Request<RawObject>,
    ) -> std::result::Result<Response<RawObject>, Status> {
        let driver = match request.metadata().get(DRIVER_METADATA) {
            Some(_) if !self.route_by_metadata => {
                return Err(Status::permission_denied(format!(
                    "{DRIVER_METADATA} routing is off: it would skip API chains and the ID \
                     extractor (start coprocess serve with --route-by-metadata to allow it)"
                )))
            }
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| {
                        Status::invalid_argument(format!("{DRIVER_METADATA} is not ASCII text"))
                    })?
                    .to_owned(),
            ),
            None => None,
        };
        let input = request.into_inner().0;
        let permit = self.slot().await?;
        let output = if self.inline {
            dispatch_blocking(driver, input)?
        } else {
            blocking(move || {
                let _permit = permit;
                dispatch_blocking(driver, input)
            })
            .await?
        };
        Ok(Response::new(RawObject(output)))
    }

    async fn dispatch_event(
        &self,
        request: Request<Event>,
    ) -> std::result::Result<Response<EventReply>, Status> {
        let payload = request.into_inner().payload;
        serde_json::from_str::<serde_json::Value>(&payload)
            .map_err(|e| Status::invalid_argument(format!("the event is not valid JSON: {e}")))?;
        if payload.contains('\0') {
            return Err(Status::invalid_argument("the event contains a NUL byte"));
        }
        let permit = self.slot().await?;
        blocking(move || {
            let _permit = permit;
            linked()
                .dispatch_event(&payload)
                .map_err(|e| Status::internal(e.message))
        })
        .await?;
        Ok(Response::new(EventReply {}))
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still dies by the default action; serve until then.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Removes a Unix socket file left by an earlier run (only a socket: never a regular file).
fn clear_stale_socket(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|e| CliError::new(format!("removing stale socket {}: {e}", path.display()))),
        Ok(_) => Err(CliError::new(format!(
            "{} exists and is not a socket: not replacing it",
            path.display()
        ))),
        Err(_) => Ok(()),
    }
}

/// The rustls server configuration of `--tls-cert`/`--tls-key`/`--tls-client-ca`, if any.
fn tls_config(args: &ServeArgs) -> Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |flag: &str, path: &Path| {
        std::fs::read(path).map_err(|e| CliError::new(format!("{flag} {}: {e}", path.display())))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read("--tls-cert", cert)?,
        read("--tls-key", key)?,
    ));
    if let Some(ca) = &args.tls_client_ca {
        // Client authentication is required (not optional) once a CA is given.
        tls = tls.client_ca_root(Certificate::from_pem(read("--tls-client-ca", ca)?));
    }
    Ok(Some(tls))
}

/// Refuses to serve plain text where anyone but local processes can connect.
fn check_exposure(bound: std::net::SocketAddr, tls: bool, insecure: bool) -> Result<()> {
    if tls || insecure || bound.ip().is_loopback() {
        return Ok(());
    }
    Err(CliError::new(format!(
        "refusing to serve without TLS on {bound}, which is not a loopback address: \
         give --tls-cert and --tls-key, or --insecure to accept unauthenticated plain-text calls"
    )))
}

async fn serve(args: &ServeArgs, listen: Listen) -> Result<()> {
    let tls = tls_config(args)?;
    if tls.is_some() && matches!(listen, Listen::Unix(_)) {
        return Err(CliError::new(
            "--tls-cert is for TCP listeners; a Unix socket is protected by its file permissions",
        ));
    }
    let service = DispatcherServer::new(BridgeDispatcher {
        inline: args.inline,
        route_by_metadata: args.route_by_metadata,
        in_flight: Arc::new(Semaphore::new(args.max_in_flight as usize)),
        max_in_flight: args.max_in_flight,
        in_flight_wait: Duration::from_millis(args.in_flight_wait_ms),
    })
    .max_decoding_message_size(args.max_message_bytes)
    .max_encoding_message_size(args.max_message_bytes);
    if let Some(addr) = &args.metrics_addr {
        let (listener, bound) = crate::metrics_http::bind(addr, args.insecure).await?;
        println!("metrics on http://{bound}/metrics");
        tokio::spawn(crate::metrics_http::serve(listener));
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let mut builder = Server::builder();
    let secure = tls.is_some();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| CliError::new(format!("TLS setup failed: {e}")))?;
    }
    let router = builder.add_service(service);
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> = match &listen {
        Listen::Tcp(authority) => {
            let listener = tokio::net::TcpListener::bind(authority.as_str())
                .await
                .map_err(|e| CliError::new(format!("cannot listen on {listen}: {e}")))?;
            let bound = listener
                .local_addr()
                .map_err(|e| CliError::new(format!("{listen}: {e}")))?;
            check_exposure(bound, secure, args.insecure)?;
            announce(&format!("tcp://{bound}"));
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            Box::pin(router.serve_with_incoming_shutdown(incoming, shutdown))
        }
        Listen::Unix(path) => {
            clear_stale_socket(path)?;
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| CliError::new(format!("cannot listen on {listen}: {e}")))?;
            announce(&listen.to_string());
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            Box::pin(router.serve_with_incoming_shutdown(incoming, shutdown))
        }
    };
    let mut server = server;
    let result = tokio::select! {
        r = &mut server => r,
        _ = terminated() => {
            eprintln!("coprocess serve: stopping (finishing calls in flight)");
            let _ = stop_tx.send(());
            match tokio::time::timeout(Duration::from_millis(args.grace_ms), &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    eprintln!(
                        "coprocess serve: calls still running after {} ms (--grace-ms); stopping anyway",
                        args.grace_ms
                    );
                    Ok(())
                }
            }
        }
    };
    if let Listen::Unix(path) = &listen {
        let _ = std::fs::remove_file(path);
    }
    result.map_err(|e| CliError::new(format!("the gRPC server failed: {e}")))
}

/// The line scripts and tests wait for.
fn announce(address: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {address}");
    let _ = out.flush();
}

pub fn run(args: ServeArgs) -> Result<()> {
    let listen = Listen::parse(&args.listen).map_err(|e| CliError::new(format!("--listen {e}")))?;
    let names = load_drivers(&args)?;
    eprintln!(
        "coprocess serve: loaded drivers {}",
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coprocess-serve")
        .build()
        .map_err(|e| CliError::new(format!("cannot start the tokio runtime: {e}")))?;
    let result = runtime.block_on(serve(&args, listen));
    // Calls still running past the grace period are abandoned with the runtime, then drivers shut down.
    runtime.shutdown_timeout(Duration::from_millis(100));
    linked().shutdown();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ServeArgs,
    }

    fn args(extra: &[&str]) -> ServeArgs {
        let mut v = vec!["t", "--listen", "tcp://127.0.0.1:0"];
        v.extend_from_slice(extra);
        T::try_parse_from(v).unwrap().a
    }

    #[test]
    fn driver_names_default_to_the_library_name() {
        assert_eq!(
            driver_spec("target/libcoprocess_rust_driver.so").unwrap(),
            (
                "coprocess_rust_driver".into(),
                "target/libcoprocess_rust_driver.so".into()
            )
        );
        assert_eq!(
            driver_spec("py=./x/libpy.so").unwrap(),
            ("py".into(), "./x/libpy.so".into())
        );
        assert_eq!(
            driver_spec("./a=b/libz.so").unwrap(),
            ("z".into(), "./a=b/libz.so".into()),
            "a '/' before '=' means the '=' is part of the path"
        );
        assert!(driver_spec("x=").is_err());
    }

    #[test]
    fn configs_attach_to_drivers() {
        let p = plan(&args(&["--driver", "a.so", "--config", r#"{"k": 1}"#])).unwrap();
        assert_eq!(
            p,
            vec![("a".into(), "a.so".into(), Some(r#"{"k": 1}"#.into()))]
        );

        let p = plan(&args(&[
            "--driver",
            "x=a.so",
            "--driver",
            "y=b.so",
            "--config",
            r#"y={"k": 2}"#,
        ]))
        .unwrap();
        assert_eq!(p[0].2, None);
        assert_eq!(p[1].2.as_deref(), Some(r#"{"k": 2}"#));

        for (extra, why) in [
            (
                &["--driver", "a.so", "--driver", "b=a.so", "--config", "{}"][..],
                "ambiguous",
            ),
            (
                &["--driver", "a.so", "--config", "z={}"][..],
                "no driver is named 'z'",
            ),
            (&["--driver", "a.so", "--config", "{"][..], "not valid JSON"),
            (
                &["--driver", "a.so", "--driver", "x/a.so"][..],
                "two drivers are named 'a'",
            ),
            (
                &["--driver", "a.so", "--config", "{}", "--config", "{}"][..],
                "two --config",
            ),
        ] {
            let e = plan(&args(extra)).unwrap_err().to_string();
            assert!(e.contains(why), "{extra:?}: {e}");
        }
    }

    #[test]
    fn plain_text_is_refused_beyond_loopback_unless_insecure() {
        let at = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert!(check_exposure(at("127.0.0.1:1"), false, false).is_ok());
        assert!(check_exposure(at("[::1]:1"), false, false).is_ok());
        let e = check_exposure(at("0.0.0.0:1"), false, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a loopback address") && e.contains("--insecure"),
            "{e}"
        );
        assert!(check_exposure(at("0.0.0.0:1"), true, false).is_ok(), "TLS");
        assert!(
            check_exposure(at("10.1.2.3:1"), false, true).is_ok(),
            "--insecure"
        );
    }

    #[test]
    fn tls_and_routing_flags_are_checked() {
        let parse = |extra: &[&str]| {
            let mut v = vec!["t", "--listen", "tcp://127.0.0.1:0", "--driver", "a.so"];
            v.extend_from_slice(extra);
            T::try_parse_from(v).map(|t| t.a)
        };
        assert!(parse(&["--tls-cert", "c.pem"]).is_err(), "cert needs a key");
        assert!(
            parse(&["--tls-client-ca", "ca.pem"]).is_err(),
            "mTLS needs a cert"
        );
        assert!(parse(&["--route-by-metadata", "--api", "a.json"]).is_err());
        assert!(parse(&["--max-in-flight", "0"]).is_err());
        let a = parse(&["--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca"]).unwrap();
        let e = tls_config(&a).unwrap_err().to_string();
        assert!(e.contains("--tls-cert c"), "{e}");
    }

    #[test]
    fn bridge_codes_map_to_grpc_codes() {
        use tonic::Code;
        let code =
            |c: coprocess_bridge::error::CoProcessStatus| status_for(c.code(), "m".into()).code();
        assert_eq!(code(COPROCESS_ERR_INVALID_OBJECT), Code::InvalidArgument);
        assert_eq!(code(COPROCESS_ERR_UNKNOWN_DRIVER), Code::NotFound);
        assert_eq!(code(COPROCESS_ERR_NO_DRIVER), Code::FailedPrecondition);
        assert_eq!(code(COPROCESS_ERR_DRIVER_FAILED), Code::Internal);
    }
}
