//! The Object's messages as Tyk's Lua sees them: each message is a table shaped like the JSON that Go's
//! `encoding/json` writes for it (the struct tags of Tyk's generated `coprocess` package), after
//! `cjson.decode`: snake_case keys, `omitempty` (empty strings, zeros, `false`, empty maps and lists
//! and absent messages are nil), enums and 64-bit integers as numbers, `bytes` as base64 text.
//!
//! [`GoJson`] converts one field value each way; [`Record`] is a message: its field names and
//! per-field access, so the lazy argument tables (`lazy.rs`) can build and read back one field at a
//! time.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use coprocess_driver::proto::{
    AccessDefinition, AccessSpec, BasicAuthData, Header, JwtData, MiniRequestObject, Monitor,
    ResponseObject, ReturnOverrides, SessionState,
};
use mlua::{Lua, Table, Value};

/// A Lua value that does not fit the field it was written to, and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    /// Innermost segment first.
    path: Vec<String>,
    message: String,
}

impl ShapeError {
    pub fn new(message: impl Into<String>) -> Self {
        ShapeError {
            path: Vec::new(),
            message: message.into(),
        }
    }

    /// The same error one level further out (a field name or a map key).
    pub fn at(mut self, segment: impl Into<String>) -> Self {
        self.path.push(segment.into());
        self
    }
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path: Vec<&str> = self.path.iter().rev().map(String::as_str).collect();
        if path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", path.join("."), self.message)
        }
    }
}

impl std::error::Error for ShapeError {}

impl From<mlua::Error> for ShapeError {
    fn from(e: mlua::Error) -> Self {
        match e {
            mlua::Error::RuntimeError(message) => ShapeError::new(message),
            other => ShapeError::new(other.to_string()),
        }
    }
}

pub type ShapeResult<T> = Result<T, ShapeError>;

/// Go's `encoding/json` reads `[]byte` as standard base64; padding is optional here.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The Lua type name (`type(v)`): LuaJIT has one number type.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "number",
        v => v.type_name(),
    }
}

/// `cjson.null` (a NULL light userdata), which `cjson.decode` gives for JSON `null`.
pub fn is_null(value: &Value) -> bool {
    matches!(value, Value::Nil) || matches!(value, Value::LightUserData(p) if p.0.is_null())
}

