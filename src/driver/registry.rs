//! Drivers by name. `Reload` swaps in a re-opened library while calls in flight finish on the old one.
//!
//! Dispatches find their driver in [`Routes`], an immutable snapshot of name → current instance that
//! every change republishes through an `ArcSwap`: a lookup takes no lock and writes no shared counter
//! (an `Arc` clone or a read lock would write to a cache line every dispatching thread shares).

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwapOption;

use super::bindings::CoProcessHostApi;
use super::instance::DriverInstance;
use super::loader::{canonical_driver_path, DriverLibrary};
use super::private_copy::open_private_copy;
use crate::error::{
    Error, Result, COPROCESS_ERR_ALREADY_EXISTS, COPROCESS_ERR_INVALID_CONFIG,
    COPROCESS_ERR_LOAD_FAILED, COPROCESS_ERR_NO_DRIVER, COPROCESS_ERR_UNKNOWN_DRIVER,
};

/// What identifies the content of a driver file cheaply: replacing the file (by rename, as users are
/// told to) changes the inode; rewriting it changes size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// One named driver: where it came from and the instance calls go to now.
struct DriverSlot {
    name: Arc<str>,
    /// The path the user gave, made absolute (not resolved through symlinks, so replacing a symlink's
    /// target is seen too).
    path: PathBuf,
    config: CString,
    current: RwLock<Arc<DriverInstance>>,
    identity: Mutex<FileIdentity>,
}

impl DriverSlot {
    fn current(&self) -> Arc<DriverInstance> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The outcome of `Reload` for one driver.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file was unchanged; the driver's reload hook ran.
    HookCalled(String),
    /// The file changed; a fresh copy was opened and initialised.
    Reopened(String),
    /// The file changed but the new version could not be loaded; the old one keeps serving.
    Failed(String, String),
    /// `Reload()` was called from a driver's reload hook while this thread was reloading: ignored.
    Nested,
}

/// What dispatches read: every loaded driver's current instance, sorted by name.
struct Routes(Vec<(Arc<str>, Arc<DriverInstance>)>);

/// The routes while no driver is loaded: no snapshot is allocated then, so a bridge that was shut down
/// holds no allocation (valgrind would count an `ArcSwap`'s interior pointer as possibly lost).
static NO_ROUTES: Routes = Routes(Vec::new());

impl Routes {
    fn find(&self, name: &str) -> Option<usize> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(name)).ok()
    }
}

/// A driver found by [`Registry::lookup`], borrowed from the routes snapshot current at the lookup
/// (`arc_swap::Guard`: no reference count is touched). Meant for one call: while it lives, the
/// instances of that snapshot stay alive.
pub struct DriverRef {
    routes: arc_swap::Guard<Option<Arc<Routes>>>,
    index: usize,
}

fn routes_of(snapshot: &Option<Arc<Routes>>) -> &Routes {
    snapshot.as_deref().unwrap_or(&NO_ROUTES)
}

impl std::ops::Deref for DriverRef {
    type Target = DriverInstance;

    fn deref(&self) -> &DriverInstance {
        &routes_of(&self.routes).0[self.index].1
    }
}

impl DriverRef {
    /// An owned reference, for callers that keep the driver beyond one call.
    pub fn to_arc(&self) -> Arc<DriverInstance> {
        routes_of(&self.routes).0[self.index].1.clone()
    }
}

pub struct Registry {
    host: &'static CoProcessHostApi,
    drivers: RwLock<HashMap<Arc<str>, Arc<DriverSlot>>>,
    /// Derived from `drivers` and each slot's `current`; republished by `publish` after every change.
    /// `None` while no driver is loaded (see [`NO_ROUTES`]).
    routes: ArcSwapOption<Routes>,
    /// Libraries replaced by a reload whose old instance may still have calls in flight. Each reload
    /// unloads those no instance uses any more (`reap_retired`), so they do not pile up. A dispatch's
    /// [`DriverRef`] keeps its snapshot's instances (and so their libraries) alive: a library whose
    /// instance an old snapshot still holds has a second reference and is not reaped.
    retired: Mutex<Vec<Arc<DriverLibrary>>>,
}

