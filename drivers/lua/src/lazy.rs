//! The hook's arguments as lazy tables: `request`, `session` and `response` are empty tables whose
//! metatable builds a field the first time the hook reads it (decoding the Object then, once), and
//! records which fields the hook assigned. `spec` reads its values straight from the serialized Object.
//!
//! So a hook that touches nothing costs three small tables and no decode; after the call only the
//! fields the hook read or wrote are compared with the Object, and the Object is re-encoded only when
//! one of them changed.
//!
//! Why it is exact: a field read through `__index` that is a table is stored in the table (`rawset`), so
//! in-place changes to it are seen afterwards; a scalar read is not stored (it cannot be changed in
//! place); an assignment to an absent key goes through `__newindex`, which marks the field assigned.
//! After the call, a field is: the table's raw value if present; empty if marked but absent (the hook
//! assigned nil); otherwise the Object's value. `pairs`, `next` and `cjson.encode` fill the table in
//! first (see `fill`), so iteration sees every field.

use std::cell::{Cell, RefCell, RefMut};

use coprocess_driver::proto::{wire, MiniRequestObject, Object, ResponseObject, SessionState};
use coprocess_driver::Message;
use mlua::{Lua, Table, Value};

use crate::record::{GoJson, Record, ShapeError, ShapeResult};

/// The Object of the call in progress, shared by the metamethods of one Lua state.
///
/// Each top-level field the hook touches is decoded on its own (a partial Object holding just that
/// field), so reading `request` does not decode the session; the result is the input with the
/// changed fields' records replaced (`splice`), so unchanged fields are copied, not re-encoded.
#[derive(Default)]
pub struct CallData {
    input: RefCell<Vec<u8>>,
    parts: [RefCell<Option<Object>>; PARTS],
    /// Per lazy kind, the fields marked (materialized as a table, or assigned).
    marked: [Cell<u64>; KINDS],
}

/// The top-level fields decoded separately: request, session, metadata, spec, response.
const PARTS: usize = 5;
pub use coprocess_driver::proto::fields::object::{METADATA, REQUEST, RESPONSE, SESSION, SPEC};

fn part_index(field: u32) -> usize {
    match field {
        REQUEST => 0,
        SESSION => 1,
        METADATA => 2,
        SPEC => 3,
        RESPONSE => 4,
        _ => unreachable!("field {field} is not decoded separately"),
    }
}

/// The top-level records of a serialized message: (field number, byte range of the whole record).
fn records(bytes: &[u8]) -> Result<Vec<(u32, std::ops::Range<usize>)>, String> {
    use coprocess_driver::proto::prost::encoding::decode_varint;
    let bad = |e: &dyn std::fmt::Display| format!("malformed Object: {e}");
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let start = bytes.len() - rest.len();
        let key = decode_varint(&mut rest).map_err(|e| bad(&e))?;
        let skip = match key & 7 {
            0 => {
                decode_varint(&mut rest).map_err(|e| bad(&e))?;
                0
            }
            1 => 8,
            2 => usize::try_from(decode_varint(&mut rest).map_err(|e| bad(&e))?)
                .map_err(|e| bad(&e))?,
            5 => 4,
            other => return Err(bad(&format!("wire type {other}"))),
        };
        if skip > rest.len() {
            return Err(bad(&"truncated record"));
        }
        rest = &rest[skip..];
        out.push(((key >> 3) as u32, start..bytes.len() - rest.len()));
    }
    Ok(out)
}

impl CallData {
    /// Starts a call on `bytes` (copied: the tables may be touched until `finish`).
    pub fn begin(&self, bytes: &[u8]) {
        let mut input = self.input.borrow_mut();
        input.clear();
        input.extend_from_slice(bytes);
        self.reset();
    }

    /// Ends the call: tables kept by the hook past this point read as empty.
    pub fn finish(&self) {
        self.input.borrow_mut().clear();
        self.reset();
    }

    fn reset(&self) {
        for p in &self.parts {
            *p.borrow_mut() = None;
        }
        for m in &self.marked {
            m.set(0);
        }
    }

