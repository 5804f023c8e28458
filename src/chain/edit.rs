//! Reading and editing serialized `coprocess.Object`s at the top level, without decoding them: the
//! chain runs these on every hook, and a decode-modify-encode would copy every header and body each
//! time. All functions expect a buffer that `wire::validate_object` accepted; on anything else they
//! stay in bounds and give a harmless answer (`None` / unchanged).
//!
//! Protobuf's merge rules do the rest: a field appended to an Object overrides a singular scalar
//! (`hook_name`), merges into a message (`request.return_overrides`) and adds a map entry (`spec`).

use coprocess_proto::prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use coprocess_proto::fields::object::{
    HOOK_NAME as OBJECT_HOOK_NAME, METADATA as OBJECT_METADATA, REQUEST as OBJECT_REQUEST,
    SESSION as OBJECT_SESSION, SPEC as OBJECT_SPEC,
};
use coprocess_proto::fields::overrides::{
    RESPONSE_CODE as OVERRIDES_RESPONSE_CODE, RESPONSE_ERROR as OVERRIDES_RESPONSE_ERROR,
};
use coprocess_proto::fields::request::RETURN_OVERRIDES as REQUEST_RETURN_OVERRIDES;
use coprocess_proto::fields::session::METADATA as SESSION_METADATA;

pub(super) fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

/// One field record: its number, wire type, where the record starts, where its payload starts and
/// where it ends.
pub(crate) struct Record {
    pub tag: u32,
    pub wire_type: u8,
    pub start: usize,
    pub payload: usize,
    pub end: usize,
}

/// Reads the record at `pos` and moves past it. Groups are skipped whole (prost accepts them as
/// unknown fields).
///
/// The records every encoder writes for the fields the chain reads (a one-byte key; a length of one
/// byte, or a one-byte varint) are read inline; any other goes through [`record_general`].
#[inline(always)]
pub(super) fn record(buf: &[u8], pos: &mut usize) -> Option<Record> {
    let start = *pos;
    if let (Some(&key), Some(&b0)) = (buf.get(start), buf.get(start + 1)) {
        if (8..0x80).contains(&key) && b0 < 0x80 {
            let (tag, wire_type) = (u32::from(key >> 3), key & 7);
            let after = start + 2;
            let (payload, end) = match wire_type {
                0 => (start + 1, after),
                2 => (after, after + usize::from(b0)),
                _ => return record_general(buf, pos),
            };
            if end > buf.len() {
                return None;
            }
            *pos = end;
            return Some(Record {
                tag,
                wire_type,
                start,
                payload,
                end,
            });
        }
    }
    record_general(buf, pos)
}

/// [`record`] for any record.
fn record_general(buf: &[u8], pos: &mut usize) -> Option<Record> {
    let start = *pos;
    let key = varint(buf, pos)?;
    let tag = u32::try_from(key >> 3).ok()?;
    let wire_type = (key & 7) as u8;
    let payload = *pos;
    match wire_type {
        0 => {
            varint(buf, pos)?;
        }
        1 => *pos = pos.checked_add(8)?,
        2 => {
            let len = usize::try_from(varint(buf, pos)?).ok()?;
            let payload_start = *pos;
            *pos = pos.checked_add(len)?;
            if *pos > buf.len() {
                return None;
            }
            return Some(Record {
                tag,
                wire_type,
                start,
                payload: payload_start,
                end: *pos,
            });
        }
        3 => loop {
            let inner = record_general(buf, pos)?;
            if inner.wire_type == 4 && inner.tag == tag {
                break;
            }
        },
        4 => {}
        5 => *pos = pos.checked_add(4)?,
        _ => return None,
    }
    if *pos > buf.len() {
        return None;
    }
    Some(Record {
        tag,
        wire_type,
        start,
        payload,
        end: *pos,
    })
}

/// Calls `f` with every record of `buf`; stops (returning false) at a malformed one.
pub(crate) fn each(buf: &[u8], mut f: impl FnMut(&Record)) -> bool {
    let mut pos = 0;
    while pos < buf.len() {
        match record(buf, &mut pos) {
            Some(r) => f(&r),
            None => return false,
        }
    }
    true
}

