//! Zero-allocation validation and reading of serialized `coprocess.Object` bytes.
//!
//! [`validate_object`] accepts exactly the byte strings that `Object::decode` (prost 0.14.6)
//! accepts, without building the object: it walks the protobuf wire format against a small
//! static description of the schema (`Schema` tables: one per message plus one per map
//! entry shape) and applies prost's rules:
//!
//! * varints are at most 10 bytes, and a 10-byte varint's last byte must be `0x00` or `0x01`
//!   (anything larger overflows `u64`); a varint cut off by the end of its message is an error;
//! * a key must fit in `u32`, its wire type must be 0..=5 and its field number must not be 0;
//! * a known field must carry its type's wire type (`repeated double` accepts both the packed,
//!   length-delimited form and the unpacked fixed64 form; a packed run must be a multiple of 8
//!   bytes); scalars do not accept the packed form; enum and bool values are never range-checked;
//! * a length prefix or a fixed32/fixed64 payload must fit inside the enclosing message;
//! * `string` fields (including map keys and values) must be valid UTF-8; `bytes` need not be;
//! * unknown fields are skipped like `prost::encoding::skip_field`: groups must be closed by an
//!   end-group key with the same field number, a stray end-group is an error, and the recursion
//!   budget of 100 is consumed exactly as prost consumes it (every nested message, map entry and
//!   skipped field checks it; messages, map entries and group contents spend one level).
//!
//! A map field is walked like a repeated message whose schema is the entry (`key = 1`,
//! `value = 2`): prost's map merge checks and spends the recursion budget the same way a message
//! merge does and skips an entry's unknown fields like a message's. A map field must carry the
//! length-delimited wire type (prost-derive checks it since 0.14.6; 0.14.4 read a length-prefixed
//! entry whatever the key said, and the chain's byte-level edits, which skip records by their wire
//! type, then saw different records than a decode did).
//!
//! [`spec_value`] and [`hook_type`] read single routing values from an `Object` without decoding
//! it. Neither allocates, and neither panics on arbitrary input.

use core::fmt;

mod ascii;
mod fast;

/// prost's `RECURSION_LIMIT` (prost 0.14, not built with `no-recursion-limit`).
const RECURSION_LIMIT: u32 = 100;

// Wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

/// What a known field holds, as far as the wire format is concerned.
#[derive(Clone, Copy)]
enum Kind {
    /// `int32`, `int64`, `bool` or an enum: wire type 0, any value.
    Varint,
    /// Singular `double`: wire type 1.
    Double,
    /// `repeated double`: wire type 1 (unpacked) or 2 (packed, a multiple of 8 bytes).
    RepeatedDouble,
    /// `string` (singular or repeated): wire type 2, UTF-8.
    Str,
    /// `bytes`: wire type 2.
    Bytes,
    /// A message: wire type 2, contents walked recursively.
    Msg(&'static Schema),
    /// A map field (wire type 2), whose entries are walked with the entry schema.
    Map(&'static Schema),
    /// A `map<string, string>` field: a [`Kind::Map`] of [`STRING_MAP`] entries, the commonest
    /// nested shape, which has a step of its own.
    StrMap,
}

struct Field {
    name: &'static str,
    kind: Kind,
}

/// The fields of one message, indexed by field number - 1 (every message in the coprocess schema
/// numbers its fields densely from 1), and the walker's decision for every one-byte key.
struct Schema {
    fields: &'static [Field],
    steps: [Step; 128],
}

impl Schema {
    #[inline(always)]
    fn field(&self, tag: u32) -> Option<&'static Field> {
        // tag >= 1 is checked when the key is decoded.
        self.fields.get(tag as usize - 1)
    }
}

/// What the walker does on a one-byte key (field numbers 1..=15), decided ahead of time from the
/// schema so that the common keys cost one table load. Everything the table does not settle (field
/// number 0, wire types 6 and 7, a wire type the field does not take, groups, packed doubles, and
/// every longer key) takes [`Step::General`], the path that checks and reports each rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    General,
    /// A `string` field, wire type 2.
    Str,
    /// A message or a map field other than `map<string, string>`, wire type 2.
    Nested,
    /// A `map<string, string>` field, wire type 2.
    StrMap,
    /// A varint-typed field or an unknown varint, wire type 0.
    Varint,
    /// A `bytes` field or an unknown length-delimited field.
    SkipLen,
    /// A `double` field or an unknown fixed64.
    Fixed64,
    /// An unknown fixed32.
    Fixed32,
}

/// Builds a schema's one-byte-key table (see [`Step`]).
const fn steps(fields: &[Field]) -> [Step; 128] {
    let mut steps = [Step::General; 128];
    let mut key = 0;
    while key < 128 {
        steps[key] = step_of(fields, key >> 3, (key & 7) as u8);
        key += 1;
    }
    steps
}

/// The [`Step`] for field number `tag` with `wire_type` in a message of `fields`.
const fn step_of(fields: &[Field], tag: usize, wire_type: u8) -> Step {
    if tag == 0 {
        return Step::General;
    }
    if tag > fields.len() {
        return match wire_type {
            VARINT => Step::Varint,
            I64 => Step::Fixed64,
            LEN => Step::SkipLen,
            I32 => Step::Fixed32,
            _ => Step::General,
        };
    }
    match (&fields[tag - 1].kind, wire_type) {
        (Kind::Varint, VARINT) => Step::Varint,
        (Kind::Double | Kind::RepeatedDouble, I64) => Step::Fixed64,
        (Kind::Str, LEN) => Step::Str,
        (Kind::Bytes, LEN) => Step::SkipLen,
        (Kind::Msg(_) | Kind::Map(_), LEN) => Step::Nested,
        (Kind::StrMap, LEN) => Step::StrMap,
        _ => Step::General,
    }
}

macro_rules! schema {
    ($($name:ident: $kind:expr),* $(,)?) => {{
        const FIELDS: &[Field] = &[$(Field { name: stringify!($name), kind: $kind }),*];
        Schema { fields: FIELDS, steps: steps(FIELDS) }
    }};
}

use Kind::{Bytes, Double, Map, Msg, RepeatedDouble, Str, StrMap, Varint};

/// `map<string, string>` entry.
static STRING_MAP: Schema = schema! { key: Str, value: Str };
/// `map<string, AccessDefinition>` entry.
static ACCESS_MAP: Schema = schema! { key: Str, value: Msg(&ACCESS_DEFINITION) };

static OBJECT: Schema = schema! {
    hook_type: Varint,
    hook_name: Str,
    request: Msg(&MINI_REQUEST_OBJECT),
    session: Msg(&SESSION_STATE),
    metadata: StrMap,
    spec: StrMap,
    response: Msg(&RESPONSE_OBJECT),
};

static MINI_REQUEST_OBJECT: Schema = schema! {
    headers: StrMap,
    set_headers: StrMap,
    delete_headers: Str,
    body: Str,
    url: Str,
    params: StrMap,
    add_params: StrMap,
    extended_params: StrMap,
    delete_params: Str,
    return_overrides: Msg(&RETURN_OVERRIDES),
    method: Str,
    request_uri: Str,
    scheme: Str,
    raw_body: Bytes,
};

static RETURN_OVERRIDES: Schema = schema! {
    response_code: Varint,
    response_error: Str,
    headers: StrMap,
    override_error: Varint,
    response_body: Str,
};

static RESPONSE_OBJECT: Schema = schema! {
    status_code: Varint,
    raw_body: Bytes,
    body: Str,
    headers: StrMap,
    multivalue_headers: Msg(&HEADER),
};

static HEADER: Schema = schema! { key: Str, values: Str };

static ACCESS_SPEC: Schema = schema! { url: Str, methods: Str };

static ACCESS_DEFINITION: Schema = schema! {
    api_name: Str,
    api_id: Str,
    versions: Str,
    allowed_urls: Msg(&ACCESS_SPEC),
};

static BASIC_AUTH_DATA: Schema = schema! { password: Str, hash: Str };

static JWT_DATA: Schema = schema! { secret: Str };

static MONITOR: Schema = schema! { trigger_limits: RepeatedDouble };