thread_local! {
    /// Set while this thread runs `Registry::reload`: a driver's reload hook that calls `Reload()` again
    /// must not wait for the lock its own caller holds (nor recurse without end).
    static RELOADING: Cell<bool> = const { Cell::new(false) };
}

impl Registry {
    pub fn new(host: &'static CoProcessHostApi) -> Registry {
        Registry {
            host,
            drivers: RwLock::new(HashMap::new()),
            routes: ArcSwapOption::empty(),
            retired: Mutex::new(Vec::new()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<DriverSlot>>> {
        self.drivers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<DriverSlot>>> {
        self.drivers.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the dispatch snapshot from `drivers`. Called with the write lock held (or right after a
    /// slot's instance changed), so snapshots are published in the order of the changes.
    fn publish(&self, drivers: &HashMap<Arc<str>, Arc<DriverSlot>>) {
        let mut routes: Vec<_> = drivers
            .iter()
            .map(|(name, slot)| (name.clone(), slot.current()))
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        self.routes
            .store((!routes.is_empty()).then(|| Arc::new(Routes(routes))));
    }

    /// Loads `path` under `name` with `config_json` (None = "{}").
    pub fn load(&self, name: &str, path: &str, config_json: Option<&str>) -> Result<()> {
        if name.is_empty() {
            return Err(Error::new(
                COPROCESS_ERR_LOAD_FAILED,
                "driver name is empty",
            ));
        }
        if self.read().contains_key(name) {
            return Err(already_loaded(name));
        }
        let config_text = config_json.unwrap_or("{}");
        let config = CString::new(config_text).map_err(|_| {
            Error::new(
                COPROCESS_ERR_INVALID_CONFIG,
                format!("config for driver '{name}' contains a NUL byte"),
            )
        })?;
        let canonical = canonical_driver_path(path)?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| canonical.clone());
        let identity = FileIdentity::of(&canonical).map_err(|e| {
            Error::new(
                COPROCESS_ERR_LOAD_FAILED,
                format!("cannot load driver library {path}: {e}"),
            )
        })?;
        let library = Arc::new(DriverLibrary::open(&canonical, &canonical)?);
        let name: Arc<str> = Arc::from(name);
        let instance = DriverInstance::start(name.clone(), library, self.host, &config)?;
        let slot = Arc::new(DriverSlot {
            name: name.clone(),
            path: absolute,
            config,
            current: RwLock::new(Arc::new(instance)),
            identity: Mutex::new(identity),
        });
        let mut drivers = self.write();
        if drivers.contains_key(&name) {
            // Lost a race with another thread loading the same name; ours is dropped (shut down).
            return Err(already_loaded(&name));
        }
        drivers.insert(name, slot);
        self.publish(&drivers);
        Ok(())
    }

    /// The driver a dispatch goes to: the one named `name`, or with `None` the only one loaded.
    /// Takes no lock and writes no shared counter.
    pub fn lookup(&self, name: Option<&str>) -> Result<DriverRef> {
        let routes = self.routes.load();
        let found = routes_of(&routes);
        let index = match name {
            Some(name) => found.find(name),
            None if found.0.len() == 1 => Some(0),
            None => None,
        };
        match index {
            Some(index) => Ok(DriverRef { routes, index }),
            None => {
                drop(routes);
                Err(self.not_found(name))
            }
        }
    }

    #[cold]
    fn not_found(&self, name: Option<&str>) -> Error {
        match name {
            Some(name) => Error::new(
                COPROCESS_ERR_UNKNOWN_DRIVER,
                format!(
                    "no driver named '{name}' is loaded (loaded: {})",
                    self.names_for_message()
                ),
            ),
            None if routes_of(&self.routes.load()).0.is_empty() => Error::new(
                COPROCESS_ERR_NO_DRIVER,
                "no driver is loaded: call CoProcessLoadDriver first",
            ),
            None => Error::new(
                COPROCESS_ERR_NO_DRIVER,
                format!(
                    "several drivers are loaded ({}): name one with DispatchWithDriver",
                    self.names_for_message()
                ),
            ),
        }
    }

    /// The driver loaded under `name`.
    pub fn get(&self, name: &str) -> Result<Arc<DriverInstance>> {
        self.lookup(Some(name)).map(|d| d.to_arc())
    }

    /// The single loaded driver, for hosts that load just one and do not name it.
    pub fn only(&self) -> Result<Arc<DriverInstance>> {
        self.lookup(None).map(|d| d.to_arc())
    }

    /// Every loaded driver's current instance.
    pub fn all(&self) -> Vec<Arc<DriverInstance>> {
        let slots: Vec<Arc<DriverSlot>> = self.read().values().cloned().collect();
        slots.iter().map(|s| s.current()).collect()
    }

    /// Names of the loaded drivers, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    fn names_for_message(&self) -> String {
        let names = self.names();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Hot reload: re-opens drivers whose file changed on disk and calls every other driver's reload
    /// hook. Dispatches keep running throughout; those already in flight finish on the old instance.
    /// A `Reload()` made from a driver's reload hook (on the thread running this reload) returns
    /// `[ReloadOutcome::Nested]` at once.
    pub fn reload(&self) -> Vec<ReloadOutcome> {
        if RELOADING.replace(true) {
            return vec![ReloadOutcome::Nested];
        }
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                RELOADING.set(false);
            }
        }
        let _done = Done;
        let slots: Vec<Arc<DriverSlot>> = self.read().values().cloned().collect();
        let outcomes = slots.iter().map(|slot| self.reload_slot(slot)).collect();
        self.reap_retired();
        outcomes
    }

    fn reload_slot(&self, slot: &DriverSlot) -> ReloadOutcome {
        let name = slot.name.to_string();
        let mut identity = slot.identity.lock().unwrap_or_else(|p| p.into_inner());
        let now = FileIdentity::of(&slot.path);
        if now.as_ref().ok() == Some(&*identity) {
            slot.current().reload();
            return ReloadOutcome::HookCalled(name);
        }
        let fresh = now
            .map_err(|e| format!("cannot read {}: {e}", slot.path.display()))
            .and_then(|id| self.reopen(slot).map(|inst| (id, inst)));
        match fresh {
            Ok((id, instance)) => {
                *identity = id;
                let old = std::mem::replace(
                    &mut *slot.current.write().unwrap_or_else(|p| p.into_inner()),
                    Arc::new(instance),
                );
                self.publish(&self.write());
                self.retired
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(old.library().clone());
                ReloadOutcome::Reopened(name)
            }
            Err(why) => ReloadOutcome::Failed(name, why),
        }
    }

    /// Opens a private copy of the slot's file (see `private_copy`) and initialises it.
    fn reopen(&self, slot: &DriverSlot) -> std::result::Result<DriverInstance, String> {
        let library = Arc::new(open_private_copy(&slot.path)?);
        DriverInstance::start(slot.name.clone(), library, self.host, &slot.config)
            .map_err(|e| e.message)
    }

    /// Unloads retired libraries no instance uses any more: their last call has returned and their
    /// instance was shut down. (glibc keeps a library mapped by itself while thread-local destructors
    /// it registered are pending, so a thread still to run one is not a reason to wait.)
    fn reap_retired(&self) {
        let idle: Vec<Arc<DriverLibrary>> = {
            let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            let (idle, busy) = std::mem::take(&mut *retired)
                .into_iter()
                .partition(|lib| Arc::strong_count(lib) == 1);
            *retired = busy;
            idle
        };
        // dlclose outside the lock: it runs the library's finalisers.
        drop(idle);
    }

    /// Libraries replaced by a reload and still mapped because a call on them was in flight at the last
    /// reload.
    pub fn retired_count(&self) -> usize {
        self.retired.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Removes every driver. Each instance is shut down when its last in-flight call returns.
    pub fn shutdown(&self) {
        // Take the whole map (not `drain`, which keeps its allocation alive after shutdown).
        let slots = {
            let mut drivers = self.write();
            let slots = std::mem::take(&mut *drivers);
            self.publish(&drivers);
            slots
        };
        drop(slots);
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

fn already_loaded(name: &str) -> Error {
    Error::new(
        COPROCESS_ERR_ALREADY_EXISTS,
        format!("a driver named '{name}' is already loaded"),
    )
}
