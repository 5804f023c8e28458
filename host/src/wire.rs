//! The protobuf wire format at the level the encoder and the answer reader need: appending varints,
//! keys and length-delimited fields to a buffer, and walking a message's fields without decoding
//! them. Reading never panics and never reads out of bounds, whatever the bytes.

/// Wire types.
pub(crate) const VARINT: u8 = 0;
pub(crate) const I64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const SGROUP: u8 = 3;
pub(crate) const EGROUP: u8 = 4;
pub(crate) const I32: u8 = 5;

/// prost's recursion budget: nested groups deeper than this are refused, as prost refuses them.
const GROUP_DEPTH_LIMIT: u32 = 100;

/// Bytes that are not a well-formed message where a message was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// Offset (in the walked message) of the field that could not be read.
    pub offset: usize,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed protobuf at offset {}", self.offset)
    }
}

impl std::error::Error for Malformed {}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Bytes a varint of `v` takes.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
pub(crate) fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire_type));
}

/// A length-delimited field (`string`, `bytes` or an encoded message).
#[inline]
pub(crate) fn put_len_field(buf: &mut Vec<u8>, field: u32, payload: &[u8]) {
    put_key(buf, field, LEN);
    put_varint(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
}

/// A `string` or `bytes` field as proto3 writes it: left out when empty.
#[inline]
pub(crate) fn put_nonempty(buf: &mut Vec<u8>, field: u32, payload: &[u8]) {
    if !payload.is_empty() {
        put_len_field(buf, field, payload);
    }
}

/// A `map<string, string>` entry whose key is written by `write_key` (`key_len` bytes long).
/// Empty keys and values are left out of the entry, as prost leaves them out.
#[inline]
pub(crate) fn put_string_entry_with(
    buf: &mut Vec<u8>,
    field: u32,
    key_len: usize,
    write_key: impl FnOnce(&mut Vec<u8>),
    value: &[u8],
) {
    let part = |len: usize| {
        if len == 0 {
            0
        } else {
            1 + varint_len(len as u64) + len
        }
    };
    put_key(buf, field, LEN);
    put_varint(buf, (part(key_len) + part(value.len())) as u64);
    if key_len > 0 {
        put_key(buf, 1, LEN);
        put_varint(buf, key_len as u64);
        write_key(buf);
    }
    if !value.is_empty() {
        put_len_field(buf, 2, value);
    }
}

#[inline]
pub(crate) fn put_string_entry(buf: &mut Vec<u8>, field: u32, key: &[u8], value: &[u8]) {
    put_string_entry_with(buf, field, key.len(), |b| b.extend_from_slice(key), value);
}

/// An embedded message whose length is known only once it is written: [`open_message`] writes the
/// key and room for a length, [`close_message`] writes the length and moves the contents when the
/// room was not the right size.
pub(crate) struct OpenMessage {
    /// Where the length goes.
    at: usize,
    /// Bytes reserved for it.
    room: usize,
}

/// Starts field `field`, an embedded message expected to be about `size_hint` bytes long.
pub(crate) fn open_message(buf: &mut Vec<u8>, field: u32, size_hint: usize) -> OpenMessage {
    put_key(buf, field, LEN);
    let at = buf.len();
    let room = varint_len(size_hint as u64);
    buf.resize(at + room, 0);
    OpenMessage { at, room }
}

pub(crate) fn close_message(buf: &mut Vec<u8>, open: OpenMessage) {
    let start = open.at + open.room;
    let len = buf.len() - start;
    let need = varint_len(len as u64);
    if need != open.room {
        // The hint was off: shift the contents to fit the length exactly (canonical encoding).
        let new_start = open.at + need;
        if need > open.room {
            buf.resize(buf.len() + need - open.room, 0);
            buf.copy_within(start..start + len, new_start);
        } else {
            buf.copy_within(start..start + len, new_start);
            buf.truncate(new_start + len);
        }
    }
    let mut v = len as u64;
    for i in 0..need {
        let more = if i + 1 < need { 0x80 } else { 0 };
        buf[open.at + i] = (v as u8 & 0x7f) | more;
        v >>= 7;
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// One field of a message, as the wire format frames it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    /// Length-delimited contents (also a map entry).
    Len(&'a [u8]),
    /// fixed64, fixed32 or a whole group: nothing the reader uses.
    Other,
}

/// The fields of one message, in wire order. Fields whose number is in `maps` must be
/// length-delimited, as prost (since 0.14.6) and the bridge's wire check require.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    maps: u32,
    failed: bool,
}

impl<'a> Fields<'a> {
    /// `maps`: bit `n` set for each map field number `n` (< 32).
    pub(crate) fn new(buf: &'a [u8], maps: u32) -> Fields<'a> {
        Fields {
            buf,
            pos: 0,
            maps,
            failed: false,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len())?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Some(bytes)
    }

    /// A key: (field number, wire type), refusing what prost refuses.
    fn key(&mut self) -> Option<(u32, u8)> {
        let k = u32::try_from(self.varint()?).ok()?;
        let (field, wire_type) = (k >> 3, (k & 7) as u8);
        (field != 0 && wire_type <= I32).then_some((field, wire_type))
    }

    /// Skips the body of a group opened by field `field` (up to and including its end key).
    fn skip_group(&mut self, field: u32) -> Option<()> {
        let mut open = vec![field];
        while let Some(&inner) = open.last() {
            let (f, wt) = self.key()?;
            match wt {
                EGROUP if f == inner => {
                    open.pop();
                }
                EGROUP => return None,
                SGROUP if open.len() < GROUP_DEPTH_LIMIT as usize => open.push(f),
                SGROUP => return None,
                _ => {
                    self.value(wt)?;
                }
            }
        }
        Some(())
    }

    fn value(&mut self, wire_type: u8) -> Option<Value<'a>> {
        Some(match wire_type {
            VARINT => Value::Varint(self.varint()?),
            I64 => {
                self.take(8)?;
                Value::Other
            }
            LEN => {
                let n = self.varint()?;
                Value::Len(self.take(n)?)
            }
            I32 => {
                self.take(4)?;
                Value::Other
            }
            _ => return None,
        })
    }

    fn field(&mut self) -> Option<(u32, Value<'a>)> {
        let (field, wire_type) = self.key()?;
        if field < 32 && self.maps & (1 << field) != 0 && wire_type != LEN {
            return None;
        }
        match wire_type {
            SGROUP => {
                self.skip_group(field)?;
                Some((field, Value::Other))
            }
            EGROUP => None,
            wt => Some((field, self.value(wt)?)),
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let at = self.pos;
        match self.field() {
            Some(f) => Some(Ok(f)),
            None => {
                self.failed = true;
                Some(Err(Malformed { offset: at }))
            }
        }
    }
}

/// Bit mask of map field numbers, for [`Fields::new`].
pub(crate) const fn map_fields(fields: &[u32]) -> u32 {
    let mut mask = 0;
    let mut i = 0;
    while i < fields.len() {
        mask |= 1 << fields[i];
        i += 1;
    }
    mask
}

/// A `map<string, string>` entry: (key, value), the last of each winning, missing ones empty.
pub(crate) fn string_entry(entry: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for f in Fields::new(entry, 0) {
        match f? {
            (1, Value::Len(k)) => key = k,
            (2, Value::Len(v)) => value = v,
            (1 | 2, _) => return Err(Malformed { offset: 0 }),
            _ => {}
        }
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut f = Fields::new(&b, 0);
            assert_eq!(f.varint(), Some(v));
        }
    }

    #[test]
    fn a_wrong_length_hint_still_gives_the_canonical_encoding() {
        for (hint, len) in [
            (0, 200),
            (5000, 3),
            (127, 128),
            (128, 127),
            (1 << 20, 1 << 14),
        ] {
            let mut b = vec![9u8];
            let open = open_message(&mut b, 3, hint);
            b.extend((0..len).map(|i| i as u8));
            close_message(&mut b, open);
            let mut want = vec![9u8];
            put_len_field(&mut want, 3, &(0..len).map(|i| i as u8).collect::<Vec<_>>());
            assert_eq!(b, want, "hint {hint}, len {len}");
        }
    }

    #[test]
    fn groups_are_skipped_and_stray_ends_refused() {
        // field 9 group containing field 1 varint and a nested group 2; then field 5 "x".
        let b = [0x4b, 0x08, 0x01, 0x13, 0x14, 0x4c, 0x2a, 0x01, b'x'];
        let got: Vec<_> = Fields::new(&b, 0).collect();
        assert_eq!(got, [Ok((9, Value::Other)), Ok((5, Value::Len(b"x")))]);
        assert!(
            Fields::new(&[0x4c], 0).next().unwrap().is_err(),
            "stray end"
        );
        assert!(
            Fields::new(&[0x4b, 0x54], 0).next().unwrap().is_err(),
            "wrong end"
        );
        let deep: Vec<u8> = std::iter::repeat_n(0x4b, 200).collect();
        assert!(Fields::new(&deep, 0).next().unwrap().is_err(), "too deep");
    }

    #[test]
    fn map_fields_must_be_length_delimited() {
        // Field 2 with a varint key but an entry after it: prost (>= 0.14.6) refuses it.
        let b = [0x10, 0x02, 0x08, 0x01];
        let mut f = Fields::new(&b, map_fields(&[2]));
        assert!(f.next().unwrap().is_err());
        let b = [0x12, 0x02, 0x08, 0x01];
        let mut f = Fields::new(&b, map_fields(&[2]));
        assert_eq!(f.next(), Some(Ok((2, Value::Len(&[0x08, 0x01])))));
        let b = [0x10, 0x02, 0x08, 0x01];
        let mut f = Fields::new(&b, 0);
        assert_eq!(f.next(), Some(Ok((2, Value::Varint(2)))));
    }

    #[test]
    fn truncated_input_is_malformed_not_a_panic() {
        for b in [
            &[0x2a, 0x05, 1][..],
            &[0x08],
            &[0x08, 0xff],
            &[0x09, 1, 2],
            &[0x00],
        ] {
            assert!(Fields::new(b, 0).any(|f| f.is_err()), "{b:?}");
        }
    }
}
