//! The first pass of [`check_object`](super::check_object): a walk that settles the common shapes of
//! an `Object` with as little work per field as it can and gives up (`None`) on anything else, which
//! the exact walk then decides. It accepts only what the exact walk accepts: every check it leaves
//! out is one its preconditions make redundant.
//!
//! * It gives up on groups (and on every other key the one-byte-key tables send to the general path),
//!   on keys of more than two bytes (and on any key longer than one byte at the top level, where it
//!   reads `hook_type` and `spec`), so it never meets the recursion budget: without groups, the coprocess
//!   schema nests at most [`MAX_SCHEMA_DEPTH`] levels, far inside prost's 100.
//! * A nested message or map entry of at most [`PLAIN_MAX`] bytes that are all below 0x80 (the
//!   usual map entry, `AccessDefinition`, ...) is walked by [`plain`]: there every key, length and
//!   varint is one byte and every string is ASCII, so only the structure is left to check.
//! * Each message has walk code of its own ([`Known`]): its step table sits at a fixed address and
//!   its nested messages' walks are called (or inlined) directly instead of being looked up in the
//!   schema at run time.

use super::{
    api_id_value, ascii::is_ascii, canonical_entry, check_utf8, len_delimited, skip_varint,
    step_of, varint, Kind, Routing, Schema, Step, HOOK_TYPE_KEY, LEN, SPEC_KEY,
};

/// Nested spans up to this long are tried as all-ASCII ([`plain`]); longer ones rarely are, and
/// checking them would cost more than it saves.
const PLAIN_MAX: usize = 256;

/// [`super::walk_object`]'s verdict and routing values for the shapes this pass knows; `None` for
/// everything else, valid or not. Every [`Routing`] value `walk_object` reads must be read here too
/// (the tests compare the two whole `Routing`s on every shape).
pub(super) fn object(buf: &[u8]) -> Option<Routing<'_>> {
    let mut routing = Routing::default();
    let mut pos = 0;
    while pos < buf.len() {
        let b = buf[pos];
        if b >= 0x80 {
            // A longer key: perhaps `hook_type` or `spec` encoded at length, which a decode reads.
            return None;
        }
        if b == HOOK_TYPE_KEY {
            pos += 1;
            routing.hook_type = varint(buf, &mut pos).ok()? as i32;
        } else if b == SPEC_KEY {
            pos += 1;
            let end = len_delimited(buf, &mut pos).ok()?;
            string_entry(buf, pos, end)?;
            if let Some(value) = api_id_value(buf, pos, end) {
                routing.api_id = Some(value);
            }
            pos = end;
        } else {
            pos = field::<ObjectFields>(buf, pos)?;
        }
    }
    Some(routing)
}

/// A message the first pass walks with code of its own: its schema's step table at a fixed address,
/// and the walks of its nested messages called (or inlined) directly rather than through the schema.
trait Known {
    fn schema() -> &'static Schema;
    /// Walks the message or map entry in `data[start..end]` that field `tag` holds (the step table
    /// says it holds one): [`nested`] with the field's own `Known` type.
    fn nested(tag: usize, data: &[u8], start: usize, end: usize) -> Option<()>;
    /// [`plain`] of the message or map entry in `data[start..]` that field `tag` holds.
    fn plain_nested(tag: usize, data: &[u8], start: usize) -> Option<()>;
    /// Asserts that `nested` and `plain_nested` lead each message or map field to the `Known` type
    /// of the schema the field holds, and so on down.
    #[cfg(test)]
    fn check_tree();
}

