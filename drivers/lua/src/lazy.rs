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
#[derive(Default)]
pub struct CallData {
    input: RefCell<Vec<u8>>,
    object: RefCell<Option<Object>>,
    /// Per lazy kind, the fields marked (materialized as a table, or assigned).
    marked: [Cell<u64>; KINDS],
}

impl CallData {
    /// Starts a call on `bytes` (copied: the tables may be touched until `finish`).
    pub fn begin(&self, bytes: &[u8]) {
        let mut input = self.input.borrow_mut();
        input.clear();
        input.extend_from_slice(bytes);
        *self.object.borrow_mut() = None;
        for m in &self.marked {
            m.set(0);
        }
    }

    /// Ends the call: tables kept by the hook past this point read as empty.
    pub fn finish(&self) {
        self.input.borrow_mut().clear();
        *self.object.borrow_mut() = None;
        for m in &self.marked {
            m.set(0);
        }
    }

    /// The decoded Object (decoded on first use).
    pub fn object(&self) -> mlua::Result<RefMut<'_, Object>> {
        let mut slot = self.object.borrow_mut();
        if slot.is_none() {
            let object = Object::decode(self.input.borrow().as_slice())
                .map_err(|e| mlua::Error::runtime(format!("cannot decode the Object: {e}")))?;
            *slot = Some(object);
        }
        Ok(RefMut::map(slot, |o| o.as_mut().expect("set above")))
    }

    /// Takes the decoded Object out (decoding it if no metamethod did), for the result.
    pub fn take_object(&self) -> mlua::Result<Object> {
        drop(self.object()?);
        Ok(self.object.borrow_mut().take().expect("decoded above"))
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
    fn get(object: &mut Object) -> &mut Option<Self::Message>;
}

pub struct RequestSlot;
pub struct SessionSlot;
pub struct ResponseSlot;

impl Slot for RequestSlot {
    type Message = MiniRequestObject;
    const KIND: Kind = Kind::Request;
    fn get(object: &mut Object) -> &mut Option<MiniRequestObject> {
        &mut object.request
    }
}

impl Slot for SessionSlot {
    type Message = SessionState;
    const KIND: Kind = Kind::Session;
    fn get(object: &mut Object) -> &mut Option<SessionState> {
        &mut object.session
    }
}

impl Slot for ResponseSlot {
    type Message = ResponseObject;
    const KIND: Kind = Kind::Response;
    fn get(object: &mut Object) -> &mut Option<ResponseObject> {
        &mut object.response
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
        let mut object = call.object()?;
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
            let mut object = call.object()?;
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
    let mut changed = false;
    table
        .for_each::<Value, Value>(|key, value| {
            if let Some(i) = field::<S>(&key) {
                seen |= 1 << i;
                changed |= message.set_field(i, value).map_err(mlua::Error::external)?;
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
        if marked & !seen & (1 << i) != 0 {
            changed |= message.set_field(i, Value::Nil)?;
        }
    }
    if !had && !changed {
        *slot = None;
    }
    Ok(changed)
}

/// Replaces the message with a table the hook returned instead of the one it was given.
pub fn replace<S: Slot>(value: Value, object: &mut Object) -> ShapeResult<bool> {
    let new = <Option<S::Message> as GoJson>::from_lua(value)?;
    let slot = S::get(object);
    let changed = *slot != new;
    *slot = new;
    Ok(changed)
}