    /// An Object holding only top-level field `field` of the input (decoded on first use; changes
    /// made to it are what `splice` writes).
    pub fn part(&self, field: u32) -> mlua::Result<RefMut<'_, Object>> {
        let mut slot = self.parts[part_index(field)].borrow_mut();
        if slot.is_none() {
            let input = self.input.borrow();
            let mut only = Vec::new();
            for (f, range) in records(&input).map_err(mlua::Error::runtime)? {
                if f == field {
                    only.extend_from_slice(&input[range]);
                }
            }
            let object = Object::decode(only.as_slice())
                .map_err(|e| mlua::Error::runtime(format!("cannot decode the Object: {e}")))?;
            *slot = Some(object);
        }
        Ok(RefMut::map(slot, |o| o.as_mut().expect("set above")))
    }

    /// The input with the records of `changed` fields replaced by those fields' parts.
    pub fn splice(&self, changed: &[u32]) -> Result<Vec<u8>, String> {
        let input = self.input.borrow();
        let mut out = Vec::with_capacity(input.len() + 64);
        for (f, range) in records(&input)? {
            if !changed.contains(&f) {
                out.extend_from_slice(&input[range]);
            }
        }
        for &field in changed {
            let part = self.part(field).map_err(|e| e.to_string())?;
            part.encode(&mut out).map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// `spec[key]`, read from the serialized Object.
    pub fn spec(&self, key: &str) -> Option<String> {
        wire::spec_value(&self.input.borrow(), key).map(str::to_owned)
    }

    pub fn marked(&self, kind: Kind) -> u64 {
        self.marked[kind as usize].get()
    }

    fn mark(&self, kind: Kind, field: usize) {
        let m = &self.marked[kind as usize];
        m.set(m.get() | 1 << field);
    }
}

pub const KINDS: usize = 3;

/// The lazy tables, and where each one's message lives in the Object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request = 0,
    Session = 1,
    Response = 2,
}

/// A message of the Object behind a lazy table.
pub trait Slot {
    type Message: Record;
    const KIND: Kind;
    /// The Object's field number.
    const FIELD: u32;
    fn get(object: &mut Object) -> &mut Option<Self::Message>;
    /// `(body, raw_body)` of a message that carries a body.
    fn body(_message: &Self::Message) -> Option<(&str, &[u8])> {
        None
    }
    fn set_raw_body(_message: &mut Self::Message, _raw: Vec<u8>) {}
}

/// Tyk's gateway sends `raw_body` and ignores `body`: a hook that changed the text of the body but
/// not its bytes meant the body, so the bytes follow the text (otherwise the change would be lost).
fn raw_body_follows_text<S: Slot>(message: &mut S::Message) {
    if let Some((text, _)) = S::body(message) {
        let bytes = text.as_bytes().to_vec();
        S::set_raw_body(message, bytes);
    }
}

pub struct RequestSlot;
pub struct SessionSlot;
pub struct ResponseSlot;

impl Slot for RequestSlot {
    type Message = MiniRequestObject;
    const KIND: Kind = Kind::Request;
    const FIELD: u32 = REQUEST;
    fn get(object: &mut Object) -> &mut Option<MiniRequestObject> {
        &mut object.request
    }
    fn body(m: &MiniRequestObject) -> Option<(&str, &[u8])> {
        Some((&m.body, &m.raw_body))
    }
    fn set_raw_body(m: &mut MiniRequestObject, raw: Vec<u8>) {
        m.raw_body = raw;
    }
}

impl Slot for SessionSlot {
    type Message = SessionState;
    const KIND: Kind = Kind::Session;
    const FIELD: u32 = SESSION;
    fn get(object: &mut Object) -> &mut Option<SessionState> {
        &mut object.session
    }
}

impl Slot for ResponseSlot {
    type Message = ResponseObject;
    const KIND: Kind = Kind::Response;
    const FIELD: u32 = RESPONSE;
    fn get(object: &mut Object) -> &mut Option<ResponseObject> {
        &mut object.response
    }
    fn body(m: &ResponseObject) -> Option<(&str, &[u8])> {
        Some((&m.body, &m.raw_body))
    }
    fn set_raw_body(m: &mut ResponseObject, raw: Vec<u8>) {
        m.raw_body = raw;
    }
}

fn field<S: Slot>(key: &Value) -> Option<usize> {
    match key {
        Value::String(s) => S::Message::field_index(&s.as_bytes()),
        _ => None,
    }
}

/// `__index`: builds the field from the Object (tables are kept in the table).
pub fn index<S: Slot>(lua: &Lua, call: &CallData, table: Table, key: Value) -> mlua::Result<Value> {
    let Some(i) = field::<S>(&key) else {
        return Ok(Value::Nil);
    };
    if call.marked(S::KIND) & (1 << i) != 0 {
        return Ok(Value::Nil); // assigned nil by the hook
    }
    let value = {
        let mut object = call.part(S::FIELD)?;
        match S::get(&mut object) {
            Some(message) => message.field_to_lua(lua, i)?,
            None => Value::Nil,
        }
    };
    if let Value::Table(_) = value {
        table.raw_set(key, value.clone())?;
        call.mark(S::KIND, i);
    }
    Ok(value)
}

/// `__newindex`: marks the field assigned and stores the value.
pub fn new_index<S: Slot>(
    call: &CallData,
    table: Table,
    key: Value,
    value: Value,
) -> mlua::Result<()> {
    if let Some(i) = field::<S>(&key) {
        call.mark(S::KIND, i);
    }
    table.raw_set(key, value)
}

