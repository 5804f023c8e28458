//! One Lua state: LuaJIT with the prelude, the bundles it has loaded (each in its own environment),
//! and the per-call budget. A state lives on one bridge thread and serves every call made there, so
//! bundles are loaded once per thread and a call costs no state set-up.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use coprocess_driver::{Call, HookType, Host, Level, Reply};
use mlua::{Function, HookTriggers, Lua, Table, Value, VmState};

use crate::bundle::BundleSource;
use crate::cjson;
use crate::config::Budget;
use crate::host_api;
use crate::lazy::{self, CallData, RequestSlot, ResponseSlot, SessionSlot, Slot};
use crate::record::{kind, GoJson, ShapeError};

const PRELUDE: &str = include_str!("prelude.lua");

/// The budget is checked every this many VM instructions.
const CHECK_EVERY: u32 = 1000;

/// The running call's budget, checked by the instruction hook.
#[derive(Default)]
struct Clock {
    active: Cell<bool>,
    deadline: Cell<Option<Instant>>,
    instructions: Cell<u64>,
    spent: Cell<Option<&'static str>>,
}

/// A bundle as loaded into this state.
struct Loaded {
    version: u64,
    env: Result<Table, String>,
}

pub struct LuaState {
    lua: Lua,
    host: Host,
    call: Rc<CallData>,
    budget: Budget,
    clock: Rc<Clock>,
    run: Function,
    load_bundle: Function,
    functions_of: Function,
    event: Function,
    bundles: HashMap<String, Loaded>,
}

/// A Lua error as (first line, full text with traceback).
fn describe(e: &mlua::Error) -> (String, String) {
    let full = e.to_string();
    let line = full
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && *l != "callback error" && !l.starts_with("stack traceback"))
        .unwrap_or("error")
        .trim_start_matches("runtime error: ")
        .trim_start_matches("syntax error: ")
        .to_owned();
    (line, full)
}

fn same(a: &Table, b: &Value) -> bool {
    matches!(b, Value::Table(t) if t.to_pointer() == a.to_pointer())
}

/// What a hook returned in the place of a table it was given: nil (keep the given table's changes),
/// that table, or another table (which replaces it).
fn returned<'a>(given: &Table, value: &'a Value, what: &str) -> Result<Option<&'a Value>, String> {
    match value {
        Value::Nil => Ok(None),
        v if same(given, v) => Ok(None),
        Value::Table(_) => Ok(Some(value)),
        other => Err(format!(
            "returned a {} where the {what} table belongs",
            kind(other)
        )),
    }
}

impl LuaState {
    pub fn new(host: Host, budget: Budget) -> Result<LuaState, String> {
        Self::build(host, budget).map_err(|e| format!("lua driver: cannot start LuaJIT: {e}"))
    }

