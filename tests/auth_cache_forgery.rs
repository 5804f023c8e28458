//! A plugin cannot plant an authenticated session (issue 10, item 5): whatever keys a plugin stores —
//! through `TykStoreData` (the Python/Lua path) or a C driver's `store_data` — the ID extractor's auth
//! cache never hits for a credential the auth plugin refuses. First with the embedded store, then with a
//! real redis-server (skipped loudly without one). One test: the store is process-wide.

mod abi;
mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::{SystemTime, UNIX_EPOCH};

use abi::*;
use base64::Engine as _;
use coprocess_bridge::ffi::host::{CoProcessInit, CoProcessLoadApi};
use coprocess_bridge::id_extractor::{cache, session_id};
use coprocess_bridge::proto::{
    HookType, Message, MiniRequestObject, Object, ReturnOverrides, SessionState,
};
use redis_server::{free_port, RedisServer};

/// A driver that, at init, stores every `key\tvalue` line of its config through the host's
/// `store_data`, as a plugin could with request-derived keys.
const FORGER: &str = r#"#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include "coprocess_driver.h"
uint32_t CoProcessDriverAbiVersion(void) { return COPROCESS_DRIVER_ABI_VERSION; }
int CoProcessDriverInit(const struct CoProcessHostApi *host, const char *config, void **instance) {
  char *text = strdup(config ? config : "");
  if (!text) return 1;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *tab = strchr(line, '\t');
    if (!tab) continue;
    *tab = '\0';
    host->store_data(line, tab + 1, 0);
  }
  free(text);
  *instance = NULL;
  return 0;
}
int CoProcessDriverDispatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out) {
  (void)instance; (void)in; (void)out;
  return 1;
}
void CoProcessDriverDispatchEvent(void *instance, const char *event_json) { (void)instance; (void)event_json; }
void CoProcessDriverReload(void *instance) { (void)instance; }
"#;

const EVIL: &str = "Bearer evil";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A well-formed cache entry granting a generous session until an hour from now.
fn forged_entry() -> String {
    let deadline = now() + 3600;
    let session = SessionState {
        rate: 1e9,
        per: 1.0,
        id_extractor_deadline: deadline,
        ..Default::default()
    };
    format!(
        "{deadline}:{}",
        base64::engine::general_purpose::STANDARD.encode(session.encode_to_vec())
    )
}

/// Every key a plugin might guess for the attacker's credential.
fn plausible_keys() -> Vec<String> {
    let mut ids = vec![EVIL.to_string(), "evil".to_string()];
    for hash in [
        None,
        Some("murmur32"),
        Some("murmur64"),
        Some("murmur128"),
        Some("sha256"),
    ] {
        ids.push(session_id("org1", EVIL, hash));
    }
    let mut keys = Vec::new();
    for id in ids {
        let cache_key = cache::key(&id);
        for k in [id.clone(), cache_key] {
            for prefix in [
                "",
                "coprocess-data:",
                "coprocess-auth-cache:",
                "apikey-",
                "../",
            ] {
                keys.push(format!("{prefix}{k}"));
            }
        }
    }
    keys
}

fn request(auth: &str) -> Object {
    Object {
        hook_type: HookType::CustomKeyCheck as i32,
        request: Some(MiniRequestObject {
            headers: [("Authorization".to_string(), auth.to_string())].into(),
            url: "/x".into(),
            request_uri: "/x".into(),
            method: "GET".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: [("APIID", "forge"), ("OrgID", "org1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// (response code, whether the auth driver ran) for one CustomKeyCheck with `auth`.
fn check(auth: &str) -> (i32, bool) {
    let out = dispatch(&request(auth).encode_to_vec()).unwrap();
    let o = Object::decode(out.as_slice()).unwrap();
    let r = o.request.unwrap_or_default();
    let code = r.return_overrides.map_or(-1, |ro| ro.response_code);
    (code, r.set_headers.contains_key("X-Auth-Call"))
}

/// Plants the forged entry under every plausible key, through TykStoreData and through a C driver's
/// store_data (loaded as `driver_name`), then checks the attacker is still refused by the plugin.
fn forgery_fails(driver_name: &str) {
    let entry = forged_entry();
    let keys = plausible_keys();
    for k in &keys {
        store(k, &entry, 0);
    }
    let forger = common::build_c_driver(&common::write_c_source("forger.c", FORGER), &[]);
    let lines: String = keys.iter().map(|k| format!("{k}x\t{entry}\n")).collect();
    load(driver_name, &forger, Some(&lines)).unwrap();
    for k in &keys {
        assert_eq!(get(k), entry, "plugins still read their own data");
        assert_eq!(get(&format!("{k}x")), entry, "the driver stored {k}x");
    }
    assert_eq!(
        check(EVIL),
        (403, false),
        "the forged sessions were ignored: the auth plugin ran and refused"
    );

    // The real thing still works, and the cached session is not readable by plugins either.
    assert_eq!(
        check("Bearer tok-1"),
        (-1, true),
        "first call reaches the driver"
    );
    assert_eq!(check("Bearer tok-1"), (-1, false), "then the cache answers");
    let sid = session_id("org1", "Bearer tok-1", None);
    assert_eq!(get(&cache::key(&sid)), "", "plugins cannot read the cache");
}

#[test]
fn plugins_cannot_plant_sessions_in_the_auth_cache() {
    let lib =
        common::build_workspace_cdylib("coprocess-rust-driver-example", "coprocess_rust_driver");
    load(
        "native",
        &lib,
        Some(r#"{"tokens": ["tok-1"], "cache_seconds": 60}"#),
    )
    .unwrap();
    let api = c(
        r#"{"api_id": "forge", "org_id": "org1", "custom_plugin_auth_enabled": true,
        "custom_middleware": {"driver": "native", "auth_check": {"name": "Auth"},
          "id_extractor": {"extract_from": "header", "extract_with": "value",
                           "extractor_config": {"header_name": "Authorization"}}}}"#,
    );
    assert_eq!(CoProcessLoadApi(api.as_ptr()), 0, "{}", last_error());

    forgery_fails("forger-memory");

    if common::skip_without("redis-server") {
        return;
    }
    let server = RedisServer::start(free_port());
    let config = format!(
        r#"{{"store": {{"type": "redis", "url": "{}"}}}}"#,
        server.url()
    );
    assert_eq!(CoProcessInit(c(&config).as_ptr()), 0, "{}", last_error());
    forgery_fails("forger-redis");
    // In Redis, every plugin key sits under coprocess-data:, the session under coprocess-auth-cache:.
    let sid = session_id("org1", "Bearer tok-1", None);
    assert_eq!(
        server.keys("coprocess-auth-cache:*"),
        vec![format!("coprocess-auth-cache:{}", cache::key(&sid))]
    );
    let all = server.keys("*");
    assert_eq!(all.len(), 2 * plausible_keys().len() + 1, "{all:?}");
    assert!(all
        .iter()
        .filter(|k| !k.starts_with("coprocess-auth-cache:"))
        .all(|k| k.starts_with("coprocess-data:")));
}