/// A `map<string, string>` entry's key and value (the last of each wins; absent is empty). The
/// shape every encoder writes (key, then value, one-byte lengths, nothing else) is read directly.
#[inline(always)]
pub(crate) fn string_entry(entry: &[u8]) -> (&[u8], &[u8]) {
    if let [0x0A, key_len, rest @ ..] = entry {
        let key_len = usize::from(*key_len);
        if let Some((key, [0x12, value_len, value @ ..])) = rest.split_at_checked(key_len) {
            if key_len < 0x80 && usize::from(*value_len) == value.len() && value.len() < 0x80 {
                return (key, value);
            }
        }
    }
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    each(entry, |f| {
        if f.wire_type == 2 && f.tag == 1 {
            key = &entry[f.payload..f.end];
        } else if f.wire_type == 2 && f.tag == 2 {
            value = &entry[f.payload..f.end];
        }
    });
    (key, value)
}

/// What a chain reads from the top level of the host's Object, in one walk.
#[derive(Debug, PartialEq, Eq)]
pub struct TopLevel<'a> {
    /// `hook_name` as a decode gives it ("" when absent).
    pub hook_name: &'a str,
    /// Whether the Object carries a `session` ([`has_session`]).
    pub has_session: bool,
}

/// Reads [`TopLevel`]: one walk where `wire::hook_name` and [`has_session`] take one each.
pub fn top_level(buf: &[u8]) -> TopLevel<'_> {
    let mut hook_name: &[u8] = &[];
    let mut has_session = false;
    each(buf, |r| match r.tag {
        OBJECT_HOOK_NAME if r.wire_type == 2 => hook_name = &buf[r.payload..r.end],
        OBJECT_SESSION => has_session = true,
        _ => {}
    });
    TopLevel {
        hook_name: std::str::from_utf8(hook_name).unwrap_or(""),
        has_session,
    }
}

/// Whether the Object carries a `session`.
pub fn has_session(buf: &[u8]) -> bool {
    let mut found = false;
    each(buf, |r| found |= r.tag == OBJECT_SESSION);
    found
}

/// The Object without its `session` records.
pub fn without_session(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    let mut copied = 0;
    each(buf, |r| {
        if r.tag == OBJECT_SESSION {
            out.extend_from_slice(&buf[copied..r.start]);
            copied = r.end;
        }
    });
    out.extend_from_slice(&buf[copied..]);
    out
}

/// Whether the Object has a session whose `metadata["token"]` (with the Object's `metadata` merged
/// over the session's, as Tyk merges them) is not empty: what Tyk requires of a CustomKeyCheck answer.
pub fn has_session_token(buf: &[u8]) -> bool {
    // Last entry wins within each map (as in a decode); the Object's map wins over the session's.
    fn token_in<'a>(map_field: u32, msg: &'a [u8], found: &mut Option<&'a [u8]>) {
        each(msg, |r| {
            if r.tag != map_field || r.wire_type != 2 {
                return;
            }
            let entry = &msg[r.payload..r.end];
            let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
            each(entry, |f| match (f.tag, f.wire_type) {
                (1, 2) => key = &entry[f.payload..f.end],
                (2, 2) => value = &entry[f.payload..f.end],
                _ => {}
            });
            if key == b"token" {
                *found = Some(value);
            }
        });
    }
    let mut session = false;
    let mut from_session = None;
    let mut from_object = None;
    each(buf, |r| {
        if r.tag == OBJECT_SESSION && r.wire_type == 2 {
            session = true;
            token_in(SESSION_METADATA, &buf[r.payload..r.end], &mut from_session);
        }
    });
    token_in(OBJECT_METADATA, buf, &mut from_object);
    session && from_object.or(from_session).is_some_and(|t| !t.is_empty())
}

/// The payloads of every `session` record, concatenated: decoding that gives the merged session.
pub fn session_bytes(buf: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    each(buf, |r| {
        if r.tag == OBJECT_SESSION && r.wire_type == 2 {
            out.get_or_insert_with(Vec::new)
                .extend_from_slice(&buf[r.payload..r.end]);
        }
    });
    out
}

/// The Object's `metadata` entries as `SessionState.metadata` fields: appended to a session's bytes,
/// they merge into its metadata as Tyk merges `returnObject.Metadata` into the session it keeps.
pub fn metadata_as_session_fields(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    each(buf, |r| {
        if r.tag == OBJECT_METADATA && r.wire_type == 2 {
            put_bytes(&mut out, SESSION_METADATA, &buf[r.payload..r.end]);
        }
    });
    out
}

