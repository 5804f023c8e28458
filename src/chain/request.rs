//! The request a hook chain works on, kept between hooks as Tyk's gateway keeps the live
//! `http.Request` between two coprocess middlewares (DESIGN §6):
//!
//! - after a hook, its answer is applied as `ObjectPostProcess` applies it: the body becomes its
//!   `raw_body`; `delete_headers` then `set_headers` (names compared and stored in canonical MIME
//!   form); `delete_params` then `add_params` on the query; then `url` (refused when Go's
//!   `url.ParseRequestURI` would refuse it) and `method`;
//! - the next hook gets an Object built as `BuildObject` builds it: the current headers, params, url,
//!   method and `raw_body`, `body` only when the body is UTF-8 and the hook is not `raw_body_only`,
//!   no edits (`set_headers`, `delete_headers`, `add_params`, `delete_params` empty) and
//!   `return_overrides` = `{response_code: -1}`; session, spec, metadata, `request_uri`, `scheme` and
//!   `extended_params` as the host sent them. `Host` stays what the host sent (Tyk shows `req.Host`);
//! - the host gets the chain's net effect in the same fields ([`Live::answer`]): applied as Tyk applies
//!   one hook's answer, it leaves the request exactly as the chain left it.
//!
//! Nothing is decoded. When a hook answers with a patch (`CoProcessDriverDispatchPatch`), or its
//! output is its input with fields appended, only the patch is read ([`Changes`]). When it only sets headers or changes url, params or method, the next
//! hook's Object is the previous one with those fields appended (protobuf merges them); deletions and
//! body changes rebuild the request message.

use std::borrow::Cow;

use coprocess_proto::prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use super::edit::{each, push_hook_name, put_bytes, string_entry, varint};
use super::go_rules::{
    canonical_header, encode_query, parse_query, same_header, split_query, valid_request_uri,
};
use crate::api::HookDef;
use crate::dispatch::DriverAnswer;

use coprocess_proto::fields::object::{HOOK_NAME as OBJECT_HOOK_NAME, REQUEST as OBJECT_REQUEST};
use coprocess_proto::fields::overrides::RESPONSE_CODE as OVERRIDES_RESPONSE_CODE;
use coprocess_proto::fields::request::{
    ADD_PARAMS, BODY, DELETE_HEADERS, DELETE_PARAMS, HEADERS, METHOD, PARAMS, RAW_BODY,
    RETURN_OVERRIDES, SET_HEADERS, URL,
};

/// Spare capacity in a hook's Object for what later hooks append (their names, header edits), so
/// that extending it seldom moves it.
const APPEND_ROOM: usize = 512;

/// The rebuilt request fields a patch may set and still leave its request the view plus appended
/// changes (see `Live::answer`); `set_headers` only under canonical names, checked as applied.
const APPENDABLE: u32 = 1 << SET_HEADERS | 1 << RETURN_OVERRIDES | 1 << METHOD;

/// The request fields `BuildObject` fills from the live request (the others are kept as sent).
fn rebuilt_field(tag: u32) -> bool {
    matches!(
        tag,
        HEADERS
            | SET_HEADERS
            | DELETE_HEADERS
            | BODY
            | URL
            | PARAMS
            | ADD_PARAMS
            | DELETE_PARAMS
            | RETURN_OVERRIDES
            | METHOD
            | RAW_BODY
    )
}

type Bytes<'a> = Cow<'a, [u8]>;

/// A key and a value copied into one allocation (a hook's answer does not outlive the chain run;
/// one copy instead of two halves the allocations a net edit costs).
struct OwnedPair {
    /// The key, then the value.
    bytes: Vec<u8>,
    key_len: usize,
}

impl OwnedPair {
    fn new(key: &[u8], value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(key.len() + value.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        OwnedPair {
            bytes,
            key_len: key.len(),
        }
    }

    fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    fn value(&self) -> &[u8] {
        &self.bytes[self.key_len..]
    }

    /// Replaces both, in the same allocation when it is large enough.
    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.clear();
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        self.key_len = key.len();
    }
}

/// A header or query parameter.
struct Entry<'a> {
    key: Bytes<'a>,
    value: Bytes<'a>,
}

/// A name the chain set (to a value) or deleted, for the net answer.
struct NetEdit {
    /// The name, then the value (empty for a delete).
    name_value: OwnedPair,
    deleted: bool,
    /// The answer that made this edit last (1 for the first hook's, see `Live::applied`).
    by: u32,
}

impl NetEdit {
    fn name(&self) -> &[u8] {
        self.name_value.key()
    }

    fn value(&self) -> Option<&[u8]> {
        (!self.deleted).then(|| self.name_value.value())
    }
}

/// The fields of a hook's answer that the gateway applies, read from (part of) its bytes. Absent
/// singular fields are `None`; the repeated ones (header and param edits) are read again where they
/// are applied, so reading an answer allocates nothing.
#[derive(Default)]
struct Answer<'o> {
    /// The rebuilt request fields present (bit `1 << tag`).
    present: u32,
    url: Option<&'o [u8]>,
    method: Option<&'o [u8]>,
    raw_body: Option<&'o [u8]>,
    /// The last `return_overrides.response_code` field seen.
    response_code: Option<i32>,
    overrides_present: bool,
}

/// The last `response_code` in a `ReturnOverrides` message.
fn code_in(overrides: &[u8]) -> Option<i32> {
    let mut code = None;
    each(overrides, |f| {
        if f.tag == OVERRIDES_RESPONSE_CODE && f.wire_type == 0 {
            let mut p = f.payload;
            if let Some(v) = varint(overrides, &mut p) {
                code = Some(v as i32);
            }
        }
    });
    code
}

/// Calls `f` with every field of every top-level `request` record of an Object, and the request
/// payload it sits in.
fn each_request_field<'a>(object: &'a [u8], mut f: impl FnMut(&'a [u8], &super::edit::Record)) {
    each(object, |r| {
        if r.tag == OBJECT_REQUEST && r.wire_type == 2 {
            let request = &object[r.payload..r.end];
            each(request, |field| f(request, field));
        }
    });
}

impl Answer<'_> {
    fn has(&self, tag: u32) -> bool {
        self.present & bit(tag) != 0
    }
}

fn bit(tag: u32) -> u32 {
    1u32.checked_shl(tag).unwrap_or(0)
}

/// Calls `f` with the payload of every `tag` field of the requests in `object`.
fn each_of<'a>(object: &'a [u8], tag: u32, mut f: impl FnMut(&'a [u8])) {
    each_request_field(object, |request, field| {
        if field.tag == tag && field.wire_type == 2 {
            f(&request[field.payload..field.end]);
        }
    });
}

/// What a hook's answer changes, as its bytes state it: a tail appended to the hook's input (what the
/// tail does not set is as it was) or a whole Object (what it does not set is empty, as in a decode).
#[derive(Clone, Copy, Debug)]
pub struct Changes<'o> {
    tail: bool,
    bytes: &'o [u8],
}