/// Stores every field the table does not hold yet (for `pairs`, `next`, `cjson.encode`).
pub fn fill<S: Slot>(lua: &Lua, call: &CallData, table: &Table) -> mlua::Result<()> {
    for (i, name) in S::Message::FIELDS.iter().enumerate() {
        if call.marked(S::KIND) & (1 << i) != 0 || !table.raw_get::<Value>(*name)?.is_nil() {
            continue;
        }
        let value = {
            let mut object = call.part(S::FIELD)?;
            match S::get(&mut object) {
                Some(message) => message.field_to_lua(lua, i)?,
                None => Value::Nil,
            }
        };
        if !value.is_nil() {
            table.raw_set(*name, value)?;
            call.mark(S::KIND, i);
        }
    }
    Ok(())
}

/// Whether the hook left the table as it got it: nothing stored, nothing assigned.
pub fn untouched<S: Slot>(call: &CallData, table: &Table) -> bool {
    call.marked(S::KIND) == 0 && table.is_empty()
}

/// Applies what the hook did to the lazy table to `object`; `true` when the message changed.
pub fn apply<S: Slot>(call: &CallData, table: &Table, object: &mut Object) -> ShapeResult<bool> {
    let marked = call.marked(S::KIND);
    let slot = S::get(object);
    let had = slot.is_some();
    let message = slot.get_or_insert_with(Default::default);
    let mut seen = 0u64;
    let mut changed = 0u64;
    table
        .for_each::<Value, Value>(|key, value| {
            if let Some(i) = field::<S>(&key) {
                seen |= 1 << i;
                if message.set_field(i, value).map_err(mlua::Error::external)? {
                    changed |= 1 << i;
                }
            }
            Ok(())
        })
        .map_err(|e| match e {
            mlua::Error::ExternalError(inner) => inner
                .downcast_ref::<ShapeError>()
                .cloned()
                .unwrap_or_else(|| ShapeError::new(inner.to_string())),
            other => ShapeError::from(other),
        })?;
    for i in 0..S::Message::FIELDS.len() {
        if marked & !seen & (1 << i) != 0 && message.set_field(i, Value::Nil)? {
            changed |= 1 << i;
        }
    }
    let bit = |name: &[u8]| S::Message::field_index(name).map_or(0, |i| 1u64 << i);
    let (text, raw) = (bit(b"body"), bit(b"raw_body"));
    if changed & text != 0 && changed & raw == 0 {
        raw_body_follows_text::<S>(message);
    }
    if !had && changed == 0 {
        *slot = None;
    }
    Ok(changed != 0)
}

/// Replaces the message with a table the hook returned instead of the one it was given.
pub fn replace<S: Slot>(value: Value, object: &mut Object) -> ShapeResult<bool> {
    let mut new = <Option<S::Message> as GoJson>::from_lua(value)?;
    let slot = S::get(object);
    if let Some(message) = new.as_mut() {
        let before = slot.as_ref().and_then(S::body).unwrap_or(("", &[]));
        let after = S::body(message).unwrap_or(("", &[]));
        // A table built afresh without raw_body gives its body as text only.
        if after.0 != before.0 && (after.1 == before.1 || after.1.is_empty()) {
            raw_body_follows_text::<S>(message);
        }
    }
    let changed = *slot != new;
    *slot = new;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_driver::proto::fixtures;

    #[test]
    fn parts_decode_one_field_and_splice_replaces_only_the_changed_ones() {
        let original = fixtures::fully_populated_object();
        // A patched input (as a chain hands over): the request field occurs twice and merges.
        let mut input = original.encode_to_vec();
        let patch = Object {
            request: Some(MiniRequestObject {
                set_headers: [("X-Patched".to_owned(), "1".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        input.extend(patch.encode_to_vec());
        let mut expected = Object::decode(input.as_slice()).unwrap();

        let call = CallData::default();
        call.begin(&input);
        {
            let request = call.part(REQUEST).unwrap();
            assert_eq!(request.request, expected.request);
            assert!(request.session.is_none() && request.spec.is_empty());
        }
        call.part(REQUEST).unwrap().request.as_mut().unwrap().url = "/new".into();
        call.part(SESSION).unwrap().session = None;
        let out = call.splice(&[REQUEST, SESSION]).unwrap();
        expected.request.as_mut().unwrap().url = "/new".into();
        expected.session = None;
        assert_eq!(Object::decode(out.as_slice()).unwrap(), expected);
        // Unchanged fields are copied as they were.
        assert_eq!(call.splice(&[]).unwrap(), input);
        call.finish();
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let call = CallData::default();
        for bad in [&[0x1a, 0x05, 0x01][..], &[0x0b], &[0x80]] {
            call.begin(bad);
            assert!(call.part(REQUEST).is_err(), "{bad:?}");
            assert!(call.splice(&[]).is_err(), "{bad:?}");
        }
    }
}
