//! Hook chains for APIs loaded with `CoProcessLoadApi` (DESIGN §6–7): what Tyk's gateway does around
//! each plugin call, done inside the bridge so every host gets it.
//!
//! - An Object with a `hook_name` runs that one hook. One without runs the API's whole chain for its
//!   `hook_type`, in definition order, disabled hooks skipped. In a Pre, PostKeyAuth or Post chain each
//!   hook is its own middleware, as in Tyk: its answer is applied to the request and the next hook gets
//!   an Object built afresh from it (see [`request`]); a hook whose answer has
//!   `request.return_overrides.response_code > 0` ends the chain; the host gets the chain's net effect.
//!   In a Response chain each hook's answer is applied to the response as Tyk's `HandleResponse`
//!   applies it and the next hook is shown the result (see [`response`]); Tyk ignores
//!   return_overrides there.
//! - Every hook's `raw_body_only` is honoured: its Object has `raw_body` and no `body` text.
//! - CustomKeyCheck is never chained: it runs the API's `auth_check` (or the hook the input names, as
//!   Tyk's gateway names it), behind the ID extractor and its cache when the API configures one.
//! - Pre and CustomKeyCheck hooks never see a session (Tyk sends none there); every hook sees
//!   `spec["config_data"]` when the API has config data.
//! - A failing hook (the driver returns an error, panics or returns garbage) becomes an answer, as in
//!   Tyk: return_overrides 403 "Key not authorised" for CustomKeyCheck, 500 "Middleware error" for the
//!   others; the cause is logged. A host that prefers the error code calls
//!   `CoProcessSetPlainErrors(1)`.

pub mod edit;
pub mod go_rules;
pub mod request;
pub mod response;

use std::borrow::Cow;
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use coprocess_proto::HookType;

use crate::api::{ApiDefinition, HookDef};
use crate::dispatch::{call_driver_answer, DriverAnswer};
use crate::driver::registry::DriverRef;
use crate::error::{Error, Result, COPROCESS_ERR_DRIVER_BAD_OUTPUT, COPROCESS_ERR_DRIVER_FAILED};
use crate::id_extractor::cache;
use crate::logging::Level;
use crate::message::MallocBuf;
use crate::runtime::Runtime;

/// Tyk's answers for failed hooks and failed extraction.
pub const KEY_NOT_AUTHORISED: &str = "Key not authorised";
pub const MIDDLEWARE_ERROR: &str = "Middleware error";
pub const AUTHORIZATION_FIELD_MISSING: &str = "Authorization field missing";
/// `http.StatusText(403)`: Tyk's answer to an auth check that gave no session.
pub const FORBIDDEN: &str = "Forbidden";

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs `input` (an already validated Object whose `spec["APIID"]` names `api` and whose
/// `hook_type` is `hook_type`, as the dispatch's check read them) through the API.
pub fn dispatch_api(
    rt: &Runtime,
    api: &ApiDefinition,
    input: &[u8],
    hook_type: i32,
) -> Result<MallocBuf> {
    // Borrowed from the registry's snapshot (no lock, no shared counter written); it keeps the
    // driver loaded until the chain is done.
    let driver = rt.registry.lookup(api.driver.as_deref())?;
    let top = edit::top_level(input);
    let run = Run {
        rt,
        api,
        driver,
        hook_type,
        top,
    };
    let named = !run.top.hook_name.is_empty();
    if hook_type == HookType::CustomKeyCheck as i32 {
        // Named or not (Tyk's gateway names it), auth runs behind the ID extractor.
        return run.auth(input, named);
    }
    if named {
        // One named hook, as the host asked.
        return run.one(input, None);
    }
    run.chain(input)
}

struct Run<'a> {
    rt: &'a Runtime,
    api: &'a ApiDefinition,
    driver: DriverRef,
    hook_type: i32,
    /// The host's Object's top level (every method is given that Object as `input`).
    top: edit::TopLevel<'a>,
}