static SESSION_STATE: Schema = schema! {
    last_check: Varint,
    allowance: Double,
    rate: Double,
    per: Double,
    expires: Varint,
    quota_max: Varint,
    quota_renews: Varint,
    quota_remaining: Varint,
    quota_renewal_rate: Varint,
    access_rights: Map(&ACCESS_MAP),
    org_id: Str,
    oauth_client_id: Str,
    oauth_keys: StrMap,
    basic_auth_data: Msg(&BASIC_AUTH_DATA),
    jwt_data: Msg(&JWT_DATA),
    hmac_enabled: Varint,
    hmac_secret: Str,
    is_inactive: Varint,
    apply_policy_id: Str,
    data_expires: Varint,
    monitor: Msg(&MONITOR),
    enable_detailed_recording: Varint,
    metadata: StrMap,
    tags: Str,
    alias: Str,
    last_updated: Str,
    id_extractor_deadline: Varint,
    session_lifetime: Varint,
    apply_policies: Str,
    certificate: Str,
    max_query_depth: Varint,
    key_id: Str,
    post_expiry_action: Str,
    post_expiry_grace_period: Varint,
};

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// What is wrong with a serialized `Object` (see [`WireError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireErrorKind {
    /// A varint runs past the end of its message, is longer than 10 bytes, or overflows `u64`.
    InvalidVarint,
    /// A field key does not fit in 32 bits.
    KeyTooLarge,
    /// A field key has wire type 6 or 7.
    InvalidWireType(u8),
    /// A field key has field number 0.
    FieldNumberZero,
    /// A known field arrived with the wrong wire type.
    UnexpectedWireType {
        /// The wire type the schema requires.
        expected: u8,
        /// The wire type found.
        actual: u8,
    },
    /// A length prefix reaches past the end of the enclosing message.
    LengthOutOfBounds,
    /// A fixed32/fixed64 value is cut off by the end of the enclosing message.
    Truncated,
    /// A packed `repeated double` run is not a multiple of 8 bytes.
    PackedLength,
    /// A `string` field is not valid UTF-8.
    InvalidUtf8,
    /// An end-group key without a matching start-group key.
    UnexpectedEndGroup,
    /// A group is not closed before the end of its message.
    UnterminatedGroup,
    /// Nesting exceeds prost's recursion limit (100).
    RecursionLimit,
}

impl fmt::Display for WireErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::InvalidVarint => f.write_str("invalid or truncated varint"),
            Self::KeyTooLarge => f.write_str("field key does not fit in 32 bits"),
            Self::InvalidWireType(w) => write!(f, "invalid wire type {w}"),
            Self::FieldNumberZero => f.write_str("field number 0"),
            Self::UnexpectedWireType { expected, actual } => {
                write!(f, "wire type {actual} where {expected} is required")
            }
            Self::LengthOutOfBounds => f.write_str("length prefix exceeds the enclosing message"),
            Self::Truncated => f.write_str("fixed-width value truncated"),
            Self::PackedLength => f.write_str("packed doubles not a multiple of 8 bytes"),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8"),
            Self::UnexpectedEndGroup => f.write_str("unexpected end-group"),
            Self::UnterminatedGroup => f.write_str("unterminated group"),
            Self::RecursionLimit => f.write_str("recursion limit (100) exceeded"),
        }
    }
}

/// Outermost path segments kept in a [`WireError`]; deeper ones are elided.
const MAX_PATH: usize = 8;

/// Why [`validate_object`] rejected a buffer: what is wrong, the byte offset (from the start of
/// the buffer) where it was found, and the path of fields leading there.
///
/// Displays as e.g. `request.headers.value: invalid UTF-8 at byte 42`; unknown fields and groups
/// appear as `#<number>`.
#[derive(Clone, PartialEq, Eq)]
pub struct WireError {
    kind: WireErrorKind,
    offset: usize,
    /// Field numbers from the outermost field in; only the first `MAX_PATH` are kept.
    tags: [u32; MAX_PATH],
    /// Path length (may exceed `MAX_PATH`).
    depth: usize,
}

impl WireError {
    /// What is wrong.
    pub fn kind(&self) -> WireErrorKind {
        self.kind
    }

    /// Byte offset, from the start of the buffer, of the offending key, varint, length prefix,
    /// value or (for [`WireErrorKind::InvalidUtf8`]) byte.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Writes the path, naming fields by following the schema from `Object`.
    fn write_path(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut schema = Some(&OBJECT);
        for (i, &tag) in self.tags[..self.depth.min(MAX_PATH)].iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match schema.and_then(|s| s.field(tag)) {
                Some(field) => {
                    f.write_str(field.name)?;
                    schema = match field.kind {
                        Msg(s) | Map(s) => Some(s),
                        StrMap => Some(&STRING_MAP),
                        _ => None,
                    };
                }
                None => {
                    write!(f, "#{tag}")?;
                    schema = None;
                }
            }
        }
        if self.depth > MAX_PATH {
            f.write_str(".\u{2026}")?;
        }
        Ok(())
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.depth > 0 {
            self.write_path(f)?;
            f.write_str(": ")?;
        }
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

impl fmt::Debug for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WireError(\"{self}\")")
    }
}

impl std::error::Error for WireError {}

/// The walker's own error: small enough to come back in registers.
#[derive(Clone, Copy)]
struct Fault {
    kind: WireErrorKind,
    offset: usize,
}

#[cold]
#[inline(never)]
fn fault(kind: WireErrorKind, offset: usize) -> Fault {
    Fault { kind, offset }
}

/// Tracks the field path during a walk. The fast pass uses [`NoTrail`] (compiled away); after a
/// failure, a second pass with [`PathTrail`] recovers the path where the (deterministic) walk
/// stopped: fields are entered and left around each field, and the walk returns on the first
/// error without leaving, so the trail then holds the path to it.
trait Trail {
    fn enter(&mut self, tag: u32);
    fn leave(&mut self);
}

struct NoTrail;

impl Trail for NoTrail {
    #[inline(always)]
    fn enter(&mut self, _tag: u32) {}
    #[inline(always)]
    fn leave(&mut self) {}
}

struct PathTrail {
    tags: [u32; MAX_PATH],
    depth: usize,
}

impl Trail for PathTrail {
    fn enter(&mut self, tag: u32) {
        if let Some(slot) = self.tags.get_mut(self.depth) {
            *slot = tag;
        }
        self.depth += 1;
    }
    fn leave(&mut self) {
        self.depth -= 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Primitives. Every function works on `data`, the enclosing message's bytes *from the start of
// the whole buffer* (so positions are absolute offsets) and ends at the message's end.
// ---------------------------------------------------------------------------------------------

type Res<T> = Result<T, Fault>;

/// Decodes a varint at `*pos` with prost's rules, advancing `*pos`. One- and two-byte varints
/// (keys of fields 1..=2047, lengths below 16 KiB) take the inline path.
#[inline(always)]
fn varint(data: &[u8], pos: &mut usize) -> Res<u64> {
    let p = *pos;
    if let Some(&b0) = data.get(p) {
        if b0 < 0x80 {
            *pos = p + 1;
            return Ok(u64::from(b0));
        }
        if let Some(&b1) = data.get(p + 1) {
            if b1 < 0x80 {
                *pos = p + 2;
                return Ok(u64::from(b0 & 0x7F) | (u64::from(b1) << 7));
            }
        }
    }
    let (value, end) = varint_slow(data, p)?;
    *pos = end;
    Ok(value)
}

/// A varint of any length at `start`: its value and the position after it. Takes and returns the
/// position by value so that callers keep theirs in a register (a `&mut` passed to a function
/// that is not inlined would put it in memory, on the walk's critical path).
#[inline(never)]
fn varint_slow(data: &[u8], start: usize) -> Res<(u64, usize)> {
    let bytes = data.get(start..).unwrap_or(&[]);
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7F) << (7 * i);
        if b < 0x80 {
            // The 10th byte may only contribute bit 63.
            if i == 9 && b >= 0x02 {
                break;
            }
            return Ok((value, start + i + 1));
        }
    }
    Err(fault(WireErrorKind::InvalidVarint, start))
}