/// A number as Lua's `tostring` and lua-cjson write it: C's `%.14g`.
pub fn number_text(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.into();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // %g: scientific when the exponent (after rounding to 14 digits) is < -4 or >= 14.
    let scientific = format!("{n:.13e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    if !(-4..14).contains(&exponent) {
        let mantissa = trim_fraction(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let decimals = (13 - exponent).max(0) as usize;
    trim_fraction(&format!("{n:.decimals$}")).to_owned()
}

/// "1.500" -> "1.5", "2.000" -> "2" (only when there is a fraction).
fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

/// One field's value: to the Lua value Tyk's Lua sees (nil where `omitempty` leaves it out), and back.
pub trait GoJson: Sized {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value>;
    fn from_lua(value: Value) -> ShapeResult<Self>;
}

impl GoJson for String {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        if self.is_empty() {
            return Ok(Value::Nil);
        }
        lua.create_string(self).map(Value::String)
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        match value {
            // Go replaces invalid UTF-8 with U+FFFD when it reads the JSON back: so do we.
            Value::String(s) => Ok(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
            ref v if is_null(v) => Ok(String::new()),
            ref v => match as_number(v) {
                Some(n) => Ok(number_text(n)),
                None => Err(ShapeError::new(format!(
                    "expected a string, got {}",
                    kind(v)
                ))),
            },
        }
    }
}

fn integer(value: &Value, min: f64, max: f64) -> ShapeResult<f64> {
    if is_null(value) {
        return Ok(0.0);
    }
    match as_number(value) {
        Some(n) if n.fract() == 0.0 && (min..=max).contains(&n) => Ok(n),
        Some(n) => Err(ShapeError::new(format!(
            "expected an integer, got {}",
            number_text(n)
        ))),
        None => Err(ShapeError::new(format!(
            "expected a number, got {}",
            kind(value)
        ))),
    }
}

impl GoJson for i64 {
    fn to_lua(&self, _: &Lua) -> mlua::Result<Value> {
        Ok(if *self == 0 {
            Value::Nil
        } else {
            Value::Number(*self as f64)
        })
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        // 2^63 is the first double past i64::MAX.
        integer(&value, -9.223_372_036_854_776e18, 9.223_372_036_854_775e18).map(|n| n as i64)
    }
}

impl GoJson for i32 {
    fn to_lua(&self, _: &Lua) -> mlua::Result<Value> {
        Ok(if *self == 0 {
            Value::Nil
        } else {
            Value::Number(f64::from(*self))
        })
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        integer(&value, f64::from(i32::MIN), f64::from(i32::MAX)).map(|n| n as i32)
    }
}

impl GoJson for f64 {
    fn to_lua(&self, _: &Lua) -> mlua::Result<Value> {
        Ok(if *self == 0.0 {
            Value::Nil
        } else {
            Value::Number(*self)
        })
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        if is_null(&value) {
            return Ok(0.0);
        }
        as_number(&value)
            .ok_or_else(|| ShapeError::new(format!("expected a number, got {}", kind(&value))))
    }
}

impl GoJson for bool {
    fn to_lua(&self, _: &Lua) -> mlua::Result<Value> {
        Ok(if *self {
            Value::Boolean(true)
        } else {
            Value::Nil
        })
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        match value {
            Value::Boolean(b) => Ok(b),
            ref v if is_null(v) => Ok(false),
            v => Err(ShapeError::new(format!(
                "expected a boolean, got {}",
                kind(&v)
            ))),
        }
    }
}

/// `bytes` fields (`raw_body`): base64 text, as Go writes `[]byte`.
impl GoJson for Vec<u8> {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        if self.is_empty() {
            return Ok(Value::Nil);
        }
        lua.create_string(BASE64.encode(self)).map(Value::String)
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        match value {
            Value::String(s) => BASE64
                .decode(&*s.as_bytes())
                .map_err(|e| ShapeError::new(format!("expected base64 text: {e}"))),
            ref v if is_null(v) => Ok(Vec::new()),
            v => Err(ShapeError::new(format!(
                "expected base64 text, got {}",
                kind(&v)
            ))),
        }
    }
}

/// The elements of a Lua sequence (`{}` and `cjson.null` are empty); any other key is an error.
fn sequence(value: Value) -> ShapeResult<Vec<Value>> {
    let table = match value {
        Value::Table(t) => t,
        ref v if is_null(v) => return Ok(Vec::new()),
        v => {
            return Err(ShapeError::new(format!(
                "expected a list, got {}",
                kind(&v)
            )))
        }
    };
    let len = table.raw_len();
    let mut items = Vec::with_capacity(len);
    for i in 1..=len {
        items.push(table.raw_get::<Value>(i)?);
    }
    let mut count = 0usize;
    table.for_each::<Value, Value>(|_, _| {
        count += 1;
        Ok(())
    })?;
    if count != len {
        return Err(ShapeError::new(
            "expected a list (keys 1..n), got a table with other keys",
        ));
    }
    Ok(items)
}

fn list_to_lua<T: GoJson>(items: &[T], lua: &Lua) -> mlua::Result<Value> {
    if items.is_empty() {
        return Ok(Value::Nil);
    }
    let table = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        table.raw_set(i + 1, item.to_lua(lua)?)?;
    }
    Ok(Value::Table(table))
}

fn list_from_lua<T: GoJson>(value: Value) -> ShapeResult<Vec<T>> {
    sequence(value)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| T::from_lua(v).map_err(|e| e.at((i + 1).to_string())))
        .collect()
}

impl GoJson for Vec<String> {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        list_to_lua(self, lua)
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        list_from_lua(value)
    }
}

impl GoJson for Vec<f64> {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        // Zeros inside a list are kept: omitempty applies to fields, not elements.
        if self.is_empty() {
            return Ok(Value::Nil);
        }
        let table = lua.create_table_with_capacity(self.len(), 0)?;
        for (i, x) in self.iter().enumerate() {
            table.raw_set(i + 1, *x)?;
        }
        Ok(Value::Table(table))
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        list_from_lua(value)
    }
}

/// The entries of a Lua table used as a JSON object (string keys; `{}` and `cjson.null` are empty).
fn entries(value: Value) -> ShapeResult<Vec<(String, Value)>> {
    let table = match value {
        Value::Table(t) => t,
        ref v if is_null(v) => return Ok(Vec::new()),
        v => {
            return Err(ShapeError::new(format!(
                "expected a table, got {}",
                kind(&v)
            )))
        }
    };
    let mut out = Vec::new();
    table.for_each::<Value, Value>(|k, v| {
        match k {
            Value::String(s) => out.push((String::from_utf8_lossy(&s.as_bytes()).into_owned(), v)),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "expected string keys, got a {} key",
                    kind(&other)
                )))
            }
        }
        Ok(())
    })?;
    Ok(out)
}

fn map_to_lua<T: GoJson>(map: &HashMap<String, T>, lua: &Lua) -> mlua::Result<Value> {
    if map.is_empty() {
        return Ok(Value::Nil);
    }
    let table = lua.create_table_with_capacity(0, map.len())?;
    for (k, v) in map {
        table.raw_set(k.as_str(), v.to_lua(lua)?)?;
    }
    Ok(Value::Table(table))
}