impl Run<'_> {
    fn is_auth(&self) -> bool {
        self.hook_type == HookType::CustomKeyCheck as i32
    }

    /// The input of one hook (from the host's `input`): without a session for Pre and
    /// CustomKeyCheck, with the API's config data, with `hook_name` set when `hook` is given.
    fn prepare<'b>(&self, input: &'b [u8], hook: Option<&HookDef>) -> Cow<'b, [u8]> {
        let mut fields = Vec::new();
        let head = self.prepare_parts(input, hook, &mut fields);
        if fields.is_empty() {
            return head;
        }
        let mut bytes = head.into_owned();
        bytes.extend_from_slice(&fields);
        Cow::Owned(bytes)
    }

    /// [`Self::prepare`] in two parts, so that a caller can copy them once into its answer: the head
    /// (`input`, without its session when the hook gets none) and the fields appended to `tail`.
    fn prepare_parts<'b>(
        &self,
        input: &'b [u8],
        hook: Option<&HookDef>,
        tail: &mut Vec<u8>,
    ) -> Cow<'b, [u8]> {
        let sessionless = self.hook_type == HookType::Pre as i32 || self.is_auth();
        let head = if sessionless && self.top.has_session {
            Cow::Owned(edit::without_session(input))
        } else {
            Cow::Borrowed(input)
        };
        if let Some(config) = &self.api.config_data {
            if coprocess_proto::wire::spec_value(&head, "config_data") != Some(config.as_str()) {
                edit::push_spec(tail, "config_data", config);
            }
        }
        if let Some(hash) = &self.api.bundle_hash {
            if coprocess_proto::wire::spec_value(&head, "bundle_hash") != Some(hash.as_str()) {
                edit::push_spec(tail, "bundle_hash", hash);
            }
        }
        if let Some(hook) = hook {
            edit::push_hook_name(tail, &hook.name);
        }
        head
    }

    /// Calls the driver with one hook's input, timed under `label`: its answer as a whole Object. A
    /// failure ends the run with Tyk's answer for it (see [`Self::failed`]).
    fn call_hook(&self, label: &str, input: &[u8]) -> std::result::Result<MallocBuf, Stop> {
        self.call_hook_answer(label, input)
            .map(|answer| answer.into_object(input))
    }

    /// [`Self::call_hook`], with the answer as the driver gave it (a patch stays a patch).
    fn call_hook_answer(
        &self,
        label: &str,
        input: &[u8],
    ) -> std::result::Result<DriverAnswer, Stop> {
        crate::metrics::timed(&self.api.api_id, label, self.driver.name(), || {
            call_driver_answer(&self.driver, input)
        })
        .map_err(|e| Stop(self.failed(input, e)))
    }

    /// A hook's answer that cannot be applied (as Tyk's gateway would refuse it) ends the run as a
    /// failed hook.
    fn refused(&self, hook: &HookDef, input: &[u8], why: String) -> Stop {
        let e = Error::new(
            COPROCESS_ERR_DRIVER_BAD_OUTPUT,
            format!("hook '{}': {why}", hook.name),
        );
        Stop(self.failed(input, e))
    }

    /// Calls the driver with the prepared input of one hook (its body as the hook's definition wants
    /// it); a failure becomes Tyk's answer (or stays an error for hosts that asked for plain errors).
    fn one(&self, input: &[u8], hook: Option<&HookDef>) -> Result<MallocBuf> {
        let def = hook.or_else(|| {
            let name = self.top.hook_name;
            self.api.hooks(self.hook_type).find(|h| h.name == name)
        });
        let prepared = self.prepare(input, None);
        let input = match def {
            Some(def) => Cow::Owned(self.first_input(input, &prepared, def)),
            None => prepared,
        };
        let label = hook.map_or(crate::metrics::hook_type_label(self.hook_type), |h| &h.name);
        self.call_hook(label, &input).map_or_else(|stop| stop.0, Ok)
    }

    /// The first hook's Object: the host's (`prepared` from `host`) with the request and response
    /// bodies as `hook`'s definition wants them.
    fn first_input(&self, host: &[u8], prepared: &[u8], hook: &HookDef) -> Vec<u8> {
        let mut input = request::Live::read(host).first_input(prepared, hook);
        if self.hook_type == HookType::Response as i32 {
            response::show_body(&mut input, hook.raw_body_only);
        }
        input
    }

    /// Tyk refuses (403 "Forbidden") a CustomKeyCheck answer that neither overrides the response nor
    /// gives a session with a `token` in its metadata.
    fn session_or_forbidden(&self, out: MallocBuf) -> MallocBuf {
        let overridden = edit::response_code(out.as_slice()).is_some_and(|c| c > 0);
        if overridden || edit::has_session_token(out.as_slice()) {
            return out;
        }
        self.rt.logs.log(
            Level::Info,
            format_args!(
                "API '{}': the auth check gave no session with a token: answering 403",
                self.api.api_id
            ),
        );
        answered(out.as_slice(), 403, FORBIDDEN)
    }

    fn failed(&self, input: &[u8], e: Error) -> Result<MallocBuf> {
        let driver_fault = matches!(
            e.status,
            COPROCESS_ERR_DRIVER_FAILED | COPROCESS_ERR_DRIVER_BAD_OUTPUT
        );
        if !driver_fault || self.rt.plain_errors() {
            return Err(e);
        }
        let (code, answer) = if self.is_auth() {
            (403, KEY_NOT_AUTHORISED)
        } else {
            (500, MIDDLEWARE_ERROR)
        };
        self.rt.logs.log(
            Level::Error,
            format!(
                "API '{}': hook failed, answering {code} \"{answer}\": {}",
                self.api.api_id, e.message
            ),
        );
        Ok(answered(input, code, answer))
    }

    /// The chain of a Pre, PostKeyAuth, Post or Response hook type.
    fn chain(&self, input: &[u8]) -> Result<MallocBuf> {
        let run = if self.hook_type == HookType::Response as i32 {
            self.response_chain(input)
        } else {
            self.request_chain(input)
        };
        run.unwrap_or_else(|stop| stop.0)
    }

    /// A Pre, PostKeyAuth or Post chain: each hook's answer applied to the live request as Tyk
    /// applies it, the next hook shown the result (see [`request`]).
    fn request_chain(&self, input: &[u8]) -> std::result::Result<Result<MallocBuf>, Stop> {
        let mut hooks = self.api.hooks(self.hook_type);
        let Some(mut hook) = hooks.next() else {
            return Ok(Ok(MallocBuf::copy_from(input)));
        };
        let prepared = self.prepare(input, None);
        if self.api.hooks(self.hook_type).nth(1).is_none() {
            // One hook: its answer is the chain's, once the gateway would take it. Nothing to apply.
            let mut live = request::Live::read_for_one(input);
            let current = live.first_input(&prepared, hook);
            let answer = self.call_hook_answer(&hook.name, &current)?;
            live.check_changes(request::Changes::of(&current, &answer))
                .map_err(|why| self.refused(hook, &current, why))?;
            return Ok(Ok(answer.into_object(&current)));
        }
        let mut live = request::Live::read(input);
        let mut current = live.first_input(&prepared, hook);
        let mut ran = 0;
        loop {
            let answer = self.call_hook_answer(&hook.name, &current)?;
            ran += 1;
            let code = live
                .apply_changes(request::Changes::of(&current, &answer))
                .map_err(|why| self.refused(hook, &current, why))?;
            let next = hooks.next();
            if code.is_some_and(|c| c > 0) || next.is_none() {
                if ran == 1 {
                    // One hook's answer is its own net effect.
                    return Ok(Ok(answer.into_object(&current)));
                }
                let output = answer.parts(&current);
                return Ok(Ok(match live.answer(output, hook) {
                    request::NetAnswer::Append(tail) if tail.is_empty() => {
                        answer.into_object(&current)
                    }
                    request::NetAnswer::Append(tail) => {
                        MallocBuf::concat_all(&[output[0], output[1], &tail])
                    }
                    request::NetAnswer::Whole(whole) => MallocBuf::copy_from(&whole),
                }));
            }
            hook = next.expect("checked above");
            current = live.next_input(current, &prepared, hook);
        }
    }

    /// A Response chain: each hook's answer applied to the live response as Tyk applies it, the next
    /// hook shown the result (see [`response`]).
    fn response_chain(&self, input: &[u8]) -> std::result::Result<Result<MallocBuf>, Stop> {
        let mut hooks = self.api.hooks(self.hook_type);
        let Some(mut hook) = hooks.next() else {
            return Ok(Ok(MallocBuf::copy_from(input)));
        };
        let prepared = self.prepare(input, None);
        let mut current = self.first_input(input, &prepared, hook);
        let mut live: Option<response::LiveResponse> = None;
        let mut base: Option<Vec<u8>> = None;
        loop {
            let out = self.call_hook(&hook.name, &current)?;
            let next = hooks.next();
            if live.is_none() && next.is_none() {
                // One hook's answer is its own net effect.
                return Ok(Ok(out));
            }
            let state = live.get_or_insert_with(|| response::LiveResponse::new(&current));
            state
                .apply(out.as_slice())
                .map_err(|why| self.refused(hook, &current, why))?;
            let Some(following) = next else {
                let answer = state.answer(out.as_slice(), hook.raw_body_only);
                return Ok(Ok(MallocBuf::copy_from(&answer)));
            };
            hook = following;
            let base = base.get_or_insert_with(|| response::without_response(&prepared));
            current = request::Live::read(input).first_input(base, hook);
            state.show(&mut current, hook.raw_body_only);
        }
    }

    /// CustomKeyCheck: the ID extractor and its cache, then the auth_check hook (under the name the
    /// input has, when it has one).
    fn auth(&self, input: &[u8], named: bool) -> Result<MallocBuf> {
        let Some(def) = self.api.hooks(self.hook_type).next() else {
            if named {
                return self.one(input, None);
            }
            // No custom auth configured for this API: nothing to check.
            return Ok(MallocBuf::copy_from(input));
        };
        let hook = (!named).then_some(def);
        let Some(extractor) = &self.api.id_extractor else {
            return Ok(self.session_or_forbidden(self.one(input, hook)?));
        };
        let settings = self.rt.auth_settings();
        let value = match extractor.extract_from_object(input, &settings.extract_limits) {
            Ok(v) => v,
            Err(why) => {
                // A bound hit is worth a warning (hostile input or limits set too tight).
                let (level, what) = if why.over_limit {
                    (Level::Warning, "refused the request")
                } else {
                    (Level::Debug, "found nothing")
                };
                self.rt.logs.log(
                    level,
                    format_args!(
                        "API '{}': ID extractor {what} ({why}): answering 400",
                        self.api.api_id
                    ),
                );
                let prepared = self.prepare(input, hook);
                return Ok(answered(&prepared, 400, AUTHORIZATION_FIELD_MISSING));
            }
        };
        // The buffers are taken out for the call (a driver re-entering the bridge gets fresh ones).
        let mut scratch = AUTH_SCRATCH.take();
        let hash = settings.hash_key_function.as_deref();
        let result = self.auth_cached(input, hook, &value, hash, &mut scratch);
        AUTH_SCRATCH.set(scratch);
        result
    }

    /// The auth cache in front of the auth check: a hit answers with the cached session; a miss
    /// calls the hook and caches the session it gives.
    fn auth_cached(
        &self,
        input: &[u8],
        hook: Option<&HookDef>,
        value: &str,
        hash_key_function: Option<&str>,
        s: &mut AuthScratch,
    ) -> Result<MallocBuf> {
        let key = s.key.of(&self.api.org_id, value, hash_key_function);
        let now = now_unix();
        let hit = cache::lookup_key(&*self.rt.store(), key, now, &mut s.session);
        let label = hook.map_or(crate::metrics::hook_type_label(self.hook_type), |h| &h.name);
        crate::metrics::global().record_auth_cache(
            &self.api.api_id,
            label,
            self.driver.name(),
            hit,
        );
        if hit {
            // The answer is the prepared input with the session appended: copied once.
            s.tail.clear();
            let head = self.prepare_parts(input, hook, &mut s.tail);
            edit::push_session(&mut s.tail, s.session.session());
            return Ok(MallocBuf::concat(&head, &s.tail));
        }
        let out = self.session_or_forbidden(self.one(input, hook)?);
        let passed = edit::response_code(out.as_slice()).is_none_or(|c| c <= 0);
        if passed {
            if let Some(mut session) = edit::session_bytes(out.as_slice()) {
                // Kept as Tyk keeps it: with the Object's metadata (its "token" among them).
                session.extend(edit::metadata_as_session_fields(out.as_slice()));
                cache::save_key(&*self.rt.store(), key, &session, now);
            }
        }
        Ok(out)
    }
}

/// Ends a chain early with this result: a failed hook's answer (or its error, for hosts that asked
/// for plain errors).
struct Stop(Result<MallocBuf>);

/// Buffers the auth path reuses on each thread: the store key (made once per credential), the cached
/// session (decoded once per entry) and the fields appended to the answer. With them a cache hit
/// allocates only its answer.
#[derive(Default)]
struct AuthScratch {
    key: cache::StoreKey,
    session: cache::Decoded,
    tail: Vec<u8>,
}

thread_local! {
    static AUTH_SCRATCH: Cell<AuthScratch> = Cell::new(AuthScratch::default());
}

/// `input` answered with `code` and `error` through return_overrides.
fn answered(input: &[u8], code: i32, error: &str) -> MallocBuf {
    let mut out = Vec::with_capacity(input.len() + error.len() + 16);
    out.extend_from_slice(input);
    edit::push_return_error(&mut out, code, error);
    MallocBuf::copy_from(&out)
}
