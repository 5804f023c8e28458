//! `require "cjson"` without lua-cjson installed: `encode`, `decode` and `null` with lua-cjson's rules,
//! written in Rust (decoding through serde_json).
//!
//! lua-cjson's rules kept here: a table whose keys are all positive integers is an array (holes are
//! `null`; an excessively sparse one is an error), any other table is an object (number keys become
//! strings), an empty table is `{}`; `cjson.null` and nil are `null`; numbers are written as `%.14g`;
//! `/` is escaped; NaN, infinities, functions and userdata cannot be encoded; nesting deeper than 128
//! is an error (lua-cjson: 1000). `decode` gives `cjson.null` for JSON null. `require "cjson.safe"` returns nil and the
//! message instead of raising.

use mlua::{LightUserData, Lua, Table, Value};

use crate::record::number_text;

/// Deepest nesting encoded or decoded. lua-cjson allows 1000; 128 (serde_json's limit) keeps the
/// recursion well inside the small stacks some gateway threads have.
const MAX_DEPTH: usize = 128;

/// `cjson.null`.
pub fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// Called on a table before it is encoded (the lazy argument tables fill themselves in).
pub type Prepare = dyn Fn(&Table) -> mlua::Result<()>;

/// Encodes `value` as lua-cjson would.
pub fn encode(value: &Value, prepare: &Prepare) -> Result<String, String> {
    let mut out = Vec::with_capacity(64);
    write_value(&mut out, value, 0, prepare)?;
    // Only complete UTF-8 sequences from Lua strings and ASCII are written; lossy keeps this total.
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn write_value(
    out: &mut Vec<u8>,
    value: &Value,
    depth: usize,
    prepare: &Prepare,
) -> Result<(), String> {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        // LuaJIT numbers are doubles: written as %.14g whichever way mlua hands them over.
        Value::Integer(i) => out.extend_from_slice(number_text(*i as f64).as_bytes()),
        Value::Number(n) => {
            if !n.is_finite() {
                return Err("Cannot serialise number: must not be NaN or Infinity".into());
            }
            out.extend_from_slice(number_text(*n).as_bytes());
        }
        Value::String(s) => write_string(out, &s.as_bytes()),
        Value::Table(t) => write_table(out, t, depth + 1, prepare)?,
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            ))
        }
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// `Some(n)`: the table is an array of length n (keys 1..n, maybe with holes).
fn array_length(pairs: &[(Value, Value)]) -> Result<Option<usize>, String> {
    let mut max = 0usize;
    for (k, _) in pairs {
        let n = match k {
            Value::Integer(i) if *i >= 1 => *i as f64,
            Value::Number(n) if *n >= 1.0 && n.fract() == 0.0 => *n,
            _ => return Ok(None),
        };
        max = max.max(n as usize);
    }
    // lua-cjson's encode_sparse_array defaults: ratio 2, safe 10.
    if max > 10 && max > pairs.len() * 2 {
        return Err("Cannot serialise table: excessively sparse array".into());
    }
    Ok(Some(max))
}

fn write_table(
    out: &mut Vec<u8>,
    t: &Table,
    depth: usize,
    prepare: &Prepare,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("Cannot serialise, excessive nesting ({depth})"));
    }
    prepare(t).map_err(|e| e.to_string())?;
    let mut pairs = Vec::new();
    t.for_each::<Value, Value>(|k, v| {
        pairs.push((k, v));
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    if pairs.is_empty() {
        out.extend_from_slice(b"{}");
        return Ok(());
    }
    if let Some(len) = array_length(&pairs)? {
        out.push(b'[');
        for i in 1..=len {
            if i > 1 {
                out.push(b',');
            }
            let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
            write_value(out, &v, depth, prepare)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match k {
            Value::String(s) => write_string(out, &s.as_bytes()),
            Value::Integer(n) => write_string(out, number_text(*n as f64).as_bytes()),
            Value::Number(n) => write_string(out, number_text(*n).as_bytes()),
            _ => return Err("Cannot serialise table: table key must be a number or string".into()),
        }
        out.push(b':');
        write_value(out, v, depth, prepare)?;
    }
    out.push(b'}');
    Ok(())
}

/// Decodes JSON text into Lua values (objects and arrays are tables, null is `cjson.null`).
pub fn decode(lua: &Lua, text: &[u8]) -> Result<Value, String> {
    let json: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| format!("Expected value but found invalid JSON: {e}"))?;
    to_lua(lua, &json, 0).map_err(|e| e.to_string())
}

/// A serde_json value as Lua values.
pub fn to_lua(lua: &Lua, json: &serde_json::Value, depth: usize) -> mlua::Result<Value> {
    use serde_json::Value as J;
    if depth > MAX_DEPTH {
        return Err(mlua::Error::runtime(
            "Found too many nested data structures",
        ));
    }
    Ok(match json {
        J::Null => null(),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item, depth + 1)?)?;
            }
            Value::Table(t)
        }
        J::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map {
                t.raw_set(k.as_str(), to_lua(lua, v, depth + 1)?)?;
            }
            Value::Table(t)
        }
    })
}

