//! Reads a hook's answer (the serialized Object the bridge returns) by walking its bytes: the
//! request edits, the return overrides, the session and metadata an authentication hands on, the
//! response. Nothing is decoded that the host does not apply.
//!
//! An answer may hold a message field more than once (the SDK's patches and the bridge's chains
//! append edits): as in a protobuf decode, the occurrences merge, the last value of a singular field
//! wins, and repeated and map fields collect every entry in wire order.
//!
//! Contract: on bytes that `coprocess_proto::wire::validate_object` accepts (the bridge checks every
//! driver's output with it), every value read equals the decoded Object's. On other bytes the reader
//! never panics or reads out of bounds: broken framing in the parts it walks is [`Malformed`];
//! damage in fields it does not read goes unnoticed.

use coprocess_proto::{Message, ResponseObject, ReturnOverrides};

use crate::wire::{map_fields, string_entry, Fields, Malformed, Value};

use coprocess_proto::fields::object::{self, METADATA, REQUEST, RESPONSE, SESSION};
use coprocess_proto::fields::request::{self, BODY, METHOD, RAW_BODY, RETURN_OVERRIDES, URL};
pub(crate) use coprocess_proto::fields::request::{
    ADD_PARAMS, DELETE_HEADERS, DELETE_PARAMS, SET_HEADERS,
};
use coprocess_proto::fields::session::{self, METADATA as SESSION_METADATA};

const OBJECT_MAPS: u32 = map_fields(&[object::METADATA, object::SPEC]);
const REQUEST_MAPS: u32 = map_fields(&[
    request::HEADERS,
    request::SET_HEADERS,
    request::PARAMS,
    request::ADD_PARAMS,
    request::EXTENDED_PARAMS,
]);
const SESSION_MAPS: u32 = map_fields(&[
    session::ACCESS_RIGHTS,
    session::OAUTH_KEYS,
    session::METADATA,
]);

const fn malformed() -> Malformed {
    Malformed { offset: 0 }
}

/// The length-delimited occurrences of top-level field `field` of an Object.
fn parts(object: &[u8], field: u32) -> impl Iterator<Item = Result<&[u8], Malformed>> {
    Fields::new(object, OBJECT_MAPS).filter_map(move |f| match f {
        Ok((n, Value::Len(bytes))) if n == field => Some(Ok(bytes)),
        Ok((n, _)) if n == field => Some(Err(malformed())),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    })
}

/// The length-delimited occurrences of field `field` in the message parts `parts`.
fn inner<'a>(
    parts: impl Iterator<Item = Result<&'a [u8], Malformed>>,
    maps: u32,
    field: u32,
) -> impl Iterator<Item = &'a [u8]> {
    parts.filter_map(Result::ok).flat_map(move |part| {
        Fields::new(part, maps).filter_map(move |f| match f {
            Ok((n, Value::Len(bytes))) if n == field => Some(bytes),
            _ => None,
        })
    })
}

/// The request edits in a hook's answer (its merged `request` fields). [`RequestEdits::read`] walks
/// the request once and keeps the singular fields; map and repeated fields are walked again only
/// when the answer has them.
#[derive(Debug, Clone, Copy)]
pub struct RequestEdits<'a> {
    answer: &'a [u8],
    /// Some occurrence of `request` exists.
    pub present: bool,
    pub url: Option<&'a [u8]>,
    pub method: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
    pub raw_body: Option<&'a [u8]>,
    /// Which map and repeated fields have entries (bit = field number).
    lists: u32,
    has_return_overrides: bool,
}

