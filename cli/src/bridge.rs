//! Safe wrappers over the bridge's C exports (`coprocess_bridge::ffi::host`): the CLI goes through the
//! very functions a C host calls, so what it shows is what a gateway gets.

use std::ffi::{c_char, c_void, CStr, CString};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use clap::Args;
use coprocess_bridge::ffi::host::{
    CoProcessInit, CoProcessLastError, CoProcessLoadDriver, CoProcessMessageFree,
    CoProcessNextEvent, CoProcessSetLogHandler, CoProcessShutdown, DispatchEvent,
    DispatchWithDriver,
};
use coprocess_bridge::message::CoProcessMessage;

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

pub(crate) fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| CliError::new(format!("{what} contains a NUL byte")))
}

/// The message CoProcessLastError() holds for this thread.
pub(crate) fn last_error() -> String {
    let p = CoProcessLastError();
    if p.is_null() {
        return "unknown error".into();
    }
    // SAFETY: the bridge returns a NUL-terminated string that stays valid until the next failing call on
    // this thread; we copy it at once.
    let msg = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    if msg.is_empty() {
        "unknown error".into()
    } else {
        msg
    }
}

/// Log lines held back while a driver loads: a driver can say why its init failed only by logging it,
/// so a failed load folds them into its one-line error instead of printing them.
static CAPTURED_LOGS: Mutex<Option<Vec<(String, String)>>> = Mutex::new(None);

/// The CLI's log handler: `[coprocess-bridge] LEVEL: MESSAGE` on stderr (the bridge's default format),
/// or into [`CAPTURED_LOGS`] while a driver loads.
unsafe extern "C" fn log_handler(message: *const c_char, level: *const c_char, _: *mut c_void) {
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: the bridge passes NUL-terminated strings that are valid during this call.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let (message, level) = (text(message), text(level));
    let mut captured = CAPTURED_LOGS.lock().unwrap_or_else(|p| p.into_inner());
    match captured.as_mut() {
        Some(lines) => lines.push((level, message)),
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
    let config = cstring(
        "the bridge config",
        &serde_json::json!({ "log_level": log_level }).to_string(),
    )?;
    if CoProcessInit(config.as_ptr()) != 0 {
        return Err(CliError::new(last_error()));
    }
    CoProcessSetLogHandler(Some(log_handler), std::ptr::null_mut());
    Ok(())
}

/// A driver loaded into the bridge under [`DRIVER_NAME`]. Dropping it calls CoProcessShutdown (the
/// driver's shutdown hook runs, the library is unloaded).
pub struct Bridge {
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
        let name = cstring("driver name", DRIVER_NAME)?;
        let path_c = cstring("--driver", path)?;
        let config = args
            .config
            .as_deref()
            .map(|c| cstring("--config", c))
            .transpose()?;
        capture_logs(true);
        let rc = CoProcessLoadDriver(
            name.as_ptr(),
            path_c.as_ptr(),
            config.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        );
        let logs = capture_logs(false);
        if rc != 0 {
            let why: Vec<&str> = logs
                .iter()
                .filter(|(level, _)| level == "error" || level == "warning")
                .map(|(_, message)| message.as_str())
                .collect();
            let mut message = last_error();
            if !why.is_empty() {
                message = format!("{message} ({})", why.join("; "));
            }
            return Err(CliError::new(message));
        }
        for (level, message) in logs {
            let _ = writeln!(std::io::stderr(), "[coprocess-bridge] {level}: {message}");
        }
        Ok(Bridge { name })
    }

    /// DispatchWithDriver: `input` is a serialized Object; returns the driver's serialized Object.
    pub fn dispatch(&self, input: &[u8]) -> Result<Vec<u8>> {
        self.dispatch_with(input, |out| out.to_vec())
    }

    /// DispatchWithDriver, handing the output bytes (still in the bridge's malloc'd buffer) to `f`.
    pub fn dispatch_with<T>(&self, input: &[u8], f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let length = i32::try_from(input.len()).map_err(|_| {
            CliError::new(format!(
                "the Object is {} bytes: more than a CoProcessMessage can hold",
                input.len()
            ))
        })?;
        let msg_in = CoProcessMessage {
            p_data: input.as_ptr() as *mut _,
            length,
        };
        let mut out = CoProcessMessage::empty();
        // The input is borrowed by the bridge for the call only (it never writes through p_data).
        let rc = DispatchWithDriver(self.name.as_ptr(), &msg_in, &mut out);
        if rc != 0 {
            return Err(CliError::new(last_error()));
        }
        // SAFETY: on success `out` holds a malloc'd buffer of `length` bytes owned by us until
        // CoProcessMessageFree below.
        let value = match unsafe { out.as_bytes("Dispatch: out") } {
            Ok(bytes) => f(bytes),
            Err(e) => {
                CoProcessMessageFree(&mut out);
                return Err(CliError::new(e.message));
            }
        };
        CoProcessMessageFree(&mut out);
        Ok(value)
    }

    /// DispatchEvent(event_json). The bridge refuses text that is not JSON; check it first for a clear
    /// message.
    pub fn dispatch_event(&self, event_json: &str) -> Result<()> {
        let json = cstring("the event", event_json)?;
        DispatchEvent(json.as_ptr());
        Ok(())
    }

    /// Drains the bridge's event queue (events raised while no event handler is set).
    pub fn take_events(&self) -> Vec<(String, String)> {
        let mut events = Vec::new();
        loop {
            let mut name: *mut c_char = std::ptr::null_mut();
            let mut payload: *mut c_char = std::ptr::null_mut();
            if CoProcessNextEvent(&mut name, &mut payload) != 0 {
                return events;
            }
            // SAFETY: on success both are malloc'd NUL-terminated strings that we own and free below.
            let pair = unsafe { (take_cstring(name), take_cstring(payload)) };
            events.push(pair);
        }
    }
}

/// Copies and frees a malloc'd C string from the bridge.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string allocated by the bridge and not used after this call.
unsafe fn take_cstring(p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    coprocess_bridge::ffi::host::CoProcessFree(p.cast());
    s
}

impl Drop for Bridge {
    fn drop(&mut self) {
        CoProcessShutdown();
    }
}