/// Advances past a varint whose value is not needed: a varint of at most 8 bytes is found with
/// one 8-byte load, a longer one by [`skip_long_varint`]; near the end of the message it goes
/// through [`varint`].
#[inline(always)]
fn skip_varint(data: &[u8], pos: &mut usize) -> Res<()> {
    let p = *pos;
    if data.len() >= p + 8 {
        let stops = !load64le(data, p) & 0x8080_8080_8080_8080;
        if stops != 0 {
            *pos = p + (stops.trailing_zeros() / 8) as usize + 1;
            return Ok(());
        }
        *pos = skip_long_varint(data, p)?;
        return Ok(());
    }
    varint(data, pos).map(drop)
}

/// The end of a varint at `start` whose first 8 bytes all continue it (a negative `int32`, sign
/// extended to ten bytes, is the common case): [`varint_slow`]'s rules on the last two bytes.
#[inline(never)]
fn skip_long_varint(data: &[u8], start: usize) -> Res<usize> {
    match (data.get(start + 8), data.get(start + 9)) {
        (Some(&b8), _) if b8 < 0x80 => Ok(start + 9),
        // The 10th byte may only contribute bit 63.
        (Some(_), Some(&b9)) if b9 < 0x02 => Ok(start + 10),
        (Some(_), Some(_)) => Err(fault(WireErrorKind::InvalidVarint, start)),
        _ => varint_slow(data, start).map(|(_, end)| end),
    }
}