fn map_from_lua<T: GoJson>(value: Value) -> ShapeResult<HashMap<String, T>> {
    entries(value)?
        .into_iter()
        .map(|(k, v)| match T::from_lua(v) {
            Ok(v) => Ok((k, v)),
            Err(e) => Err(e.at(k)),
        })
        .collect()
}

impl GoJson for HashMap<String, String> {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        map_to_lua(self, lua)
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        map_from_lua(value)
    }
}

impl<M: Record + GoJson> GoJson for HashMap<String, M> {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        map_to_lua(self, lua)
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        map_from_lua(value)
    }
}

impl<M: Record + GoJson> GoJson for Vec<M> {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        list_to_lua(self, lua)
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        list_from_lua(value)
    }
}

/// A message field: absent is nil; present is a table, even when every field in it is empty (Go
/// omits a nil pointer, not an empty struct).
impl<M: Record> GoJson for Option<M> {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        match self {
            None => Ok(Value::Nil),
            Some(m) => m.to_table(lua).map(Value::Table),
        }
    }

    fn from_lua(value: Value) -> ShapeResult<Self> {
        if is_null(&value) {
            return Ok(None);
        }
        M::from_value(value).map(Some)
    }
}

/// A message as a table: its fields (the Go JSON names, which are the proto names) one at a time.
pub trait Record: Default + PartialEq + Sized {
    const FIELDS: &'static [&'static str];

    /// Field `index` (of `FIELDS`) as Lua sees it.
    fn field_to_lua(&self, lua: &Lua, index: usize) -> mlua::Result<Value>;

    /// Sets field `index` from a Lua value; `true` when that changed it.
    fn set_field(&mut self, index: usize, value: Value) -> ShapeResult<bool>;

    fn field_index(name: &[u8]) -> Option<usize> {
        Self::FIELDS.iter().position(|f| f.as_bytes() == name)
    }

    fn to_table(&self, lua: &Lua) -> mlua::Result<Table> {
        let table = lua.create_table()?;
        for (i, name) in Self::FIELDS.iter().enumerate() {
            let value = self.field_to_lua(lua, i)?;
            if !value.is_nil() {
                table.raw_set(*name, value)?;
            }
        }
        Ok(table)
    }

    /// A whole message from a table; keys that name no field are ignored, as Go's decoder does.
    fn from_value(value: Value) -> ShapeResult<Self> {
        let mut record = Self::default();
        for (key, value) in entries(value)? {
            if let Some(i) = Self::field_index(key.as_bytes()) {
                record.set_field(i, value)?;
            }
        }
        Ok(record)
    }
}

/// Implements [`Record`] for a prost message from its field list (the names are the proto names, which
/// are also the JSON names Go writes).
macro_rules! record {
    ($ty:ty { $($field:ident),+ $(,)? }) => {
        impl Record for $ty {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),+];

            fn field_to_lua(&self, lua: &Lua, index: usize) -> mlua::Result<Value> {
                let mut i = 0usize;
                $(
                    if index == i {
                        return GoJson::to_lua(&self.$field, lua);
                    }
                    i += 1;
                )+
                let _ = i;
                Ok(Value::Nil)
            }

            fn set_field(&mut self, index: usize, value: Value) -> ShapeResult<bool> {
                let mut i = 0usize;
                $(
                    if index == i {
                        let new = GoJson::from_lua(value)
                            .map_err(|e: ShapeError| e.at(stringify!($field)))?;
                        let changed = self.$field != new;
                        self.$field = new;
                        return Ok(changed);
                    }
                    i += 1;
                )+
                let _ = i;
                Ok(false)
            }
        }
    };
}

record!(ReturnOverrides {
    response_code,
    response_error,
    headers,
    override_error,
    response_body,
});

record!(MiniRequestObject {
    headers,
    set_headers,
    delete_headers,
    body,
    url,
    params,
    add_params,
    extended_params,
    delete_params,
    return_overrides,
    method,
    request_uri,
    scheme,
    raw_body,
});

record!(AccessSpec { url, methods });

record!(AccessDefinition {
    api_name,
    api_id,
    versions,
    allowed_urls,
});

record!(BasicAuthData { password, hash });

record!(JwtData { secret });

record!(Monitor { trigger_limits });

record!(SessionState {
    last_check,
    allowance,
    rate,
    per,
    expires,
    quota_max,
    quota_renews,
    quota_remaining,
    quota_renewal_rate,
    access_rights,
    org_id,
    oauth_client_id,
    oauth_keys,
    basic_auth_data,
    jwt_data,
    hmac_enabled,
    hmac_secret,
    is_inactive,
    apply_policy_id,
    data_expires,
    monitor,
    enable_detailed_recording,
    metadata,
    tags,
    alias,
    last_updated,
    id_extractor_deadline,
    session_lifetime,
    apply_policies,
    certificate,
    max_query_depth,
    key_id,
    post_expiry_action,
    post_expiry_grace_period,
});

