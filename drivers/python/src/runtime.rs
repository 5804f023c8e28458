//! The Rust half of the runtime: starts `python/runtime.py` in the interpreter and calls it. Every
//! method attaches to the interpreter (takes the GIL) for the Python work only: bytes are copied out
//! before the GIL is released, and decoding happens after.

use coprocess_driver::Host;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::{intern, PyErr};

use crate::config::Config;
use crate::host_api::HostApi;

/// The coprocess schema as a FileDescriptorSet, compiled from proto/ once, by the proto crate.
const DESCRIPTOR_SET: &[u8] = coprocess_driver::proto::FILE_DESCRIPTOR_SET;
const RUNTIME_PY: &str = include_str!("../python/runtime.py");
const DECORATORS_PY: &str = include_str!("../python/decorators.py");
const REQUEST_PY: &str = include_str!("../python/request.py");
const GATEWAY_PY: &str = include_str!("../python/gateway.py");

/// The name `runtime.py` gets in `sys.modules`.
const MODULE_NAME: &std::ffi::CStr = c"_coprocess_python_runtime";

pub struct Runtime {
    object: Py<PyAny>,
}

/// The Python exception as one line, and with its traceback.
fn describe(py: Python<'_>, err: &PyErr) -> (String, String) {
    let line = err.to_string();
    let full = py
        .import("traceback")
        .and_then(|tb| tb.getattr("format_exception")?.call1((err.value(py),)))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|_| line.clone());
    (line, full)
}

fn runtime_module(py: Python<'_>) -> PyResult<&Py<PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE.get_or_try_init(py, || {
        let code = std::ffi::CString::new(RUNTIME_PY).expect("runtime.py has no NUL byte");
        Ok(PyModule::from_code(py, &code, c"<coprocess_python>/runtime.py", MODULE_NAME)?.unbind())
    })
}

impl Runtime {
    /// Creates the Python `Runtime`, which loads every bundle under the bundle root.
    pub fn start(host: Host, config: &Config) -> Result<Runtime, String> {
        let bundle_root = config.bundle_root_text()?;
        Python::attach(|py| {
            let start = || -> PyResult<Py<PyAny>> {
                let module = runtime_module(py)?.bind(py);
                let sources = PyDict::new(py);
                sources.set_item("decorators", DECORATORS_PY)?;
                sources.set_item("request", REQUEST_PY)?;
                sources.set_item("gateway", GATEWAY_PY)?;
                let runtime = module.getattr("Runtime")?.call1((
                    Py::new(py, HostApi::new(host))?,
                    PyBytes::new(py, DESCRIPTOR_SET),
                    sources,
                    bundle_root.as_deref(),
                    config.module_path(),
                ))?;
                Ok(runtime.unbind())
            };
            start().map(|object| Runtime { object }).map_err(|e| {
                let (line, full) = describe(py, &e);
                host.log(
                    coprocess_driver::Level::Error,
                    &format!("python driver failed to start:\n{full}"),
                );
                format!("python driver failed to start: {line}")
            })
        })
    }

    /// Runs a hook: the serialized Object out, or the error message.
    pub fn dispatch(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        crate::interpreter::keep_thread_state();
        Python::attach(|py| {
            let result = self
                .object
                .bind(py)
                .call_method1(intern!(py, "dispatch"), (PyBytes::new(py, input),));
            match result {
                Ok(value) => {
                    if let Ok(bytes) = value.cast::<PyBytes>() {
                        Ok(bytes.as_bytes().to_vec())
                    } else if let Ok(text) = value.cast::<PyString>() {
                        Err(text.to_string_lossy().into_owned())
                    } else {
                        Err("python driver: the runtime returned neither bytes nor an error".into())
                    }
                }
                Err(e) => Err(format!("python driver: {}", describe(py, &e).1)),
            }
        })
    }

    /// Runs a method that returns `None` or an error message, logging Python failures.
    fn call(
        &self,
        host: &Host,
        method: &str,
        args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>>,
    ) -> Result<(), String> {
        Python::attach(|py| {
            let result = args(py).and_then(|args| self.object.bind(py).call_method1(method, args));
            match result {
                Ok(value) if value.is_none() => Ok(()),
                Ok(value) => Err(value
                    .str()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()),
                Err(e) => {
                    let (line, full) = describe(py, &e);
                    host.log(
                        coprocess_driver::Level::Error,
                        &format!("python driver {method} failed:\n{full}"),
                    );
                    Err(line)
                }
            }
        })
    }

    pub fn event(&self, host: &Host, json: &str) {
        let _ = self.call(host, "event", |py| pyo3::types::PyTuple::new(py, [json]));
    }

    pub fn reload(&self, host: &Host) {
        let _ = self.call(host, "reload", |py| Ok(pyo3::types::PyTuple::empty(py)));
    }

    pub fn load_bundle(&self, host: &Host, path: &str) -> Result<(), String> {
        self.call(host, "load_bundle", |py| {
            pyo3::types::PyTuple::new(py, [path])
        })
    }

    pub fn shutdown(&self, host: &Host) {
        let _ = self.call(host, "shutdown", |py| Ok(pyo3::types::PyTuple::empty(py)));
    }
}