#[inline(always)]
fn load64le(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Decodes a field key, returning `(field number, wire type)`.
#[inline(always)]
fn key(data: &[u8], pos: &mut usize) -> Res<(u32, u8)> {
    let at = *pos;
    if let Some(&b) = data.get(at) {
        // Fast path for a one-byte key with field number 1..=15 and wire type 0..=5.
        if (8..0x80).contains(&b) && (b & 7) <= I32 {
            *pos = at + 1;
            return Ok((u32::from(b >> 3), b & 7));
        }
    }
    let key = varint(data, pos)?;
    if key > u64::from(u32::MAX) {
        return Err(fault(WireErrorKind::KeyTooLarge, at));
    }
    let wire_type = (key & 7) as u8;
    if wire_type > I32 {
        return Err(fault(WireErrorKind::InvalidWireType(wire_type), at));
    }
    let tag = (key as u32) >> 3;
    if tag == 0 {
        return Err(fault(WireErrorKind::FieldNumberZero, at));
    }
    Ok((tag, wire_type))
}

/// Reads a length prefix and returns the end offset of the payload that follows, which must lie
/// within `data`. `*pos` is left at the payload's start.
#[inline(always)]
fn len_delimited(data: &[u8], pos: &mut usize) -> Res<usize> {
    let at = *pos;
    let len = varint(data, pos)?;
    let remaining = data.len() - *pos;
    if len > remaining as u64 {
        return Err(fault(WireErrorKind::LengthOutOfBounds, at));
    }
    Ok(*pos + len as usize)
}

/// Advances past a fixed-width value of `width` bytes.
#[inline(always)]
fn fixed(data: &[u8], pos: &mut usize, width: usize) -> Res<()> {
    if data.len() - *pos < width {
        return Err(fault(WireErrorKind::Truncated, *pos));
    }
    *pos += width;
    Ok(())
}

#[inline(always)]
fn expect_wire_type(expected: u8, actual: u8, at: usize) -> Res<()> {
    if expected != actual {
        return Err(fault(
            WireErrorKind::UnexpectedWireType { expected, actual },
            at,
        ));
    }
    Ok(())
}

/// Checks that `data[start..end]` is UTF-8; on failure returns the absolute offset of the first
/// invalid byte. Most header and body text is ASCII ([`ascii`]); only text with a high bit set is
/// validated in full. Long text (bodies) goes straight to simdutf8, whose AVX2 loop is faster there.
#[inline(always)]
fn check_utf8(data: &[u8], start: usize, end: usize) -> Result<(), usize> {
    const SIMDUTF8_MIN: usize = 512;
    let valid = if end - start < SIMDUTF8_MIN {
        ascii::is_ascii(data, start, end)
    } else {
        simdutf8::basic::from_utf8(&data[start..end]).is_ok()
    };
    if valid {
        Ok(())
    } else {
        check_utf8_slow(&data[start..end]).map_err(|i| start + i)
    }
}

/// Full validation of text that is not all ASCII.
#[inline(never)]
fn check_utf8_slow(bytes: &[u8]) -> Result<(), usize> {
    if simdutf8::basic::from_utf8(bytes).is_ok() {
        return Ok(());
    }
    core::str::from_utf8(bytes)
        .map(drop)
        .map_err(|e| e.valid_up_to())
}

/// The most common shape of a `map<string, string>` entry: key field, then value field, one-byte
/// keys and lengths, nothing else. Returns the offset of the value's key byte within `entry` (the
/// key's text is `entry[2..at]`, the value's `entry[at + 2..]`), or `None` for any other shape.
#[inline(always)]
fn canonical_entry(entry: &[u8]) -> Option<usize> {
    let n = entry.len();
    if n < 4 || entry[0] != 0x0A {
        return None;
    }
    let value_key = 2 + entry[1] as usize;
    if value_key + 2 > n
        || entry[value_key] != 0x12
        || value_key + 2 + entry[value_key + 1] as usize != n
    {
        return None;
    }
    Some(value_key)
}

/// Fast path for a `map<string, string>` entry in its canonical shape ([`canonical_entry`]) whose
/// text is all ASCII (so both strings are valid UTF-8 and both lengths are one byte). `true` only if
/// the general walk would accept the entry; `false` means "use the general walk".
#[inline(always)]
fn ascii_string_entry(data: &[u8], start: usize, end: usize) -> bool {
    let entry = &data[start..end];
    canonical_entry(entry).is_some() && ascii::is_ascii(data, start, end)
}

/// Skips an unknown field like `prost::encoding::skip_field`, including its recursion budget
/// check (which applies to every wire type, not only groups).
fn skip(
    data: &[u8],
    pos: &mut usize,
    wire_type: u8,
    tag: u32,
    ctx: u32,
    at: usize,
    trail: &mut impl Trail,
) -> Res<()> {
    if ctx == 0 {
        return Err(fault(WireErrorKind::RecursionLimit, at));
    }
    match wire_type {
        VARINT => skip_varint(data, pos),
        I64 => fixed(data, pos, 8),
        I32 => fixed(data, pos, 4),
        LEN => {
            *pos = len_delimited(data, pos)?;
            Ok(())
        }
        SGROUP => loop {
            let inner_at = *pos;
            if inner_at >= data.len() {
                return Err(fault(WireErrorKind::UnterminatedGroup, at));
            }
            let (inner_tag, inner_wt) = key(data, pos)?;
            if inner_wt == EGROUP {
                if inner_tag != tag {
                    return Err(fault(WireErrorKind::UnexpectedEndGroup, inner_at));
                }
                return Ok(());
            }
            trail.enter(inner_tag);
            skip(data, pos, inner_wt, inner_tag, ctx - 1, inner_at, trail)?;
            trail.leave();
        },
        // EGROUP (6 and 7 are rejected by `key`).
        _ => Err(fault(WireErrorKind::UnexpectedEndGroup, at)),
    }
}

/// Every one-byte key takes the general path: used where the recursion budget is spent, so that
/// unknown fields report it.
static ALL_GENERAL: [Step; 128] = [Step::General; 128];

/// Walks the fields in `data[pos..]` against `schema`. `ctx` is prost's remaining recursion
/// budget as passed to this message's `merge_field`.
///
/// Keys of one byte (fields 1..=15) are looked up in the schema's [`Step`] table, which settles the
/// common cases (strings, messages, maps, well-typed scalars, unknown fields) with no further wire
/// type checks; everything else goes through [`general_field`]. The conditions checked are exactly
/// prost's; only the order in which two independent faults would be noticed can differ, which does
/// not change the verdict.
fn walk(
    data: &[u8],
    mut pos: usize,
    schema: &'static Schema,
    ctx: u32,
    trail: &mut impl Trail,
) -> Res<()> {
    let steps = steps_for(schema, ctx);
    while pos < data.len() {
        field(data, &mut pos, schema, steps, ctx, trail)?;
    }
    Ok(())
}

/// The one-byte-key table to walk a message with: with no budget left, skipping even an unknown
/// varint is an error, which the general path reports.
#[inline(always)]
fn steps_for(schema: &'static Schema, ctx: u32) -> &'static [Step; 128] {
    if ctx == 0 {
        &ALL_GENERAL
    } else {
        &schema.steps
    }
}

/// Walks the one field at `*pos` (`< data.len()`) of a message, advancing `*pos` past it.
#[inline(always)]
fn field(
    data: &[u8],
    pos: &mut usize,
    schema: &'static Schema,
    steps: &[Step; 128],
    ctx: u32,
    trail: &mut impl Trail,
) -> Res<()> {
    let at = *pos;
    let b = data[at];
    let step = if b < 0x80 {
        steps[b as usize]
    } else {
        Step::General
    };
    if step == Step::General {
        *pos = general_field(data, at, schema, ctx, trail)?;
        return Ok(());
    }
    *pos = at + 1;
    let tag = u32::from(b >> 3);
    trail.enter(tag);
    match step {
        Step::Str => {
            let end = len_delimited(data, pos)?;
            check_utf8(data, *pos, end).map_err(|i| fault(WireErrorKind::InvalidUtf8, i))?;
            *pos = end;
        }
        Step::StrMap => {
            let end = len_delimited(data, pos)?;
            string_map_entry(data, *pos, end, ctx, at, trail)?;
            *pos = end;
        }
        Step::Nested => {
            let end = len_delimited(data, pos)?;
            if let Some(Field {
                kind: Msg(sub) | Map(sub),
                ..
            }) = schema.field(tag)
            {
                nested(data, *pos, end, sub, ctx, at, trail)?;
            }
            *pos = end;
        }
        Step::Varint => skip_varint(data, pos)?,
        Step::SkipLen => *pos = len_delimited(data, pos)?,
        Step::Fixed64 => fixed(data, pos, 8)?,
        Step::Fixed32 => fixed(data, pos, 4)?,
        Step::General => {}
    }
    trail.leave();
    Ok(())
}

/// One field at `at` by the general path: any key, every rule checked. Returns the position after
/// it (by value, see [`varint_slow`]).
#[inline(never)]
fn general_field(
    data: &[u8],
    at: usize,
    schema: &'static Schema,
    ctx: u32,
    trail: &mut impl Trail,
) -> Res<usize> {
    let mut pos = at;
    let (tag, wire_type) = key(data, &mut pos)?;
    trail.enter(tag);
    let field = schema.field(tag);
    if wire_type == LEN {
        let end = len_delimited(data, &mut pos)?;
        let start = pos;
        pos = end;
        len_field(data, start, end, field, ctx, at, trail)?;
    } else {
        other_field(data, &mut pos, field, tag, wire_type, ctx, at, trail)?;
    }
    trail.leave();
    Ok(pos)
}

/// A wire-type-2 field whose payload is `data[start..end]` (already bounds-checked).
#[inline(always)]
fn len_field(
    data: &[u8],
    start: usize,
    end: usize,
    field: Option<&'static Field>,
    ctx: u32,
    at: usize,
    trail: &mut impl Trail,
) -> Res<()> {
    let Some(field) = field else {
        // Unknown: `skip_field` checks the recursion budget for every wire type.
        return if ctx == 0 {
            Err(fault(WireErrorKind::RecursionLimit, at))
        } else {
            Ok(())
        };
    };
    // An if-chain in order of frequency: measurably faster than a `match` (jump table) here.
    if let Str = field.kind {
        return check_utf8(data, start, end).map_err(|i| fault(WireErrorKind::InvalidUtf8, i));
    }
    if let StrMap = field.kind {
        return string_map_entry(data, start, end, ctx, at, trail);
    }
    if let Msg(schema) | Map(schema) = field.kind {
        return nested(data, start, end, schema, ctx, at, trail);
    }
    len_field_rare(field.kind, start, end, at)
}

/// The uncommon wire-type-2 kinds: `bytes`, packed doubles, and wire-type mismatches.
#[inline(never)]
fn len_field_rare(kind: Kind, start: usize, end: usize, at: usize) -> Res<()> {
    match kind {
        RepeatedDouble => {
            if (end - start) & 7 != 0 {
                return Err(fault(WireErrorKind::PackedLength, at));
            }
            Ok(())
        }
        Varint => expect_wire_type(VARINT, LEN, at),
        Double => expect_wire_type(I64, LEN, at),
        // Str, Msg and the maps are handled by `len_field`.
        Bytes | Str | Msg(_) | Map(_) | StrMap => Ok(()),
    }
}

/// A message or map entry in `data[start..end]`: prost's `message::merge` / map merge check the
/// budget, then walk the contents with one level less.
#[inline(always)]
fn nested(
    data: &[u8],
    start: usize,
    end: usize,
    schema: &'static Schema,
    ctx: u32,
    at: usize,
    trail: &mut impl Trail,
) -> Res<()> {
    if ctx == 0 {
        return Err(fault(WireErrorKind::RecursionLimit, at));
    }
    walk(&data[..end], start, schema, ctx - 1, trail)
}

/// A `map<string, string>` entry in `data[start..end]`: [`nested`], with a shortcut for the
/// canonical all-ASCII shape ([`ascii_string_entry`]) when the budget allows an entry at all.
#[inline(always)]
fn string_map_entry(
    data: &[u8],
    start: usize,
    end: usize,
    ctx: u32,
    at: usize,
    trail: &mut impl Trail,
) -> Res<()> {
    if ctx != 0 && ascii_string_entry(data, start, end) {
        return Ok(());
    }
    nested(data, start, end, &STRING_MAP, ctx, at, trail)
}

/// A field whose wire type is not 2.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn other_field(
    data: &[u8],
    pos: &mut usize,
    field: Option<&'static Field>,
    tag: u32,
    wire_type: u8,
    ctx: u32,
    at: usize,
    trail: &mut impl Trail,
) -> Res<()> {
    let Some(field) = field else {
        return skip(data, pos, wire_type, tag, ctx, at, trail);
    };
    match field.kind {
        Varint => {
            expect_wire_type(VARINT, wire_type, at)?;
            skip_varint(data, pos)
        }
        Double | RepeatedDouble => {
            expect_wire_type(I64, wire_type, at)?;
            fixed(data, pos, 8)
        }
        // Only called for wire types other than 2, which these kinds require.
        Str | Bytes | Msg(_) | Map(_) | StrMap => expect_wire_type(LEN, wire_type, at),
    }
}

/// Checks that `buf` is a serialized `coprocess.Object` that `Object::decode` (prost 0.14.6) would
/// accept, without decoding it. Accepts exactly the inputs prost accepts (see the module docs for
/// the rules). Does not allocate.
pub fn validate_object(buf: &[u8]) -> Result<(), WireError> {
    check_object(buf).map(drop)
}

/// What the dispatch path needs from an `Object` besides its validity, read by [`check_object`] in
/// the same walk (no second pass over the buffer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Routing<'a> {
    hook_type: i32,
    api_id: Option<&'a [u8]>,
}

impl<'a> Routing<'a> {
    /// `hook_type` as a decode gives it: the last occurrence, truncated to `i32`; 0 when absent.
    /// Equals `hook_type(buf).unwrap_or(0)`.
    pub fn hook_type(&self) -> i32 {
        self.hook_type
    }

    /// `spec["APIID"]`: equals `spec_value(buf, "APIID")`.
    pub fn api_id(&self) -> Option<&'a str> {
        // Already validated as UTF-8 by the walk; checking again costs a few bytes' worth.
        core::str::from_utf8(self.api_id?).ok()
    }
}

/// [`validate_object`], also returning the [`Routing`] values of an accepted `Object`: one walk
/// where checking and then reading them took three.
pub fn check_object(buf: &[u8]) -> Result<Routing<'_>, WireError> {
    if let Some(routing) = fast::object(buf) {
        return Ok(routing);
    }
    walk_object(buf).map_err(|first| explain(buf, first))
}

