//! coprocess-bridge: the in-process, C-ABI counterpart of Tyk Gateway's gRPC plugin path.
//!
//! A host gateway hands a serialized `coprocess.Object` to [`ffi::host::Dispatch`]; the bridge checks it,
//! routes it to a driver (a shared library loaded at run time, see `include/coprocess_driver.h`) and hands
//! back the driver's Object. The C surface is in [`ffi`] and `api.h`; everything else is safe Rust.

pub mod api;
pub mod bundle;
pub mod chain;
pub mod config;
pub mod dispatch;
pub mod driver;
pub mod error;
pub mod events;
pub mod ffi;
pub mod handler_slot;
pub mod id_extractor;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod runtime;
pub mod store;

pub use coprocess_proto as proto;
