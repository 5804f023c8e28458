//! The driver's bundles: loaded from `bundle_root` and by `CoProcessDriverLoadBundle`, routed to by
//! `spec["bundle_hash"]`, reloaded on `Reload()`. Each version is checked once, in a scratch Lua
//! state (it compiles, its top-level code runs), before any thread's state loads it; a bundle whose
//! new version fails keeps serving its previous one.
//!
//! A directory without `manifest.json` whose sub-directories are bundles is a group: Tyk's install
//! folder for an API that names several bundles (`custom_middleware_bundle: "a.zip,b.zip"`), which
//! the gateway hands over as one bundle keyed by the list's hash. Each member is a bundle of its own
//! (its own environment), keyed `group/member`; a call for the group goes to the first member that
//! defines the hook.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use coprocess_driver::{Call, Host, Level};

use crate::bundle::{self, BundleSource};
use crate::config::{Budget, Config};
use crate::state::LuaState;

/// One bundle directory: its current version, or why it cannot be used.
pub struct Bundle {
    key: String,
    loaded: Result<Loaded, String>,
}

struct Loaded {
    source: BundleSource,
    /// The functions its files define (hooks and event handlers).
    functions: BTreeSet<String>,
}

impl Bundle {
    pub fn source(&self) -> Result<&BundleSource, String> {
        match &self.loaded {
            Ok(l) => Ok(&l.source),
            Err(e) => Err(format!("lua bundle '{}' failed to load: {e}", self.key)),
        }
    }

    pub fn defines(&self, function: &str) -> bool {
        self.loaded
            .as_ref()
            .is_ok_and(|l| l.functions.contains(function))
    }
}

/// One consistent set of bundles; a reload replaces it whole.
#[derive(Default)]
pub struct Bundles {
    map: BTreeMap<String, Arc<Bundle>>,
    /// Groups of bundles: the group's key and its members' keys, in directory order.
    groups: BTreeMap<String, Vec<String>>,
    /// Directories loaded by `CoProcessDriverLoadBundle`, by key: kept across reloads of the root.
    extra: BTreeMap<String, PathBuf>,
}

/// Whether `path` is a group of bundles rather than a bundle.
fn is_group(path: &Path) -> bool {
    !path.join("manifest.json").exists()
        && bundle::scan(path)
            .is_ok_and(|dirs| dirs.iter().any(|(_, d)| d.join("manifest.json").is_file()))
}

impl Bundles {
    /// The bundle a call goes to: `spec["bundle_hash"]`; without it, the only bundle, or the only one
    /// that defines the hook.
    pub fn route(&self, call: &Call) -> Result<&Bundle, String> {
        if let Some(key) = call.spec("bundle_hash").filter(|k| !k.is_empty()) {
            if let Some(members) = self.groups.get(key) {
                return self.member(key, members, call.hook_name());
            }
            return self.map.get(key).map(|b| &**b).ok_or_else(|| {
                format!(
                    "no lua bundle '{key}' is loaded (loaded: {})",
                    self.names().unwrap_or_else(|| "none".into())
                )
            });
        }
        if self.map.len() == 1 {
            return Ok(self.map.values().next().expect("one bundle"));
        }
        let hook = call.hook_name();
        let having: Vec<&Bundle> = self.all().filter(|b| b.defines(hook)).collect();
        match having.as_slice() {
            [one] => Ok(one),
            [] => Err(format!(
                "no loaded lua bundle defines hook '{hook}' and spec has no bundle_hash"
            )),
            many => {
                Err(format!(
                "hook '{hook}' is defined by lua bundles {}; spec[\"bundle_hash\"] must say which",
                many.iter().map(|b| b.key.as_str()).collect::<Vec<_>>().join(", ")
            ))
            }
        }
    }

    /// The member of group `key` that serves `hook`: the first that defines it, else one that failed
    /// to load (its error says why).
    fn member(&self, key: &str, members: &[String], hook: &str) -> Result<&Bundle, String> {
        let bundles = || members.iter().filter_map(|m| self.map.get(m)).map(|b| &**b);
        bundles()
            .find(|b| b.defines(hook))
            .or_else(|| bundles().find(|b| b.loaded.is_err()))
            .ok_or_else(|| format!("no lua bundle of group '{key}' defines hook '{hook}'"))
    }

    pub fn all(&self) -> impl Iterator<Item = &Bundle> {
        self.map.values().map(|b| &**b)
    }

    fn names(&self) -> Option<String> {
        (!self.map.is_empty()).then(|| self.map.keys().cloned().collect::<Vec<_>>().join(", "))
    }
}

pub struct Registry {
    host: Host,
    root: Option<PathBuf>,
    budget: Budget,
    current: RwLock<Arc<Bundles>>,
    /// Serialises reloads and bundle loads (dispatching never takes it).
    changing: Mutex<()>,
}

impl Registry {
    pub fn new(host: Host, config: &Config) -> Result<Registry, String> {
        let registry = Registry {
            host,
            root: config.bundle_root.clone(),
            budget: config.budget(),
            current: RwLock::default(),
            changing: Mutex::new(()),
        };
        if let Some(root) = &registry.root {
            let dirs = bundle::scan(root).map_err(|e| format!("lua driver: {e}"))?;
            let scratch = registry.scratch()?;
            let mut bundles = Bundles::default();
            for (key, path) in dirs {
                registry.place(&scratch, &key, &path, &Bundles::default(), &mut bundles);
            }
            registry.publish(bundles);
        }
        Ok(registry)
    }