    fn build(host: Host, budget: Budget) -> mlua::Result<LuaState> {
        let lua = Lua::new();
        let call = Rc::new(CallData::default());
        let marker = lua.create_table()?;
        let rt = lua.create_table()?;

        let request_mt = lazy_metatable::<RequestSlot>(&lua, &call, &marker)?;
        let session_mt = lazy_metatable::<SessionSlot>(&lua, &call, &marker)?;
        let response_mt = lazy_metatable::<ResponseSlot>(&lua, &call, &marker)?;
        let spec_mt = lua.create_table()?;
        let c = call.clone();
        spec_mt.set(
            "__index",
            lua.create_function(move |_, (_, key): (Table, Value)| {
                Ok(match key {
                    Value::String(k) => c.spec(&k.to_str()?),
                    _ => None,
                })
            })?,
        )?;
        spec_mt.set("__metatable", marker.clone())?;

        // Fills a lazy table in (pairs, next, cjson.encode see every field).
        let fill: Rc<cjson::Prepare> = {
            let (c, l) = (call.clone(), lua.weak());
            let (rq, ss, rs, sp) = (
                request_mt.to_pointer(),
                session_mt.to_pointer(),
                response_mt.to_pointer(),
                spec_mt.to_pointer(),
            );
            Rc::new(move |t: &Table| {
                let Some(mt) = t.metatable() else {
                    return Ok(());
                };
                let lua = l.upgrade();
                match mt.to_pointer() {
                    p if p == rq => lazy::fill::<RequestSlot>(&lua, &c, t),
                    p if p == ss => lazy::fill::<SessionSlot>(&lua, &c, t),
                    p if p == rs => lazy::fill::<ResponseSlot>(&lua, &c, t),
                    p if p == sp => {
                        let spec = c.part(lazy::SPEC)?.spec.clone();
                        for (k, v) in spec {
                            if t.raw_get::<Value>(k.as_str())?.is_nil() {
                                t.raw_set(k, v)?;
                            }
                        }
                        Ok(())
                    }
                    _ => Ok(()),
                }
            })
        };
        let f = fill.clone();
        rt.set("fill", lua.create_function(move |_, t: Table| f(&t))?)?;
        rt.set("request_mt", request_mt)?;
        rt.set("session_mt", session_mt)?;
        rt.set("response_mt", response_mt)?;
        rt.set("spec_mt", spec_mt)?;
        rt.set("lazy", marker)?;
        let c = call.clone();
        rt.set(
            "metadata",
            lua.create_function(move |lua, ()| {
                let object = c.part(lazy::METADATA)?;
                let t = lua.create_table()?;
                for (k, v) in &object.metadata {
                    t.raw_set(k.as_str(), v.as_str())?;
                }
                Ok(t)
            })?,
        )?;
        let clock = Rc::new(Clock::default());
        let k = clock.clone();
        rt.set(
            "budget_spent",
            lua.create_function(move |_, ()| Ok(k.spent.get().is_some()))?,
        )?;
        rt.set("cjson_safe", cjson::module(&lua, fill.clone())?)?;
        host_api::install(&lua, &rt, host, fill)?;

        let api: Table = lua
            .load(PRELUDE)
            .set_name("=coprocess_lua/prelude.lua")
            .call(rt)?;
        if budget.time.is_some() || budget.instructions.is_some() {
            install_budget_hook(&lua, budget, clock.clone())?;
        }
        Ok(LuaState {
            run: api.get("run")?,
            load_bundle: api.get("load_bundle")?,
            functions_of: api.get("functions_of")?,
            event: api.get("event")?,
            lua,
            host,
            call,
            budget,
            clock,
            bundles: HashMap::new(),
        })
    }

    /// Runs `f` under the per-call budget; a budget overrun is reported as such.
    fn budgeted<R>(&self, f: impl FnOnce() -> mlua::Result<R>) -> Result<R, (String, String)> {
        let clock = &self.clock;
        clock.active.set(true);
        clock.spent.set(None);
        clock.instructions.set(0);
        clock
            .deadline
            .set(self.budget.time.map(|t| Instant::now() + t));
        let result = f();
        clock.active.set(false);
        match (result, clock.spent.take()) {
            (Ok(r), _) => Ok(r),
            (Err(e), Some(which)) => {
                let line = match which {
                    "time" => format!(
                        "stopped: ran past its time budget of {} ms (timeout_ms)",
                        self.budget.time.map_or(0, |t| t.as_millis())
                    ),
                    _ => format!(
                        "stopped: ran past its budget of {} instructions (max_instructions)",
                        self.budget.instructions.unwrap_or(0)
                    ),
                };
                Err((line, describe(&e).1))
            }
            (Err(e), None) => Err(describe(&e)),
        }
    }

    /// Loads a bundle into this state: its environment and the functions it defines.
    pub fn load(&self, source: &BundleSource) -> Result<(Table, Vec<String>), String> {
        let files = self
            .lua
            .create_sequence_from(source.files.iter().map(|(name, text)| {
                self.lua
                    .create_sequence_from([name.as_str(), text.as_str()])
                    .expect("a two-string table")
            }))
            .map_err(|e| e.to_string())?;
        let env: Table = self
            .budgeted(|| self.load_bundle.call((source.key.as_str(), files)))
            .map_err(|(line, full)| {
                self.host.log(
                    Level::Error,
                    &format!("lua bundle '{}' failed to load:\n{full}", source.key),
                );
                line
            })?;
        let names: Vec<String> = self.functions_of.call(&env).map_err(|e| e.to_string())?;
        Ok((env, names))
    }

