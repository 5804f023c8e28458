//! Drivers: the ABI bindings (generated from `include/coprocess_driver.h`), the loader, one instance, and
//! the registry of named drivers with hot reload.

pub mod bindings;
pub mod instance;
pub mod loader;
pub mod registry;

pub use instance::DriverInstance;
pub use loader::DriverLibrary;
pub use registry::{Registry, ReloadOutcome};
