//! Where the parts of a serialized `coprocess.Object` lie, read in one walk over its top level, so the
//! Python side decodes only the parts a hook uses (see `_Call` in `python/runtime.py`), and the
//! splice that puts re-encoded parts back.
//!
//! The walk reads what routing needs (`hook_type`, `hook_name`, `spec["bundle_hash"]`, with a
//! decode's rules: the last occurrence of a field wins, the last map entry with a key wins) and
//! groups the records of `request`, `session`, `response`, and `metadata` + `spec`. Inside those
//! records nothing is read but the spec entries' keys and values. The bridge has validated the input
//! before any driver sees it; on other bytes the walk returns an error, never panics.

use std::ops::Range;

use coprocess_driver::proto::fields::object::{
    HOOK_NAME, HOOK_TYPE, METADATA, REQUEST, RESPONSE, SESSION, SPEC,
};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Nesting of groups the walk follows in unknown fields (prost's recursion limit).
const GROUP_DEPTH: u32 = 100;

/// Why the walk stopped: the top level (or a spec entry) is not well-formed protobuf.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(&'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "python driver: malformed Object: {}", self.0)
    }
}

/// The records of one part, in wire order: usually one run of the input; a copy when scattered.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Records {
    #[default]
    Absent,
    Run(Range<usize>),
    Scattered(Vec<u8>),
}

impl Records {
    fn add(&mut self, input: &[u8], record: Range<usize>) {
        match self {
            Records::Absent => *self = Records::Run(record),
            Records::Run(run) if run.end == record.start => run.end = record.end,
            Records::Run(run) => {
                let mut copy = input[run.clone()].to_vec();
                copy.extend_from_slice(&input[record]);
                *self = Records::Scattered(copy);
            }
            Records::Scattered(copy) => copy.extend_from_slice(&input[record]),
        }
    }
}

/// The parts, indexed as the Python side expects them (`_REQUEST_PART`...).
pub const PARTS: usize = 4;

#[derive(Debug, Default)]
pub struct Layout<'a> {
    pub hook_type: i32,
    pub hook_name: &'a str,
    pub bundle_hash: Option<&'a str>,
    /// request, session, response, metadata + spec.
    pub parts: [Records; PARTS],
}

fn part_of(field: u32) -> Option<usize> {
    match field {
        REQUEST => Some(0),
        SESSION => Some(1),
        RESPONSE => Some(2),
        METADATA | SPEC => Some(3),
        _ => None,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or(Malformed("varint cut off"))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Malformed("varint longer than 10 bytes"))
    }

    /// A field key: (field number, wire type).
    fn key(&mut self) -> Result<(u32, u8), Malformed> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| Malformed("field number too large"))?;
        if field == 0 {
            return Err(Malformed("field number 0"));
        }
        Ok((field, (key & 7) as u8))
    }

    fn advance(&mut self, n: u64) -> Result<(), Malformed> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.buf.len())
            .ok_or(Malformed("field runs past the end"))?;
        self.pos = end;
        Ok(())
    }

    /// A length-delimited payload.
    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.varint()?;
        let start = self.pos;
        self.advance(len)?;
        Ok(&self.buf[start..self.pos])
    }

    /// Skips the value of a field with this wire type (groups up to their end key).
    fn skip(&mut self, field: u32, wire_type: u8, depth: u32) -> Result<(), Malformed> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.advance(8),
            LEN => self.bytes().map(drop),
            FIXED32 => self.advance(4),
            START_GROUP => {
                if depth == 0 {
                    return Err(Malformed("groups nested too deeply"));
                }
                loop {
                    if self.done() {
                        return Err(Malformed("group not closed"));
                    }
                    let (inner, inner_type) = self.key()?;
                    if inner_type == END_GROUP {
                        return if inner == field {
                            Ok(())
                        } else {
                            Err(Malformed("group closed by another field"))
                        };
                    }
                    self.skip(inner, inner_type, depth - 1)?;
                }
            }
            _ => Err(Malformed("invalid wire type")),
        }
    }
}

/// A `map<string, string>` entry's key and value (last occurrence wins; missing ones are "").
fn map_entry(entry: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    let mut r = Reader::new(entry);
    while !r.done() {
        let (field, wire_type) = r.key()?;
        match (field, wire_type) {
            (1, LEN) => key = r.bytes()?,
            (2, LEN) => value = r.bytes()?,
            (1 | 2, _) => return Err(Malformed("map entry field of the wrong type")),
            _ => r.skip(field, wire_type, GROUP_DEPTH - 1)?,
        }
    }
    Ok((key, value))
}

fn expect(wire_type: u8, wanted: u8) -> Result<(), Malformed> {
    if wire_type == wanted {
        Ok(())
    } else {
        Err(Malformed("known field of the wrong wire type"))
    }
}

fn text<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str, Malformed> {
    std::str::from_utf8(bytes).map_err(|_| Malformed(what))
}