impl<'a> RequestEdits<'a> {
    /// Walks the answer's top level and every `request` occurrence in it.
    pub fn read(answer: &'a [u8]) -> Result<RequestEdits<'a>, Malformed> {
        let mut edits = RequestEdits {
            answer,
            present: false,
            url: None,
            method: None,
            body: None,
            raw_body: None,
            lists: 0,
            has_return_overrides: false,
        };
        for part in parts(answer, REQUEST) {
            edits.present = true;
            for f in Fields::new(part?, REQUEST_MAPS) {
                let (n, value) = f?;
                let slot = match n {
                    URL => &mut edits.url,
                    METHOD => &mut edits.method,
                    BODY => &mut edits.body,
                    RAW_BODY => &mut edits.raw_body,
                    SET_HEADERS | DELETE_HEADERS | ADD_PARAMS | DELETE_PARAMS => {
                        if !matches!(value, Value::Len(_)) {
                            return Err(malformed());
                        }
                        edits.lists |= 1 << n;
                        continue;
                    }
                    RETURN_OVERRIDES => {
                        if !matches!(value, Value::Len(_)) {
                            return Err(malformed());
                        }
                        edits.has_return_overrides = true;
                        continue;
                    }
                    _ => continue,
                };
                match value {
                    Value::Len(bytes) => *slot = Some(bytes),
                    _ => return Err(malformed()),
                }
            }
        }
        Ok(edits)
    }

    /// Whether the answer has entries in map or repeated request field `field`.
    pub(crate) fn has(&self, field: u32) -> bool {
        self.lists & (1 << field) != 0
    }

    /// The entries of map field `field` of the request (set_headers, add_params), in wire order.
    pub(crate) fn entries(
        &self,
        field: u32,
    ) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), Malformed>> + 'a {
        // Nothing to walk when the first pass saw no entry.
        let answer = if self.has(field) { self.answer } else { &[] };
        inner(parts(answer, REQUEST), REQUEST_MAPS, field).map(string_entry)
    }

    /// The elements of repeated string field `field` (delete_headers, delete_params), in wire order.
    pub(crate) fn strings(&self, field: u32) -> impl Iterator<Item = &'a [u8]> + 'a {
        let answer = if self.has(field) { self.answer } else { &[] };
        inner(parts(answer, REQUEST), REQUEST_MAPS, field)
    }

    /// The merged `return_overrides`, or `None` when the answer has none. Decodes that small message
    /// only.
    pub fn return_overrides(&self) -> Result<Option<ReturnOverrides>, Malformed> {
        if !self.has_return_overrides {
            return Ok(None);
        }
        let mut merged = ReturnOverrides::default();
        for part in inner(parts(self.answer, REQUEST), REQUEST_MAPS, RETURN_OVERRIDES) {
            merged.merge(part).map_err(|_| malformed())?;
        }
        Ok(Some(merged))
    }
}

/// `map<string, string>` field `field` of message parts: the value of the last entry with `key`.
fn map_value<'a>(
    parts: impl Iterator<Item = Result<&'a [u8], Malformed>>,
    maps: u32,
    field: u32,
    key: &[u8],
) -> Result<Option<&'a [u8]>, Malformed> {
    let mut found = None;
    for part in parts {
        for f in Fields::new(part?, maps) {
            if let (n, Value::Len(entry)) = f? {
                if n == field {
                    let (k, v) = string_entry(entry)?;
                    if k == key {
                        found = Some(v);
                    }
                }
            }
        }
    }
    Ok(found)
}

/// What a CustomKeyCheck answer hands on to the later hooks: the session and the Object's metadata,
/// kept encoded (they are only passed on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// The encoded `SessionState` (every occurrence, concatenated: what a decode merges).
    pub session: Vec<u8>,
    /// The Object's `metadata` entries, encoded as Object field 5.
    pub metadata: Vec<u8>,
}

impl Auth {
    /// Reads a CustomKeyCheck answer as Tyk's coprocess auth does: no session, or no `token` in the
    /// Object's metadata (or else in the session's), or an empty one, fails the authentication
    /// (`Ok(None)`).
    pub fn read(answer: &[u8]) -> Result<Option<Auth>, Malformed> {
        let mut session = Vec::new();
        let mut has_session = false;
        for part in parts(answer, SESSION) {
            session.extend_from_slice(part?);
            has_session = true;
        }
        if !has_session {
            return Ok(None);
        }
        let token = match map_value(std::iter::once(Ok(answer)), OBJECT_MAPS, METADATA, b"token")? {
            Some(t) => Some(t),
            None => map_value(
                std::iter::once(Ok(session.as_slice())),
                SESSION_MAPS,
                SESSION_METADATA,
                b"token",
            )?,
        };
        if token.is_none_or(|t| t.is_empty()) {
            return Ok(None);
        }
        let mut metadata = Vec::new();
        for entry in parts(answer, METADATA) {
            crate::wire::put_len_field(&mut metadata, METADATA, entry?);
        }
        Ok(Some(Auth { session, metadata }))
    }
}

/// The merged `response` of an answer (a Response hook's), decoded: that message only.
pub fn response(answer: &[u8]) -> Result<ResponseObject, Malformed> {
    let mut merged = ResponseObject::default();
    for part in parts(answer, RESPONSE) {
        merged.merge(part?).map_err(|_| malformed())?;
    }
    Ok(merged)
}
