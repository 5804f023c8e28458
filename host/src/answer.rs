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

/// The occurrences of one length-delimited `request` field in an answer, in wire order: from the
/// occurrences [`RequestEdits::read`] kept (the usual answer), or, when it kept none because there
/// were too many, walking the answer's `request` parts again. As a decode would, a part that is not
/// length-delimited is passed over, and a walk ends at broken framing.
struct Occurrences<'a> {
    field: u32,
    /// What `read` kept, and how far this iterator is in it.
    kept: Kept<'a>,
    next_kept: usize,
    /// The answer's top level, still to walk for `request` parts (`None`: only what was kept).
    top: Option<Fields<'a>>,
    /// The part being walked.
    current: Fields<'a>,
}

impl<'a> Iterator for Occurrences<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.next_kept < self.kept.len.min(KEPT) {
            let (n, bytes) = self.kept.found[self.next_kept];
            self.next_kept += 1;
            if n == self.field {
                return Some(bytes);
            }
        }
        loop {
            for f in self.current.by_ref() {
                if let Ok((n, Value::Len(bytes))) = f {
                    if n == self.field {
                        return Some(bytes);
                    }
                }
            }
            let top = self.top.as_mut()?;
            loop {
                if let (REQUEST, Value::Len(part)) = top.next()?.ok()? {
                    self.current = Fields::new(part, REQUEST_MAPS);
                    break;
                }
            }
        }
    }
}

/// Occurrences of [`LISTS`] fields an answer may have for them to be kept by the first walk: an
/// answer of the bridge has a few (its request as sent, then the hooks' appended edits).
const KEPT: usize = 16;

/// The occurrences of [`LISTS`] fields in an answer, in wire order, as (field, contents); `len`
/// greater than [`KEPT`] means there were more and none is kept.
#[derive(Debug, Clone, Copy)]
struct Kept<'a> {
    found: [(u32, &'a [u8]); KEPT],
    len: usize,
}

impl<'a> Kept<'a> {
    const NONE: Kept<'static> = Kept {
        found: [(0, &[]); KEPT],
        len: 0,
    };

    fn push(&mut self, field: u32, bytes: &'a [u8]) {
        if let Some(slot) = self.found.get_mut(self.len) {
            *slot = (field, bytes);
        }
        self.len += 1;
    }

    fn complete(&self) -> bool {
        self.len <= KEPT
    }
}

/// Request fields whose occurrences [`RequestEdits`] locates for a second reading: the map and
/// repeated fields it applies, and return_overrides.
const LISTS: [u32; 5] = [
    SET_HEADERS,
    DELETE_HEADERS,
    ADD_PARAMS,
    DELETE_PARAMS,
    RETURN_OVERRIDES,
];

