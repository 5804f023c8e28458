//! coprocess-gateway: a small HTTP gateway that hosts coprocess-bridge the way a foreign gateway
//! would, through its C ABI (`dlopen` of the cdylib, with coprocess-host's wrappers), and runs
//! Tyk-style plugin hooks around a reverse proxy. See `main.rs` for the command line and README.md for the demo.

pub mod access_log;
pub mod echo;
pub mod gateway;
pub mod lane;
pub mod object_buffer;
