//! An example driver on the Rust SDK (`coprocess-driver`), loaded by the tests through the bridge.
//!
//! Config (JSON given to CoProcessLoadDriver):
//! `{"tokens": ["secret-1", ...], "rate": 100, "per": 60, "cache_seconds": 30, "header": "X-Rust-Driver"}`
//!
//! - Pre hooks add `<header>: rust` (a patch: the Object is not decoded).
//! - CustomKeyCheck accepts `Authorization: Bearer <token>` for listed tokens: it sets the session's
//!   rate/per and `metadata["token"]`, and `id_extractor_deadline` (now + cache_seconds) so the bridge can
//!   cache the session; anything else is answered 403 through return_overrides.
//! - Response hooks rewrite the body to a JSON summary and the status to 200 (a full decode).
//! - Every event increments the store key `rust_driver:events`.
//! - A hook named `Panic` panics, to show that a panic fails that call only.
//!
//! Named hooks for chains (Pre, PostKeyAuth and Post; used by the API/chain tests and the demo gateway):
//! - `Chain...` appends its name to the request header `X-Chain` (comma-separated; it reads the header
//!   as its Object shows it, which in a chain includes what earlier hooks set), so the upstream sees
//!   the order hooks ran in, and counts its calls in the store key `rust_driver:calls:<name>`.
//! - `Edit:<edits>` (any hook type) answers the edits its name lists, separated by `;`: `set NAME=VALUE` (set_headers),
//!   `del NAME` (delete_headers), `add NAME=VALUE` (add_params), `rm NAME` (delete_params),
//!   `url URL`, `method METHOD`, `body TEXT` (raw_body only), `text TEXT` (`ObjectPatch::set_body`),
//!   `code N` (return_overrides.response_code); for Response hooks `rset NAME=VALUE`
//!   (response.headers), `radd NAME=VALUE` (a multivalue_headers entry), `rbody TEXT`, `rstatus N`,
//!   and `rdel NAME` (removes the name from response.headers, as a plugin deleting from that map
//!   does; a whole-Object answer, so it stands alone).
//! - `Record...` (any hook type) stores the Object it was given, hex-encoded, under `rust_driver:seen:<name>` and
//!   changes nothing (the chain tests read what each hook saw).
//! - `Deny` answers 418 through return_overrides (which ends the chain; `override_error` set, so Tyk
//!   writes the body as it is) when the request carries an `X-Deny` header, with the `X-Chain` so far
//!   in the body; otherwise it changes nothing.
//! - `ShowConfig` copies `spec["config_data"]` to the request header `X-Config-Data`.
//! - `ShowSession` sets the request header `X-Session` to `rate=<session rate>`, or `none` without a
//!   session.
//! - `Fail` fails (the bridge answers 500 "Middleware error" on the API path).
//! - `Sleep:<ms>` (any hook type) sleeps that long (at most 10 s), then changes nothing: a slow plugin.
//! - CustomKeyCheck also sets the request header `X-Auth-Call: <n>` (n counts the driver's auth calls),
//!   so a cached session (no driver call) is visible upstream by its absence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use coprocess_driver::proto::{Header, ResponseObject, SessionState};
use coprocess_driver::{
    export_driver, Call, Driver, Error, HookType, Host, Level, ObjectPatch, Reply, Result,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default = "default_rate")]
    rate: f64,
    #[serde(default = "default_per")]
    per: f64,
    #[serde(default = "default_cache_seconds")]
    cache_seconds: i64,
    #[serde(default = "default_header")]
    header: String,
}

fn default_rate() -> f64 {
    100.0
}
fn default_per() -> f64 {
    60.0
}
fn default_cache_seconds() -> i64 {
    30
}
fn default_header() -> String {
    "X-Rust-Driver".into()
}