impl<'o> Changes<'o> {
    /// The changes of a driver's checked answer to the hook given `input`: a patch is read as it is,
    /// without comparing anything with the input.
    pub(crate) fn of(input: &[u8], answer: &'o DriverAnswer) -> Changes<'o> {
        match answer {
            DriverAnswer::Whole {
                object,
                extends_input,
            } => Self::of_output(input, object.as_slice(), *extends_input),
            DriverAnswer::Patch(patch) => Changes {
                tail: true,
                bytes: patch.as_slice(),
            },
        }
    }

    /// The changes of a whole `output` to the hook given `input` (`extends_input`: whether it starts
    /// with the input, when the caller compared them already): an output that is the input with fields
    /// appended (a patch) is read by its tail.
    pub fn of_output(input: &[u8], output: &'o [u8], extends_input: Option<bool>) -> Changes<'o> {
        let tail = extends_input.unwrap_or_else(|| output.starts_with(input));
        Changes {
            tail,
            bytes: if tail { &output[input.len()..] } else { output },
        }
    }
}

/// What an answer sets a field to (`None`: unchanged). Absent from a whole Object means empty, as in
/// a decode; absent from a tail, unchanged.
fn field_as_set(field: Option<&[u8]>, tail: bool) -> Option<&[u8]> {
    if tail {
        field
    } else {
        Some(field.unwrap_or(&[]))
    }
}

fn read_answer(object: &[u8]) -> Answer<'_> {
    let mut a = Answer::default();
    each_request_field(object, |request, f| {
        if f.wire_type != 2 {
            return;
        }
        if rebuilt_field(f.tag) {
            a.present |= bit(f.tag);
        }
        let v = &request[f.payload..f.end];
        match f.tag {
            URL => a.url = Some(v),
            METHOD => a.method = Some(v),
            RAW_BODY => a.raw_body = Some(v),
            RETURN_OVERRIDES => {
                a.overrides_present = true;
                if let Some(c) = code_in(v) {
                    a.response_code = Some(c);
                }
            }
            _ => {}
        }
    });
    a
}

/// Where encoded request fields go: a length count or a buffer (so a message's length is known
/// before it is written, and nothing is copied twice).
trait Sink {
    fn raw(&mut self, bytes: &[u8]);
    fn field(&mut self, tag: u32, value: &[u8]);
    fn entry(&mut self, tag: u32, key: &[u8], value: &[u8]);
    fn code(&mut self, code: i32);
}

fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn entry_len(key: &[u8], value: &[u8]) -> usize {
    field_len(key.len()) + field_len(value.len())
}

/// `return_overrides = {response_code: code}`, encoded.
fn overrides_bytes(code: i32) -> Vec<u8> {
    let mut o = Vec::with_capacity(11);
    encode_key(OVERRIDES_RESPONSE_CODE, WireType::Varint, &mut o);
    encode_varint(i64::from(code) as u64, &mut o);
    o
}

struct Len(usize);

impl Sink for Len {
    fn raw(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
    fn field(&mut self, _: u32, value: &[u8]) {
        self.0 += field_len(value.len());
    }
    fn entry(&mut self, _: u32, key: &[u8], value: &[u8]) {
        self.0 += field_len(entry_len(key, value));
    }
    fn code(&mut self, code: i32) {
        self.0 += field_len(overrides_bytes(code).len());
    }
}

impl Sink for Vec<u8> {
    fn raw(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn field(&mut self, tag: u32, value: &[u8]) {
        put_bytes(self, tag, value);
    }
    fn entry(&mut self, tag: u32, key: &[u8], value: &[u8]) {
        encode_key(tag, WireType::LengthDelimited, self);
        encode_varint(entry_len(key, value) as u64, self);
        put_bytes(self, 1, key);
        put_bytes(self, 2, value);
    }
    fn code(&mut self, code: i32) {
        put_bytes(self, RETURN_OVERRIDES, &overrides_bytes(code));
    }
}

/// What the next Object needs beyond the previous one.
enum Next {
    /// The previous Object with `append` (request fields) added.
    Extend,
    /// A request message built afresh.
    Rebuild,
}

/// The live request of one chain run; `'i` is the host's input.
pub struct Live<'i> {
    headers: Vec<Entry<'i>>,
    params: Vec<Entry<'i>>,
    url: Bytes<'i>,
    method: Bytes<'i>,
    raw_body: Bytes<'i>,
    raw_utf8: Option<bool>,
    /// The host's `body` and `raw_body` fields as sent (to tell whether its Object is already the
    /// first hook's view).
    sent_body: &'i [u8],
    sent_raw_body: &'i [u8],
    /// Whether `sent_body` holds the same bytes as the request's body (compared once, when read).
    sent_body_is_raw: bool,
    /// Request fields the gateway does not rebuild (`extended_params`, `request_uri`, `scheme`,
    /// unknown fields), as whole records of the host's input.
    kept: Vec<&'i [u8]>,
    /// The host sent a `Host` header: BuildObject shows `req.Host` there whatever hooks did.
    pinned_host: bool,
    net_headers: Vec<NetEdit>,
    net_params: Vec<NetEdit>,
    /// How many answers have been applied (the number of the last one).
    applied: u32,
    /// About the current hook's Object: whether it holds `body` text, whether it is exactly a
    /// BuildObject view (no edits, response_code -1) that the next one may extend, its response_code.
    body_text: bool,
    clean: bool,
    code: Option<i32>,
    /// Request fields to append to the current Object for the next hook.
    append: Vec<u8>,
    next: Next,
    /// The host's Object without `request` and `hook_name` (built on the first rebuild).
    base: Option<Vec<u8>>,
    /// The host's input, and whether its headers and params were read (see [`Live::read_for_one`]).
    input: &'i [u8],
    entries: bool,
    /// The last answer applied was a patch of its input that set no request field but header sets
    /// under their canonical names, `return_overrides`, `method` and fields the gateway keeps: the
    /// net answer may then be that output with the chain's edits appended (see [`Live::answer`]).
    extends_output: bool,
}

/// What the net answer brings in the appended request.
pub enum NetAnswer {
    /// The last hook's output with these bytes appended (nothing to append: the output as it is).
    Append(Vec<u8>),
    /// A whole Object built afresh.
    Whole(Vec<u8>),
}

impl<'i> Live<'i> {
    /// Reads the request of the host's (validated) input.
    pub fn read(input: &'i [u8]) -> Live<'i> {
        Self::read_with(input, true)
    }

    /// What a chain of one hook needs of the request: enough for [`Live::first_input`] and
    /// [`Live::check_changes`], without the headers and params that only applying an answer for a
    /// next hook (or a net answer) needs.
    pub fn read_for_one(input: &'i [u8]) -> Live<'i> {
        Self::read_with(input, false)
    }

    fn read_with(input: &'i [u8], entries: bool) -> Live<'i> {
        let mut live = Live {
            // Room for a typical request's headers and kept fields: no regrowth while reading.
            headers: Vec::with_capacity(if entries { 16 } else { 0 }),
            params: Vec::new(),
            url: Cow::Borrowed(&[]),
            method: Cow::Borrowed(&[]),
            raw_body: Cow::Borrowed(&[]),
            raw_utf8: None,
            sent_body: &[],
            sent_raw_body: &[],
            sent_body_is_raw: false,
            kept: Vec::with_capacity(4),
            pinned_host: false,
            net_headers: Vec::with_capacity(if entries { 4 } else { 0 }),
            net_params: Vec::new(),
            applied: 0,
            body_text: false,
            clean: true,
            code: None,
            // Room for a hook's usual edits (a few headers), for a chain that applies them.
            append: Vec::with_capacity(if entries { 128 } else { 0 }),
            next: Next::Extend,
            base: None,
            extends_output: false,
            input,
            entries,
        };
        let mut overrides_only_code = true;
        each_request_field(input, |request, f| {
            let whole = &request[f.start..f.end];
            if !rebuilt_field(f.tag) {
                live.kept.push(whole);
                return;
            }
            if f.wire_type != 2 {
                return;
            }
            let v = &request[f.payload..f.end];
            match f.tag {
                HEADERS | PARAMS if !entries => {}
                HEADERS | PARAMS => {
                    let (key, value) = string_entry(v);
                    let list = if f.tag == HEADERS {
                        &mut live.headers
                    } else {
                        &mut live.params
                    };
                    list.push(Entry {
                        key: Cow::Borrowed(key),
                        value: Cow::Borrowed(value),
                    });
                }
                URL => live.url = Cow::Borrowed(v),
                METHOD => live.method = Cow::Borrowed(v),
                BODY => live.sent_body = v,
                RAW_BODY => live.sent_raw_body = v,
                RETURN_OVERRIDES => {
                    if let Some(c) = code_in(v) {
                        live.code = Some(c);
                    }
                    each(v, |o| {
                        overrides_only_code &= o.tag == OVERRIDES_RESPONSE_CODE
                    });
                }
                // set_headers, delete_headers, add_params, delete_params: edits in the input.
                _ => live.clean = false,
            }
        });
        live.clean &= overrides_only_code && live.code == Some(-1);
        // A host that sends only `body` gives the body as text: raw_body is the same bytes.
        live.raw_body = Cow::Borrowed(if live.sent_raw_body.is_empty() {
            live.sent_body
        } else {
            live.sent_raw_body
        });
        live.sent_body_is_raw = same_bytes(live.sent_body, &live.raw_body);
        if !live.sent_body.is_empty() && live.sent_body_is_raw {
            live.raw_utf8 = Some(true); // a string field, validated
        }
        live.pinned_host = live.headers.iter().any(|e| same_header(&e.key, b"Host"));
        live
    }

    fn raw_utf8(&mut self) -> bool {
        *self
            .raw_utf8
            .get_or_insert_with(|| std::str::from_utf8(&self.raw_body).is_ok())
    }

    /// Whether `hook`'s Object carries the body as text.
    fn wants_text(&mut self, hook: &HookDef) -> bool {
        !hook.raw_body_only && !self.raw_body.is_empty() && self.raw_utf8()
    }

    /// The first hook's Object: `prepared` (the host's input, readied by the chain) named for `hook`,
    /// rebuilt only when the host's body fields are not the hook's view of the body.
    /// Called before any answer is applied (the body is still the host's).
    pub fn first_input(&mut self, prepared: &[u8], hook: &HookDef) -> Vec<u8> {
        debug_assert_eq!(self.applied, 0, "first_input after an answer");
        let text = self.wants_text(hook);
        let body_ok = if text {
            self.sent_body_is_raw
        } else {
            self.sent_body.is_empty()
        };
        let raw_ok = same_bytes(self.sent_raw_body, &self.raw_body);
        if body_ok && raw_ok {
            self.body_text = text;
            let mut out = Vec::with_capacity(prepared.len() + APPEND_ROOM);
            out.extend_from_slice(prepared);
            push_hook_name(&mut out, &hook.name);
            return out;
        }
        if !self.entries {
            // The view is built afresh, headers and params included: read them after all.
            *self = Live::read(self.input);
        }
        self.build(prepared, hook)
    }

    /// Applies the answer of the hook that was given `input` and answered `output` (a whole Object).
    /// Returns its response_code (merged as a decode would), or why the answer cannot be applied.
    #[cfg(test)]
    pub fn apply(&mut self, input: &[u8], output: &[u8]) -> Result<Option<i32>, String> {
        self.apply_changes(Changes::of_output(input, output, None))
    }

    /// Whether the gateway would apply an answer with these `changes`, without applying it: what the
    /// last hook of a chain of one needs, as its answer is the chain's. The same verdict as
    /// [`Live::apply_changes`].
    pub fn check_changes(&self, changes: Changes<'_>) -> Result<(), String> {
        let url = read_answer(changes.bytes).url;
        self.check_url(field_as_set(url, changes.tail)).map(drop)
    }

    /// The answer's url (`None`: unchanged) when it changes the request's: refused when Go's
    /// `url.ParseRequestURI` would refuse it.
    fn check_url<'a>(&self, url: Option<&'a [u8]>) -> Result<Option<&'a [u8]>, String> {
        let url = url.filter(|u| *u != &*self.url);
        if let Some(u) = url {
            if !valid_request_uri(u) {
                return Err(format!(
                    "the hook answered a url Tyk's gateway refuses: {:?}",
                    String::from_utf8_lossy(u)
                ));
            }
        }
        Ok(url)
    }

    /// Applies a hook's answer, given as the `changes` it makes. Returns its response_code (merged as
    /// a decode would), or why the answer cannot be applied.
    pub fn apply_changes(&mut self, changes: Changes<'_>) -> Result<Option<i32>, String> {
        self.append.clear();
        self.applied += 1;
        let Changes { tail, bytes: part } = changes;
        let a = read_answer(part);
        // Whether the net answer may be this output with the chain's edits appended (see `answer`).
        self.extends_output = tail && a.present & !APPENDABLE == 0;
        let code = match (a.response_code, tail) {
            (Some(c), _) => Some(c),
            (None, true) => self.code.or(a.overrides_present.then_some(0)),
            (None, false) => a.overrides_present.then_some(0),
        };
        let or_empty = |field| field_as_set(field, tail);

        if let Some(body) = or_empty(a.raw_body) {
            if body != &*self.raw_body {
                self.raw_body = Cow::Owned(body.to_vec());
                self.raw_utf8 = None;
                self.next = Next::Rebuild;
            }
        }
        if a.has(DELETE_HEADERS) {
            each_of(part, DELETE_HEADERS, |name| self.delete_header(name));
        }
        if a.has(SET_HEADERS) {
            each_of(part, SET_HEADERS, |entry| {
                let (name, value) = string_entry(entry);
                let key = canonical_header(name);
                // A name the net answer spells differently must not stay in the answer's map.
                self.extends_output &= matches!(key, Cow::Borrowed(_));
                self.set_header(key, value);
            });
        }
        let url = self.check_url(or_empty(a.url))?;
        if url.is_some() || a.has(DELETE_PARAMS) || a.has(ADD_PARAMS) {
            let mut deletes = Vec::new();
            each_of(part, DELETE_PARAMS, |name| deletes.push(name));
            let mut adds = Vec::new();
            each_of(part, ADD_PARAMS, |entry| adds.push(string_entry(entry)));
            self.edit_query(url, &deletes, &adds);
        }
        if let Some(m) = or_empty(a.method) {
            if m != &*self.method {
                self.method = Cow::Owned(m.to_vec());
                put_bytes(&mut self.append, METHOD, m);
            }
        }
        Ok(code)
    }

    fn delete_header(&mut self, name: &[u8]) {
        note(
            &mut self.net_headers,
            &canonical_header(name),
            None,
            same_header,
            self.applied,
        );
        if self.pinned_host && same_header(name, b"Host") {
            return;
        }
        let before = self.headers.len();
        self.headers.retain(|e| !same_header(&e.key, name));
        if self.headers.len() != before {
            self.next = Next::Rebuild;
        }
    }

    /// Sets header `key` (a name in canonical form) to `value`.
    fn set_header(&mut self, key: Cow<'_, [u8]>, value: &[u8]) {
        let applied = self.applied;
        note(
            &mut self.net_headers,
            &key,
            Some(value),
            same_header,
            applied,
        );
        if self.pinned_host && same_header(&key, b"Host") {
            return;
        }
        let mut matching = self
            .headers
            .iter_mut()
            .filter(|e| same_header(&e.key, &key));
        match (matching.next(), matching.next()) {
            (None, _) => {}
            (Some(e), None) if *e.key == *key => {
                // Same spelling: an appended entry replaces it.
                if *e.value != *value {
                    e.value = Cow::Owned(value.to_vec());
                    self.append.entry(HEADERS, &key, value);
                }
                return;
            }
            _ => {
                // Other spellings of the name go: only a rebuilt message can drop them.
                self.headers.retain(|e| !same_header(&e.key, &key));
                self.next = Next::Rebuild;
            }
        }
        self.append.entry(HEADERS, &key, value);
        self.headers.push(Entry {
            key: Cow::Owned(key.into_owned()),
            value: Cow::Owned(value.to_vec()),
        });
    }

    /// The query edits and the new url, as `ObjectPostProcess` does them: the query of the url before
    /// the hook, less `delete_params`, with `add_params` set; then the hook's url, whose query is
    /// replaced by that one (keys sorted, as `Values.Encode` writes them) unless they are equal.
    fn edit_query(&mut self, new_url: Option<&[u8]>, deletes: &[&[u8]], adds: &[(&[u8], &[u8])]) {
        let mut values = parse_query(split_query(&self.url).1);
        for &name in deletes {
            values.remove(name);
            note(
                &mut self.net_params,
                name,
                None,
                |a, b| a == b,
                self.applied,
            );
            let before = self.params.len();
            self.params.retain(|e| *e.key != *name);
            if self.params.len() != before {
                self.next = Next::Rebuild;
            }
        }
        for &(name, value) in adds {
            values.insert(name.to_vec(), vec![value.to_vec()]);
            note(
                &mut self.net_params,
                name,
                Some(value),
                |a, b| a == b,
                self.applied,
            );
            self.params.retain(|e| *e.key != *name);
            self.params.push(Entry {
                key: Cow::Owned(name.to_vec()),
                value: Cow::Owned(value.to_vec()),
            });
            self.append.entry(PARAMS, name, value);
        }
        let target = new_url.unwrap_or(&self.url);
        let (path, query) = split_query(target);
        let url = if parse_query(query) == values {
            target.to_vec()
        } else {
            let mut u = path.to_vec();
            if !values.is_empty() {
                u.push(b'?');
                u.extend_from_slice(&encode_query(&values));
            }
            u
        };
        if url != *self.url {
            put_bytes(&mut self.append, URL, &url);
            self.url = Cow::Owned(url);
        }
    }

    /// The Object for the hook after the one whose answer was just applied.
    pub fn next_input(&mut self, current: Vec<u8>, prepared: &[u8], hook: &HookDef) -> Vec<u8> {
        let text = self.wants_text(hook);
        if matches!(self.next, Next::Rebuild) || !self.clean || text != self.body_text {
            return self.build(prepared, hook);
        }
        let mut out = current;
        if !self.append.is_empty() {
            put_bytes(&mut out, OBJECT_REQUEST, &self.append);
        }
        push_hook_name(&mut out, &hook.name);
        out
    }

    /// The request message as BuildObject builds it, into `s`.
    fn emit_view(&self, s: &mut impl Sink, body_text: bool) {
        for k in &self.kept {
            s.raw(k);
        }
        for e in &self.headers {
            s.entry(HEADERS, &e.key, &e.value);
        }
        for e in &self.params {
            s.entry(PARAMS, &e.key, &e.value);
        }
        for (tag, v) in [(URL, &self.url), (METHOD, &self.method)] {
            if !v.is_empty() {
                s.field(tag, v);
            }
        }
        if body_text {
            s.field(BODY, &self.raw_body);
        }
        if !self.raw_body.is_empty() {
            s.field(RAW_BODY, &self.raw_body);
        }
    }

    /// A fresh Object for `hook`: the host's Object without its request, the view, the hook's name.
    fn build(&mut self, prepared: &[u8], hook: &HookDef) -> Vec<u8> {
        let text = self.wants_text(hook);
        let base = self.base.take().unwrap_or_else(|| {
            let mut b = Vec::with_capacity(prepared.len());
            each(prepared, |r| {
                if r.tag != OBJECT_REQUEST && r.tag != OBJECT_HOOK_NAME {
                    b.extend_from_slice(&prepared[r.start..r.end]);
                }
            });
            b
        });
        let mut len = Len(0);
        self.emit_view(&mut len, text);
        len.code(-1);
        let mut out = Vec::with_capacity(base.len() + field_len(len.0) + APPEND_ROOM);
        out.extend_from_slice(&base);
        self.base = Some(base);
        encode_key(OBJECT_REQUEST, WireType::LengthDelimited, &mut out);
        encode_varint(len.0 as u64, &mut out);
        self.emit_view(&mut out, text);
        out.code(-1);
        push_hook_name(&mut out, &hook.name);
        self.next = Next::Extend;
        self.clean = true;
        self.code = Some(-1);
        self.body_text = text;
        out
    }

    /// The answer for the host after a chain of several hooks: the last hook's output (`output`, two
    /// parts that one after the other are the whole Object: its input and patch, or the Object and
    /// nothing) with its request's edits replaced by the chain's net effect and its other request
    /// fields (the return_overrides among them) kept.
    ///
    /// When the output is a patch of a clean view that only set headers (under canonical names),
    /// return_overrides, method or kept fields, and needs no rebuild, its request already holds the
    /// view but for the last hook's changes ([`Live::append`]), and the edits it holds are among the
    /// net ones: appending the view changes and the net edits gives, decoded, the same Object as the
    /// whole answer, without copying the request twice.
    pub fn answer(&mut self, output: [&[u8]; 2], last: &HookDef) -> NetAnswer {
        if !(self.extends_output && self.clean && matches!(self.next, Next::Extend)) {
            return NetAnswer::Whole(self.whole_answer(output, last));
        }
        // The header sets the last hook made last are in its output already, under the same
        // (canonical) names and with the same values: appending them again changes nothing.
        let skip_last = true;
        let mut len = Len(self.append.len());
        self.emit_net_edits(&mut len, skip_last);
        if len.0 == 0 {
            return NetAnswer::Append(Vec::new());
        }
        let mut out = Vec::with_capacity(field_len(len.0));
        encode_key(OBJECT_REQUEST, WireType::LengthDelimited, &mut out);
        encode_varint(len.0 as u64, &mut out);
        out.extend_from_slice(&self.append);
        self.emit_net_edits(&mut out, skip_last);
        NetAnswer::Append(out)
    }

    /// The chain's net header and param edits, in the fields Tyk reads them from; without the header
    /// sets that the last answer applied made last when `skip_last`.
    fn emit_net_edits(&self, s: &mut impl Sink, skip_last: bool) {
        for edit in &self.net_headers {
            match edit.value() {
                Some(_) if skip_last && edit.by == self.applied => {}
                Some(v) => s.entry(SET_HEADERS, edit.name(), v),
                None => s.field(DELETE_HEADERS, edit.name()),
            }
        }
        for edit in &self.net_params {
            match edit.value() {
                Some(v) => s.entry(ADD_PARAMS, edit.name(), v),
                None => s.field(DELETE_PARAMS, edit.name()),
            }
        }
    }

    /// [`Live::answer`] built afresh: the output's top level and kept request fields, the net edits
    /// and the view.
    fn whole_answer(&mut self, output: [&[u8]; 2], last: &HookDef) -> Vec<u8> {
        let text = self.wants_text(last);
        let mut kept: Vec<&[u8]> = Vec::new();
        for part in output {
            each_request_field(part, |request, f| {
                if !rebuilt_field(f.tag) || f.tag == RETURN_OVERRIDES {
                    kept.push(&request[f.start..f.end]);
                }
            });
        }
        let mut len = Len(0);
        for k in &kept {
            len.raw(k);
        }
        self.emit_net_edits(&mut len, false);
        self.emit_view(&mut len, text);
        let mut out = Vec::with_capacity(output[0].len() + output[1].len() + field_len(len.0));
        for part in output {
            each(part, |r| {
                if r.tag != OBJECT_REQUEST {
                    out.extend_from_slice(&part[r.start..r.end]);
                }
            });
        }
        encode_key(OBJECT_REQUEST, WireType::LengthDelimited, &mut out);
        encode_varint(len.0 as u64, &mut out);
        for k in &kept {
            out.raw(k);
        }
        self.emit_net_edits(&mut out, false);
        self.emit_view(&mut out, text);
        out
    }
}

/// Whether `a` and `b` hold the same bytes; the same slice (a body read from one field twice) is
/// known equal without reading it.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

/// Records a set (`Some`) or delete (`None`) of `name` by answer number `by` in a net edit list: the
/// last edit of a name is its net effect (a set replaces every value, a delete removes them, in
/// either order). Nothing is copied when the edit repeats the one noted (a hook setting what an
/// earlier one set).
fn note(
    net: &mut Vec<NetEdit>,
    name: &[u8],
    value: Option<&[u8]>,
    same: impl Fn(&[u8], &[u8]) -> bool,
    by: u32,
) {
    let deleted = value.is_none();
    let value = value.unwrap_or_default();
    match net.iter_mut().find(|e| same(e.name(), name)) {
        Some(noted) => {
            if noted.name() != name || noted.deleted != deleted || noted.name_value.value() != value
            {
                noted.name_value.set(name, value);
                noted.deleted = deleted;
            }
            noted.by = by;
        }
        None => net.push(NetEdit {
            name_value: OwnedPair::new(name, value),
            deleted,
            by,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_proto::{HookType, Message, MiniRequestObject, Object, ReturnOverrides};
    use std::collections::HashMap;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// An Object as Tyk's BuildObject makes it.
    fn tyk_object() -> Object {
        Object {
            hook_type: HookType::Pre as i32,
            request: Some(MiniRequestObject {
                headers: map(&[("Host", "api.example"), ("Accept", "*/*"), ("X-Old", "o")]),
                params: map(&[("a", "1"), ("b", "2")]),
                url: "/p?a=1&b=2".into(),
                request_uri: "/p?a=1&b=2".into(),
                method: "POST".into(),
                scheme: "http".into(),
                body: "hello".into(),
                raw_body: b"hello".to_vec(),
                return_overrides: Some(ReturnOverrides {
                    response_code: -1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            spec: map(&[("APIID", "a")]),
            ..Default::default()
        }
    }

    fn hook(name: &str, raw_body_only: bool) -> HookDef {
        HookDef {
            name: name.into(),
            raw_body_only,
            ..Default::default()
        }
    }

    /// A hook's answer: either a patch (its input with `patch` appended) or a whole re-encoded Object.
    enum Reply {
        Patch(Box<Object>),
        Whole(Box<dyn Fn(&mut MiniRequestObject)>),
        /// A patch given as bytes (e.g. two records that a decode would merge).
        Raw(Vec<u8>),
    }

    /// Runs `hooks` over `input` as the chain does; returns what each hook saw and the host's answer.
    /// Every chain runs twice side by side: with each answer a whole Object (a driver with
    /// `CoProcessDriverDispatch` only, which copies its input into a patch's answer) and with each
    /// patch as `CoProcessDriverDispatchPatch` returns it; both must give every hook the same bytes
    /// and the host the same answer, byte for byte.
    fn run(input: &Object, hooks: Vec<(HookDef, Reply)>) -> (Vec<Object>, Object) {
        let bytes = input.encode_to_vec();
        let mut live = Live::read(&bytes);
        let mut patched = Live::read(&bytes);
        let mut seen = Vec::new();
        let mut current = live.first_input(&bytes, &hooks[0].0);
        let mut current_patched = patched.first_input(&bytes, &hooks[0].0);
        let mut answer = None;
        for (i, (def, reply)) in hooks.iter().enumerate() {
            if i > 0 {
                current = live.next_input(current, &bytes, def);
                current_patched = patched.next_input(current_patched, &bytes, def);
            }
            assert_eq!(current, current_patched, "hook {i}'s Object, patch path");
            let view = Object::decode(current.as_slice()).unwrap();
            let (out, from_patch) = match reply {
                Reply::Patch(p) => {
                    let p = p.encode_to_vec();
                    (
                        [current.as_slice(), &p].concat(),
                        DriverAnswer::Patch(copy(&p)),
                    )
                }
                Reply::Raw(p) => (
                    [current.as_slice(), p].concat(),
                    DriverAnswer::Patch(copy(p)),
                ),
                Reply::Whole(f) => {
                    let mut o = view.clone();
                    f(o.request.as_mut().unwrap());
                    let whole = o.encode_to_vec();
                    let answer = DriverAnswer::Whole {
                        object: copy(&whole),
                        extends_input: Some(false),
                    };
                    (whole, answer)
                }
            };
            seen.push(view);
            // As the chain calls it: with the output check's finding.
            let extends_input = Some(out.starts_with(&current));
            let code = live
                .apply_changes(Changes::of_output(&current, &out, extends_input))
                .unwrap();
            let code_patched = patched
                .apply_changes(Changes::of(&current, &from_patch))
                .unwrap();
            assert_eq!(code, code_patched);
            if code.is_some_and(|c| c > 0) || i + 1 == hooks.len() {
                let net = net_answer(&mut live, [&out, &[]], def);
                let net_patched = net_answer(&mut patched, from_patch.parts(&current), def);
                assert_eq!(net, net_patched, "the host's answer, patch path");
                answer = Some(Object::decode(net.as_slice()).unwrap());
                break;
            }
        }
        (seen, answer.unwrap())
    }

    fn copy(bytes: &[u8]) -> crate::message::MallocBuf {
        crate::message::MallocBuf::copy_from(bytes)
    }

    /// The net answer's bytes; checked to decode as the whole answer built afresh would.
    fn net_answer(live: &mut Live<'_>, out: [&[u8]; 2], last: &HookDef) -> Vec<u8> {
        let whole = Object::decode(live.whole_answer(out, last).as_slice()).unwrap();
        let (appended, bytes) = match live.answer(out, last) {
            NetAnswer::Append(tail) => (Some(tail.len()), [out[0], out[1], &tail].concat()),
            NetAnswer::Whole(bytes) => (None, bytes),
        };
        assert!(coprocess_proto::wire::validate_object(&bytes).is_ok());
        let answer = Object::decode(bytes.as_slice()).unwrap();
        assert_eq!(answer, whole, "appended: {appended:?}");
        APPENDED.with(|a| a.set(appended));
        bytes
    }

    thread_local! {
        /// Whether the last `net_answer` was the output with bytes appended, and how many.
        static APPENDED: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    }

    fn appended() -> bool {
        APPENDED.with(|a| a.get()).is_some()
    }

    /// How many bytes the last `net_answer` appended to the output (`None`: built afresh).
    fn appended_len() -> Option<usize> {
        APPENDED.with(|a| a.get())
    }

    fn patch(f: impl FnOnce(&mut MiniRequestObject)) -> Reply {
        let mut r = MiniRequestObject::default();
        f(&mut r);
        Reply::Patch(Box::new(Object {
            request: Some(r),
            ..Default::default()
        }))
    }

    fn patch_bytes(f: impl FnOnce(&mut MiniRequestObject)) -> Vec<u8> {
        match patch(f) {
            Reply::Patch(p) => p.encode_to_vec(),
            _ => unreachable!(),
        }
    }

    fn req(o: &Object) -> &MiniRequestObject {
        o.request.as_ref().unwrap()
    }

    /// A chain of one hook reads less of the request (the shortcut) yet gives its hook the same
    /// Object, reading headers and params after all when the view is built afresh (the fallback),
    /// and refuses exactly the answers `apply_changes` refuses.
    #[test]
    fn a_chain_of_one_gives_the_same_object_and_verdicts() {
        let mut text_only = tyk_object();
        text_only.request.as_mut().unwrap().raw_body.clear();
        let mut no_body = tyk_object();
        let r = no_body.request.as_mut().unwrap();
        (r.body, r.raw_body) = (String::new(), Vec::new());
        for object in [tyk_object(), text_only, no_body] {
            let bytes = object.encode_to_vec();
            for raw_body_only in [false, true] {
                let def = hook("one", raw_body_only);
                let mut full = Live::read(&bytes);
                let mut light = Live::read_for_one(&bytes);
                let input = full.first_input(&bytes, &def);
                assert_eq!(light.first_input(&bytes, &def), input);
                let rebuilt = light.entries;
                assert_eq!(
                    rebuilt,
                    Object::decode(input.as_slice()).unwrap() != {
                        let mut o = Object::decode(bytes.as_slice()).unwrap();
                        o.hook_name = "one".into();
                        o
                    }
                );
                let mut whole = Object::decode(input.as_slice()).unwrap();
                whole.request.as_mut().unwrap().url = "relative".into();
                let answers = [
                    [input.as_slice(), &patch_bytes(|r| r.url = "/ok?x=1".into())].concat(),
                    [
                        input.as_slice(),
                        &patch_bytes(|r| r.url = "relative".into()),
                    ]
                    .concat(),
                    [input.as_slice(), &patch_bytes(|r| r.method = "PUT".into())].concat(),
                    whole.encode_to_vec(),
                ];
                for out in answers {
                    let changes = Changes::of_output(&input, &out, None);
                    let verdict = light.check_changes(changes);
                    let applied = Live::read(&bytes).apply_changes(changes);
                    assert_eq!(verdict.is_err(), applied.is_err());
                    assert_eq!(verdict.err(), applied.err());
                }
            }
        }
    }

    #[test]
    fn each_hook_sees_the_request_the_earlier_hooks_left() {
        let hooks = vec![
            (
                hook("set", false),
                patch(|r| {
                    r.set_headers = map(&[("x-new", "1"), ("accept", "text/plain")]);
                    r.delete_headers = vec!["x-old".into()];
                }),
            ),
            (
                hook("whole", false),
                Reply::Whole(Box::new(|r| {
                    r.set_headers = map(&[("X-Whole", "w")]);
                    r.delete_headers = vec!["X-NEW".into()];
                    r.headers.insert("X-Ignored".into(), "not an edit".into());
                    r.method = "PUT".into();
                    r.raw_body = b"changed".to_vec();
                    r.body = "ignored: Tyk takes raw_body".into();
                })),
            ),
            (hook("last", false), patch(|_| {})),
        ];
        let (seen, answer) = run(&tyk_object(), hooks);
        let h = |o: &Object| {
            let mut v: Vec<_> = req(o)
                .headers
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            v.sort();
            v.join(",")
        };
        assert_eq!(h(&seen[1]), "Accept=text/plain,Host=api.example,X-New=1");
        assert!(req(&seen[1]).set_headers.is_empty() && req(&seen[1]).delete_headers.is_empty());
        assert_eq!(
            req(&seen[1])
                .return_overrides
                .as_ref()
                .unwrap()
                .response_code,
            -1
        );
        assert_eq!(seen[1].hook_name, "whole");
        assert_eq!(h(&seen[2]), "Accept=text/plain,Host=api.example,X-Whole=w");
        assert_eq!(req(&seen[2]).method, "PUT");
        assert_eq!(
            (
                req(&seen[2]).body.as_str(),
                req(&seen[2]).raw_body.as_slice()
            ),
            ("changed", &b"changed"[..])
        );
        assert_eq!(req(&seen[2]).request_uri, "/p?a=1&b=2", "kept as sent");
        assert_eq!(seen[2].spec["APIID"], "a");
        // The net effect: X-New set then deleted is a delete; X-Old deleted; Accept, X-Whole set.
        let r = req(&answer);
        let mut deleted = r.delete_headers.clone();
        deleted.sort();
        assert_eq!(deleted, ["X-New", "X-Old"]);
        assert_eq!(
            r.set_headers,
            map(&[("Accept", "text/plain"), ("X-Whole", "w")])
        );
        assert_eq!(
            (r.method.as_str(), r.raw_body.as_slice()),
            ("PUT", &b"changed"[..])
        );
        assert_eq!(h(&answer), h(&seen[2]));
    }

    #[test]
    fn params_and_url_follow_object_post_process() {
        let hooks = vec![
            (
                hook("p", false),
                patch(|r| {
                    r.add_params = map(&[("c", "x y")]);
                    r.delete_params = vec!["a".into()];
                }),
            ),
            (hook("u", false), patch(|r| r.url = "/other?zzz=1".into())),
            (
                hook("same", false),
                patch(|r| r.url = "/other?c=x+y&b=2".into()),
            ),
            (hook("end", false), patch(|_| {})),
        ];
        let (seen, answer) = run(&tyk_object(), hooks);
        assert_eq!(
            req(&seen[1]).url,
            "/p?b=2&c=x+y",
            "query re-encoded, sorted"
        );
        assert_eq!(req(&seen[1]).params, map(&[("b", "2"), ("c", "x y")]));
        assert_eq!(
            req(&seen[2]).url,
            "/other?b=2&c=x+y",
            "a url's own query is replaced by the request's"
        );
        assert_eq!(
            req(&seen[3]).url,
            "/other?c=x+y&b=2",
            "kept when its query has the same values"
        );
        let r = req(&answer);
        assert_eq!(r.add_params, map(&[("c", "x y")]));
        assert_eq!(r.delete_params, ["a"]);
        assert_eq!(r.url, "/other?c=x+y&b=2");
    }

    #[test]
    fn raw_body_only_hooks_get_no_body_text() {
        let hooks = vec![
            (hook("raw", true), patch(|_| {})),
            (hook("text", false), patch(|_| {})),
        ];
        let (seen, _) = run(&tyk_object(), hooks);
        assert_eq!(req(&seen[0]).body, "");
        assert_eq!(req(&seen[0]).raw_body, b"hello");
        assert_eq!(req(&seen[1]).body, "hello");
        // A host that sends only `body` still gives raw_body.
        let mut o = tyk_object();
        o.request.as_mut().unwrap().raw_body.clear();
        let (seen, _) = run(&o, vec![(hook("one", false), patch(|_| {}))]);
        assert_eq!(req(&seen[0]).raw_body, b"hello");
        // Not UTF-8: raw_body only, whatever the hook says.
        let (seen, _) = run(
            &tyk_object(),
            vec![
                (hook("bin", false), patch(|r| r.raw_body = vec![0xff, 0])),
                (hook("next", false), patch(|_| {})),
            ],
        );
        assert_eq!(
            (
                req(&seen[1]).body.as_str(),
                req(&seen[1]).raw_body.as_slice()
            ),
            ("", &[0xff, 0][..])
        );
    }

    #[test]
    fn host_header_stays_the_hosts_and_codes_stop_only_when_positive() {
        let hooks = vec![
            (
                hook("h", false),
                patch(|r| {
                    r.delete_headers = vec!["host".into()];
                    r.return_overrides = Some(ReturnOverrides {
                        response_code: 0,
                        ..Default::default()
                    });
                }),
            ),
            (
                hook("stop", false),
                patch(|r| {
                    r.set_headers = map(&[("X-Stop", "1")]);
                    r.return_overrides = Some(ReturnOverrides {
                        response_code: 202,
                        response_body: "done".into(),
                        ..Default::default()
                    });
                }),
            ),
            (hook("never", false), patch(|_| {})),
        ];
        let (seen, answer) = run(&tyk_object(), hooks);
        assert_eq!(seen.len(), 2, "202 ended the chain, 0 did not");
        assert_eq!(req(&seen[1]).headers["Host"], "api.example");
        let ro = req(&answer).return_overrides.clone().unwrap();
        assert_eq!((ro.response_code, ro.response_body.as_str()), (202, "done"));
        assert_eq!(req(&answer).set_headers["X-Stop"], "1");
        assert_eq!(req(&answer).delete_headers, ["Host"]);
    }

    /// The shortcut: a last hook whose patch only sets headers (canonical names), method or
    /// return_overrides gets its output with the net edits appended; every other last answer is
    /// built afresh. `net_answer` checks that both decode alike in every case.
    #[test]
    fn the_net_answer_extends_a_plain_last_patch_and_only_then() {
        let first = || {
            (
                hook("first", false),
                patch(|r| {
                    r.set_headers = map(&[("X-A", "1"), ("x-b", "b")]);
                    r.delete_headers = vec!["x-old".into()];
                }),
            )
        };
        let plain: [(&str, Reply); 3] = [
            ("header", patch(|r| r.set_headers = map(&[("X-B", "2")]))),
            (
                "method and code",
                patch(|r| {
                    r.method = "PUT".into();
                    r.set_headers = map(&[("Host", "other")]);
                    r.return_overrides = Some(ReturnOverrides {
                        response_code: 0,
                        ..Default::default()
                    });
                }),
            ),
            ("nothing", patch(|_| {})),
        ];
        for (what, last) in plain {
            let (_, answer) = run(&tyk_object(), vec![first(), (hook("last", false), last)]);
            assert!(appended(), "{what}: appended");
            let r = req(&answer);
            assert_eq!(r.delete_headers, ["X-Old"], "{what}");
            assert_eq!(r.set_headers["X-A"], "1", "{what}");
        }
        let rebuilt: [(&str, Reply); 6] = [
            (
                "a name not in canonical form",
                patch(|r| r.set_headers = map(&[("x-c", "3")])),
            ),
            ("a delete", patch(|r| r.delete_headers = vec!["X-B".into()])),
            ("a url", patch(|r| r.url = "/q".into())),
            ("a param", patch(|r| r.add_params = map(&[("p", "1")]))),
            ("a body", patch(|r| r.raw_body = b"new".to_vec())),
            (
                "a whole Object",
                Reply::Whole(Box::new(|r| r.set_headers = map(&[("X-W", "w")]))),
            ),
        ];
        for (what, last) in rebuilt {
            let (_, answer) = run(&tyk_object(), vec![first(), (hook("last", false), last)]);
            assert!(!appended(), "{what}: built afresh");
            assert_eq!(req(&answer).set_headers["X-A"], "1", "{what}");
        }
        // A first answer that needs a rebuild (a body change) leaves nothing to extend.
        let (_, _) = run(
            &tyk_object(),
            vec![
                (hook("body", false), patch(|r| r.raw_body = b"x".to_vec())),
                (
                    hook("last", false),
                    patch(|r| r.set_headers = map(&[("X-L", "l")])),
                ),
            ],
        );
        assert!(
            appended(),
            "the rebuilt view is clean: the last patch extends it"
        );
    }

    fn sets(pairs: &[(&str, &str)]) -> Reply {
        let pairs = map(pairs);
        patch(move |r| r.set_headers = pairs)
    }

    fn headers(o: &Object) -> Vec<(String, String)> {
        let mut h: Vec<_> = req(o).headers.clone().into_iter().collect();
        h.sort();
        h
    }

    /// The request a host gets by applying `answer` to `host` as Tyk applies one hook's answer:
    /// `delete_headers`, then `set_headers`, names in canonical form.
    fn applied_by_host(host: &Object, answer: &Object) -> Vec<(String, String)> {
        let canonical = |n: &str| String::from_utf8(canonical_header(n.as_bytes()).into()).unwrap();
        let mut h: HashMap<String, String> = req(host)
            .headers
            .iter()
            .map(|(k, v)| (canonical(k), v.clone()))
            .collect();
        for name in &req(answer).delete_headers {
            h.remove(&canonical(name));
        }
        for (name, value) in &req(answer).set_headers {
            h.insert(canonical(name), value.clone());
        }
        let mut h: Vec<_> = h.into_iter().collect();
        h.sort();
        h
    }

    fn set_header_of<'o>(o: &'o Object, name: &str) -> Option<&'o str> {
        req(o).set_headers.get(name).map(String::as_str)
    }

    /// The headers the next hook would see after the last one's `set_headers`.
    fn with_set(seen: &Object, name: &str, value: &str) -> Vec<(String, String)> {
        let mut h = headers(seen);
        h.retain(|(k, _)| k != name);
        h.push((name.into(), value.into()));
        h.sort();
        h
    }

    /// The shortcut: header sets that the last hook made last are in its output already and are
    /// not appended again; a chain whose every hook sets the same header answers with the last
    /// output as it is. `net_answer` checks each answer against the one built afresh.
    #[test]
    fn the_last_hooks_own_header_sets_are_not_appended_again() {
        let same = || (hook("h", false), sets(&[("X-Rust-Driver", "rust")]));
        let (seen, answer) = run(&tyk_object(), vec![same(), same(), same()]);
        assert_eq!(appended_len(), Some(0), "the last output as it is");
        assert_eq!(set_header_of(&answer, "X-Rust-Driver"), Some("rust"));
        assert_eq!(applied_by_host(&tyk_object(), &answer), headers(&seen[2]));

        // An earlier hook's set is appended, the last hook's is not.
        let after_a = |last: Reply| {
            let a = (hook("a", false), sets(&[("X-A", "1")]));
            run(&tyk_object(), vec![a, (hook("b", false), last)])
        };
        let (_, answer) = after_a(sets(&[("X-B", "2")]));
        let tail = appended_len().expect("appended");
        assert!(tail > 0);
        assert_eq!(set_header_of(&answer, "X-A"), Some("1"));
        assert_eq!(set_header_of(&answer, "X-B"), Some("2"));
        let (_, answer) = after_a(patch(|_| {}));
        let view_entry = field_len(entry_len(b"X-B", b"2"));
        assert_eq!(
            appended_len(),
            Some(tail - view_entry),
            "X-B is in the tail as a header of the view only, not as a set"
        );
        assert_eq!(set_header_of(&answer, "X-A"), Some("1"));

        // Set, deleted, set again across hooks: the last set is the net edit, no delete remains.
        let hooks = vec![
            (hook("set", false), sets(&[("X-A", "1")])),
            (
                hook("del", false),
                patch(|r| r.delete_headers = vec!["x-a".into()]),
            ),
            (hook("again", false), sets(&[("X-A", "3")])),
        ];
        let (seen, answer) = run(&tyk_object(), hooks);
        assert!(appended(), "the view rebuilt after the delete is clean");
        assert!(req(&answer).delete_headers.is_empty());
        assert_eq!(set_header_of(&answer, "X-A"), Some("3"));
        assert_eq!(
            applied_by_host(&tyk_object(), &answer),
            with_set(&seen[2], "X-A", "3")
        );

        // The same name twice in the last output: its later value is the net one.
        let (seen, answer) = after_a(Reply::Raw(
            [
                patch_bytes(|r| r.set_headers = map(&[("X-A", "2")])),
                patch_bytes(|r| r.set_headers = map(&[("X-A", "4")])),
            ]
            .concat(),
        ));
        assert!(appended());
        assert_eq!(set_header_of(&answer, "X-A"), Some("4"));
        assert_eq!(
            applied_by_host(&tyk_object(), &answer),
            with_set(&seen[1], "X-A", "4")
        );
    }

    /// Where the shortcut must not be taken: names that differ from the net answer's only in case.
    #[test]
    fn header_names_differing_in_case_get_an_answer_built_afresh() {
        // The last hook spells the name in lower case: the answer's map must hold only the
        // canonical spelling.
        let hooks = vec![
            (hook("a", false), sets(&[("X-A", "1")])),
            (hook("b", false), sets(&[("x-a", "2")])),
        ];
        let (seen, answer) = run(&tyk_object(), hooks);
        assert!(!appended());
        assert_eq!(req(&answer).set_headers, map(&[("X-A", "2")]));
        assert_eq!(
            applied_by_host(&tyk_object(), &answer),
            with_set(&seen[1], "X-A", "2")
        );
        // The host sent a name in lower case; the last hook sets it canonically: the request
        // holds both spellings until it is rebuilt, so nothing is appended to it.
        let mut host = tyk_object();
        host.request
            .as_mut()
            .unwrap()
            .headers
            .insert("x-lower".into(), "host".into());
        let hooks = vec![
            (hook("a", false), sets(&[("X-A", "1")])),
            (hook("b", false), sets(&[("X-Lower", "hook")])),
        ];
        let (seen, answer) = run(&host, hooks);
        assert!(!appended());
        let mut want = headers(&seen[1]);
        want.retain(|(k, _)| k != "x-lower");
        want.push(("X-Lower".into(), "hook".into()));
        want.sort();
        assert_eq!(headers(&answer), want, "the view the next hook would get");
        assert_eq!(applied_by_host(&host, &answer), want);
    }

    /// A pair in one allocation reads back its halves, empty ones included, and after `set` too
    /// (shorter in place, longer regrown).
    #[test]
    fn an_owned_pair_reads_back_what_it_was_given() {
        let mut pair = OwnedPair::new(b"X-Name", b"value");
        assert_eq!((pair.key(), pair.value()), (&b"X-Name"[..], &b"value"[..]));
        pair.set(b"K", b"");
        assert_eq!((pair.key(), pair.value()), (&b"K"[..], &b""[..]));
        pair.set(b"", b"a longer value than before");
        assert_eq!(
            (pair.key(), pair.value()),
            (&b""[..], &b"a longer value than before"[..])
        );
    }

    /// A net edit keeps the last spelling and value of a name, a delete having no value.
    #[test]
    fn a_net_edit_keeps_the_last_spelling_and_value() {
        let mut net = Vec::new();
        note(&mut net, b"X-A", Some(b"1"), same_header, 1);
        note(&mut net, b"x-a", None, same_header, 2);
        assert_eq!(net.len(), 1);
        assert_eq!(
            (net[0].name(), net[0].value(), net[0].by),
            (&b"x-a"[..], None, 2)
        );
        note(&mut net, b"X-A", Some(b""), same_header, 3);
        assert_eq!(
            (net[0].name(), net[0].value(), net[0].by),
            (&b"X-A"[..], Some(&b""[..]), 3)
        );
        note(&mut net, b"X-B", Some(b"2"), same_header, 3);
        assert_eq!(
            (net[1].name(), net[1].value()),
            (&b"X-B"[..], Some(&b"2"[..]))
        );
    }

    /// The shortcut (one slice, not read) and the fallback (two slices, compared).
    #[test]
    fn the_same_slice_is_the_same_bytes_unread() {
        let body = b"body".to_vec();
        let copy = body.clone();
        assert!(same_bytes(&body, &body));
        assert!(same_bytes(&body, &copy), "compared");
        assert!(!same_bytes(&body, b"bodz"));
        assert!(!same_bytes(&body[..2], &body), "same start, other length");
        assert!(same_bytes(&[], &copy[..0]));
    }

    #[test]
    fn a_url_go_refuses_is_an_error() {
        let o = tyk_object().encode_to_vec();
        let mut live = Live::read(&o);
        let input = live.first_input(&o, &hook("a", false));
        let mut bad = input.clone();
        bad.extend(
            Object {
                request: Some(MiniRequestObject {
                    url: "no-slash".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        let e = live.apply(&input, &bad).unwrap_err();
        assert!(e.contains("no-slash"), "{e}");
        // A whole Object without a url has the empty url, which Go refuses too.
        assert!(live
            .apply(&input, &Object::default().encode_to_vec())
            .is_err());
    }
}
