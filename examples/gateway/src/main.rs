//! `coprocess-gateway CONFIG.json [--listen ADDR]`
//!
//! Starts the gateway described by CONFIG (see `gateway::Config`), prints one line per API and then
//! `coprocess-gateway listening on http://ADDR`, and serves until SIGINT or SIGTERM (then the access
//! log's last lines are written out) or until killed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use coprocess_gateway::echo;
use coprocess_gateway::gateway::{Config, Gateway};
use tokio::net::TcpListener;

fn usage() -> ExitCode {
    eprintln!("usage: coprocess-gateway CONFIG.json [--listen ADDR]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = None;
    let mut listen: Option<String> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => match args.next() {
                Some(v) => listen = Some(v),
                None => return usage(),
            },
            "-h" | "--help" => return usage(),
            _ if config_path.is_none() => config_path = Some(PathBuf::from(a)),
            _ => return usage(),
        }
    }
    let Some(config_path) = config_path else {
        return usage();
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coprocess-gateway: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ran = runtime.block_on(run(config_path, listen));
    // A hook still running on the blocking pool does not hold the exit up for long.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coprocess-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config_path: PathBuf, listen: Option<String>) -> Result<(), String> {
    let mut config = Config::load(&config_path)?;
    if let Some(l) = listen {
        config.listen = l;
    }
    if let Some(addr) = &config.echo_upstream {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("echo upstream on {addr}: {e}"))?;
        println!(
            "echo upstream on http://{}",
            l.local_addr().map_err(|e| e.to_string())?
        );
        tokio::spawn(echo::serve(l));
    }
    let gateway = Arc::new(Gateway::start(&config)?);
    for (id, listen_path, target) in gateway.describe() {
        println!("API {id}: {listen_path} -> {target}");
    }
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    println!(
        "coprocess-gateway listening on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::select! {
        _ = gateway.clone().serve(listener) => {}
        stop = stopped() => stop?,
    }
    gateway.close();
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
async fn stopped() -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
