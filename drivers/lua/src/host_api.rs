//! `tyk.log`, `tyk.store_data`, `tyk.get_data`, `tyk.trigger_event`: the bridge's host services (the
//! `Host` this driver instance was given) as Lua functions.

use std::rc::Rc;

use coprocess_driver::{Host, Level};
use mlua::{Lua, Table, Value};

use crate::cjson;
use crate::record::number_text;

/// A value as text the way Lua's `tostring` shows strings and numbers (others by type name).
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
        Value::Integer(i) => number_text(*i as f64),
        Value::Number(n) => number_text(*n),
        Value::Boolean(b) => b.to_string(),
        Value::Nil => "nil".into(),
        other => other.type_name().into(),
    }
}

/// A store value: a string or number as is, a table as JSON (cjson rules).
fn stored(value: &Value, prepare: &cjson::Prepare) -> mlua::Result<String> {
    match value {
        Value::String(_) | Value::Integer(_) | Value::Number(_) | Value::Boolean(_) => {
            Ok(text(value))
        }
        Value::Table(_) => cjson::encode(value, prepare).map_err(mlua::Error::runtime),
        other => Err(mlua::Error::runtime(format!(
            "cannot store a {} (strings, numbers and tables can be stored)",
            other.type_name()
        ))),
    }
}

/// Adds the host functions to `rt` (the table the prelude reads them from).
pub fn install(lua: &Lua, rt: &Table, host: Host, prepare: Rc<cjson::Prepare>) -> mlua::Result<()> {
    rt.set(
        "log",
        lua.create_function(move |_, (message, lvl): (Value, Option<String>)| {
            host.log(
                Level::from_name(lvl.as_deref().unwrap_or("info")),
                &text(&message),
            );
            Ok(())
        })?,
    )?;
    let prep = prepare.clone();
    rt.set(
        "store_data",
        lua.create_function(move |_, (key, value, ttl): (String, Value, Option<f64>)| {
            let value = stored(&value, &*prep)?;
            // Negative, fractional or huge TTLs: clamp to what the host takes (0 keeps forever).
            let ttl = ttl.unwrap_or(0.0).clamp(0.0, f64::from(i32::MAX)) as i32;
            host.store(&key, &value, ttl);
            Ok(())
        })?,
    )?;
    rt.set(
        "get_data",
        lua.create_function(move |_, key: String| Ok(host.get(&key)))?,
    )?;
    rt.set(
        "trigger_event",
        lua.create_function(move |_, (name, payload): (String, Value)| {
            let payload = match &payload {
                Value::Nil => String::new(),
                v => stored(v, &*prepare)?,
            };
            host.trigger_event(&name, &payload);
            Ok(())
        })?,
    )?;
    Ok(())
}