/// Declares a [`Known`] message: its schema and, for each field holding a message or map entry,
/// that message's `Known` type and whether its walk is inlined (`inline`) or called (`call`).
macro_rules! known {
    ($name:ident = $schema:ident { $($tag:literal => $how:ident $sub:ident),* $(,)? }) => {
        struct $name;
        impl Known for $name {
            #[inline(always)]
            fn schema() -> &'static Schema {
                &super::$schema
            }
            #[inline(always)]
            #[allow(unused_variables)]
            fn nested(tag: usize, data: &[u8], start: usize, end: usize) -> Option<()> {
                match tag {
                    $($tag => known!(@$how nested $sub (data, start, end)),)*
                    _ => unreachable!("Step::Nested is only given to message and map fields"),
                }
            }
            #[inline(always)]
            #[allow(unused_variables)]
            fn plain_nested(tag: usize, data: &[u8], start: usize) -> Option<()> {
                match tag {
                    $($tag => known!(@$how plain $sub (data, start)),)*
                    _ => unreachable!("Step::Nested is only given to message and map fields"),
                }
            }
            #[cfg(test)]
            fn check_tree() {
                let fields = Self::schema().fields;
                let nested = fields
                    .iter()
                    .filter(|f| matches!(f.kind, Kind::Msg(_) | Kind::Map(_)))
                    .count();
                let listed: usize = 0 $(+ { let _ = $tag; 1 })*;
                assert_eq!(nested, listed, "{}", stringify!($name));
                $(
                    let (Kind::Msg(sub) | Kind::Map(sub)) = fields[$tag - 1].kind else {
                        panic!("{} field {} holds no message", stringify!($name), $tag);
                    };
                    assert!(core::ptr::eq(sub, $sub::schema()), "{} field {}", stringify!($name), $tag);
                    $sub::check_tree();
                )*
            }
        }
    };
    (@inline $walk:ident $sub:ident ($($arg:ident),*)) => { $walk::<$sub>($($arg),*) };
    (@call nested $sub:ident ($($arg:ident),*)) => { nested_call::<$sub>($($arg),*) };
    (@call plain $sub:ident ($($arg:ident),*)) => { plain_call::<$sub>($($arg),*) };
}

known!(ObjectFields = OBJECT { 3 => call Request, 4 => call Session, 7 => call Response });
known!(Request = MINI_REQUEST_OBJECT { 10 => inline ReturnOverridesFields });
known!(ReturnOverridesFields = RETURN_OVERRIDES {});
known!(Response = RESPONSE_OBJECT { 5 => inline HeaderFields });
known!(HeaderFields = HEADER {});
known!(Session = SESSION_STATE {
    10 => call AccessEntry,
    14 => inline BasicAuth,
    15 => inline Jwt,
    21 => inline MonitorFields,
});
known!(AccessEntry = ACCESS_MAP { 2 => inline AccessDefinitionFields });
known!(AccessDefinitionFields = ACCESS_DEFINITION { 4 => inline AccessSpecFields });
known!(AccessSpecFields = ACCESS_SPEC {});
known!(BasicAuth = BASIC_AUTH_DATA {});
known!(Jwt = JWT_DATA {});
known!(MonitorFields = MONITOR {});
known!(StringEntry = STRING_MAP {});

/// Walks the fields of an `M` in `data[pos..]`.
#[inline(always)]
fn message<M: Known>(data: &[u8], mut pos: usize) -> Option<()> {
    while pos < data.len() {
        pos = field::<M>(data, pos)?;
    }
    Some(())
}

/// The field at `at` (`< data.len()`) of an `M` that ends where `data` ends: the position after it.
#[inline(always)]
fn field<M: Known>(data: &[u8], at: usize) -> Option<usize> {
    let b = data[at];
    let (step, tag, mut pos) = if b < 0x80 {
        (M::schema().steps[b as usize], usize::from(b >> 3), at + 1)
    } else {
        two_byte_key(data, at, M::schema())?
    };
    match step {
        Step::Str => {
            let end = len_delimited(data, &mut pos).ok()?;
            check_utf8(data, pos, end).ok()?;
            Some(end)
        }
        Step::StrMap if b < 0x80 => string_entries(data, pos, b),
        Step::StrMap => {
            let end = len_delimited(data, &mut pos).ok()?;
            string_entry(data, pos, end)?;
            Some(end)
        }
        Step::Nested => {
            let end = len_delimited(data, &mut pos).ok()?;
            M::nested(tag, data, pos, end)?;
            Some(end)
        }
        Step::Varint => {
            skip_varint(data, &mut pos).ok()?;
            Some(pos)
        }
        Step::SkipLen => len_delimited(data, &mut pos).ok(),
        Step::Fixed64 => fixed(data, pos, 8),
        Step::Fixed32 => fixed(data, pos, 4),
        Step::General => packed_doubles(data, pos, M::schema(), tag, b),
    }
}