    /// The bundles now (a snapshot: a reload does not change it under a running call).
    pub fn current(&self) -> Arc<Bundles> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, bundles: Bundles) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(bundles);
    }

    fn scratch(&self) -> Result<LuaState, String> {
        LuaState::new(self.host, self.budget)
    }

    /// Reads and checks one version of a bundle, logging why it fails.
    fn load(&self, scratch: &LuaState, key: &str, path: &Path) -> Bundle {
        let loaded = BundleSource::read(key, path).and_then(|source| {
            if !source.driver.is_empty() && source.driver != "lua" {
                self.host.log(
                    Level::Warning,
                    &format!(
                        "lua bundle '{key}': manifest driver is '{}', loading it as Lua anyway",
                        source.driver
                    ),
                );
            }
            let (_, functions) = scratch.load(&source)?;
            let functions: BTreeSet<String> = functions.into_iter().collect();
            for hook in &source.manifest_hooks {
                if !functions.contains(hook) {
                    self.host.log(
                        Level::Warning,
                        &format!("lua bundle '{key}': the manifest names hook '{hook}', which the bundle does not define"),
                    );
                }
            }
            Ok(Loaded { source, functions })
        });
        if let Err(e) = &loaded {
            self.host.log(
                Level::Error,
                &format!(
                    "lua bundle '{key}' ({}) failed to load: {e}",
                    path.display()
                ),
            );
        }
        Bundle {
            key: key.to_owned(),
            loaded,
        }
    }

    /// The bundle at `path` now: `old` when its files did not change, the new version when it loads,
    /// and `old` again when the new version fails but the old one works.
    fn refresh(
        &self,
        scratch: &LuaState,
        key: &str,
        path: &Path,
        old: Option<&Arc<Bundle>>,
    ) -> Arc<Bundle> {
        if let Some(old) = old {
            if old
                .loaded
                .as_ref()
                .is_ok_and(|l| l.source.unchanged_on_disk())
            {
                return old.clone();
            }
        }
        let new = self.load(scratch, key, path);
        match old {
            Some(old) if new.loaded.is_err() && old.loaded.is_ok() => {
                self.host.log(
                    Level::Error,
                    &format!("lua bundle '{key}' changed but its new version fails; the previous version keeps serving"),
                );
                old.clone()
            }
            Some(_) => {
                self.host
                    .log(Level::Info, &format!("lua bundle '{key}' reloaded"));
                Arc::new(new)
            }
            None => Arc::new(new),
        }
    }

    /// Puts the directory `path` into `into` under `key` (refreshed against `old`): a bundle, or a
    /// group's members and the group.
    fn place(&self, scratch: &LuaState, key: &str, path: &Path, old: &Bundles, into: &mut Bundles) {
        if !is_group(path) {
            let b = self.refresh(scratch, key, path, old.map.get(key));
            into.map.insert(key.to_owned(), b);
            return;
        }
        let mut members = Vec::new();
        for (name, dir) in bundle::scan(path).unwrap_or_default() {
            let member = format!("{key}/{name}");
            let b = self.refresh(scratch, &member, &dir, old.map.get(&member));
            into.map.insert(member.clone(), b);
            members.push(member);
        }
        into.groups.insert(key.to_owned(), members);
    }

    /// `Reload()`: re-reads the root (new, changed and removed bundles) and the bundles loaded by path.
    pub fn reload(&self) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let scratch = match self.scratch() {
            Ok(s) => s,
            Err(e) => {
                self.host.log(Level::Error, &e);
                return;
            }
        };
        let old = self.current();
        let mut new = Bundles::default();
        if let Some(root) = &self.root {
            match bundle::scan(root) {
                Ok(dirs) => {
                    for (key, path) in dirs {
                        self.place(&scratch, &key, &path, &old, &mut new);
                    }
                }
                Err(e) => {
                    self.host.log(Level::Error, &format!("lua driver: {e}"));
                    new.map = old.map.clone();
                    new.groups = old.groups.clone();
                }
            }
        }
        for (key, path) in &old.extra {
            self.place(&scratch, key, path, &old, &mut new);
        }
        new.extra = old.extra.clone();
        self.publish(new);
    }

    /// `CoProcessDriverLoadBundle`: loads (or replaces) the bundle, or group of bundles, at `path`,
    /// keyed by its directory name. Any bundle that fails fails the load and changes nothing.
    pub fn load_bundle(&self, path: &str) -> Result<(), String> {
        let path = Path::new(path);
        if !path.is_dir() {
            return Err(format!("{} is not a directory", path.display()));
        }
        let key = bundle::key_of(path)?;
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let scratch = self.scratch()?;
        let mut loaded = Bundles::default();
        self.place(&scratch, &key, path, &Bundles::default(), &mut loaded);
        if let Some(b) = loaded.map.values().find(|b| b.loaded.is_err()) {
            return Err(b.source().err().unwrap_or_default());
        }
        if loaded.map.is_empty() {
            return Err(format!("{} holds no bundle", path.display()));
        }
        let old = self.current();
        let mut new = Bundles {
            map: old.map.clone(),
            groups: old.groups.clone(),
            extra: old.extra.clone(),
        };
        if let Some(members) = new.groups.remove(&key) {
            for m in members {
                new.map.remove(&m);
            }
        }
        new.map.remove(&key);
        new.map.extend(loaded.map);
        new.groups.extend(loaded.groups);
        new.extra.insert(key, path.to_path_buf());
        self.publish(new);
        Ok(())
    }

    pub fn clear(&self) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        self.publish(Bundles::default());
    }
}