/// The `cjson.safe` module table: `encode`/`decode` return `nil, message` on failure. The prelude
/// builds `cjson` on it, raising the message as a Lua string error as lua-cjson does.
pub fn module(lua: &Lua, prepare: std::rc::Rc<Prepare>) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    let encode_fn =
        lua.create_function(move |lua, value: Value| match encode(&value, &*prepare) {
            Ok(text) => Ok((Value::String(lua.create_string(text)?), Value::Nil)),
            Err(message) => Ok((Value::Nil, Value::String(lua.create_string(message)?))),
        })?;
    let decode_fn = lua.create_function(move |lua, text: Value| {
        let Value::String(text) = text else {
            let message = format!(
                "bad argument #1 to 'decode' (string expected, got {})",
                crate::record::kind(&text)
            );
            return Ok((Value::Nil, Value::String(lua.create_string(message)?)));
        };
        match decode(lua, &text.as_bytes()) {
            Ok(value) => Ok((value, Value::Nil)),
            Err(message) => Ok((Value::Nil, Value::String(lua.create_string(message)?))),
        }
    })?;
    m.raw_set("encode", encode_fn)?;
    m.raw_set("decode", decode_fn)?;
    m.raw_set("null", null())?;
    m.raw_set("_NAME", "cjson.safe")?;
    m.raw_set("_VERSION", "2.1.0 (coprocess-bridge)")?;
    // lua-cjson's settings functions are accepted and keep the defaults.
    let keep = lua.create_function(|_, _: mlua::MultiValue| Ok(()))?;
    for name in [
        "encode_sparse_array",
        "encode_max_depth",
        "decode_max_depth",
        "encode_number_precision",
        "encode_keep_buffer",
        "encode_invalid_numbers",
        "decode_invalid_numbers",
        "encode_empty_table_as_object",
        "decode_array_with_array_mt",
        "encode_escape_forward_slash",
    ] {
        m.raw_set(name, keep.clone())?;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua_value(lua: &Lua, code: &str) -> Value {
        lua.load(code).eval().unwrap()
    }

    fn enc(lua: &Lua, code: &str) -> Result<String, String> {
        encode(&lua_value(lua, code), &|_| Ok(()))
    }

    #[test]
    fn encodes_with_lua_cjson_rules() {
        let lua = Lua::new();
        lua.globals().set("null", null()).unwrap();
        assert_eq!(enc(&lua, "return {1, 2, 'x'}").unwrap(), r#"[1,2,"x"]"#);
        assert_eq!(enc(&lua, "return {}").unwrap(), "{}");
        assert_eq!(
            enc(&lua, "return {[1] = 1, [3] = 3}").unwrap(),
            "[1,null,3]"
        );
        assert_eq!(enc(&lua, "return {[2] = true}").unwrap(), "[null,true]");
        assert_eq!(
            enc(&lua, "return {a = {b = null}}").unwrap(),
            r#"{"a":{"b":null}}"#
        );
        assert_eq!(enc(&lua, "return {[1.5] = 1}").unwrap(), r#"{"1.5":1}"#);
        assert_eq!(enc(&lua, "return 0.1").unwrap(), "0.1");
        assert_eq!(enc(&lua, "return 2^53").unwrap(), "9.007199254741e+15");
        assert_eq!(
            enc(&lua, r#"return "a/b\"c\\\n\1\127é""#).unwrap(),
            "\"a\\/b\\\"c\\\\\\n\\u0001\\u007fé\""
        );
        let errors = [
            ("return {f = print}", "Cannot serialise function"),
            ("return 0/0", "must not be NaN"),
            ("return {[100] = 1}", "excessively sparse array"),
            (
                "return {[true] = 1}",
                "table key must be a number or string",
            ),
            (
                "local t = {} local c = t for i = 1, 200 do c[1] = {} c = c[1] end return t",
                "excessive nesting",
            ),
        ];
        for (code, message) in errors {
            let e = enc(&lua, code).unwrap_err();
            assert!(e.contains(message), "{code}: {e}");
        }
    }

    #[test]
    fn decodes_to_tables_and_null() {
        let lua = Lua::new();
        let v = decode(&lua, br#"{"a": [1, "two", null, {"b": false}], "n": 2.5}"#).unwrap();
        lua.globals().set("v", v).unwrap();
        lua.globals().set("null", null()).unwrap();
        let ok: bool = lua
            .load("return v.a[1] == 1 and v.a[2] == 'two' and v.a[3] == null and v.a[4].b == false and v.n == 2.5 and #v.a == 4")
            .eval()
            .unwrap();
        assert!(ok);
        assert!(decode(&lua, b"{nope").unwrap_err().contains("invalid JSON"));
        // Round trip: encode(decode(x)) keeps the document.
        let doc = r#"{"k":[1,2,{"x":"y"}],"s":"\/"}"#;
        let v = decode(&lua, doc.as_bytes()).unwrap();
        let again = encode(&v, &|_| Ok(())).unwrap();
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(doc).unwrap(),
            serde_json::from_str(&again).unwrap(),
        );
        assert_eq!(a, b);
    }
}
