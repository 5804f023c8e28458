//! API definitions: which hooks an API runs, on which driver, with which ID extractor (DESIGN §6–7).
//!
//! Tyk keeps this in its API definitions; a host hands the same JSON to `CoProcessLoadApi` (Tyk classic
//! `custom_middleware`, or Tyk OAS `x-tyk-api-gateway`) and `Dispatch` then routes by `spec["APIID"]` and
//! runs the API's hook chains (see `crate::chain`). Parsing lives in [`parse`]; this module holds the
//! normalised form and the registry of loaded APIs.

pub(crate) mod parse;

pub use parse::parse_definition;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use serde::Serialize;

use crate::error::{Error, Result, COPROCESS_ERR_UNKNOWN_API};
use crate::id_extractor::IdExtractor;

/// One plugin function of an API (`{name, path, require_session, raw_body_only, disabled}` in Tyk).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HookDef {
    pub name: String,
    pub path: String,
    pub require_session: bool,
    pub raw_body_only: bool,
    pub disabled: bool,
}

/// An API definition, reduced to what the bridge and a host need.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApiDefinition {
    pub api_id: String,
    pub org_id: String,
    pub name: String,
    /// The driver (a name given to CoProcessLoadDriver); `None` routes to the only loaded driver.
    pub driver: Option<String>,
    pub pre: Vec<HookDef>,
    pub post_key_auth: Vec<HookDef>,
    pub post: Vec<HookDef>,
    pub response: Vec<HookDef>,
    /// The custom authentication plugin, present only when custom plugin auth is enabled.
    pub auth_check: Option<HookDef>,
    /// The ID extractor of the custom authentication plugin (ignored without `auth_check`).
    pub id_extractor: Option<IdExtractor>,
    /// `config_data` as JSON text, absent when the definition has none or disables it.
    pub config_data: Option<String>,
    /// Where the API listens and proxies to (for hosts such as the demo gateway; the bridge ignores them).
    pub listen_path: String,
    pub strip_listen_path: bool,
    pub target_url: String,
    /// md5 hex of the API's bundle name when it has one: sent as `spec["bundle_hash"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_hash: Option<String>,
    /// The bundle name itself (`custom_middleware_bundle`), for re-verification on Reload.
    #[serde(skip)]
    pub bundle_name: Option<String>,
}

impl ApiDefinition {
    /// The hooks run for a chain of `hook_type` (Tyk's `HookType` numbers), disabled ones left out.
    /// CustomKeyCheck is never a chain: it yields the auth check alone.
    pub fn hooks(&self, hook_type: i32) -> impl Iterator<Item = &HookDef> {
        use coprocess_proto::HookType;
        let list: &[HookDef] = match HookType::try_from(hook_type) {
            Ok(HookType::Pre) => &self.pre,
            Ok(HookType::PostKeyAuth) => &self.post_key_auth,
            Ok(HookType::Post) => &self.post,
            Ok(HookType::Response) => &self.response,
            Ok(HookType::CustomKeyCheck) => self.auth_check.as_slice(),
            _ => &[],
        };
        list.iter().filter(|h| !h.disabled)
    }
}

/// The APIs loaded with `CoProcessLoadApi`, sorted by API id.
struct Apis(Vec<Arc<ApiDefinition>>);

/// The APIs while none is loaded: no snapshot is allocated then, so a bridge that was shut down holds
/// no allocation (valgrind counts an `ArcSwap`'s interior pointer as possibly lost).
static NO_APIS: Apis = Apis(Vec::new());

impl Apis {
    fn find(&self, api_id: &str) -> std::result::Result<usize, usize> {
        self.0.binary_search_by(|a| a.api_id.as_str().cmp(api_id))
    }
}

fn apis_of(snapshot: &Option<Arc<Apis>>) -> &Apis {
    snapshot.as_deref().unwrap_or(&NO_APIS)
}

/// An API found by [`ApiRegistry::get`], borrowed from the snapshot current at the lookup
/// (`arc_swap::Guard`: no lock taken, no reference count touched). Meant for one call.
pub struct ApiRef {
    apis: arc_swap::Guard<Option<Arc<Apis>>>,
    index: usize,
}