/// `request.return_overrides.response_code`, or `None` when no `return_overrides` is present at all
/// (a host that does not set Tyk's -1 is then not taken to have asked for status 0).
pub fn response_code(buf: &[u8]) -> Option<i32> {
    let mut present = false;
    let mut code = 0i32;
    each(buf, |r| {
        if r.tag != OBJECT_REQUEST || r.wire_type != 2 {
            return;
        }
        let request = &buf[r.payload..r.end];
        each(request, |ro| {
            if ro.tag != REQUEST_RETURN_OVERRIDES || ro.wire_type != 2 {
                return;
            }
            present = true;
            let overrides = &request[ro.payload..ro.end];
            each(overrides, |f| {
                if f.tag == OVERRIDES_RESPONSE_CODE && f.wire_type == 0 {
                    let mut p = f.payload;
                    if let Some(v) = varint(overrides, &mut p) {
                        code = v as i32;
                    }
                }
            });
        });
    });
    present.then_some(code)
}

pub(super) fn put_bytes(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// Appends `hook_name = name`.
pub fn push_hook_name(out: &mut Vec<u8>, name: &str) {
    put_bytes(out, OBJECT_HOOK_NAME, name.as_bytes());
}

/// Appends the entry `spec[key] = value`.
pub fn push_spec(out: &mut Vec<u8>, key: &str, value: &str) {
    push_entry(out, OBJECT_SPEC, key.as_bytes(), value.as_bytes());
}

/// Appends the `map<string, string>` entry `key = value` as field `tag`, written in place.
pub(crate) fn push_entry(out: &mut Vec<u8>, tag: u32, key: &[u8], value: &[u8]) {
    let field_len = |len: usize| 1 + encoded_len_varint(len as u64) + len;
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint((field_len(key.len()) + field_len(value.len())) as u64, out);
    put_bytes(out, 1, key);
    put_bytes(out, 2, value);
}

/// Appends a `session` (already encoded).
pub fn push_session(out: &mut Vec<u8>, session: &[u8]) {
    put_bytes(out, OBJECT_SESSION, session);
}

/// Appends `request.return_overrides = {response_code: code, response_error: error}`.
pub fn push_return_error(out: &mut Vec<u8>, code: i32, error: &str) {
    let mut overrides = Vec::with_capacity(error.len() + 16);
    encode_key(OVERRIDES_RESPONSE_CODE, WireType::Varint, &mut overrides);
    encode_varint(i64::from(code) as u64, &mut overrides);
    put_bytes(&mut overrides, OVERRIDES_RESPONSE_ERROR, error.as_bytes());
    let mut request = Vec::with_capacity(overrides.len() + 4);
    put_bytes(&mut request, REQUEST_RETURN_OVERRIDES, &overrides);
    put_bytes(out, OBJECT_REQUEST, &request);
}

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_proto::{
        fixtures, HookType, Message, MiniRequestObject, Object, ReturnOverrides, SessionState,
    };

    fn typical() -> Object {
        let mut o = fixtures::typical_object();
        o.hook_type = HookType::Pre as i32;
        o
    }

    /// `top_level`'s one walk reads what `wire::hook_name` and `has_session` read.
    #[test]
    fn top_level_reads_as_the_separate_readers() {
        let mut o = typical();
        let mut buf = o.encode_to_vec();
        fn expect(buf: &[u8]) -> TopLevel<'_> {
            TopLevel {
                hook_name: coprocess_proto::wire::hook_name(buf).unwrap_or(""),
                has_session: has_session(buf),
            }
        }
        assert_eq!(top_level(&buf), expect(&buf));
        assert!(top_level(&buf).has_session);
        push_hook_name(&mut buf, "Later");
        assert_eq!(top_level(&buf).hook_name, "Later");
        assert_eq!(top_level(&buf), expect(&buf));
        o.session = None;
        o.hook_name.clear();
        let buf = o.encode_to_vec();
        assert_eq!(top_level(&buf), expect(&buf));
        assert_eq!(top_level(&buf).hook_name, "");
        assert!(!top_level(&buf).has_session);
    }

    /// The canonical entry shape is read directly; every other shape gives what a decode gives.
    #[test]
    fn string_entry_shortcut_agrees_with_a_decode() {
        let mut long = b"\x0a\x01k\x12\x80\x01".to_vec();
        long.extend_from_slice(&[b'v'; 128]);
        let shapes: [&[u8]; 7] = [
            b"\x0a\x04Host\x12\x03a.b",
            b"\x0a\x00\x12\x00",
            b"\x12\x01v\x0a\x01k",
            b"\x0a\x01k\x12\x01v\x0a\x01j",
            b"\x0a\x01k",
            b"",
            &long,
        ];
        for entry in shapes {
            let mut request = Vec::new();
            put_bytes(&mut request, 1, entry);
            let decoded = MiniRequestObject::decode(request.as_slice()).unwrap();
            let (key, value) = string_entry(entry);
            let (key, value) = (
                std::str::from_utf8(key).unwrap(),
                std::str::from_utf8(value).unwrap(),
            );
            assert_eq!(
                decoded.headers.get(key).map(String::as_str),
                Some(value),
                "{entry:02x?}"
            );
        }
    }

    #[test]
    fn edits_decode_as_the_equivalent_object() {
        let o = typical();
        let mut buf = o.encode_to_vec();
        assert!(has_session(&buf));
        buf = without_session(&buf);
        assert!(!has_session(&buf));
        push_hook_name(&mut buf, "Next");
        push_spec(&mut buf, "config_data", "{}");
        push_return_error(&mut buf, 500, "Middleware error");
        let got = Object::decode(buf.as_slice()).unwrap();
        let mut want = o.clone();
        want.session = None;
        want.hook_name = "Next".into();
        want.spec.insert("config_data".into(), "{}".into());
        let ro = want
            .request
            .get_or_insert_with(Default::default)
            .return_overrides
            .get_or_insert_with(Default::default);
        ro.response_code = 500;
        ro.response_error = "Middleware error".into();
        assert_eq!(got, want);
        assert_eq!(coprocess_proto::wire::hook_name(&buf), Some("Next"));
        assert_eq!(response_code(&buf), Some(500));
    }

    #[test]
    fn response_code_follows_merges_and_presence() {
        let mut o = Object::default();
        assert_eq!(response_code(&o.encode_to_vec()), None);
        o.request = Some(MiniRequestObject {
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut buf = o.encode_to_vec();
        assert_eq!(response_code(&buf), Some(-1));
        push_return_error(&mut buf, 403, "no");
        assert_eq!(response_code(&buf), Some(403));
        o.request.as_mut().unwrap().return_overrides = Some(ReturnOverrides::default());
        assert_eq!(response_code(&o.encode_to_vec()), Some(0));
    }

    #[test]
    fn session_tokens_are_found_as_tyk_merges_metadata() {
        let mut o = Object::default();
        assert!(!has_session_token(&o.encode_to_vec()), "no session");
        o.session = Some(SessionState::default());
        assert!(!has_session_token(&o.encode_to_vec()), "no token");
        o.metadata.insert("token".into(), "t".into());
        let buf = o.encode_to_vec();
        assert!(has_session_token(&buf), "the Object's metadata counts");
        let mut session = session_bytes(&buf).unwrap_or_default();
        session.extend(metadata_as_session_fields(&buf));
        let kept = SessionState::decode(session.as_slice()).unwrap();
        assert_eq!(kept.metadata["token"], "t", "merged into the kept session");
        o.metadata.insert("token".into(), String::new());
        o.session
            .as_mut()
            .unwrap()
            .metadata
            .insert("token".into(), "s".into());
        assert!(
            !has_session_token(&o.encode_to_vec()),
            "the Object's empty token wins"
        );
    }

    #[test]
    fn sessions_merge_across_records() {
        let mut buf = Object::default().encode_to_vec();
        push_session(
            &mut buf,
            &SessionState {
                rate: 1.0,
                ..Default::default()
            }
            .encode_to_vec(),
        );
        push_session(
            &mut buf,
            &SessionState {
                per: 2.0,
                ..Default::default()
            }
            .encode_to_vec(),
        );
        let s = SessionState::decode(session_bytes(&buf).unwrap().as_slice()).unwrap();
        assert_eq!((s.rate, s.per), (1.0, 2.0));
        assert_eq!(session_bytes(&Object::default().encode_to_vec()), None);
    }

    #[test]
    fn malformed_input_is_harmless() {
        for junk in [&b"\xff"[..], b"\x12\x05ab", b"\x1a\x02\x52"] {
            let _ = response_code(junk);
            let _ = without_session(junk);
            let _ = session_bytes(junk);
        }
    }

    /// The fuzzer's finding: `metadata` (a map) sent with the varint wire type, its entry holding
    /// bytes that read as a `session` record when skipped by wire type. prost 0.14.4 (and the wire
    /// check that copied it) read the entry regardless, so the Object was accepted, and
    /// `without_session` then cut a "session" out of the middle of the entry: the edited Object was
    /// malformed. The wire check now refuses map fields without the length-delimited wire type, so
    /// the edits only ever see records laid out as they skip them.
    #[test]
    fn a_map_field_with_another_wire_type_is_refused_before_any_edit() {
        let session = SessionState::default().encode_to_vec();
        let mut entry = Vec::new();
        put_bytes(&mut entry, OBJECT_SESSION, &session); // unknown field 4 of the entry
        let mut buf = Vec::new();
        encode_key(OBJECT_METADATA, WireType::Varint, &mut buf);
        encode_varint(entry.len() as u64, &mut buf);
        buf.extend_from_slice(&entry);
        assert!(coprocess_proto::wire::validate_object(&buf).is_err());
        assert!(Object::decode(buf.as_slice()).is_err(), "prost agrees");
        // Laid out as a decode reads it, the same entry is fine and survives every edit.
        let mut ok = Vec::new();
        put_bytes(&mut ok, OBJECT_METADATA, &entry);
        edited_objects_stay_valid(&ok);
    }

    /// Every edit the chain makes keeps an accepted Object accepted, and decodes as the edit says.
    fn edited_objects_stay_valid(buf: &[u8]) {
        use coprocess_proto::wire::validate_object;
        assert!(validate_object(buf).is_ok());
        let before = Object::decode(buf).unwrap();
        let mut out = without_session(buf);
        push_hook_name(&mut out, "Next");
        push_spec(&mut out, "config_data", "{}");
        push_session(&mut out, &SessionState::default().encode_to_vec());
        push_return_error(&mut out, 500, "Middleware error");
        assert!(validate_object(&out).is_ok(), "edits broke {buf:?}");
        let after = Object::decode(out.as_slice()).unwrap();
        assert_eq!(after.metadata, before.metadata);
        assert_eq!(after.hook_name, "Next");
        assert_eq!(after.spec["config_data"], "{}");
        assert_eq!(after.session, Some(SessionState::default()));
    }

    /// `record`'s inline reading of short records agrees with the general one on any bytes: same
    /// records, same positions, same refusals.
    fn records_agree(buf: &[u8]) {
        let (mut fast, mut general) = (0, 0);
        while fast < buf.len() {
            let a = record(buf, &mut fast);
            let b = record_general(buf, &mut general);
            let fields = |r: &Record| (r.tag, r.wire_type, r.start, r.payload, r.end);
            assert_eq!(a.as_ref().map(fields), b.as_ref().map(fields), "{buf:?}");
            if a.is_none() {
                return;
            }
            assert_eq!(fast, general);
        }
    }

    #[test]
    fn short_records_are_read_as_the_general_reader_reads_them() {
        // Shortcut: one-byte keys with a one-byte length or varint; fallback: longer lengths and
        // varints, other wire types, long keys, groups, truncation.
        let typical = typical().encode_to_vec();
        records_agree(&typical);
        for bytes in [
            &b"\x12\x03abc\x08\x05"[..],
            b"\x12\x80\x01",
            b"\x08\x96\x01",
            b"\x09\x01\x02\x03\x04\x05\x06\x07\x08\x0d\x01\x02\x03\x04",
            b"\x82\x01\x01z",
            b"\x1b\x08\x01\x1c",
            b"\x12\x05ab",
            b"\x12",
            b"\x00\x01",
            b"\x07\x01",
        ] {
            records_agree(bytes);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]
        /// Any bytes: the inline reading of short records agrees with the general reader.
        #[test]
        fn short_records_agree_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48)) {
            records_agree(&bytes);
        }

        /// Mutated typical Objects: whatever the wire check accepts, the edits keep acceptable.
        #[test]
        fn edits_keep_accepted_objects_valid(
            flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 0u8..=255), 1..4),
            cut in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
        ) {
            let mut buf = typical().encode_to_vec();
            for (at, byte) in &flips {
                let i = at.index(buf.len());
                buf[i] = *byte;
            }
            if let Some(cut) = cut {
                buf.truncate(cut.index(buf.len()) + 1);
            }
            if coprocess_proto::wire::validate_object(&buf).is_ok() {
                edited_objects_stay_valid(&buf);
            }
        }
    }
}
