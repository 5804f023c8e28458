//! Opening a driver library: canonical path, ABI version first, then every required symbol, with errors
//! that name the file and the symbol.
//!
//! Libraries are opened with `RTLD_NOW | RTLD_LOCAL`: every undefined symbol is resolved at `dlopen`, so
//! a library that calls a function no loaded object defines is refused at load time (with the linker's
//! message naming the symbol) instead of ending the host with "symbol lookup error" on its first call;
//! and a driver's symbols never satisfy another library's undefined ones.

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::bindings::{CoProcessHostApi, DriverSymbols, COPROCESS_DRIVER_ABI_VERSION};
use crate::error::{Error, Result, COPROCESS_ERR_LOAD_FAILED};
use crate::message::CoProcessMessage;

pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
pub type InitFn =
    unsafe extern "C" fn(*const CoProcessHostApi, *const c_char, *mut *mut c_void) -> c_int;
pub type DispatchFn =
    unsafe extern "C" fn(*mut c_void, *const CoProcessMessage, *mut CoProcessMessage) -> c_int;
pub type DispatchEventFn = unsafe extern "C" fn(*mut c_void, *const c_char);
pub type ReloadFn = unsafe extern "C" fn(*mut c_void);
pub type LoadBundleFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
pub type ShutdownFn = unsafe extern "C" fn(*mut c_void);

/// The ABI versions this bridge can drive.
pub const SUPPORTED_ABI_VERSION: u32 = COPROCESS_DRIVER_ABI_VERSION;

/// An opened, checked driver library. While a value of this type lives, the library stays mapped: hold an
/// `Arc` to it across every call into its code.
pub struct DriverLibrary {
    /// The file the user named, canonicalised.
    pub source: PathBuf,
    pub abi_version: u32,
    pub init: InitFn,
    pub dispatch: DispatchFn,
    /// `CoProcessDriverDispatchPatch`, called instead of `dispatch` when the driver exports it.
    pub dispatch_patch: Option<DispatchFn>,
    pub dispatch_event: DispatchEventFn,
    pub reload: ReloadFn,
    pub load_bundle: Option<LoadBundleFn>,
    pub shutdown: Option<ShutdownFn>,
    /// Owns the `libloading::Library`; dropped after every function pointer above is gone.
    _symbols: DriverSymbols,
    /// The memory file a reload copy was opened from (`private_copy`), closed after `dlclose`: while
    /// the library is loaded, its name `/proc/self/fd/N` cannot be given to another copy.
    copy: Option<OwnedFd>,
}

impl std::fmt::Debug for DriverLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverLibrary")
            .field("source", &self.source)
            .field("abi_version", &self.abi_version)
            .finish_non_exhaustive()
    }
}

fn load_error(message: String) -> Error {
    Error::new(COPROCESS_ERR_LOAD_FAILED, message)
}

/// Canonicalises a user-given driver path. A bare name would make `dlopen` search system directories, so
/// relative paths are resolved against the working directory first.
pub fn canonical_driver_path(path: &str) -> Result<PathBuf> {
    if path.is_empty() {
        return Err(load_error("driver path is empty".into()));
    }
    std::fs::canonicalize(path)
        .map_err(|e| load_error(format!("cannot load driver library {path}: {e}")))
}

/// The dynamic linker's reason without its leading "<file>: ", which may name a private copy rather
/// than the user's file.
fn dlopen_reason<'a>(message: &'a str, file: &Path) -> &'a str {
    let prefix = format!("{}: ", file.display());
    message.strip_prefix(prefix.as_str()).unwrap_or(message)
}

