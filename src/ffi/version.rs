//! `CoProcessVersion`: which bridge and which driver ABI a host has loaded.

use std::ffi::{c_char, CString};
use std::sync::LazyLock;

use crate::driver::bindings::COPROCESS_DRIVER_ABI_VERSION;

/// The text `CoProcessVersion` returns.
pub fn version_text() -> String {
    format!(
        "coprocess-bridge {} (driver ABI {COPROCESS_DRIVER_ABI_VERSION})",
        env!("CARGO_PKG_VERSION")
    )
}

static VERSION: LazyLock<CString> =
    LazyLock::new(|| CString::new(version_text()).unwrap_or_default());

/// The bridge's version and the driver ABI version it loads, e.g.
/// "coprocess-bridge 0.1.0 (driver ABI 1)". The string is static: never free it. Thread-safe.
#[no_mangle]
pub extern "C" fn CoProcessVersion() -> *const c_char {
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_crate_and_the_driver_abi() {
        // SAFETY: CoProcessVersion returns a static NUL-terminated string.
        let text = unsafe { std::ffi::CStr::from_ptr(CoProcessVersion()) };
        assert_eq!(
            text.to_str().unwrap(),
            format!(
                "coprocess-bridge {} (driver ABI 1)",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
