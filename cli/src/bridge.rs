//! The bridge the CLI talks to: its own linked copy, called through the C exports a gateway calls
//! (`coprocess_bridge::ffi`), with the safe wrappers every Rust host in the repository shares
//! (`coprocess-host`). The CLI links the bridge rather than dlopening it so that it stays one
//! self-contained binary (it also uses the bridge's bundle and loader code).

use std::ffi::CString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use clap::Args;
use coprocess_bridge::ffi::{host, last_error, metrics, version};
use coprocess_host::capi::{self, CApi};
use coprocess_host::{Answer, Bridge as Host, BridgeError};

use crate::error::{CliError, Result};

/// The name the CLI loads its one driver under.
pub const DRIVER_NAME: &str = "cli";

/// `--driver PATH [--config JSON]`, shared by the subcommands that load a driver.
#[derive(Debug, Clone, Args)]
pub struct DriverArgs {
    /// The driver shared library (.so) to load, e.g. target/release/libcoprocess_rust_driver.so.
    #[arg(long, value_name = "PATH")]
    pub driver: PathBuf,
    /// The driver's config: the JSON text handed to CoProcessDriverInit (default "{}").
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
}

impl From<BridgeError> for CliError {
    fn from(e: BridgeError) -> CliError {
        CliError::new(e.message)
    }
}

/// The linked bridge's exports as the table coprocess-host calls through.
pub fn linked() -> Host {
    use coprocess_bridge::message::CoProcessMessage as Msg;
    use std::mem::transmute;
    type Dispatch = extern "C" fn(*const Msg, *mut Msg) -> i32;
    type DispatchWith = extern "C" fn(*const std::ffi::c_char, *const Msg, *mut Msg) -> i32;
    type MessageFree = extern "C" fn(*mut Msg);
    // SAFETY: the three functions taking a `CoProcessMessage` pointer are cast to the same signature
    // over coprocess-host's `CoProcessMessage`: both are the `#[repr(C)]` struct of api.h, and raw
    // pointers to sized types are ABI-compatible, so the calls are the ones api.h declares.
    let (dispatch, dispatch_with_driver, message_free) = unsafe {
        (
            transmute::<Dispatch, capi::DispatchFn>(host::Dispatch),
            transmute::<DispatchWith, capi::DispatchWithDriverFn>(host::DispatchWithDriver),
            transmute::<MessageFree, capi::MessageFreeFn>(host::CoProcessMessageFree),
        )
    };
    Host::from_api(CApi {
        init: host::CoProcessInit,
        load_driver: host::CoProcessLoadDriver,
        dispatch,
        dispatch_with_driver,
        dispatch_event: host::DispatchEvent,
        message_free,
        free: host::CoProcessFree,
        last_error: host::CoProcessLastError,
        clear_last_error: last_error::CoProcessClearLastError,
        set_log_handler: host::CoProcessSetLogHandler,
        next_event: host::CoProcessNextEvent,
        shutdown: host::CoProcessShutdown,
        load_api: host::CoProcessLoadApi,
        list_apis: host::CoProcessListApis,
        metrics: metrics::CoProcessMetrics,
        version: version::CoProcessVersion,
    })
}

/// Log lines held back while a driver loads: a driver can say why its init failed only by logging it,
/// so a failed load folds them into its one-line error instead of printing them.
static CAPTURED_LOGS: Mutex<Option<Vec<(String, String)>>> = Mutex::new(None);

/// The CLI's log sink: `[coprocess-bridge] LEVEL: MESSAGE` on stderr (the bridge's default format),
/// or into [`CAPTURED_LOGS`] while a driver loads.
fn log_line(level: &str, message: &str) {
    let mut captured = CAPTURED_LOGS.lock().unwrap_or_else(|p| p.into_inner());
    match captured.as_mut() {
        Some(lines) => lines.push((level.to_owned(), message.to_owned())),
        None => {
            drop(captured);
            let _ = writeln!(std::io::stderr(), "[coprocess-bridge] {level}: {message}");
        }
    }
}

fn capture_logs(on: bool) -> Vec<(String, String)> {
    let mut captured = CAPTURED_LOGS.lock().unwrap_or_else(|p| p.into_inner());
    let lines = captured.take().unwrap_or_default();
    if on {
        *captured = Some(Vec::new());
    }
    lines
}

/// CoProcessInit with the log level the user asked for ("warning", "info" or "debug"): the bridge's
/// and the drivers' log lines at that level and above go to standard error.
pub fn init(log_level: &str) -> Result<()> {
    let bridge = linked();
    bridge.init(&serde_json::json!({ "log_level": log_level }).to_string())?;
    bridge.set_log_sink(Some(Box::new(log_line)));
    Ok(())
}

/// A driver loaded into the bridge under [`DRIVER_NAME`]. Dropping it calls CoProcessShutdown (the
/// driver's shutdown hook runs, the library is unloaded).
pub struct Bridge {
    host: Host,
    name: CString,
}

impl Bridge {
    /// CoProcessLoadDriver(DRIVER_NAME, path, config).
    pub fn load(args: &DriverArgs) -> Result<Bridge> {
        let path = args.driver.to_str().ok_or_else(|| {
            CliError::new(format!(
                "driver path {} is not valid UTF-8",
                args.driver.display()
            ))
        })?;
        if let Some(cfg) = &args.config {
            serde_json::from_str::<serde_json::Value>(cfg)
                .map_err(|e| CliError::new(format!("--config is not valid JSON: {e}")))?;
        }
        let host = linked();
        capture_logs(true);
        let loaded = host.load_driver(DRIVER_NAME, path, args.config.as_deref());
        let logs = capture_logs(false);
        if let Err(e) = loaded {
            let why: Vec<&str> = logs
                .iter()
                .filter(|(level, _)| level == "error" || level == "warning")
                .map(|(_, message)| message.as_str())
                .collect();
            let mut message = e.message;
            if !why.is_empty() {
                message = format!("{message} ({})", why.join("; "));
            }
            return Err(CliError::new(message));
        }
        for (level, message) in logs {
            let _ = writeln!(std::io::stderr(), "[coprocess-bridge] {level}: {message}");
        }
        let name = coprocess_host::c_text("the driver name", DRIVER_NAME)?;
        Ok(Bridge { host, name })
    }

    /// DispatchWithDriver: `input` is a serialized Object; returns the driver's serialized Object,
    /// still in the bridge's buffer.
    pub fn dispatch(&self, input: &[u8]) -> Result<Answer> {
        Ok(self.host.dispatch_to(Some(&self.name), input)?)
    }

    /// DispatchEvent(event_json).
    pub fn dispatch_event(&self, event_json: &str) -> Result<()> {
        Ok(self.host.dispatch_event(event_json)?)
    }

    /// Drains the bridge's event queue (events raised while no event handler is set).
    pub fn take_events(&self) -> Vec<(String, String)> {
        self.host.take_events()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.host.shutdown();
    }
}