pub struct ExampleDriver {
    host: Host,
    config: Config,
    /// Serialises read-modify-write of the counters in the host store.
    event_counter: Mutex<()>,
    /// CustomKeyCheck calls that reached this driver.
    auth_calls: AtomicU64,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl ExampleDriver {
    fn custom_key_check(&self, call: &Call) -> Result<Reply> {
        let object = call.decode()?;
        let request = object.request.unwrap_or_default();
        let token = request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token {
            Some(t) if self.config.tokens.iter().any(|ok| ok == t) => {
                let mut session = SessionState {
                    rate: self.config.rate,
                    per: self.config.per,
                    id_extractor_deadline: now_unix() + self.config.cache_seconds,
                    ..Default::default()
                };
                session.metadata.insert("token".into(), t.into());
                let n = self.auth_calls.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(ObjectPatch::new()
                    .session(&session)
                    .set_header("X-Auth-Call", &n.to_string())
                    .metadata("token", t)
                    .into())
            }
            _ => {
                self.host.log(
                    Level::Info,
                    "rust_driver: refused a request without a known bearer token",
                );
                Ok(ObjectPatch::new()
                    .return_error(403, "Key not authorised")
                    .return_override(403, r#"{"error": "Key not authorised"}"#)
                    .into())
            }
        }
    }

    /// Adds 1 to the store counter `key`.
    fn count(&self, key: &str) {
        let _guard = self.event_counter.lock().unwrap_or_else(|p| p.into_inner());
        let n: u64 = self.host.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        self.host.store(key, &(n + 1).to_string(), 0);
    }

    /// The named hooks of Pre, PostKeyAuth and Post chains; `None` for other names.
    fn named(&self, call: &Call) -> Option<Result<Reply>> {
        let name = call.hook_name();
        let chain_so_far = |object: &coprocess_driver::proto::Object| {
            let request = object.request.clone().unwrap_or_default();
            request
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("X-Chain"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let reply = match name {
            n if n.starts_with("Chain") => {
                self.count(&format!("rust_driver:calls:{n}"));
                call.decode().map(|object| {
                    let so_far = chain_so_far(&object);
                    let value = if so_far.is_empty() {
                        n.to_owned()
                    } else {
                        format!("{so_far},{n}")
                    };
                    ObjectPatch::new().set_header("X-Chain", &value).into()
                })
            }
            "Deny" => call.decode().map(|object| {
                let request = object.request.clone().unwrap_or_default();
                if request
                    .headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("x-deny"))
                {
                    let body =
                        serde_json::json!({"denied_by": "Deny", "chain": chain_so_far(&object)});
                    // override_error: Tyk writes the body as it is, not as an auth failure.
                    ObjectPatch::new()
                        .return_override(418, &body.to_string())
                        .override_error(true)
                        .return_header("Content-Type", "application/json")
                        .into()
                } else {
                    Reply::Unchanged
                }
            }),
            "ShowSession" => call.decode().map(|object| {
                let seen = object
                    .session
                    .map_or("none".to_owned(), |s| format!("rate={}", s.rate));
                ObjectPatch::new().set_header("X-Session", &seen).into()
            }),
            "ShowConfig" => Ok(ObjectPatch::new()
                .set_header("X-Config-Data", call.spec("config_data").unwrap_or(""))
                .into()),
            "Fail" => Err(Error::new("the Fail hook fails on purpose")),
            _ => return None,
        };
        Some(reply)
    }

    fn response(&self, call: &Call) -> Result<Reply> {
        let mut object = call.decode()?;
        let response = object.response.get_or_insert_with(Default::default);
        let summary = serde_json::json!({
            "rewritten_by": "rust_driver",
            "upstream_status": response.status_code,
            "upstream_bytes": response.raw_body.len(),
        })
        .to_string();
        response.status_code = 200;
        response.raw_body = summary.clone().into_bytes();
        response.body = summary;
        response
            .headers
            .insert("Content-Type".into(), "application/json".into());
        Ok(object.into())
    }
}

/// The answer of an `Edit:` hook: the edits listed in its name.
fn edit(call: &Call, edits: &str) -> Result<Reply> {
    if let Some(name) = edits.trim().strip_prefix("rdel ") {
        let mut object = call.decode()?;
        if let Some(response) = object.response.as_mut() {
            response.headers.remove(name);
        }
        return Ok(object.into());
    }
    let number = |arg: &str| {
        arg.parse()
            .map_err(|_| Error::new(format!("Edit: {arg:?} is not a number")))
    };
    let mut patch = ObjectPatch::new();
    for item in edits.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (op, arg) = item.split_once(' ').unwrap_or((item, ""));
        let pair = || arg.split_once('=').unwrap_or((arg, ""));
        patch = match op {
            "set" => patch.set_header(pair().0, pair().1),
            "del" => patch.delete_header(arg),
            "add" => patch.add_param(pair().0, pair().1),
            "rm" => patch.delete_param(arg),
            "url" => patch.set_url(arg),
            "method" => patch.set_method(arg),
            "body" => patch.set_raw_body(arg.as_bytes()),
            "text" => patch.set_body(arg),
            "code" => patch.return_override(number(arg)?, ""),
            "rset" => patch.response_header(pair().0, pair().1),
            "radd" => patch.response(&ResponseObject {
                multivalue_headers: vec![Header {
                    key: pair().0.into(),
                    values: vec![pair().1.into()],
                }],
                ..Default::default()
            }),
            "rbody" => patch.response_body(arg.as_bytes()),
            "rstatus" => patch.response_status(number(arg)?),
            other => return Err(Error::new(format!("Edit: unknown edit {other:?}"))),
        };
    }
    Ok(patch.into())
}

impl Driver for ExampleDriver {
    fn new(host: Host, config: &str) -> Result<Self> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| Error::new(format!("rust_driver config: {e}")))?;
        host.log(
            Level::Info,
            &format!("rust_driver ready ({} tokens)", config.tokens.len()),
        );
        Ok(ExampleDriver {
            host,
            config,
            event_counter: Mutex::new(()),
            auth_calls: AtomicU64::new(0),
        })
    }

    fn dispatch(&self, call: &Call) -> Result<Reply> {
        let name = call.hook_name();
        if name == "Panic" {
            panic!("the Panic hook panics on purpose");
        }
        if let Some(ms) = name.strip_prefix("Sleep:") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| Error::new(format!("Sleep: {ms:?} is not a number")))?;
            std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
            return Ok(Reply::Unchanged);
        }
        // Any hook type, CustomKeyCheck included.
        if let Some(edits) = name.strip_prefix("Edit:") {
            return edit(call, edits);
        }
        if name.starts_with("Record") {
            let hex: String = call.bytes().iter().map(|b| format!("{b:02x}")).collect();
            self.host
                .store(&format!("rust_driver:seen:{name}"), &hex, 0);
            return Ok(Reply::Unchanged);
        }
        if matches!(
            call.hook_type(),
            HookType::Pre | HookType::PostKeyAuth | HookType::Post
        ) {
            if let Some(reply) = self.named(call) {
                return reply;
            }
        }
        match call.hook_type() {
            HookType::Pre => Ok(ObjectPatch::new()
                .set_header(&self.config.header, "rust")
                .into()),
            HookType::CustomKeyCheck => self.custom_key_check(call),
            HookType::Response => self.response(call),
            _ => Ok(Reply::Unchanged),
        }
    }

    fn event(&self, _event_json: &str) {
        self.count("rust_driver:events");
    }

    fn reload(&self) {
        self.host.log(Level::Info, "rust_driver: reload requested");
    }
}

export_driver!(ExampleDriver);
