//! coprocess-host: what a Rust program needs to host coprocess-bridge as a gateway does.
//!
//! - [`Bridge`]: safe calls into the bridge's C API (`api.h`), opened with `dlopen` as a foreign host
//!   opens it ([`Bridge::open`]), or from function pointers a program that links the bridge hands in
//!   ([`Bridge::from_api`]). [`Answer`] is a Dispatch result read in place and freed on drop.
//! - [`encode_object`]: writes a hook's `coprocess.Object` straight from the host's request
//!   ([`HookRequest`], an `http::HeaderMap` and `Bytes`) into a reused buffer.
//! - [`RequestEdits`], [`Auth`], [`answer::response`]: read the bridge's answer by walking its bytes,
//!   and [`HookRequest::apply`] applies the edits (headers, params, url, method, body);
//!   [`override_answer`] turns return_overrides into the response Tyk would write.
//!
//! The encoder and the reader agree with prost (see `tests/prost_agreement.rs`).

pub mod answer;
mod bridge;
pub mod capi;
mod encode;
mod log_sink;
mod overrides;
mod request;
mod response;
mod wire;

pub use answer::{Auth, RequestEdits};
pub use bridge::{c_text, Answer, Bridge, BridgeError, LogSink};
pub use encode::{canonical, encode_object, ObjectContext, SentRequest};
pub use overrides::{override_answer, OverrideAnswer};
pub use request::{ApplyError, HookRequest};
pub use response::UpstreamResponse;
pub use wire::Malformed;

/// `CoProcessMetrics` formats (api.h).
pub const METRICS_PROMETHEUS: i32 = 0;
pub const METRICS_JSON: i32 = 1;
