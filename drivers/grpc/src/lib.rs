//! `libcoprocess_grpc.so`: a coprocess-bridge driver that runs hooks on a remote Tyk gRPC
//! `Dispatcher` (the service Tyk's gateway calls for gRPC plugins), so a gateway using the bridge can
//! keep plugins that live in gRPC servers, in any language.
//!
//! Load it like any driver, with a config naming the server(s) (see [`config`]):
//! `CoProcessLoadDriver("grpc", "libcoprocess_grpc.so", "{\"coprocess_grpc_server\": \"tcp://127.0.0.1:5555\"}")`.
//! Each load (one per name) gets its own servers, connections and tokio runtime, so different APIs can
//! use different gRPC servers.
//!
//! - `Dispatch` → `Dispatcher.Dispatch`: the serialized Object is sent as it is, and so is the answer
//!   (the bridge checks it).
//! - `DispatchEvent` → `Dispatcher.DispatchEvent` (`Event { payload: <event JSON> }`), on one server.
//! - Every call ends by `timeout_ms` (the remote sees it as the gRPC deadline); a server that is down
//!   gives an error at once, and the next call connects again, so the driver recovers when it returns.
//! - Several addresses are used round-robin; a call whose server is unreachable tries the next one.
//! - `max_message_bytes` bounds both directions; a larger Object fails with a clear error.
//!
//! The driver owns its tokio runtime (`runtime_threads` workers); the bridge itself stays free of tokio
//! and tonic.

pub mod config;
mod remote;

use coprocess_driver::{export_driver, Call, Driver, Error, Host, Level, Reply, Result};

use crate::config::Config;
use crate::remote::Remotes;

pub struct GrpcDriver {
    host: Host,
    remotes: Remotes,
}

impl Driver for GrpcDriver {
    fn new(host: Host, config: &str) -> Result<Self> {
        let config = Config::parse(config)?;
        if !config.unknown_keys.is_empty() {
            host.log(
                Level::Warning,
                &format!(
                    "grpc driver: ignoring unknown config keys: {}",
                    config.unknown_keys.join(", ")
                ),
            );
        }
        let remotes = Remotes::new(&config)?;
        let targets: Vec<String> = remotes.targets().map(|t| t.to_string()).collect();
        host.log(
            Level::Info,
            &format!(
                "grpc driver: Dispatcher at {} (timeout {} ms, max message {} bytes)",
                targets.join(", "),
                config.timeout.as_millis(),
                config.max_message_bytes
            ),
        );
        Ok(GrpcDriver { host, remotes })
    }

    fn dispatch(&self, call: &Call) -> Result<Reply> {
        let answer = self.remotes.dispatch(call.bytes()).map_err(Error::new)?;
        Ok(Reply::Encoded(answer))
    }

    fn event(&self, event_json: &str) {
        if let Err(e) = self.remotes.dispatch_event(event_json) {
            self.host.log(Level::Error, &format!("grpc driver: {e}"));
        }
    }
}

export_driver!(GrpcDriver);
