//! Which bundle an API definition names, and the definition with the bundle's `custom_middleware` in
//! place of its own (Tyk's `Bundle.AddToSpec`: the manifest's section replaces the API's).

use serde_json::{json, Map, Value};

use crate::api::{parse_definition, ApiDefinition};
use crate::error::Result;

/// The bundle name of a definition: classic `custom_middleware_bundle` (unless
/// `custom_middleware_bundle_disabled`), or OAS `x-tyk-api-gateway.middleware.global.pluginConfig.bundle`
/// `{enabled, path}`. `None` when the definition names none (or is not a JSON object: the API parser
/// reports that).
pub fn bundle_name(definition: &Value) -> Option<String> {
    let name = match definition.get("x-tyk-api-gateway") {
        Some(tyk) => {
            let bundle = tyk
                .pointer("/middleware/global/pluginConfig/bundle")
                .filter(|b| b.get("enabled") == Some(&Value::Bool(true)))?;
            bundle.get("path")?.as_str()?
        }
        None => {
            if definition.get("custom_middleware_bundle_disabled") == Some(&Value::Bool(true)) {
                return None;
            }
            definition.get("custom_middleware_bundle")?.as_str()?
        }
    };
    (!name.trim().is_empty()).then(|| name.to_owned())
}

/// The API id as written in the definition ("" when absent), for messages.
pub fn api_id(definition: &Value) -> String {
    let id = match definition.get("x-tyk-api-gateway") {
        Some(tyk) => tyk.pointer("/info/id"),
        None => definition.get("api_id"),
    };
    id.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The API defined by `definition` with `custom_middleware` (a manifest's) replacing its hooks,
/// driver and ID extractor. Classic definitions get the section swapped in before parsing; OAS ones
/// are parsed as they are (custom authentication switched off, since its hook comes from the
/// bundle) and take the hooks parsed from the section.
pub fn with_bundle_middleware(
    definition: &Value,
    custom_middleware: &Value,
) -> Result<ApiDefinition> {
    let Some(tyk) = definition.get("x-tyk-api-gateway") else {
        let mut classic = definition.clone();
        if let Some(root) = classic.as_object_mut() {
            root.insert("custom_middleware".into(), custom_middleware.clone());
        }
        return parse_definition(&classic.to_string());
    };
    let auth = tyk.pointer("/server/authentication");
    let custom_auth = auth
        .and_then(|a| a.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && auth
            .and_then(|a| a.pointer("/custom/enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let mut oas = definition.clone();
    if let Some(Value::Object(custom)) =
        oas.pointer_mut("/x-tyk-api-gateway/server/authentication/custom")
    {
        custom.insert("enabled".into(), Value::Bool(false));
    }
    let mut api = parse_definition(&oas.to_string())?;
    let section = json!({
        "api_id": api.api_id,
        "custom_plugin_auth_enabled": custom_auth,
        "custom_middleware": custom_middleware,
    });
    let hooks = parse_definition(&section.to_string())?;
    api.driver = hooks.driver;
    api.pre = hooks.pre;
    api.post_key_auth = hooks.post_key_auth;
    api.post = hooks.post;
    api.response = hooks.response;
    api.auth_check = hooks.auth_check;
    api.id_extractor = hooks.id_extractor;
    Ok(api)
}

/// Several bundles' sections merged as Tyk merges them (`mergeBundleManifest`): hook lists appended
/// in order with each hook's `path` prefixed by the bundle's folder, one `auth_check` at most, one
/// driver, the first ID extractor.
pub fn merge_sections(sections: &[(String, String, Value)]) -> std::result::Result<Value, String> {
    let mut merged = Map::new();
    let mut driver = String::new();
    let mut auth_from: Option<&str> = None;
    for (name, folder, section) in sections {
        let get = |k: &str| section.get(k).filter(|v| !v.is_null());
        if let Some(d) = get("driver")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
        {
            if driver.is_empty() {
                driver = d.to_owned();
            } else if driver != d {
                return Err(format!(
                    "bundle '{name}' declares driver '{d}' but earlier bundles set '{driver}'"
                ));
            }
        }
        let rewrite = |hook: &Value| {
            let mut hook = hook.clone();
            if let Some(Value::String(p)) = hook.get_mut("path") {
                if !p.is_empty() {
                    *p = format!("{folder}/{p}");
                }
            }
            hook
        };
        if let Some(auth) = get("auth_check") {
            if auth
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            {
                if let Some(first) = auth_from {
                    return Err(format!(
                        "bundle '{name}' declares an auth_check hook but bundle '{first}' already set one"
                    ));
                }
                auth_from = Some(name);
                merged.insert("auth_check".into(), rewrite(auth));
            }
        }
        for kind in ["pre", "post", "post_key_auth", "response"] {
            if let Some(Value::Array(hooks)) = get(kind) {
                let list = merged
                    .entry(kind)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    list.extend(hooks.iter().map(rewrite));
                }
            }
        }
        let extracts = |v: &Value| {
            v.get("extract_with")
                .and_then(Value::as_str)
                .is_some_and(|w| !w.is_empty())
        };
        if let Some(ex) = get("id_extractor").filter(|ex| extracts(ex)) {
            merged.entry("id_extractor").or_insert_with(|| ex.clone());
        }
    }
    if !driver.is_empty() {
        merged.insert("driver".into(), Value::String(driver));
    }
    Ok(Value::Object(merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_names_classic_and_oas() {
        let classic = json!({"api_id": "a", "custom_middleware_bundle": "b.zip"});
        assert_eq!(bundle_name(&classic).as_deref(), Some("b.zip"));
        assert_eq!(api_id(&classic), "a");
        let disabled =
            json!({"custom_middleware_bundle": "b.zip", "custom_middleware_bundle_disabled": true});
        assert_eq!(bundle_name(&disabled), None);
        assert_eq!(bundle_name(&json!({"custom_middleware_bundle": ""})), None);
        let oas = |enabled: bool| {
            json!({"x-tyk-api-gateway": {"info": {"id": "o"}, "middleware": {"global":
            {"pluginConfig": {"bundle": {"enabled": enabled, "path": "o.zip"}}}}}})
        };
        assert_eq!(bundle_name(&oas(true)).as_deref(), Some("o.zip"));
        assert_eq!(bundle_name(&oas(false)), None);
        assert_eq!(api_id(&oas(true)), "o");
    }

    #[test]
    fn the_manifest_section_replaces_the_apis_own() {
        let cm = json!({"driver": "python", "pre": [{"name": "BundlePre"}],
            "auth_check": {"name": "BundleAuth"},
            "id_extractor": {"extract_from": "header", "extract_with": "value",
                "extractor_config": {"header_name": "Authorization"}}});
        let classic = json!({"api_id": "a", "enable_coprocess_auth": true, "custom_middleware_bundle": "b.zip",
            "custom_middleware": {"driver": "grpc", "pre": [{"name": "Own"}]}});
        let api = with_bundle_middleware(&classic, &cm).unwrap();
        assert_eq!(api.driver.as_deref(), Some("python"));
        assert_eq!(api.pre.len(), 1);
        assert_eq!(api.pre[0].name, "BundlePre");
        assert_eq!(api.auth_check.unwrap().name, "BundleAuth");
        assert!(api.id_extractor.is_some());

        let oas = json!({"x-tyk-api-gateway": {"info": {"id": "o", "orgId": "org"},
            "server": {"authentication": {"enabled": true, "custom": {"enabled": true}}},
            "middleware": {"global": {"pluginConfig": {"driver": "grpc", "bundle": {"enabled": true, "path": "o.zip"}},
                "prePlugins": [{"enabled": true, "functionName": "Own"}]}}}});
        let api = with_bundle_middleware(&oas, &cm).unwrap();
        assert_eq!((api.api_id.as_str(), api.org_id.as_str()), ("o", "org"));
        assert_eq!(api.driver.as_deref(), Some("python"));
        assert_eq!(api.pre[0].name, "BundlePre");
        assert_eq!(api.auth_check.unwrap().name, "BundleAuth");
        let no_auth = json!({"x-tyk-api-gateway": {"info": {"id": "o"}}});
        assert!(with_bundle_middleware(&no_auth, &cm)
            .unwrap()
            .auth_check
            .is_none());

        let bad = json!({"pre": "nope"});
        let e = with_bundle_middleware(&classic, &bad).unwrap_err();
        assert!(e.message.contains("custom_middleware.pre"), "{}", e.message);
    }

    #[test]
    fn several_bundles_merge_as_tyk_merges_them() {
        let a = json!({"driver": "python", "pre": [{"name": "A", "path": "a.py"}], "auth_check": {"name": "Auth"}});
        let b = json!({"driver": "python", "pre": [{"name": "B", "path": ""}], "post": [{"name": "P"}]});
        let merged = merge_sections(&[
            ("a.zip".into(), "a".into(), a.clone()),
            ("b.zip".into(), "b".into(), b),
        ])
        .unwrap();
        assert_eq!(merged["driver"], "python");
        assert_eq!(merged["pre"][0]["path"], "a/a.py");
        assert_eq!(merged["pre"][1]["name"], "B");
        assert_eq!(merged["pre"][1]["path"], "");
        assert_eq!(merged["post"][0]["name"], "P");
        assert_eq!(merged["auth_check"]["name"], "Auth");
        let lua = json!({"driver": "lua"});
        let e = merge_sections(&[
            ("a.zip".into(), "a".into(), a.clone()),
            ("l.zip".into(), "l".into(), lua),
        ])
        .unwrap_err();
        assert!(e.contains("declares driver 'lua'"), "{e}");
        let e = merge_sections(&[
            ("a.zip".into(), "a".into(), a.clone()),
            ("c.zip".into(), "c".into(), a),
        ])
        .unwrap_err();
        assert!(e.contains("already set one"), "{e}");
    }
}