/// Consecutive entries of one `map<string, string>` field whose key is the one byte `key` (as an
/// encoder writes a map), from `pos` just past the first key: the position after the last. Spares
/// each entry after the first the trip through the step table.
#[inline(always)]
fn string_entries(data: &[u8], mut pos: usize, key: u8) -> Option<usize> {
    loop {
        let end = len_delimited(data, &mut pos).ok()?;
        string_entry(data, pos, end)?;
        if data.get(end) != Some(&key) {
            return Some(end);
        }
        pos = end + 1;
    }
}

/// A `map<string, string>` entry in `data[start..end]`: the canonical all-ASCII shape at a glance.
#[inline(always)]
fn string_entry(data: &[u8], start: usize, end: usize) -> Option<()> {
    if canonical_entry(&data[start..end]).is_some() && is_ascii(data, start, end) {
        return Some(());
    }
    nested::<StringEntry>(data, start, end)
}

/// The one general-path key this pass takes: a packed `repeated double` (`Monitor.trigger_limits`).
/// `key_byte` is the key's first byte (only one-byte keys are taken). The position after the field.
#[cold]
fn packed_doubles(
    data: &[u8],
    mut pos: usize,
    schema: &'static Schema,
    tag: usize,
    key_byte: u8,
) -> Option<usize> {
    let packed = key_byte < 0x80
        && (key_byte & 7) == LEN
        && tag >= 1
        && matches!(schema.fields.get(tag - 1)?.kind, Kind::RepeatedDouble);
    if !packed {
        return None;
    }
    let end = len_delimited(data, &mut pos).ok()?;
    (end - pos).is_multiple_of(8).then_some(end)
}

/// A key of exactly two bytes at `at`: its step, field number and the position after it.
#[inline(always)]
fn two_byte_key(data: &[u8], at: usize, schema: &'static Schema) -> Option<(Step, usize, usize)> {
    let (b0, b1) = (data[at], *data.get(at + 1)?);
    if b1 >= 0x80 {
        return None;
    }
    let key = usize::from(b0 & 0x7F) | usize::from(b1) << 7;
    let step = step_of(schema.fields, key >> 3, (key & 7) as u8);
    Some((step, key >> 3, at + 2))
}

/// [`nested`], not inlined.
#[inline(never)]
fn nested_call<M: Known>(data: &[u8], start: usize, end: usize) -> Option<()> {
    nested::<M>(data, start, end)
}

/// An `M` (a message or map entry) in `data[start..end]`.
#[inline(always)]
fn nested<M: Known>(data: &[u8], start: usize, end: usize) -> Option<()> {
    if end - start <= PLAIN_MAX
        && is_ascii(data, start, end)
        && plain::<M>(&data[..end], start).is_some()
    {
        return Some(());
    }
    message::<M>(&data[..end], start)
}

/// [`plain`], not inlined.
#[inline(never)]
fn plain_call<M: Known>(data: &[u8], pos: usize) -> Option<()> {
    plain::<M>(data, pos)
}

