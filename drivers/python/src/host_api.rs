//! `HostApi`: the bridge's host services as a Python object. The runtime hands it to the `gateway`
//! module, so `tyk.store_data(...)` and friends reach the bridge through the pointers it gave this
//! driver instance. The GIL is released while the bridge does the work (a store may be Redis).

use coprocess_driver::{Host, Level};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

#[pyclass(frozen, name = "HostApi", module = "coprocess_python")]
pub struct HostApi {
    host: Host,
}

impl HostApi {
    pub fn new(host: Host) -> Self {
        HostApi { host }
    }
}

/// Text from Python: `str`, or `bytes` taken as UTF-8 (invalid sequences replaced).
#[derive(FromPyObject)]
pub enum Text {
    Str(String),
    Bytes(Vec<u8>),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::Str(s) => s,
            Text::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
        }
    }
}

#[pymethods]
impl HostApi {
    #[pyo3(signature = (message, level = None))]
    fn log(&self, py: Python<'_>, message: Text, level: Option<&str>) {
        let (message, level) = (
            message.into_string(),
            Level::from_name(level.unwrap_or("info")),
        );
        py.detach(|| self.host.log(level, &message));
    }

    #[pyo3(signature = (key, value, ttl = 0))]
    fn store_data(&self, py: Python<'_>, key: Text, value: Text, ttl: i64) {
        let (key, value) = (key.into_string(), value.into_string());
        let ttl = i32::try_from(ttl.max(0)).unwrap_or(i32::MAX);
        py.detach(|| self.host.store(&key, &value, ttl));
    }

    fn get_data<'py>(&self, py: Python<'py>, key: Text) -> Bound<'py, PyBytes> {
        let key = key.into_string();
        let value = py.detach(|| self.host.get(&key)).unwrap_or_default();
        PyBytes::new(py, value.as_bytes())
    }

    #[pyo3(signature = (event_name, payload = None))]
    fn trigger_event(&self, py: Python<'_>, event_name: Text, payload: Option<Text>) {
        let name = event_name.into_string();
        let payload = payload.map(Text::into_string).unwrap_or_default();
        py.detach(|| self.host.trigger_event(&name, &payload));
    }
}