record!(Header { key, values });

record!(ResponseObject {
    status_code,
    raw_body,
    body,
    headers,
    multivalue_headers,
});

/// Messages that occur as map values or list elements (not behind an `Option`): a whole table.
macro_rules! nested {
    ($($ty:ty),+) => {$(
        impl GoJson for $ty {
            fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
                self.to_table(lua).map(Value::Table)
            }

            fn from_lua(value: Value) -> ShapeResult<Self> {
                <$ty as Record>::from_value(value)
            }
        }
    )+};
}

nested!(AccessDefinition, AccessSpec, Header);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_percent_14g() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (-42.0, "-42"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1700000000.0, "1700000000"),
            (1e14, "1e+14"),
            (123456789012345.0, "1.2345678901234e+14"),
            (99999999999999.0, "99999999999999"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.0 / 3.0, "0.33333333333333"),
        ];
        for (n, text) in cases {
            assert_eq!(number_text(n), text, "{n}");
        }
    }

    #[test]
    fn shape_errors_name_the_path() {
        let e = ShapeError::new("expected a string, got table")
            .at("X-Key")
            .at("set_headers");
        assert_eq!(
            e.to_string(),
            "set_headers.X-Key: expected a string, got table"
        );
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;
    use coprocess_driver::proto::fixtures;

    /// Every field of a fully populated session and request survives to_table / from_value.
    #[test]
    fn records_round_trip_through_lua_tables() {
        let lua = Lua::new();
        let object = fixtures::fully_populated_object();
        let session = object.session.clone().unwrap();
        let table = session.to_table(&lua).unwrap();
        assert_eq!(
            SessionState::from_value(Value::Table(table)).unwrap(),
            session
        );
        let request = object.request.clone().unwrap();
        let table = request.to_table(&lua).unwrap();
        assert_eq!(
            MiniRequestObject::from_value(Value::Table(table)).unwrap(),
            request
        );
        let response = object.response.clone().unwrap();
        let table = response.to_table(&lua).unwrap();
        assert_eq!(
            ResponseObject::from_value(Value::Table(table)).unwrap(),
            response
        );
    }

    #[test]
    fn tables_look_like_gos_json() {
        let lua = Lua::new();
        let request = MiniRequestObject {
            url: "/x".into(),
            raw_body: vec![0, 255],
            return_overrides: Some(ReturnOverrides::default()),
            ..Default::default()
        };
        lua.globals()
            .set("r", request.to_table(&lua).unwrap())
            .unwrap();
        let shape: String = lua
            .load(
                r#"local keys = {} for k, v in pairs(r) do keys[#keys + 1] = k .. ":" .. type(v) end
                   table.sort(keys) return table.concat(keys, ",") .. " " .. r.raw_body
                   .. " " .. tostring(next(r.return_overrides))"#,
            )
            .eval()
            .unwrap();
        assert_eq!(
            shape,
            "raw_body:string,return_overrides:table,url:string AP8= nil"
        );
    }

    #[test]
    fn wrong_values_are_named() {
        let lua = Lua::new();
        let cases = [
            ("{ rate = 'fast' }", "rate: expected a number, got string"),
            (
                "{ quota_max = 1.5 }",
                "quota_max: expected an integer, got 1.5",
            ),
            ("{ tags = { x = 1 } }", "tags: expected a list (keys 1..n)"),
            (
                "{ metadata = { a = {} } }",
                "metadata.a: expected a string, got table",
            ),
            (
                "{ hmac_enabled = 'yes' }",
                "hmac_enabled: expected a boolean, got string",
            ),
            (
                "{ access_rights = { a = { versions = 3 } } }",
                "access_rights.a.versions: expected a list, got number",
            ),
        ];
        for (code, message) in cases {
            let v: Value = lua.load(format!("return {code}")).eval().unwrap();
            let e = SessionState::from_value(v).unwrap_err().to_string();
            assert!(e.starts_with(message), "{code}: {e}");
        }
        let v: Value = lua.load("return { raw_body = '***' }").eval().unwrap();
        let e = MiniRequestObject::from_value(v).unwrap_err().to_string();
        assert!(e.starts_with("raw_body: expected base64 text"), "{e}");
        // Numbers are accepted where strings go (Lua coerces them too).
        let v: Value = lua
            .load("return { set_headers = { n = 5, f = 0.5 } }")
            .eval()
            .unwrap();
        let r = MiniRequestObject::from_value(v).unwrap();
        assert_eq!(r.set_headers["n"], "5");
        assert_eq!(r.set_headers["f"], "0.5");
    }
}