/// The request edits in a hook's answer (its merged `request` fields). [`RequestEdits::read`] walks
/// the request once, keeps the singular fields and the occurrences of the map and repeated fields
/// (and return_overrides), up to [`KEPT`] of them; with more, those are read by walking the answer
/// again.
#[derive(Debug, Clone, Copy)]
pub struct RequestEdits<'a> {
    answer: &'a [u8],
    /// Some occurrence of `request` exists.
    pub present: bool,
    pub url: Option<&'a [u8]>,
    pub method: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
    pub raw_body: Option<&'a [u8]>,
    /// Which of [`LISTS`] the answer has (bit = field number).
    lists: u32,
    /// Their occurrences, so that reading them needs no second walk.
    kept: Kept<'a>,
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
            kept: Kept::NONE,
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
                    _ if LISTS.contains(&n) => {
                        let Value::Len(bytes) = value else {
                            return Err(malformed());
                        };
                        edits.kept.push(n, bytes);
                        edits.lists |= 1 << n;
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

    /// The occurrences of `field`, one of [`LISTS`].
    fn occurrences(&self, field: u32) -> Occurrences<'a> {
        let mut occurrences = Occurrences {
            field,
            kept: Kept::NONE,
            next_kept: 0,
            top: None,
            current: Fields::new(&[], REQUEST_MAPS),
        };
        if !self.has(field) {
            // Nothing to read.
        } else if self.kept.complete() {
            occurrences.kept = self.kept;
        } else {
            occurrences.top = Some(Fields::new(self.answer, OBJECT_MAPS));
        }
        occurrences
    }

    /// The entries of map field `field` of the request (set_headers, add_params), in wire order.
    pub(crate) fn entries(
        &self,
        field: u32,
    ) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), Malformed>> + 'a {
        self.occurrences(field).map(string_entry)
    }

    /// The elements of repeated string field `field` (delete_headers, delete_params), in wire order.
    pub(crate) fn strings(&self, field: u32) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.occurrences(field)
    }

    /// The merged `return_overrides`, or `None` when the answer has none. Decodes that small message
    /// only.
    pub fn return_overrides(&self) -> Result<Option<ReturnOverrides>, Malformed> {
        if !self.has(RETURN_OVERRIDES) {
            return Ok(None);
        }
        let mut merged = ReturnOverrides::default();
        for part in self.occurrences(RETURN_OVERRIDES) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_proto::{MiniRequestObject, Object};

    fn answer_with(request: MiniRequestObject) -> Vec<u8> {
        Object {
            request: Some(request),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn edit(header: &str, value: &str, deleted: &str, code: i32) -> MiniRequestObject {
        MiniRequestObject {
            set_headers: [(header.to_owned(), value.to_owned())].into(),
            delete_headers: vec![deleted.to_owned()],
            url: "/u".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: code,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn read_back(answer: &[u8]) -> (RequestEdits<'_>, Vec<(String, String)>, Vec<String>, i32) {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        let edits = RequestEdits::read(answer).unwrap();
        let set = edits
            .entries(SET_HEADERS)
            .map(|e| e.map(|(k, v)| (text(k), text(v))).unwrap())
            .collect();
        let deleted = edits.strings(DELETE_HEADERS).map(text).collect();
        let code = edits.return_overrides().unwrap().unwrap().response_code;
        (edits, set, deleted, code)
    }

    #[test]
    fn lists_are_read_from_what_the_first_walk_kept() {
        // The request as sent, then an appended edit, as the bridge answers.
        let mut answer = answer_with(edit("X-A", "1", "X-Gone", -1));
        // A top-level field between the parts, as an appended patch may leave.
        answer.extend(
            Object {
                hook_name: "h".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        answer.extend(answer_with(edit("X-B", "2", "X-Also", 418)));
        let (edits, set, deleted, code) = read_back(&answer);
        assert!(edits.kept.complete(), "the shortcut is taken");
        assert_eq!(
            set,
            [
                ("X-A".to_owned(), "1".to_owned()),
                ("X-B".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(deleted, ["X-Gone", "X-Also"]);
        assert_eq!(code, 418);
        assert_eq!(edits.url, Some(&b"/u"[..]));
        assert_eq!(edits.strings(DELETE_PARAMS).count(), 0);
        assert!(!edits.has(ADD_PARAMS));
    }

    #[test]
    fn an_answer_with_more_occurrences_than_kept_is_walked_again() {
        let mut many = edit("X-A", "1", "X-Gone", 418);
        many.set_headers = (0..KEPT)
            .map(|i| (format!("X-{i}"), i.to_string()))
            .collect();
        let mut answer = answer_with(many);
        answer.extend(answer_with(edit("X-B", "2", "X-Also", 0)));
        let (edits, set, deleted, code) = read_back(&answer);
        assert!(!edits.kept.complete(), "the fallback is taken");
        let decoded = Object::decode(answer.as_slice()).unwrap().request.unwrap();
        assert_eq!(set.len(), KEPT + 1);
        assert_eq!(set.last().unwrap(), &("X-B".to_owned(), "2".to_owned()));
        let set: std::collections::HashMap<String, String> = set.into_iter().collect();
        assert_eq!(set, decoded.set_headers);
        assert_eq!(deleted, decoded.delete_headers);
        // Merged as a decode merges: the later occurrence's 0 is proto3's default, so 418 stays.
        assert_eq!(code, 418);
        assert_eq!(code, decoded.return_overrides.unwrap().response_code);
    }
}