impl DriverLibrary {
    /// Opens `file` (already canonical) and checks it. `source` is the path to name in messages: the
    /// user's file, even when `file` is a private copy made for a reload.
    pub fn open(file: &Path, source: &Path) -> Result<DriverLibrary> {
        let shown = source.display();
        // SAFETY: loading a library runs its initialisers; loading driver code is this function's purpose
        // and the user asked for this file.
        let library = unsafe {
            libloading::os::unix::Library::open(Some(file), libc::RTLD_NOW | libc::RTLD_LOCAL)
        }
        .map_err(|e| {
            load_error(format!(
                "cannot load driver library {shown}: {}",
                dlopen_reason(&e.to_string(), file)
            ))
        })?;
        let library = libloading::Library::from(library);
        // SAFETY: resolves symbols only; each one is type-checked against the bindgen declarations.
        let symbols = unsafe { DriverSymbols::from_library(library) }
            .map_err(|e| load_error(format!("cannot load driver library {shown}: {e}")))?;

        let version_fn: AbiVersionFn =
            *symbols.CoProcessDriverAbiVersion.as_ref().map_err(|_| {
                load_error(format!(
                "{shown} is not a coprocess driver: it does not export CoProcessDriverAbiVersion"
            ))
            })?;
        // SAFETY: the symbol has the declared signature per the driver ABI; it takes no arguments.
        let abi_version = unsafe { version_fn() };
        if abi_version != SUPPORTED_ABI_VERSION {
            return Err(load_error(format!(
                "driver library {shown} has ABI version {abi_version}; this bridge supports version \
                 {SUPPORTED_ABI_VERSION}"
            )));
        }

        macro_rules! required {
            ($sym:ident) => {
                *symbols.$sym.as_ref().map_err(|_| {
                    load_error(format!(
                        "driver library {shown} does not export required symbol {}",
                        stringify!($sym)
                    ))
                })?
            };
        }
        let init: InitFn = required!(CoProcessDriverInit);
        let dispatch: DispatchFn = required!(CoProcessDriverDispatch);
        let dispatch_event: DispatchEventFn = required!(CoProcessDriverDispatchEvent);
        let reload: ReloadFn = required!(CoProcessDriverReload);
        let dispatch_patch: Option<DispatchFn> =
            symbols.CoProcessDriverDispatchPatch.as_ref().ok().copied();
        let load_bundle: Option<LoadBundleFn> =
            symbols.CoProcessDriverLoadBundle.as_ref().ok().copied();
        let shutdown: Option<ShutdownFn> = symbols.CoProcessDriverShutdown.as_ref().ok().copied();

        Ok(DriverLibrary {
            source: source.to_path_buf(),
            abi_version,
            init,
            dispatch,
            dispatch_patch,
            dispatch_event,
            reload,
            load_bundle,
            shutdown,
            _symbols: symbols,
            copy: None,
        })
    }

    /// Keeps `fd` (the file this library was opened from) open until the library is unloaded.
    pub fn keeping_open(mut self, fd: OwnedFd) -> DriverLibrary {
        self.copy = Some(fd);
        self
    }

    /// The exported symbols, for diagnostics (`coprocess check`).
    pub fn symbol_names(&self) -> Vec<&'static str> {
        let mut names = vec![
            "CoProcessDriverAbiVersion",
            "CoProcessDriverInit",
            "CoProcessDriverDispatch",
            "CoProcessDriverDispatchEvent",
            "CoProcessDriverReload",
        ];
        if self.dispatch_patch.is_some() {
            names.push("CoProcessDriverDispatchPatch");
        }
        if self.load_bundle.is_some() {
            names.push("CoProcessDriverLoadBundle");
        }
        if self.shutdown.is_some() {
            names.push("CoProcessDriverShutdown");
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::dlopen_reason;
    use std::path::Path;

    #[test]
    fn the_linker_s_reason_loses_the_copy_s_path() {
        let copy = Path::new("/proc/self/fd/7");
        assert_eq!(
            dlopen_reason("/proc/self/fd/7: undefined symbol: nowhere", copy),
            "undefined symbol: nowhere"
        );
        assert_eq!(dlopen_reason("other text", copy), "other text");
    }
}