    /// The environment of `source` in this state, loading it (again) when this state has another
    /// version or none.
    fn env(&mut self, source: &BundleSource) -> Result<Table, String> {
        if let Some(loaded) = self.bundles.get(&source.key) {
            if loaded.version == source.version {
                return loaded.env.clone();
            }
        }
        let env = self.load(source).map(|(env, _)| env);
        self.bundles.insert(
            source.key.clone(),
            Loaded {
                version: source.version,
                env: env.clone(),
            },
        );
        env
    }

    /// Runs the hook `call` names, from bundle `source`.
    pub fn dispatch(&mut self, source: &BundleSource, call: &Call) -> Result<Reply, String> {
        let env = self
            .env(source)
            .map_err(|e| format!("lua bundle '{}' failed to load: {e}", source.key))?;
        let name = call.hook_name();
        let hook = match env.raw_get::<Value>(name) {
            Ok(Value::Function(f)) => f,
            _ => {
                return Err(format!(
                    "lua bundle '{}' has no function '{name}'",
                    source.key
                ))
            }
        };
        let hook_type = call.hook_type();
        let default_arity = match hook_type {
            HookType::CustomKeyCheck => 4,
            HookType::Response => 5,
            _ => 3,
        };
        self.call.begin(call.bytes());
        let result = self
            .budgeted(|| self.run.call::<Outcome>((hook, default_arity)))
            .map_err(|(line, full)| {
                self.host.log(
                    Level::Error,
                    &format!(
                        "lua hook '{name}' of bundle '{}' failed:\n{full}",
                        source.key
                    ),
                );
                format!(
                    "lua hook '{name}' of bundle '{}' failed: {line} (traceback logged)",
                    source.key
                )
            })
            .and_then(|outcome| {
                self.collect(outcome, hook_type)
                    .map_err(|e| format!("lua hook '{name}' of bundle '{}' {e}", source.key))
            });
        self.call.finish();
        result
    }

    /// Turns what the hook did into the reply.
    fn collect(&self, outcome: Outcome, hook_type: HookType) -> Result<Reply, String> {
        let (form, request, session, response, metadata, r1, r2, r3) = outcome;
        let shape = |e: ShapeError| format!("returned or set a value of the wrong shape: {e}");
        let new_request;
        let new_session;
        let new_response;
        if form == 5 {
            new_request = None;
            new_session = None;
            new_response = match &response {
                Value::Table(given) => returned(given, &r1, "response")?,
                _ => None,
            };
        } else {
            new_request = returned(&request, &r1, "request")?;
            new_session = returned(&session, &r2, "session")?;
            new_response = None;
        }
        let quiet = form == 3
            && new_request.is_none()
            && new_session.is_none()
            && lazy::untouched::<RequestSlot>(&self.call, &request)
            && lazy::untouched::<SessionSlot>(&self.call, &session);
        if quiet {
            return Ok(Reply::Unchanged);
        }

        let call = &*self.call;
        let part_err = |e: mlua::Error| format!("failed: {e}");
        let mut changed = Vec::new();
        if apply::<RequestSlot>(call, &request, new_request).map_err(shape)? {
            changed.push(lazy::REQUEST);
        }
        if apply::<SessionSlot>(call, &session, new_session).map_err(shape)? {
            changed.push(lazy::SESSION);
        }
        if let Value::Table(given) = &response {
            if apply::<ResponseSlot>(call, given, new_response).map_err(shape)? {
                changed.push(lazy::RESPONSE);
            }
        }
        if form >= 4 {
            let m = match (&r3, form) {
                (Value::Table(_), 4) => r3.clone(),
                (Value::Nil, _) | (_, 5) => metadata.clone(),
                (other, _) => {
                    return Err(format!(
                        "returned a {} where the metadata table belongs",
                        kind(other)
                    ))
                }
            };
            let m = <std::collections::HashMap<String, String> as GoJson>::from_lua(m)
                .map_err(|e| shape(e.at("metadata")))?;
            let mut part = call.part(lazy::METADATA).map_err(part_err)?;
            if m != part.metadata {
                part.metadata = m;
                changed.push(lazy::METADATA);
            }
        }
        if hook_type == HookType::CustomKeyCheck {
            // Tyk keeps the auth hook's metadata (e.g. "token") with the session it returns.
            let metadata = call.part(lazy::METADATA).map_err(part_err)?;
            if !metadata.metadata.is_empty() {
                let mut part = call.part(lazy::SESSION).map_err(part_err)?;
                let session = part.session.get_or_insert_with(Default::default);
                for (k, v) in &metadata.metadata {
                    if session.metadata.get(k) != Some(v) {
                        session.metadata.insert(k.clone(), v.clone());
                        if !changed.contains(&lazy::SESSION) {
                            changed.push(lazy::SESSION);
                        }
                    }
                }
            }
        }
        if changed.is_empty() {
            return Ok(Reply::Unchanged);
        }
        // The bridge checks the result is well-formed (a wire walk).
        call.splice(&changed)
            .map(Reply::Encoded)
            .map_err(|e| format!("failed: {e}"))
    }