/// Walks the `M` in `data[pos..]`, every byte of which is below 0x80: every key, length and varint
/// is one byte and every string valid, so only the structure is checked.
#[inline(always)]
fn plain<M: Known>(data: &[u8], mut pos: usize) -> Option<()> {
    while pos < data.len() {
        let b = data[pos];
        pos = match M::schema().steps[b as usize] {
            Step::Str | Step::SkipLen => skip_plain_len(data, pos)?,
            Step::StrMap => {
                let end = skip_plain_len(data, pos)?;
                if canonical_entry(&data[pos + 2..end]).is_none() {
                    plain_call::<StringEntry>(&data[..end], pos + 2)?;
                }
                end
            }
            Step::Nested => {
                let end = skip_plain_len(data, pos)?;
                M::plain_nested(usize::from(b >> 3), &data[..end], pos + 2)?;
                end
            }
            Step::Varint => fixed(data, pos + 1, 1)?,
            Step::Fixed64 => fixed(data, pos + 1, 8)?,
            Step::Fixed32 => fixed(data, pos + 1, 4)?,
            Step::General => return None,
        };
    }
    Some(())
}

/// Past a length-delimited field at `at` whose length is one byte.
#[inline(always)]
fn skip_plain_len(data: &[u8], at: usize) -> Option<usize> {
    let end = at + 2 + usize::from(*data.get(at + 1)?);
    (end <= data.len()).then_some(end)
}

/// The position `width` bytes after `pos`, if the message holds them.
#[inline(always)]
fn fixed(data: &[u8], pos: usize, width: usize) -> Option<usize> {
    (data.len() - pos >= width).then_some(pos + width)
}

#[cfg(test)]
mod tests {
    use super::super::{validate_object, walk_object, Kind, OBJECT, RECURSION_LIMIT, STRING_MAP};
    use super::*;
    use crate::{Message, Object};

