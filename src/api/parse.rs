//! Parsing Tyk API definitions: classic (`api_id`, `custom_middleware`, ...) and Tyk OAS
//! (`x-tyk-api-gateway`). Fields the bridge does not use are ignored, as Tyk ignores what it does not
//! know; a field it uses with the wrong type, or a required one missing, is an error naming its path.

use serde_json::{Map, Value};

use super::{ApiDefinition, HookDef};
use crate::error::{Error, Result, COPROCESS_ERR_INVALID_API};
use crate::id_extractor::IdExtractor;

fn invalid(message: impl Into<String>) -> Error {
    Error::new(
        COPROCESS_ERR_INVALID_API,
        format!("invalid API definition: {}", message.into()),
    )
}

/// A JSON object being read, with the path that leads to it (for messages).
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>, path: &str) -> Self {
        Obj {
            map,
            path: path.to_owned(),
        }
    }

    pub(crate) fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value under `key`; JSON null counts as absent (Tyk's Go decoder treats it so).
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(&self.field_path(key), "a string", other)),
        }
    }

    pub(crate) fn string(&self, key: &str) -> Result<String> {
        Ok(self.str(key)?.unwrap_or_default().to_owned())
    }

    pub(crate) fn bool(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(wrong_type(&self.field_path(key), "true or false", other)),
        }
    }

    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
            Some(other) => Err(wrong_type(&self.field_path(key), "an integer", other)),
        }
    }

    /// A nested object, with its path.
    pub(crate) fn obj(&self, key: &str) -> Result<Option<Obj<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Obj {
                map: m,
                path: self.field_path(key),
            })),
            Some(other) => Err(wrong_type(&self.field_path(key), "an object", other)),
        }
    }

    fn array(&self, key: &str) -> Result<&'a [Value]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(other) => Err(wrong_type(&self.field_path(key), "an array", other)),
        }
    }

    /// The raw value under `key` (for `config_data`, `extractor_config`).
    pub(crate) fn raw(&self, key: &str) -> Option<&'a Value> {
        self.get(key)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn wrong_type(path: &str, wanted: &str, got: &Value) -> Error {
    invalid(format!("{path} must be {wanted}, not {}", kind(got)))
}

/// Parses a classic or OAS definition.
pub fn parse_definition(json: &str) -> Result<ApiDefinition> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let Value::Object(root) = &value else {
        return Err(invalid(format!(
            "the definition must be a JSON object, not {}",
            kind(&value)
        )));
    };
    let root = Obj::new(root, "");
    let api = match root.obj("x-tyk-api-gateway")? {
        Some(tyk) => parse_oas(&tyk)?,
        None => parse_classic(&root)?,
    };
    if api.api_id.is_empty() {
        let field = if root.raw("x-tyk-api-gateway").is_some() {
            "x-tyk-api-gateway.info.id"
        } else {
            "api_id"
        };
        return Err(invalid(format!("{field} is missing or empty")));
    }
    Ok(api)
}

/// `config_data` as JSON text.
fn config_text(v: &Value, path: &str) -> Result<String> {
    match v {
        Value::Object(_) => Ok(v.to_string()),
        other => Err(wrong_type(path, "an object", other)),
    }
}

// ---------------------------------------------------------------------------------------------
// Classic
// ---------------------------------------------------------------------------------------------

fn classic_hook(v: &Value, path: &str) -> Result<HookDef> {
    let Value::Object(m) = v else {
        return Err(wrong_type(path, "an object", v));
    };
    let o = Obj::new(m, path);
    let hook = HookDef {
        name: o.string("name")?,
        path: o.string("path")?,
        require_session: o.bool("require_session")?,
        raw_body_only: o.bool("raw_body_only")?,
        disabled: o.bool("disabled")?,
    };
    Ok(hook)
}

fn classic_hooks(cm: &Obj<'_>, key: &str) -> Result<Vec<HookDef>> {
    let mut hooks = Vec::new();
    for (i, v) in cm.array(key)?.iter().enumerate() {
        let path = format!("{}[{i}]", cm.field_path(key));
        let hook = classic_hook(v, &path)?;
        if hook.name.is_empty() && !hook.disabled {
            return Err(invalid(format!("{path}.name is missing or empty")));
        }
        hooks.push(hook);
    }
    Ok(hooks)
}