    /// Runs the event handler `handler` of every loaded bundle that defines it.
    pub fn event(&mut self, sources: &[&BundleSource], handler: &str, event: &serde_json::Value) {
        for source in sources {
            let Ok(env) = self.env(source) else { continue };
            let Ok(Value::Function(f)) = env.raw_get::<Value>(handler) else {
                continue;
            };
            let result = self.budgeted(|| {
                let ev = cjson::to_lua(&self.lua, event, 0)?;
                let spec = match event.get("spec") {
                    Some(s @ serde_json::Value::Object(_)) => cjson::to_lua(&self.lua, s, 0)?,
                    _ => Value::Table(self.lua.create_table()?),
                };
                self.event.call::<()>((f, ev, spec))
            });
            if let Err((_, full)) = result {
                self.host.log(
                    Level::Error,
                    &format!(
                        "lua event handler '{handler}' of bundle '{}' failed:\n{full}",
                        source.key
                    ),
                );
            }
        }
    }
}

/// The prelude's `run` results: form, request, session, response, metadata, and the hook's returns.
type Outcome = (u8, Table, Table, Value, Value, Value, Value, Value);

/// The hook's effect on one message (written to the call's part for it): the returned
/// replacement, or the given table's changes. `true` when the message changed.
fn apply<S: Slot>(
    call: &CallData,
    given: &Table,
    replacement: Option<&Value>,
) -> Result<bool, ShapeError> {
    if replacement.is_none() && lazy::untouched::<S>(call, given) {
        return Ok(false);
    }
    let mut part = call.part(S::FIELD)?;
    match replacement {
        Some(value) => lazy::replace::<S>(value.clone(), &mut part),
        None => lazy::apply::<S>(call, given, &mut part),
    }
}

/// The metatable of a lazy table (see lazy.rs); `getmetatable` gives `marker` and cannot replace it.
fn lazy_metatable<S: Slot + 'static>(
    lua: &Lua,
    call: &Rc<CallData>,
    marker: &Table,
) -> mlua::Result<Table> {
    let mt = lua.create_table()?;
    let c = call.clone();
    mt.set(
        "__index",
        lua.create_function(move |lua, (t, k): (Table, Value)| lazy::index::<S>(lua, &c, t, k))?,
    )?;
    let c = call.clone();
    mt.set(
        "__newindex",
        lua.create_function(move |_, (t, k, v): (Table, Value, Value)| {
            lazy::new_index::<S>(&c, t, k, v)
        })?,
    )?;
    mt.set("__metatable", marker.clone())?;
    Ok(mt)
}

/// Stops a call that runs past its budget: an instruction-count hook (LuaJIT runs it in the
/// interpreter, which is why the prelude turns the JIT off).
fn install_budget_hook(lua: &Lua, budget: Budget, clock: Rc<Clock>) -> mlua::Result<()> {
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |_, _| {
            if !clock.active.get() {
                return Ok(VmState::Continue);
            }
            let used = clock.instructions.get() + u64::from(CHECK_EVERY);
            clock.instructions.set(used);
            let over = if budget.instructions.is_some_and(|max| used > max) {
                Some("instructions")
            } else if clock.deadline.get().is_some_and(|d| Instant::now() >= d) {
                Some("time")
            } else {
                None
            };
            if let Some(which) = over {
                clock.spent.set(Some(which));
                return Err(mlua::Error::runtime("the call ran past its budget"));
            }
            Ok(VmState::Continue)
        },
    )
}