/// The one-byte keys of the top-level fields [`walk_object`] reads.
const HOOK_TYPE_KEY: u8 = 0x08; // field 1, varint
const SPEC_KEY: u8 = 0x32; // field 6, length-delimited
const API_ID: &[u8] = b"APIID";

/// [`walk`] of the top level of an `Object`, reading `hook_type` and `spec["APIID"]` on the way.
/// Every field is checked exactly as `walk` checks it (the same primitives, the same budget), so
/// the verdict is the same; the two fields read are also recognised under a longer (non-canonical)
/// key encoding, as a decode recognises them.
fn walk_object(buf: &[u8]) -> Res<Routing<'_>> {
    let mut routing = Routing::default();
    let mut pos = 0;
    while pos < buf.len() {
        let at = pos;
        let b = buf[pos];
        let read = if b == HOOK_TYPE_KEY || b == SPEC_KEY {
            pos += 1;
            Some(b)
        } else if b >= 0x80 {
            long_key(buf, at).map(|(one_byte, after)| {
                pos = after;
                one_byte
            })
        } else {
            None
        };
        match read {
            Some(HOOK_TYPE_KEY) => routing.hook_type = varint(buf, &mut pos)? as i32,
            Some(_) => {
                let end = len_delimited(buf, &mut pos)?;
                string_map_entry(buf, pos, end, RECURSION_LIMIT, at, &mut NoTrail)?;
                if let Some(value) = api_id_value(buf, pos, end) {
                    routing.api_id = Some(value);
                }
                pos = end;
            }
            None => field(
                buf,
                &mut pos,
                &OBJECT,
                &OBJECT.steps,
                RECURSION_LIMIT,
                &mut NoTrail,
            )?,
        }
    }
    Ok(routing)
}

/// A key of several bytes at `at` that encodes `hook_type` or `spec` (rare but valid, and a
/// decode reads it): returns the one-byte form and the position after the key. Anything else,
/// faults included, is left to the general path, which decodes the key again and reports them.
#[cold]
fn long_key(buf: &[u8], at: usize) -> Option<(u8, usize)> {
    let mut pos = at;
    let one_byte = match key(buf, &mut pos) {
        Ok((OBJECT_HOOK_TYPE, VARINT)) => HOOK_TYPE_KEY,
        Ok((OBJECT_SPEC, LEN)) => SPEC_KEY,
        _ => return None,
    };
    Some((one_byte, pos))
}

/// The value of a validated `spec` entry in `buf[start..end]` if its key is "APIID".
#[inline(always)]
fn api_id_value(buf: &[u8], start: usize, end: usize) -> Option<&[u8]> {
    let entry = &buf[start..end];
    if let Some(value_key) = canonical_entry(entry) {
        return (&entry[2..value_key] == API_ID).then(|| &entry[value_key + 2..]);
    }
    let (k, v) = map_entry(&buf[..end], start)?;
    (k == API_ID).then_some(v)
}

/// Re-walks a rejected buffer, recording the field path to the fault.
#[cold]
#[inline(never)]
fn explain(buf: &[u8], first: Fault) -> WireError {
    let mut trail = PathTrail {
        tags: [0; MAX_PATH],
        depth: 0,
    };
    let f = walk(buf, 0, &OBJECT, RECURSION_LIMIT, &mut trail)
        .err()
        .unwrap_or(first);
    WireError {
        kind: f.kind,
        offset: f.offset,
        tags: trail.tags,
        depth: trail.depth,
    }
}

// ---------------------------------------------------------------------------------------------
// Routing readers
// ---------------------------------------------------------------------------------------------

use crate::fields::object::{
    HOOK_NAME as OBJECT_HOOK_NAME, HOOK_TYPE as OBJECT_HOOK_TYPE, SPEC as OBJECT_SPEC,
};

/// Returns `spec[key]` from a serialized `Object` without decoding or allocating.
///
/// As in a protobuf map merge, the last entry with a matching key wins, and within an entry the
/// last `key`/`value` field wins (a missing value is `""`). Returns `None` when no entry matches.
///
/// On any buffer that [`validate_object`] accepts, the result equals
/// `Object::decode(buf)?.spec.get(key)`. On other buffers it never panics or reads out of bounds:
/// it returns `None` if the top level of the buffer (or a `spec` entry) is malformed, or if the
/// winning value is not UTF-8; other damage (e.g. inside `request`) is not detected.
pub fn spec_value<'a>(buf: &'a [u8], key_wanted: &str) -> Option<&'a str> {
    let mut pos = 0;
    let mut found: Option<&'a [u8]> = None;
    while pos < buf.len() {
        let at = pos;
        let (tag, wire_type) = key(buf, &mut pos).ok()?;
        if tag == OBJECT_SPEC && wire_type == LEN {
            let end = len_delimited(buf, &mut pos).ok()?;
            let (k, v) = map_entry(&buf[..end], pos)?;
            if k == key_wanted.as_bytes() {
                found = Some(v);
            }
            pos = end;
        } else {
            skip(
                buf,
                &mut pos,
                wire_type,
                tag,
                RECURSION_LIMIT,
                at,
                &mut NoTrail,
            )
            .ok()?;
        }
    }
    core::str::from_utf8(found?).ok()
}

/// Reads a `map<string, string>` entry in `data[pos..]` (at the top level's map recursion depth)
/// and returns its raw key and value.
fn map_entry(data: &[u8], mut pos: usize) -> Option<(&[u8], &[u8])> {
    let (mut k, mut v): (&[u8], &[u8]) = (&[], &[]);
    while pos < data.len() {
        let at = pos;
        let (tag, wire_type) = key(data, &mut pos).ok()?;
        if tag == 1 || tag == 2 {
            if wire_type != LEN {
                return None;
            }
            let end = len_delimited(data, &mut pos).ok()?;
            let bytes = &data[pos..end];
            if tag == 1 {
                k = bytes;
            } else {
                v = bytes;
            }
            pos = end;
        } else {
            // Top-level fields run at budget 100; the map merge spends one level on the entry.
            skip(
                data,
                &mut pos,
                wire_type,
                tag,
                RECURSION_LIMIT - 1,
                at,
                &mut NoTrail,
            )
            .ok()?;
        }
    }
    Some((k, v))
}

/// Returns the raw `hook_type` (field 1) of a serialized `Object` without decoding it: the last
/// occurrence wins and the varint is truncated to `i32` as prost does. Returns `None` when the
/// field is absent (the decoded value is then `0`, `HookType::Unknown`).
///
/// On any buffer that [`validate_object`] accepts, `hook_type(buf).unwrap_or(0)` equals
/// `Object::decode(buf)?.hook_type`. On other buffers it never panics: it returns `None` if the
/// top level is malformed or field 1 has the wrong wire type.
pub fn hook_type(buf: &[u8]) -> Option<i32> {
    let mut pos = 0;
    let mut found = None;
    while pos < buf.len() {
        let at = pos;
        let (tag, wire_type) = key(buf, &mut pos).ok()?;
        if tag == OBJECT_HOOK_TYPE {
            if wire_type != VARINT {
                return None;
            }
            found = Some(varint(buf, &mut pos).ok()? as i32);
        } else {
            skip(
                buf,
                &mut pos,
                wire_type,
                tag,
                RECURSION_LIMIT,
                at,
                &mut NoTrail,
            )
            .ok()?;
        }
    }
    found
}

