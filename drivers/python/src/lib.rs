//! `libcoprocess_python.so`: a coprocess-bridge driver that embeds CPython and runs Tyk Python plugin
//! bundles unchanged (`from tyk.decorators import *`, `from gateway import TykGateway as tyk`).
//!
//! Config JSON: `{"bundle_root": PATH, "python_path": [DIR, ...], "python_path_prefix": DIR,
//! "python_version": V}` (see `src/config.rs`). Every directory under
//! `bundle_root` is a bundle (`manifest.json` + `middleware.py`), keyed by its directory name, which
//! the gateway sends as `spec["bundle_hash"]`. See `python/runtime.py` for the Python side and
//! `src/interpreter.rs` for how the interpreter is started (or shared with a Python host).

mod config;
mod host_api;
mod interpreter;
mod layout;
mod runtime;

use coprocess_driver::{export_driver, Call, Driver, Error, Host, Level, Reply, Result};

use crate::config::Config;
use crate::runtime::{Answer, Runtime};

pub struct PythonDriver {
    host: Host,
    runtime: Runtime,
}

impl Driver for PythonDriver {
    fn new(host: Host, config: &str) -> Result<Self> {
        let config = Config::parse(config)?;
        if let Some(note) = interpreter::ensure_initialized()? {
            host.log(Level::Warning, &format!("python driver: {note}"));
        }
        let running = pyo3::Python::attach(|py| {
            let v = py.version_info();
            (v.major, v.minor)
        });
        if let Some(note) = config.version_note(running) {
            host.log(Level::Warning, &format!("python driver: {note}"));
        }
        let runtime = Runtime::start(host, &config)?;
        Ok(PythonDriver { host, runtime })
    }

    fn dispatch(&self, call: &Call) -> Result<Reply> {
        Ok(
            match self.runtime.dispatch(call.bytes()).map_err(Error::from)? {
                Answer::Unchanged => Reply::Unchanged,
                Answer::Patch(patch) => Reply::Patch(patch),
                // Python's protobuf runtime encoded the parts; the bridge checks the whole is well-formed
                // (a wire walk, far cheaper than decoding and re-encoding it here).
                Answer::Encoded(output) => Reply::Encoded(output),
            },
        )
    }

    fn event(&self, event_json: &str) {
        self.runtime.event(&self.host, event_json);
    }

    fn reload(&self) {
        self.runtime.reload(&self.host);
    }

    fn load_bundle(&self, path: &str) -> Result<()> {
        self.runtime
            .load_bundle(&self.host, path)
            .map_err(Error::from)
    }

    fn shutdown(&self) {
        self.runtime.shutdown(&self.host);
    }
}

export_driver!(PythonDriver);