    /// The first pass never accepts what the exact walk rejects, and reads the same routing values.
    #[track_caller]
    fn consistent(buf: &[u8]) -> Option<Routing<'_>> {
        let fast = object(buf);
        let exact = walk_object(buf).ok();
        if fast.is_some() {
            assert_eq!(
                fast, exact,
                "first pass and exact walk differ on {buf:02x?}"
            );
        }
        assert_eq!(
            exact.is_some(),
            Object::decode(buf).is_ok(),
            "exact walk and prost differ on {buf:02x?}"
        );
        fast
    }

    fn ld(out: &mut Vec<u8>, key: u8, payload: &[u8]) {
        out.push(key);
        out.push(payload.len() as u8);
        out.extend_from_slice(payload);
    }

    /// The deepest chain of messages and map entries: Object → session → access_rights entry →
    /// AccessDefinition → AccessSpec.
    const MAX_SCHEMA_DEPTH: u32 = 5;

    /// The first pass checks no recursion budget: the schema (which has no cycles) must nest far
    /// inside it.
    #[test]
    fn the_schema_nests_far_inside_the_recursion_budget() {
        fn depth(schema: &Schema) -> u32 {
            let below = schema.fields.iter().map(|f| match f.kind {
                Kind::Msg(s) | Kind::Map(s) => depth(s),
                Kind::StrMap => depth(&STRING_MAP),
                _ => 0,
            });
            1 + below.max().unwrap_or(0)
        }
        assert_eq!(depth(&OBJECT), MAX_SCHEMA_DEPTH);
        const _: () = assert!(MAX_SCHEMA_DEPTH + 1 < RECURSION_LIMIT);
    }

    /// Every `Known` message's nested walks are those its schema names, all the way down.
    #[test]
    fn known_messages_follow_their_schemas() {
        ObjectFields::check_tree();
    }

    #[test]
    #[cfg(feature = "fixtures")]
    fn fixtures_take_the_first_pass() {
        for o in [
            crate::fixtures::small_object(),
            crate::fixtures::typical_object(),
            crate::fixtures::large_object(),
            crate::fixtures::fully_populated_object(),
        ] {
            let b = o.encode_to_vec();
            let r = consistent(&b).expect("the first pass settles the fixture");
            assert_eq!(r.hook_type(), o.hook_type);
        }
    }

    /// Shortcut shapes: canonical ASCII entries, all-ASCII nested messages ([`plain`]), two-byte keys,
    /// packed doubles, ten-byte varints.
    #[test]
    fn common_shapes_take_the_first_pass() {
        let mut b = vec![0x08, 0x01];
        ld(&mut b, 0x32, b"\x0a\x05APIID\x12\x03api");
        // request { headers { Host: h }, return_overrides { response_code: -1 } }
        let mut req = Vec::new();
        ld(&mut req, 0x0a, b"\x0a\x04Host\x12\x01h");
        let mut ro = vec![0x08];
        ro.extend_from_slice(&[0xFF; 9]);
        ro.push(0x01);
        ld(&mut req, 0x52, &ro);
        ld(&mut b, 0x1a, &req);
        // session { access_rights { k: { api_name: n, allowed_urls { url: u } } }, metadata (key 23),
        // monitor { trigger_limits: packed [0.0] } }
        let mut def = Vec::new();
        ld(&mut def, 0x0a, b"n");
        ld(&mut def, 0x22, b"\x0a\x01u");
        let mut entry = Vec::new();
        ld(&mut entry, 0x0a, b"k");
        ld(&mut entry, 0x12, &def);
        let mut sess = Vec::new();
        ld(&mut sess, 0x52, &entry);
        sess.extend_from_slice(&[0xBA, 0x01, 0x06]); // metadata, two-byte key
        sess.extend_from_slice(b"\x0a\x01m\x12\x01v");
        sess.extend_from_slice(&[0xAA, 0x01, 0x0A, 0x0A, 0x08]); // monitor { packed, 8 bytes }
        sess.extend_from_slice(&[0; 8]);
        ld(&mut b, 0x22, &sess);
        let r = consistent(&b).expect("first pass");
        assert_eq!((r.hook_type(), r.api_id()), (1, Some("api")));
    }

    /// Shapes the first pass leaves to the exact walk, valid or not.
    #[test]
    fn other_shapes_fall_back() {
        let cases: &[(&[u8], bool)] = &[
            (b"\x88\x00\x05", true), // hook_type under a two-byte key
            (b"\x4b\x4c", true),     // an unknown group
            (b"\x32\x08\x0a\x01\xff\x12\x01v\x18\x01", false), // invalid UTF-8 in an entry
            (b"\x32\x06\x0a\x01\xff\x12\x01v", false), // the same in the canonical shape
            (b"\x12\x02\xc3\x28", false), // a string that is not UTF-8
            (b"\x22\x03\xb8\x01\x00", false), // session.metadata as a varint
            (b"\x1a\x02\x0a\x05", false), // an entry past its message
            (b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02", false), // varint overflow
        ];
        for &(buf, valid) in cases {
            assert_eq!(object(buf), None, "{buf:02x?}");
            assert_eq!(consistent(buf), None);
            assert_eq!(validate_object(buf).is_ok(), valid, "{buf:02x?}");
        }
        // Valid, though not canonical: both passes accept it.
        let b = b"\x32\x0a\x12\x01v\x0a\x05APIID";
        assert_eq!(consistent(b).and_then(|r| r.api_id()), Some("v"));
    }

    /// Every prefix of an Object and every byte of it replaced: wherever the first pass answers, the
    /// exact walk agrees.
    #[test]
    #[cfg(feature = "fixtures")]
    fn truncations_and_byte_changes_agree_with_the_exact_walk() {
        let b = crate::fixtures::typical_object().encode_to_vec();
        let mut answered = 0;
        for n in 0..=b.len() {
            answered += usize::from(consistent(&b[..n]).is_some());
        }
        assert!(answered > 0 && answered < b.len());
        let small = crate::fixtures::small_object().encode_to_vec();
        for i in 0..small.len() {
            for x in [0x00, 0x02, 0x7F, 0x80, 0xFF] {
                let mut m = small.clone();
                m[i] = x;
                consistent(&m);
            }
        }
    }
}