/// Reads `hook_name` (field 2) without decoding or allocating: the last occurrence wins, as in a
/// decode. `None` when the field is absent (the decoded value is then ""), when the top level is
/// malformed, or when the winning value has the wrong wire type or is not UTF-8.
pub fn hook_name(buf: &[u8]) -> Option<&str> {
    let mut pos = 0;
    let mut found = None;
    while pos < buf.len() {
        let at = pos;
        let (tag, wire_type) = key(buf, &mut pos).ok()?;
        if tag == OBJECT_HOOK_NAME {
            if wire_type != LEN {
                return None;
            }
            let end = len_delimited(buf, &mut pos).ok()?;
            found = Some(&buf[pos..end]);
            pos = end;
        } else {
            skip(
                buf,
                &mut pos,
                wire_type,
                tag,
                RECURSION_LIMIT,
                at,
                &mut NoTrail,
            )
            .ok()?;
        }
    }
    found.and_then(|b| core::str::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HookType, MiniRequestObject, Monitor, Object, SessionState};
    use prost::Message;

    #[test]
    fn hook_name_reads_the_last_occurrence() {
        let mut o = Object {
            hook_name: "First".into(),
            ..Default::default()
        };
        let mut buf = o.encode_to_vec();
        assert_eq!(hook_name(&buf), Some("First"));
        o.hook_name = "Second".into();
        o.encode(&mut buf).unwrap();
        assert_eq!(hook_name(&buf), Some("Second"));
        assert_eq!(hook_name(&Object::default().encode_to_vec()), None);
        assert_eq!(hook_name(b"\x12\x05ab"), None, "truncated");
        assert_eq!(hook_name(b"\x12\x02\xc3\x28"), None, "not UTF-8");
    }

    /// Appends a varint.
    fn v(out: &mut Vec<u8>, mut x: u64) {
        while x >= 0x80 {
            out.push((x as u8) | 0x80);
            x >>= 7;
        }
        out.push(x as u8);
    }

    fn k(out: &mut Vec<u8>, tag: u32, wt: u8) {
        v(out, (u64::from(tag) << 3) | u64::from(wt));
    }

    fn ld(out: &mut Vec<u8>, tag: u32, payload: &[u8]) {
        k(out, tag, LEN);
        v(out, payload.len() as u64);
        out.extend_from_slice(payload);
    }

    /// Asserts that the validator and prost agree, and returns the verdict.
    #[track_caller]
    fn agree(buf: &[u8]) -> bool {
        let ours = validate_object(buf);
        let prost = Object::decode(buf);
        assert_eq!(
            ours.is_ok(),
            prost.is_ok(),
            "disagreement on {buf:02x?}: ours {ours:?}, prost {prost:?}"
        );
        ours.is_ok()
    }

    #[test]
    fn empty_and_simple() {
        assert!(agree(&[]));
        assert!(agree(&[0x08, 0x01]));
        assert!(agree(&[0x12, 0x00]));
        let o = Object {
            hook_type: HookType::Post as i32,
            hook_name: "h".into(),
            request: Some(MiniRequestObject {
                method: "GET".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(agree(&o.encode_to_vec()));
    }

    #[test]
    fn varint_rules() {
        // 10-byte varints: last byte 0x01 is u64::MAX territory (ok), 0x02 overflows.
        let mut ok = vec![0x08];
        ok.extend_from_slice(&[0xFF; 9]);
        ok.push(0x01);
        assert!(agree(&ok));
        let mut overflow = ok.clone();
        *overflow.last_mut().unwrap() = 0x02;
        assert!(!agree(&overflow));
        // 11 bytes.
        let mut long = vec![0x08];
        long.extend_from_slice(&[0x80; 10]);
        long.push(0x00);
        assert!(!agree(&long));
        // Over-long but valid (non-canonical) encodings are accepted.
        assert!(agree(&[0x08, 0x80, 0x80, 0x00]));
        assert!(agree(&[0x88, 0x00, 0x01])); // key 8 encoded in two bytes
                                             // Truncated.
        assert!(!agree(&[0x08, 0x80]));
        assert!(!agree(&[0x80]));
        // Key larger than u32::MAX.
        assert!(!agree(&[0x80, 0x80, 0x80, 0x80, 0x10, 0x00]));
        // Key exactly u32::MAX: field 2^29-1, wire type 7 (invalid anyway).
        assert!(!agree(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]));
        // Largest field number with wire type 0: an unknown field, skipped.
        assert!(agree(&[0xF8, 0xFF, 0xFF, 0xFF, 0x0F, 0x00]));
    }

    /// `skip_varint`'s shortcuts (one load for up to 8 bytes, then the 9th and 10th bytes) end where
    /// a decode ends, and fail where it fails, for every length, last byte and message end.
    #[test]
    fn skipping_a_varint_ends_where_decoding_it_does() {
        for len in 1..=12usize {
            for last in [0x00, 0x01, 0x02, 0x7F] {
                let mut b = vec![0x80u8; len - 1];
                b.push(last);
                b.extend_from_slice(&[0x55; 4]);
                for cut in [len - 1, len, b.len()] {
                    let data = &b[..cut];
                    let (mut skipped, mut decoded) = (0, 0);
                    let s = skip_varint(data, &mut skipped).map(|()| skipped);
                    let d = varint(data, &mut decoded).map(|_| decoded);
                    assert_eq!(
                        s.map_err(|f| (f.kind, f.offset)),
                        d.map_err(|f| (f.kind, f.offset)),
                        "length {len}, last byte {last:#x}, message of {cut} bytes"
                    );
                }
            }
        }
    }

    #[test]
    fn key_rules() {
        assert!(!agree(&[0x00, 0x00])); // field 0
        assert!(!agree(&[0x06])); // field 0, wire type 6
        assert!(!agree(&[0x0E, 0x00])); // wire type 6
        assert!(!agree(&[0x0F, 0x00])); // wire type 7
        assert!(!agree(&[0x0A, 0x00])); // hook_type as length-delimited
        assert!(!agree(&[0x10, 0x00])); // hook_name as varint
        assert!(!agree(&[0x1D, 0, 0, 0, 0])); // request as fixed32
    }

    #[test]
    fn lengths_and_fixed_widths() {
        assert!(!agree(&[0x12, 0x05, b'a']));
        // Unknown fixed32 / fixed64, complete and truncated.
        assert!(agree(&[0x45, 1, 2, 3, 4]));
        assert!(!agree(&[0x45, 1, 2, 3]));
        assert!(agree(&[0x41, 1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(!agree(&[0x41, 1, 2, 3, 4, 5, 6, 7]));
        // A nested length that fits the buffer but not the enclosing message.
        let mut b = Vec::new();
        ld(&mut b, 3, &[0x2A, 0x05, b'a']); // request{url: len 5 but only 1 byte}
        b.extend_from_slice(b"bcdef");
        assert!(!agree(&b));
        // A nested varint cut by the message end (prost reads across, then fails).
        let mut b = Vec::new();
        ld(&mut b, 4, &[0x08, 0x80]); // session{last_check: truncated}
        b.push(0x01);
        assert!(!agree(&b));
    }

    #[test]
    fn doubles() {
        // session.allowance: fixed64 ok, other wire types not.
        let mut s = Vec::new();
        k(&mut s, 2, I64);
        s.extend_from_slice(&1.5f64.to_le_bytes());
        let mut b = Vec::new();
        ld(&mut b, 4, &s);
        assert!(agree(&b));
        let mut b = Vec::new();
        ld(&mut b, 4, &[0x12, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]); // packed form for a singular
        assert!(!agree(&b));
        // monitor.trigger_limits packed and unpacked.
        let mut m = Vec::new();
        ld(&mut m, 1, &[0u8; 16]);
        k(&mut m, 1, I64);
        m.extend_from_slice(&[0u8; 8]);
        let mut s = Vec::new();
        ld(&mut s, 21, &m);
        let mut b = Vec::new();
        ld(&mut b, 4, &s);
        assert!(agree(&b));
        let decoded = Object::decode(b.as_slice()).unwrap();
        assert_eq!(
            decoded
                .session
                .unwrap()
                .monitor
                .unwrap()
                .trigger_limits
                .len(),
            3
        );
        // Packed run that is not a multiple of 8 bytes.
        for n in [1usize, 7, 9, 15] {
            let mut m = Vec::new();
            ld(&mut m, 1, &vec![0u8; n]);
            let mut s = Vec::new();
            ld(&mut s, 21, &m);
            let mut b = Vec::new();
            ld(&mut b, 4, &s);
            assert!(!agree(&b), "packed length {n}");
        }
        // trigger_limits as varint or fixed32.
        assert!(!agree(&[0x22, 0x04, 0xAA, 0x01, 0x08, 0x00]));
        assert!(!agree(&[0x22, 0x07, 0xAA, 0x01, 0x04, 0x0D, 0, 0, 0]));
        // Encoded by prost (packed).
        let o = Object {
            session: Some(SessionState {
                monitor: Some(Monitor {
                    trigger_limits: vec![0.5, 0.75],
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(agree(&o.encode_to_vec()));
    }

    #[test]
    fn map_fields_must_be_length_delimited() {
        // prost-derive 0.14.6 checks a map field's wire type (0.14.4 read a length-prefixed entry
        // whatever the key said); the check follows it, and so do the routing readers.
        let mut entry = Vec::new();
        ld(&mut entry, 1, b"APIID");
        ld(&mut entry, 2, b"api9");
        for wt in [VARINT, I64, LEN, SGROUP, EGROUP, I32] {
            let mut b = Vec::new();
            k(&mut b, 6, wt); // spec
            v(&mut b, entry.len() as u64);
            b.extend_from_slice(&entry);
            b.extend_from_slice(&[0x08, 0x03]);
            assert_eq!(agree(&b), wt == LEN, "spec with wire type {wt}");
            if wt == LEN {
                assert_eq!(spec_value(&b, "APIID"), Some("api9"));
                assert_eq!(hook_type(&b), Some(3));
            }
            // Also nested: session.access_rights (map<string, AccessDefinition>).
            let mut e = Vec::new();
            ld(&mut e, 1, b"id");
            let mut sess = Vec::new();
            k(&mut sess, 10, wt);
            v(&mut sess, e.len() as u64);
            sess.extend_from_slice(&e);
            let mut b = Vec::new();
            ld(&mut b, 4, &sess);
            assert_eq!(agree(&b), wt == LEN, "access_rights with wire type {wt}");
        }
        // A message field checks it too.
        assert!(!agree(&[0x18, 0x00])); // request with wire type 0
    }

    #[test]
    fn utf8() {
        assert!(agree(&[0x12, 0x02, 0xC3, 0xA9])); // "é"
        assert!(!agree(&[0x12, 0x01, 0xC3]));
        assert!(!agree(&[0x12, 0x01, 0xFF]));
        // bytes need not be UTF-8: request.raw_body.
        assert!(agree(&[0x1A, 0x03, 0x72, 0x01, 0xFF]));
        // A long ASCII prefix then a bad byte, deep in a map value: path and offset.
        let mut entry = Vec::new();
        ld(&mut entry, 1, b"Host");
        let mut val = vec![b'a'; 37];
        val.push(0xFF);
        ld(&mut entry, 2, &val);
        let mut req = Vec::new();
        ld(&mut req, 1, &entry);
        let mut b = vec![0x08, 0x01];
        ld(&mut b, 3, &req);
        assert!(!agree(&b));
        let e = validate_object(&b).unwrap_err();
        assert_eq!(e.kind(), WireErrorKind::InvalidUtf8);
        assert_eq!(b[e.offset()], 0xFF);
        assert_eq!(
            e.to_string(),
            format!(
                "request.headers.value: invalid UTF-8 at byte {}",
                e.offset()
            )
        );
    }

    /// Every entry of the one-byte-key tables (the walker's shortcut past the general path) agrees
    /// with prost, at the top level and inside messages and map entries, for payloads of every wire
    /// shape: complete, truncated, not UTF-8.
    #[test]
    fn step_tables_agree_with_prost() {
        let payloads: [&[u8]; 7] = [
            &[0x01],
            &[0x96, 0x01],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &[1, 2, 3],
            &[0x02, b'o', b'k'],
            &[0x02, 0xC3, 0x28],
            &[0x05, b'a'],
        ];
        // Where the key is put: top level, request{}, session{}, request.headers{entry},
        // session.access_rights{entry}.value{}.
        let wrap = |inner: &[u8], at: usize| -> Vec<u8> {
            let mut b = Vec::new();
            match at {
                0 => b.extend_from_slice(inner),
                1 => ld(&mut b, 3, inner),
                2 => ld(&mut b, 4, inner),
                3 => {
                    let mut req = Vec::new();
                    ld(&mut req, 1, inner);
                    ld(&mut b, 3, &req);
                }
                _ => {
                    let mut entry = Vec::new();
                    ld(&mut entry, 2, inner);
                    let mut sess = Vec::new();
                    ld(&mut sess, 10, &entry);
                    ld(&mut b, 4, &sess);
                }
            }
            b
        };
        let mut shortcuts = 0;
        for key in 0u8..0x80 {
            for at in 0..5 {
                for payload in payloads {
                    let mut inner = vec![key];
                    inner.extend_from_slice(payload);
                    agree(&wrap(&inner, at));
                    // Also with a field after it, so a wrong length or skip shows.
                    inner.extend_from_slice(&[0x12, 0x01, b'x']);
                    agree(&wrap(&inner, at));
                }
            }
            if OBJECT.steps[key as usize] != Step::General {
                shortcuts += 1;
            }
        }
        assert!(
            shortcuts >= 39,
            "the top-level table settles most keys ({shortcuts})"
        );
    }

    /// The short-string check reads the 16 bytes that end where the string ends, masking the rest;
    /// strings in the first 16 bytes, and text that is not ASCII, take the slower paths.
    #[test]
    fn short_string_shortcut() {
        for len in 0..=17usize {
            for bad_at in [None, Some(0), Some(len.saturating_sub(1))] {
                let mut text = vec![b'a'; len];
                if let (Some(i), true) = (bad_at, len > 0) {
                    text[i] = 0xFF;
                }
                // At the very start (end < 16), and after 20 bytes of a valid hook_name.
                let mut early = Vec::new();
                ld(&mut early, 2, &text);
                agree(&early);
                let mut late = Vec::new();
                ld(&mut late, 2, &[b'z'; 20]);
                ld(&mut late, 2, &text);
                agree(&late);
                // The masked bytes before the string are not ASCII: they must not count.
                let mut dirty = Vec::new();
                ld(&mut dirty, 14 + 1, &[0xFF; 20]); // unknown bytes field 15
                ld(&mut dirty, 2, &text);
                agree(&dirty);
            }
        }
        assert!(check_utf8("é".as_bytes(), 0, 2).is_ok());
        assert_eq!(check_utf8(b"abc\xff", 0, 4), Err(3));
    }

    /// The `map<string, string>` entry shortcut accepts only what the general walk accepts.
    #[test]
    fn string_entry_shortcut() {
        let entry = |parts: &[&[u8]]| {
            let mut e = Vec::new();
            for p in parts {
                e.extend_from_slice(p);
            }
            let mut b = Vec::new();
            ld(&mut b, 6, &e); // spec
            b
        };
        assert!(agree(&entry(&[b"\x0a\x01k\x12\x01v"])));
        assert!(agree(&entry(&[b"\x0a\x00\x12\x00"])));
        assert!(!agree(&entry(&[b"\x0a\x01k\x12\x02v"])), "value overruns");
        assert!(!agree(&entry(&[b"\x0a\x01\xff\x12\x01v"])), "key not UTF-8");
        assert!(
            agree(&entry(&[b"\x0a\x02\xc3\xa9\x12\x01v"])),
            "key UTF-8, not ASCII"
        );
        assert!(agree(&entry(&[b"\x12\x01v\x0a\x01k"])), "value first");
        assert!(
            agree(&entry(&[b"\x0a\x01k\x12\x01v\x18\x01"])),
            "unknown field"
        );
        let mut long = b"\x0a\x01k\x12\x80\x01".to_vec();
        long.extend_from_slice(&[b'v'; 128]);
        assert!(agree(&entry(&[&long])), "two-byte value length");
    }

    #[test]
    fn groups() {
        // Unknown group 9 containing a varint and a nested group 10.
        let g = [0x4B, 0x08, 0x01, 0x53, 0x54, 0x4C];
        assert!(agree(&g));
        assert!(!agree(&[0x4B, 0x08, 0x01])); // unterminated
        assert!(!agree(&[0x4B, 0x54])); // wrong end tag
        assert!(!agree(&[0x4C])); // stray end
        assert!(!agree(&[0x0C])); // end-group for a known field number
        assert!(!agree(&[0x0B, 0x0C])); // start-group for a known field number
                                        // A group in a nested message, closed outside it.
        let mut b = Vec::new();
        ld(&mut b, 3, &[0x7B]); // request{#15 start}
        b.push(0x7C);
        assert!(!agree(&b));
        let e = validate_object(&[0x4B, 0x50, 0x01]).unwrap_err();
        assert_eq!(e.kind(), WireErrorKind::UnterminatedGroup);
        assert!(e.to_string().starts_with("#9: "), "{e}");
    }

    #[test]
    fn recursion_limit_matches_prost() {
        // `n` nested unknown groups at the top level, optionally holding a varint.
        fn nested(n: usize, inner: bool, prefix: &[u8]) -> Vec<u8> {
            let mut b = prefix.to_vec();
            b.extend(std::iter::repeat_n(0x4B, n));
            if inner {
                b.extend_from_slice(&[0x50, 0x01]);
            }
            b.extend(std::iter::repeat_n(0x4C, n));
            b
        }
        let mut boundary = None;
        for n in 95..=102 {
            for inner in [false, true] {
                let ok = agree(&nested(n, inner, &[]));
                if !ok && boundary.is_none() {
                    boundary = Some((n, inner));
                }
            }
        }
        assert_eq!(boundary, Some((100, true)));
        // Deeper down the budget is smaller: inside session.access_rights[..].value.allowed_urls.
        for n in 90..=100 {
            for inner in [false, true] {
                let groups = nested(n, inner, &[]);
                let mut spec = Vec::new();
                ld(&mut spec, 1, b"/x");
                spec.extend_from_slice(&groups);
                let mut def = Vec::new();
                ld(&mut def, 4, &spec);
                let mut entry = Vec::new();
                ld(&mut entry, 1, b"k");
                ld(&mut entry, 2, &def);
                let mut sess = Vec::new();
                ld(&mut sess, 10, &entry);
                let mut b = Vec::new();
                ld(&mut b, 4, &sess);
                agree(&b);
            }
        }
        let e = validate_object(&nested(101, false, &[])).unwrap_err();
        assert_eq!(e.kind(), WireErrorKind::RecursionLimit);
        assert!(
            e.to_string()
                .starts_with("#9.#9.#9.#9.#9.#9.#9.#9.\u{2026}: "),
            "{e}"
        );
    }

    /// `check_object` reads `hook_type` and `spec["APIID"]` in the validating walk: by the one-byte
    /// keys (the shortcut), by longer key encodings, from canonical and other entry shapes; the
    /// last occurrence wins, and the verdict is `validate_object`'s.
    #[test]
    fn check_object_reads_the_routing_values_in_its_walk() {
        fn routing(b: &[u8]) -> Option<(i32, Option<&str>)> {
            let r = check_object(b);
            assert_eq!(r.is_ok(), agree(b));
            if let Ok(r) = r {
                assert_eq!(r.hook_type(), hook_type(b).unwrap_or(0), "{b:02x?}");
                assert_eq!(r.api_id(), spec_value(b, "APIID"), "{b:02x?}");
            }
            r.ok().map(|r| (r.hook_type(), r.api_id()))
        }
        let entry = |parts: &[&[u8]]| {
            let e: Vec<u8> = parts.concat();
            let mut b = Vec::new();
            ld(&mut b, 6, &e);
            b
        };
        assert_eq!(routing(&[]), Some((0, None)));
        assert_eq!(routing(&[0x08, 0x04]), Some((4, None)));
        // A longer encoding of the hook_type key, and a later occurrence winning.
        assert_eq!(routing(&[0x08, 0x04, 0x88, 0x00, 0x02]), Some((2, None)));
        // Negative: a ten-byte varint truncated to i32 like prost.
        let mut neg = vec![0x08];
        v(&mut neg, u64::MAX);
        assert_eq!(routing(&neg), Some((-1, None)));
        // Canonical entries (the shortcut), other keys ignored.
        let mut b = entry(&[b"\x0a\x05OrgID\x12\x01o"]);
        b.extend(entry(&[b"\x0a\x05APIID\x12\x04api1"]));
        assert_eq!(routing(&b), Some((0, Some("api1"))));
        // Value first, an unknown field, a repeated key: the general reader; the last entry wins.
        b.extend(entry(&[b"\x12\x04api2\x0a\x05APIID"]));
        assert_eq!(routing(&b), Some((0, Some("api2"))));
        b.extend(entry(&[b"\x0a\x05APIID\x12\x04api3\x18\x01"]));
        assert_eq!(routing(&b), Some((0, Some("api3"))));
        b.extend(entry(&[b"\x0a\x05APIID\x0a\x01x\x12\x01y"]));
        assert_eq!(routing(&b), Some((0, Some("api3"))), "its key is x");
        b.extend(entry(&[b"\x0a\x05APIID"]));
        assert_eq!(routing(&b), Some((0, Some(""))), "no value: empty");
        // The spec key in two bytes.
        let mut long = vec![0xB2, 0x00];
        let e = b"\x0a\x05APIID\x12\x01z";
        long.push(e.len() as u8);
        long.extend_from_slice(e);
        assert_eq!(routing(&long), Some((0, Some("z"))));
        // Faults in the fields read are faults of the walk, with the same report.
        for bad in [
            &[0x08][..],
            &[0x08, 0x80],
            &[0x88],
            &[0x32, 0x05, 0x0a],
            &[0x32, 0x03, 0x0a, 0x01, 0xff],
            &[0xB2, 0x00, 0x01, 0x00],
        ] {
            assert_eq!(routing(bad), None, "{bad:02x?}");
            assert_eq!(
                check_object(bad).unwrap_err(),
                validate_object(bad).unwrap_err()
            );
        }
        // The fixtures.
        #[cfg(feature = "fixtures")]
        for o in [
            crate::fixtures::small_object(),
            crate::fixtures::typical_object(),
            crate::fixtures::fully_populated_object(),
        ] {
            let b = o.encode_to_vec();
            let r = check_object(&b).unwrap();
            assert_eq!(r.hook_type(), o.hook_type);
            assert_eq!(r.api_id(), o.spec.get("APIID").map(String::as_str));
        }
    }

    #[test]
    fn routing_readers() {
        let mut o = Object {
            hook_type: HookType::Post as i32,
            ..Default::default()
        };
        o.spec.insert("APIID".into(), "api1".into());
        o.spec.insert("OrgID".into(), "org".into());
        o.spec.insert("empty".into(), String::new());
        let mut b = o.encode_to_vec();
        assert_eq!(hook_type(&b), Some(2));
        assert_eq!(spec_value(&b, "APIID"), Some("api1"));
        assert_eq!(spec_value(&b, "OrgID"), Some("org"));
        assert_eq!(spec_value(&b, "empty"), Some(""));
        assert_eq!(spec_value(&b, "nope"), None);
        // Later occurrences win, as in a decode.
        b.extend_from_slice(&[0x08, 0x05]);
        let mut entry = Vec::new();
        ld(&mut entry, 1, b"APIID");
        ld(&mut entry, 2, b"first");
        ld(&mut entry, 2, b"api2");
        ld(&mut b, 6, &entry);
        assert!(agree(&b));
        let decoded = Object::decode(b.as_slice()).unwrap();
        assert_eq!(decoded.spec["APIID"], "api2");
        assert_eq!(spec_value(&b, "APIID"), Some("api2"));
        assert_eq!(hook_type(&b), Some(5));
        // Negative / oversized hook types truncate like prost.
        let mut h = vec![0x08];
        v(&mut h, u64::MAX);
        assert_eq!(hook_type(&h), Some(-1));
        assert_eq!(Object::decode(h.as_slice()).unwrap().hook_type, -1);
        assert_eq!(hook_type(&[]), None);
        // Garbage does not panic.
        assert_eq!(hook_type(&[0x08]), None);
        assert_eq!(spec_value(&[0x32, 0x10, 0x0A], "x"), None);
        assert_eq!(spec_value(&[0x32, 0x02, 0x0A, 0x05], ""), None);
    }
}