fn parse_classic(root: &Obj<'_>) -> Result<ApiDefinition> {
    let mut api = ApiDefinition {
        api_id: root.string("api_id")?,
        org_id: root.string("org_id")?,
        name: root.string("name")?,
        ..Default::default()
    };
    if !root.bool("config_data_disabled")? {
        if let Some(v) = root.raw("config_data") {
            api.config_data = Some(config_text(v, "config_data")?);
        }
    }
    if let Some(proxy) = root.obj("proxy")? {
        api.listen_path = proxy.string("listen_path")?;
        api.strip_listen_path = proxy.bool("strip_listen_path")?;
        api.target_url = proxy.string("target_url")?;
    }
    let auth_enabled =
        root.bool("enable_coprocess_auth")? || root.bool("custom_plugin_auth_enabled")?;
    let Some(cm) = root.obj("custom_middleware")? else {
        if auth_enabled {
            return Err(invalid(
                "custom_middleware.auth_check is required when custom plugin auth is enabled",
            ));
        }
        return Ok(api);
    };
    api.driver = cm
        .str("driver")?
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    api.pre = classic_hooks(&cm, "pre")?;
    api.post_key_auth = classic_hooks(&cm, "post_key_auth")?;
    api.post = classic_hooks(&cm, "post")?;
    api.response = classic_hooks(&cm, "response")?;
    if auth_enabled {
        let auth = match cm.raw("auth_check") {
            Some(v) => classic_hook(v, &cm.field_path("auth_check"))?,
            None => HookDef::default(),
        };
        if auth.name.is_empty() {
            return Err(invalid(
                "custom_middleware.auth_check.name is missing or empty, and custom plugin auth is enabled",
            ));
        }
        if !auth.disabled {
            api.auth_check = Some(auth);
        }
        if let Some(ex) = cm.obj("id_extractor")? {
            api.id_extractor = IdExtractor::from_classic(&ex)?;
        }
    }
    Ok(api)
}

// ---------------------------------------------------------------------------------------------
// Tyk OAS
// ---------------------------------------------------------------------------------------------

/// An OAS plugin: `{enabled, functionName, path, rawBodyOnly, requireSession}`.
fn oas_plugin(v: &Value, path: &str) -> Result<HookDef> {
    let Value::Object(m) = v else {
        return Err(wrong_type(path, "an object", v));
    };
    let o = Obj::new(m, path);
    let hook = HookDef {
        name: o.string("functionName")?,
        path: o.string("path")?,
        require_session: o.bool("requireSession")?,
        raw_body_only: o.bool("rawBodyOnly")?,
        disabled: !o.bool("enabled")?,
    };
    if hook.name.is_empty() && !hook.disabled {
        return Err(invalid(format!("{path}.functionName is missing or empty")));
    }
    Ok(hook)
}

/// Plugins of one hook type: the array form (`prePlugins: [...]`) and the older object form
/// (`prePlugin: {plugins: [...]}`); Tyk accepts both, the array form first.
fn oas_plugins(global: &Obj<'_>, plural: &str, singular: &str) -> Result<Vec<HookDef>> {
    let mut hooks = Vec::new();
    for (i, v) in global.array(plural)?.iter().enumerate() {
        hooks.push(oas_plugin(
            v,
            &format!("{}[{i}]", global.field_path(plural)),
        )?);
    }
    if let Some(old) = global.obj(singular)? {
        for (i, v) in old.array("plugins")?.iter().enumerate() {
            hooks.push(oas_plugin(
                v,
                &format!("{}[{i}]", old.field_path("plugins")),
            )?);
        }
    }
    Ok(hooks)
}