impl std::ops::Deref for ApiRef {
    type Target = ApiDefinition;

    fn deref(&self) -> &ApiDefinition {
        &apis_of(&self.apis).0[self.index]
    }
}

/// The APIs loaded with `CoProcessLoadApi`, by API id. Dispatches read a published snapshot
/// (arc-swap); changes are serialised by `writer` and publish a new one.
#[derive(Default)]
pub struct ApiRegistry {
    /// `None` while no API is loaded (see [`NO_APIS`]).
    apis: ArcSwapOption<Apis>,
    /// Whether any API is loaded: lets `Dispatch` skip the spec lookup with one plain load.
    any: AtomicBool,
    writer: Mutex<()>,
}

impl ApiRegistry {
    /// Parses and registers a definition, replacing one with the same id (Tyk reloads APIs that way).
    /// Returns the API id.
    pub fn load(&self, definition_json: &str) -> Result<String> {
        self.insert(parse_definition(definition_json)?)
    }

    /// Registers a parsed definition (see `load`).
    pub fn insert(&self, api: ApiDefinition) -> Result<String> {
        let id = api.api_id.clone();
        let _writing = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.apis.load();
        let current = apis_of(&current);
        let mut apis = current.0.clone();
        match current.find(&id) {
            Ok(at) => apis[at] = Arc::new(api),
            Err(at) => apis.insert(at, Arc::new(api)),
        }
        self.publish(apis);
        Ok(id)
    }

    /// Called with `writer` held.
    fn publish(&self, apis: Vec<Arc<ApiDefinition>>) {
        self.any.store(!apis.is_empty(), Ordering::Release);
        self.apis
            .store((!apis.is_empty()).then(|| Arc::new(Apis(apis))));
    }

    /// Removes an API; an unknown id is an error naming it.
    pub fn unload(&self, api_id: &str) -> Result<()> {
        let _writing = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.apis.load();
        let apis = apis_of(&current);
        let Ok(at) = apis.find(api_id) else {
            return Err(Error::new(
                COPROCESS_ERR_UNKNOWN_API,
                format!("no API with api_id '{api_id}' is loaded"),
            ));
        };
        let mut rest = apis.0.clone();
        rest.remove(at);
        self.publish(rest);
        Ok(())
    }

    /// The API loaded under `api_id`. Takes no lock and writes no shared counter.
    pub fn get(&self, api_id: &str) -> Option<ApiRef> {
        let apis = self.apis.load();
        let index = apis_of(&apis).find(api_id).ok()?;
        Some(ApiRef { apis, index })
    }

    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Every loaded API, sorted by id.
    pub fn all(&self) -> Vec<Arc<ApiDefinition>> {
        apis_of(&self.apis.load()).0.clone()
    }

    /// Forgets every API.
    pub fn clear(&self) {
        let _writing = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.publish(Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_proto::HookType;

    const API: &str = r#"{"api_id": "a1", "org_id": "o1", "custom_middleware": {
        "pre": [{"name": "p1"}, {"name": "p2", "disabled": true}, {"name": "p3"}],
        "auth_check": {"name": "auth"}, "driver": "native"},
        "custom_plugin_auth_enabled": true}"#;

    #[test]
    fn registry_loads_replaces_and_unloads() {
        let r = ApiRegistry::default();
        assert!(r.is_empty());
        assert_eq!(r.load(API).unwrap(), "a1");
        let api = r.get("a1").unwrap();
        let pre: Vec<_> = api.hooks(HookType::Pre as i32).map(|h| &h.name).collect();
        assert_eq!(pre, ["p1", "p3"], "disabled hooks are left out");
        let auth: Vec<_> = api.hooks(HookType::CustomKeyCheck as i32).collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(api.hooks(HookType::Unknown as i32).count(), 0);
        r.load(&API.replace("\"p1\"", "\"p0\"")).unwrap();
        assert_eq!(r.get("a1").unwrap().pre[0].name, "p0", "same id replaces");
        assert_eq!(r.all().len(), 1);
        let e = r.unload("nope").unwrap_err();
        assert_eq!(e.message, "no API with api_id 'nope' is loaded");
        r.unload("a1").unwrap();
        assert!(r.is_empty() && r.get("a1").is_none());
    }
}