impl<'a> Layout<'a> {
    pub fn read(input: &'a [u8]) -> Result<Layout<'a>, Malformed> {
        let mut layout = Layout::default();
        let mut r = Reader::new(input);
        while !r.done() {
            let start = r.pos;
            let (field, wire_type) = r.key()?;
            match field {
                HOOK_TYPE => {
                    expect(wire_type, VARINT)?;
                    layout.hook_type = r.varint()? as i32;
                }
                HOOK_NAME => {
                    expect(wire_type, LEN)?;
                    layout.hook_name = text(r.bytes()?, "hook_name is not UTF-8")?;
                }
                SPEC => {
                    expect(wire_type, LEN)?;
                    let (key, value) = map_entry(r.bytes()?)?;
                    if key == b"bundle_hash" {
                        layout.bundle_hash = Some(text(value, "bundle_hash is not UTF-8")?);
                    }
                }
                REQUEST | SESSION | METADATA | RESPONSE => {
                    expect(wire_type, LEN)?;
                    r.bytes()?;
                }
                _ => r.skip(field, wire_type, GROUP_DEPTH)?,
            }
            if let Some(part) = part_of(field) {
                layout.parts[part].add(input, start..r.pos);
            }
        }
        Ok(layout)
    }
}

/// `input` without the records of the top-level fields in `fields` (a mask of `1 << number`),
/// followed by `replacement` (their new records) and `appended` (request edits).
pub fn splice(
    input: &[u8],
    fields: u32,
    replacement: &[u8],
    appended: &[u8],
) -> Result<Vec<u8>, Malformed> {
    let mut out = Vec::with_capacity(input.len() + replacement.len() + appended.len());
    let mut r = Reader::new(input);
    let mut kept = 0..0;
    while !r.done() {
        let start = r.pos;
        let (field, wire_type) = r.key()?;
        r.skip(field, wire_type, GROUP_DEPTH)?;
        if field < 32 && fields & (1 << field) != 0 {
            out.extend_from_slice(&input[kept]);
            kept = r.pos..r.pos;
        } else {
            // Records are contiguous: a kept record extends the run of kept ones.
            debug_assert_eq!(kept.end, start);
            kept.end = r.pos;
        }
    }
    out.extend_from_slice(&input[kept]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(appended);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_proto::{fixtures, Message, Object, SessionState};

    fn records(input: &[u8], r: &Records) -> Vec<u8> {
        match r {
            Records::Absent => Vec::new(),
            Records::Run(run) => input[run.clone()].to_vec(),
            Records::Scattered(copy) => copy.clone(),
        }
    }

    /// Decodes records of some top-level fields as an Object (they are a valid Object themselves).
    fn decode(bytes: &[u8]) -> Object {
        Object::decode(bytes).unwrap()
    }

    #[test]
    fn parts_decode_to_the_objects_parts() {
        for object in [
            fixtures::small_object(),
            fixtures::typical_object(),
            fixtures::fully_populated_object(),
        ] {
            let input = object.encode_to_vec();
            let layout = Layout::read(&input).unwrap();
            assert_eq!(layout.hook_type, object.hook_type);
            assert_eq!(layout.hook_name, object.hook_name);
            assert_eq!(
                layout.bundle_hash,
                object.spec.get("bundle_hash").map(String::as_str)
            );
            let [request, session, response, maps] = &layout.parts;
            assert_eq!(decode(&records(&input, request)).request, object.request);
            assert_eq!(decode(&records(&input, session)).session, object.session);
            assert_eq!(decode(&records(&input, response)).response, object.response);
            let maps = decode(&records(&input, maps));
            assert_eq!((maps.metadata, maps.spec), (object.metadata, object.spec));
        }
    }

    #[test]
    fn scattered_and_repeated_records_merge_as_a_decode_does() {
        let first = Object {
            hook_name: "First".into(),
            session: Some(SessionState {
                rate: 1.0,
                ..Default::default()
            }),
            spec: [("bundle_hash".to_string(), "a".to_string())].into(),
            ..Default::default()
        };
        let second = Object {
            hook_type: 2,
            hook_name: "Second".into(),
            session: Some(SessionState {
                per: 2.0,
                ..Default::default()
            }),
            spec: [("bundle_hash".to_string(), "b".to_string())].into(),
            ..Default::default()
        };
        let mut input = first.encode_to_vec();
        input.extend(second.encode_to_vec());
        let whole = decode(&input);
        let layout = Layout::read(&input).unwrap();
        assert_eq!(
            (layout.hook_type, layout.hook_name, layout.bundle_hash),
            (2, "Second", Some("b"))
        );
        assert!(matches!(layout.parts[1], Records::Scattered(_)));
        assert_eq!(
            decode(&records(&input, &layout.parts[1])).session,
            whole.session
        );
        assert_eq!(decode(&records(&input, &layout.parts[3])).spec, whole.spec);
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped() {
        // field 9 varint, field 10 group holding field 1 fixed32, then hook_name.
        let mut input = vec![
            9 << 3,
            5,
            (10 << 3) | 3,
            (1 << 3) | 5,
            1,
            2,
            3,
            4,
            (10 << 3) | 4,
        ];
        input.extend([(2 << 3) | 2, 2, b'H', b'i']);
        assert_eq!(decode(&input).hook_name, "Hi");
        assert_eq!(Layout::read(&input).unwrap().hook_name, "Hi");
        for bad in [
            &[(10 << 3) | 3][..],                // group never closed
            &[(10 << 3) | 3, (11 << 3) | 4][..], // closed by another field
            &[(2 << 3) | 2, 5, b'a'][..],        // runs past the end
            &[2 << 3, 1][..],                    // hook_name as a varint
            &[
                0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
            ][..],
        ] {
            assert!(Layout::read(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn splice_replaces_exactly_the_named_fields() {
        let object = fixtures::fully_populated_object();
        let input = object.encode_to_vec();
        let replacement = Object {
            session: Some(Default::default()),
            metadata: [("only".to_string(), "this".to_string())].into(),
            ..Default::default()
        }
        .encode_to_vec();
        let fields = 1 << SESSION | 1 << METADATA | 1 << SPEC;
        let out = decode(&splice(&input, fields, &replacement, b"").unwrap());
        let expected = Object {
            session: Some(Default::default()),
            metadata: [("only".to_string(), "this".to_string())].into(),
            spec: Default::default(),
            ..object.clone()
        };
        assert_eq!(out, expected);
        assert_eq!(splice(&input, 0, b"", b"").unwrap(), input);
    }
}