fn parse_oas(tyk: &Obj<'_>) -> Result<ApiDefinition> {
    let mut api = ApiDefinition::default();
    if let Some(info) = tyk.obj("info")? {
        api.api_id = info.string("id")?;
        api.org_id = info.string("orgId")?;
        api.name = info.string("name")?;
    }
    if let Some(up) = tyk.obj("upstream")? {
        api.target_url = up.string("url")?;
    }
    if let Some(server) = tyk.obj("server")? {
        if let Some(lp) = server.obj("listenPath")? {
            api.listen_path = lp.string("value")?;
            api.strip_listen_path = lp.bool("strip")?;
        }
        if let Some(auth) = server.obj("authentication")? {
            if let Some(custom) = auth.obj("custom")? {
                parse_oas_custom_auth(&mut api, &custom, auth.bool("enabled")?)?;
            }
        }
    }
    let Some(global) = tyk
        .obj("middleware")?
        .map(|m| m.obj("global"))
        .transpose()?
        .flatten()
    else {
        return Ok(api);
    };
    if let Some(pc) = global.obj("pluginConfig")? {
        api.driver = pc
            .str("driver")?
            .filter(|d| !d.is_empty())
            .map(str::to_owned);
        if let Some(data) = pc.obj("data")? {
            if data.bool("enabled")? {
                if let Some(v) = data.raw("value") {
                    api.config_data = Some(config_text(v, &data.field_path("value"))?);
                }
            }
        }
    }
    api.pre = oas_plugins(&global, "prePlugins", "prePlugin")?;
    api.post_key_auth = oas_plugins(
        &global,
        "postAuthenticationPlugins",
        "postAuthenticationPlugin",
    )?;
    api.post = oas_plugins(&global, "postPlugins", "postPlugin")?;
    api.response = oas_plugins(&global, "responsePlugins", "responsePlugin")?;
    Ok(api)
}

