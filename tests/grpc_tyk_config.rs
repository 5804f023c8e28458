//! The gRPC driver configured the way tyk.conf configures Tyk's gRPC plugins: `coprocess_options`
//! with `coprocess_grpc_server`, given to CoProcessInit, and a driver entry without its own server.
//! (Its own test process: CoProcessInit sets process-wide options.)

mod abi;
mod common;
mod grpc_support;

use abi::*;
use coprocess_bridge::ffi::host::CoProcessInit;
use grpc_support::*;

#[test]
fn coprocess_grpc_server_from_coprocess_options_reaches_the_driver() {
    skip_unless_python_grpc!();
    let server = PyServer::tcp().name("from-tyk-conf").start();
    let config = serde_json::json!({
        "coprocess_options": {
            "enable_coprocess": true,
            "coprocess_grpc_server": server.address,
        },
        "drivers": [{"name": "grpc", "path": grpc_driver_lib()}],
    });
    let text = c(&config.to_string());
    assert_eq!(CoProcessInit(text.as_ptr()), 0, "{}", last_error());
    // With one driver loaded, Dispatch routes to it, as Tyk routes to its one gRPC server.
    let out = dispatch(&pre_object()).unwrap();
    assert_eq!(
        set_header(&out, "X-Served-By").as_deref(),
        Some("from-tyk-conf")
    );
    assert_eq!(set_header(&out, "X-Rust-Driver").as_deref(), Some("rust"));
}
