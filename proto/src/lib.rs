//! Tyk's `coprocess` wire types, generated from the `.proto` files beside this crate, plus
//! [`wire`], a zero-allocation validator/reader for serialized `Object`s.
//!
//! This crate is the single home of the schema: the bridge and the driver SDK both use it, so no
//! second copy of the types exists (and a driver built on the SDK does not link the bridge's C exports).

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/coprocess.rs"));
}

pub use generated::*;
pub use prost::{self, DecodeError, Message};

pub mod wire;

#[cfg(feature = "fixtures")]
pub mod fixtures;