/// `server.authentication.custom`: `{enabled, config: {enabled, functionName, ..., idExtractor}}`.
fn parse_oas_custom_auth(
    api: &mut ApiDefinition,
    custom: &Obj<'_>,
    authentication_enabled: bool,
) -> Result<()> {
    if !custom.bool("enabled")? || !authentication_enabled {
        return Ok(());
    }
    let Some(config) = custom.obj("config")? else {
        return Err(invalid(format!(
            "{} is required when custom authentication is enabled",
            custom.field_path("config")
        )));
    };
    let hook = oas_plugin(
        &Value::Object(config.map.clone()),
        &custom.field_path("config"),
    )?;
    if hook.disabled {
        return Ok(());
    }
    api.auth_check = Some(hook);
    // Tyk keeps it in the plugin's config (`AuthenticationPlugin.IDExtractor`); one written beside
    // `config` is read as well.
    if let Some(ex) = config.obj("idExtractor")?.or(custom.obj("idExtractor")?) {
        api.id_extractor = IdExtractor::from_oas(&ex)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        parse_definition(json).unwrap_err().message
    }

    #[test]
    fn classic_definitions_are_read() {
        let api = parse_definition(
            r#"{"api_id": "a", "org_id": "o", "name": "n",
            "proxy": {"listen_path": "/a/", "target_url": "http://127.0.0.1:1", "strip_listen_path": true},
            "config_data": {"k": "v"},
            "enable_coprocess_auth": true,
            "custom_middleware": {"driver": "grpc",
              "pre": [{"name": "P", "path": "p.py", "require_session": false, "raw_body_only": true}],
              "post": [{"name": "Q", "disabled": true}], "post_key_auth": [], "response": [{"name": "R"}],
              "auth_check": {"name": "Auth"},
              "id_extractor": {"extract_from": "header", "extract_with": "value",
                               "extractor_config": {"header_name": "Authorization"}}}}"#,
        )
        .unwrap();
        assert_eq!((api.api_id.as_str(), api.org_id.as_str()), ("a", "o"));
        assert_eq!(api.driver.as_deref(), Some("grpc"));
        assert_eq!(api.pre[0].path, "p.py");
        assert!(api.pre[0].raw_body_only);
        assert!(api.post[0].disabled);
        assert_eq!(api.response[0].name, "R");
        assert_eq!(api.auth_check.as_ref().unwrap().name, "Auth");
        assert!(api.id_extractor.is_some());
        assert_eq!(api.config_data.as_deref(), Some(r#"{"k":"v"}"#));
        assert_eq!(api.listen_path, "/a/");
        assert!(api.strip_listen_path);
    }

    #[test]
    fn classic_auth_check_needs_auth_enabled_and_config_data_can_be_disabled() {
        let api = parse_definition(
            r#"{"api_id": "a", "config_data": {"k": 1}, "config_data_disabled": true,
            "custom_middleware": {"auth_check": {"name": "Auth"}}}"#,
        )
        .unwrap();
        assert!(api.auth_check.is_none());
        assert!(api.config_data.is_none());
    }

    #[test]
    fn oas_definitions_are_read() {
        let api = parse_definition(
            r#"{"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {},
            "x-tyk-api-gateway": {
              "info": {"id": "oas1", "orgId": "org", "name": "OAS", "state": {"active": true}},
              "upstream": {"url": "http://127.0.0.1:9"},
              "server": {"listenPath": {"value": "/oas/", "strip": true},
                "authentication": {"enabled": true, "custom": {"enabled": true,
                  "config": {"enabled": true, "functionName": "Auth", "path": "",
                    "idExtractor": {"enabled": true, "source": "header", "with": "value",
                      "config": {"headerName": "Authorization"}}}}}},
              "middleware": {"global": {
                "pluginConfig": {"driver": "native", "data": {"enabled": true, "value": {"x": 1}}},
                "prePlugins": [{"enabled": true, "functionName": "P1"}],
                "prePlugin": {"plugins": [{"enabled": true, "functionName": "P2"}]},
                "postAuthenticationPlugins": [{"enabled": true, "functionName": "K"}],
                "postPlugins": [{"enabled": false, "functionName": "Q"}],
                "responsePlugins": [{"enabled": true, "functionName": "R", "rawBodyOnly": true}]}}}}"#,
        )
        .unwrap();
        assert_eq!(api.api_id, "oas1");
        assert_eq!(api.org_id, "org");
        assert_eq!(api.driver.as_deref(), Some("native"));
        let pre: Vec<_> = api.pre.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(pre, ["P1", "P2"]);
        assert_eq!(api.post_key_auth[0].name, "K");
        assert!(api.post[0].disabled);
        assert!(api.response[0].raw_body_only);
        assert_eq!(api.auth_check.unwrap().name, "Auth");
        assert!(api.id_extractor.is_some());
        assert_eq!(api.config_data.as_deref(), Some(r#"{"x":1}"#));
        assert_eq!(
            (api.listen_path.as_str(), api.target_url.as_str()),
            ("/oas/", "http://127.0.0.1:9")
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err("[1]"),
            "invalid API definition: the definition must be a JSON object, not an array"
        );
        assert!(err("{").starts_with("invalid API definition: not valid JSON"));
        assert_eq!(
            err("{}"),
            "invalid API definition: api_id is missing or empty"
        );
        assert_eq!(
            err(r#"{"x-tyk-api-gateway": {"info": {}}}"#),
            "invalid API definition: x-tyk-api-gateway.info.id is missing or empty"
        );
        assert_eq!(
            err(r#"{"api_id": 5}"#),
            "invalid API definition: api_id must be a string, not a number"
        );
        assert_eq!(
            err(r#"{"api_id": "a", "custom_middleware": {"pre": [{"name": "x"}, {"name": 1}]}}"#),
            "invalid API definition: custom_middleware.pre[1].name must be a string, not a number"
        );
        assert_eq!(
            err(r#"{"api_id": "a", "custom_middleware": {"post": [{}]}}"#),
            "invalid API definition: custom_middleware.post[0].name is missing or empty"
        );
        assert_eq!(
            err(r#"{"api_id": "a", "custom_middleware": {"pre": {}}}"#),
            "invalid API definition: custom_middleware.pre must be an array, not an object"
        );
        assert_eq!(
            err(r#"{"api_id": "a", "enable_coprocess_auth": true, "custom_middleware": {}}"#),
            "invalid API definition: custom_middleware.auth_check.name is missing or empty, and custom plugin auth is enabled"
        );
        assert_eq!(
            err(r#"{"api_id": "a", "config_data": "x"}"#),
            "invalid API definition: config_data must be an object, not a string"
        );
        assert_eq!(
            err(
                r#"{"x-tyk-api-gateway": {"info": {"id": "i"}, "middleware": {"global": {"prePlugins": [{"enabled": "yes"}]}}}}"#
            ),
            "invalid API definition: x-tyk-api-gateway.middleware.global.prePlugins[0].enabled must be true or false, not a string"
        );
        assert_eq!(
            err(
                r#"{"x-tyk-api-gateway": {"info": {"id": "i"}, "middleware": {"global": {"pluginConfig": {"driver": 3}}}}}"#
            ),
            "invalid API definition: x-tyk-api-gateway.middleware.global.pluginConfig.driver must be a string, not a number"
        );
        assert_eq!(
            err(r#"{"api_id": "a", "enable_coprocess_auth": true, "custom_middleware": {"auth_check": {"name": "A"},
                "id_extractor": {"extract_from": "cookie", "extract_with": "value"}}}"#),
            "invalid API definition: custom_middleware.id_extractor.extract_from must be one of header, form, body (not 'cookie')"
        );
    }
}
