//! The Rust half of the runtime: starts `python/runtime.py` in the interpreter and calls it. Every
//! method attaches to the interpreter (takes the GIL) for the Python work only: bytes are copied out
//! before the GIL is released, and decoding happens after.

use coprocess_driver::Host;
use coprocess_driver::ObjectPatch;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, PyErr};

use crate::config::Config;
use crate::host_api::HostApi;
use crate::layout::{Layout, Records};

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
    /// `object.dispatch`, looked up once.
    dispatch: Py<PyAny>,
}

/// What a hook changed.
pub enum Answer {
    Unchanged,
    /// Request edits, appended to the input as they are.
    Patch(ObjectPatch),
    /// A whole new Object.
    Encoded(Vec<u8>),
}

/// Reads what `Runtime.dispatch` in runtime.py returned: None, an error message, or
/// `(edits, fields, encoded)` (see `_Call.answer`).
fn answer(input: &[u8], value: &Bound<'_, PyAny>) -> Result<Answer, String> {
    if value.is_none() {
        return Ok(Answer::Unchanged);
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Err(text.to_string_lossy().into_owned());
    }
    let unexpected =
        |e: PyErr| format!("python driver: the runtime returned an unexpected answer: {e}");
    let (edits, fields, encoded): (Option<Bound<'_, PyList>>, u32, Option<Bound<'_, PyBytes>>) =
        value.extract().map_err(unexpected)?;
    let mut patch = ObjectPatch::new();
    if let Some(edits) = edits {
        for edit in edits.iter() {
            let (kind, key, value): (u8, Bound<'_, PyString>, Option<Bound<'_, PyString>>) =
                edit.extract().map_err(unexpected)?;
            let key = key.to_str().map_err(unexpected)?;
            let value = value
                .as_ref()
                .map(|v| v.to_str())
                .transpose()
                .map_err(unexpected)?;
            patch = match (kind, value) {
                (SET_HEADER, Some(value)) => patch.set_header(key, value),
                (DELETE_HEADER, None) => patch.delete_header(key),
                (ADD_PARAM, Some(value)) => patch.add_param(key, value),
                (DELETE_PARAM, None) => patch.delete_param(key),
                _ => return Err(format!("python driver: unknown request edit {kind}")),
            };
        }
    }
    match encoded {
        None if fields == 0 => Ok(Answer::Patch(patch)),
        Some(encoded) if fields != 0 => {
            crate::layout::splice(input, fields, encoded.as_bytes(), patch.as_bytes())
                .map(Answer::Encoded)
                .map_err(|e| e.to_string())
        }
        _ => Err("python driver: the runtime returned an inconsistent answer".into()),
    }
}

// Request edit kinds (python/request.py).
const SET_HEADER: u8 = 0;
const DELETE_HEADER: u8 = 1;
const ADD_PARAM: u8 = 2;
const DELETE_PARAM: u8 = 3;

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
            let start = || -> PyResult<Runtime> {
                let object = start()?;
                let dispatch = object.bind(py).getattr(intern!(py, "dispatch"))?.unbind();
                Ok(Runtime { object, dispatch })
            };
            start().map_err(|e| {
                let (line, full) = describe(py, &e);
                host.log(
                    coprocess_driver::Level::Error,
                    &format!("python driver failed to start:\n{full}"),
                );
                format!("python driver failed to start: {line}")
            })
        })
    }

    /// Runs a hook on the serialized Object `input`: what changed, or the error message.
    pub fn dispatch(&self, input: &[u8]) -> Result<Answer, String> {
        let layout = Layout::read(input).map_err(|e| e.to_string())?;
        crate::interpreter::keep_thread_state();
        Python::attach(|py| {
            let parts = PyTuple::new(
                py,
                layout.parts.iter().map(|records| -> Bound<'_, PyAny> {
                    match records {
                        Records::Absent => py.None().into_bound(py),
                        Records::Run(run) => (run.start, run.end)
                            .into_pyobject(py)
                            .map(Bound::into_any)
                            .unwrap_or_else(|_| py.None().into_bound(py)),
                        Records::Scattered(copy) => PyBytes::new(py, copy).into_any(),
                    }
                }),
            );
            let result = parts.and_then(|parts| {
                self.dispatch.bind(py).call1((
                    PyBytes::new(py, input),
                    PyString::new(py, layout.hook_name),
                    layout.hook_type,
                    layout.bundle_hash,
                    parts,
                ))
            });
            match result {
                Ok(value) => answer(input, &value),
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
