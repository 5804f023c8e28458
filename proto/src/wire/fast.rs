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

use super::{
    api_id_value, ascii::is_ascii, canonical_entry, check_utf8, len_delimited, skip_varint, step_of,
    varint, Kind, Routing, Schema, Step, HOOK_TYPE_KEY, LEN, OBJECT, SPEC_KEY,
    STRING_MAP,
};

/// The deepest chain of known messages and map entries below `Object` (session → access_rights
/// entry → AccessDefinition → AccessSpec), plus one for an unknown field inside the last.
pub(super) const MAX_SCHEMA_DEPTH: u32 = 5;

/// Nested spans up to this long are tried as all-ASCII ([`plain`]); longer ones rarely are, and
/// checking them would cost more than it saves.
const PLAIN_MAX: usize = 256;

/// [`super::walk_object`]'s verdict and routing values for the shapes this pass knows; `None` for
/// everything else, valid or not.
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
            pos = field(buf, pos, &OBJECT)?;
        }
    }
    Some(routing)
}

/// Walks the fields in `data[pos..]` against `schema`.
fn message(data: &[u8], mut pos: usize, schema: &'static Schema) -> Option<()> {
    while pos < data.len() {
        pos = field(data, pos, schema)?;
    }
    Some(())
}

/// The field at `at` (`< data.len()`): the position after it.
#[inline(always)]
fn field(data: &[u8], at: usize, schema: &'static Schema) -> Option<usize> {
    let b = data[at];
    let (step, tag, mut pos) = if b < 0x80 {
        (schema.steps[b as usize], usize::from(b >> 3), at + 1)
    } else {
        two_byte_key(data, at, schema)?
    };
    match step {
        Step::Str => {
            let end = len_delimited(data, &mut pos).ok()?;
            check_utf8(data, pos, end).ok()?;
            Some(end)
        }
        Step::StrMap => {
            let end = len_delimited(data, &mut pos).ok()?;
            string_entry(data, pos, end)?;
            Some(end)
        }
        Step::Nested => {
            let end = len_delimited(data, &mut pos).ok()?;
            nested(data, pos, end, sub_schema(schema, tag))?;
            Some(end)
        }
        Step::Varint => {
            skip_varint(data, &mut pos).ok()?;
            Some(pos)
        }
        Step::SkipLen => len_delimited(data, &mut pos).ok(),
        Step::Fixed64 => fixed(data, pos, 8),
        Step::Fixed32 => fixed(data, pos, 4),
        Step::General => packed_doubles(data, pos, schema, tag, b),
    }
}

/// A `map<string, string>` entry in `data[start..end]`: the canonical all-ASCII shape at a glance.
#[inline(always)]
fn string_entry(data: &[u8], start: usize, end: usize) -> Option<()> {
    if canonical_entry(&data[start..end]).is_some() && is_ascii(data, start, end) {
        return Some(());
    }
    nested(data, start, end, &STRING_MAP)
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
    ((end - pos) % 8 == 0).then_some(end)
}

/// A key of exactly two bytes at `at`: its step, field number and the position after it.
#[cold]
fn two_byte_key(data: &[u8], at: usize, schema: &'static Schema) -> Option<(Step, usize, usize)> {
    let (b0, b1) = (data[at], *data.get(at + 1)?);
    if b1 >= 0x80 {
        return None;
    }
    let key = usize::from(b0 & 0x7F) | usize::from(b1) << 7;
    let step = step_of(schema.fields, key >> 3, (key & 7) as u8);
    Some((step, key >> 3, at + 2))
}

/// The schema of the message or map field `tag`, which the step table says is one.
#[inline(always)]
fn sub_schema(schema: &'static Schema, tag: usize) -> &'static Schema {
    match schema.fields[tag - 1].kind {
        Kind::Msg(sub) | Kind::Map(sub) => sub,
        _ => unreachable!("Step::Nested is only given to message and map fields"),
    }
}

/// A message or map entry in `data[start..end]`.
#[inline(always)]
fn nested(data: &[u8], start: usize, end: usize, schema: &'static Schema) -> Option<()> {
    if end - start <= PLAIN_MAX && is_ascii(data, start, end) && plain(&data[..end], start, schema).is_some() {
        return Some(());
    }
    message(&data[..end], start, schema)
}

/// Walks `data[pos..]`, every byte of which is below 0x80, against `schema`: every key, length and
/// varint is one byte and every string valid, so only the structure is checked.
fn plain(data: &[u8], mut pos: usize, schema: &'static Schema) -> Option<()> {
    while pos < data.len() {
        let b = data[pos];
        pos = match schema.steps[b as usize] {
            Step::Str | Step::SkipLen => skip_plain_len(data, pos)?,
            Step::StrMap => {
                let end = skip_plain_len(data, pos)?;
                plain(&data[..end], pos + 2, &STRING_MAP)?;
                end
            }
            Step::Nested => {
                let end = skip_plain_len(data, pos)?;
                plain(&data[..end], pos + 2, sub_schema(schema, usize::from(b >> 3)))?;
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
