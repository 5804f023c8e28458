//! One pass over the top level of an Object for the two fields every driver reads first.

use coprocess_proto::fields::object::{HOOK_NAME, HOOK_TYPE};
use coprocess_proto::prost::encoding::{decode_key, decode_varint, WireType};

/// `hook_type` and the bytes of `hook_name` (the last occurrence of each wins, as in a decode), read
/// in one walk where `wire::hook_type` and `wire::hook_name` take one each. Gives `None` (the caller
/// then asks those two) on anything this walk does not settle: a group, a malformed record, or one
/// of the two fields under another wire type.
pub(crate) fn hook_type_and_name(bytes: &[u8]) -> Option<(Option<i32>, Option<&[u8]>)> {
    let mut buf = bytes;
    let mut hook_type = None;
    let mut hook_name = None;
    while let [key, rest @ ..] = buf {
        // Most records have a one-byte key and a one- or two-byte length (the request: a two-byte
        // one): read inline.
        if (8..0x80).contains(key) && *key & 7 == 2 {
            let inline = match rest {
                [len, payload @ ..] if *len < 0x80 => Some((usize::from(*len), payload)),
                [low, high, payload @ ..] if *high < 0x80 => {
                    Some((usize::from(low & 0x7F) | usize::from(*high) << 7, payload))
                }
                _ => None,
            };
            if let Some((len, payload)) = inline {
                let (value, after) = payload.split_at_checked(len)?;
                match u32::from(*key >> 3) {
                    HOOK_NAME => hook_name = Some(value),
                    HOOK_TYPE => return None,
                    _ => {}
                }
                buf = after;
                continue;
            }
        }
        // hook_type with a one-byte value, as every Object has it.
        if let ([value, after @ ..], true) = (rest, u32::from(*key) == HOOK_TYPE << 3) {
            if *value < 0x80 {
                hook_type = Some(i32::from(*value));
                buf = after;
                continue;
            }
        }
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        let wanted = tag == HOOK_TYPE || tag == HOOK_NAME;
        match wire_type {
            WireType::Varint => {
                let value = decode_varint(&mut buf).ok()?;
                match tag {
                    HOOK_TYPE => hook_type = Some(value as i32),
                    _ if wanted => return None,
                    _ => {}
                }
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                let (value, rest) = buf.split_at_checked(len)?;
                match tag {
                    HOOK_NAME => hook_name = Some(value),
                    _ if wanted => return None,
                    _ => {}
                }
                buf = rest;
            }
            WireType::SixtyFourBit if !wanted => buf = buf.get(8..)?,
            WireType::ThirtyTwoBit if !wanted => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some((hook_type, hook_name))
}

#[cfg(test)]
mod tests {
    use super::hook_type_and_name;
    use crate::Call;
    use coprocess_proto::{fixtures, wire, HookType, Message, Object};

    /// What `Call` gives, read the slow way: one `wire` walk per field.
    fn by_wire(bytes: &[u8]) -> (HookType, &str) {
        let hook_type = wire::hook_type(bytes)
            .and_then(|v| HookType::try_from(v).ok())
            .unwrap_or(HookType::Unknown);
        (hook_type, wire::hook_name(bytes).unwrap_or(""))
    }

    fn call(bytes: &[u8]) -> (HookType, &str) {
        let call = Call::new(bytes);
        (call.hook_type(), call.hook_name())
    }

    #[test]
    fn a_typical_object_is_read_in_one_walk() {
        let mut bytes = fixtures::typical_object().encode_to_vec();
        // As a chain hands it over: a later hook_name and hook_type win.
        bytes.extend_from_slice(b"\x12\x05Later\x08\x03");
        assert!(
            hook_type_and_name(&bytes).is_some(),
            "the shortcut is taken"
        );
        assert_eq!(call(&bytes), (HookType::PostKeyAuth, "Later"));
        assert_eq!(call(&bytes), by_wire(&bytes));
        assert_eq!(call(&[]), (HookType::Unknown, ""));
    }

    /// Lengths of one and two bytes and a one-byte hook_type are read inline; longer ones (and an
    /// overlong varint, which prost accepts too) by the general walk: the same answer either way.
    #[test]
    fn inline_and_general_records_read_alike() {
        for name_len in [3, 127, 128, 200, 16_383, 16_384, 20_000] {
            let object = Object {
                hook_type: HookType::Post as i32,
                hook_name: "n".repeat(name_len),
                ..Default::default()
            };
            let bytes = object.encode_to_vec();
            assert!(hook_type_and_name(&bytes).is_some(), "{name_len}");
            assert_eq!(call(&bytes), (HookType::Post, object.hook_name.as_str()));
        }
        let odd: [&[u8]; 4] = [
            b"\x12\x85\x00abcde\x08\x02", // a two-byte length that could be one byte
            b"\x08\x82\x00\x12\x01x",     // a two-byte hook_type
            b"\x08\x04\x08\x02",          // the last hook_type wins
            b"\x12\x80\x80\x00",          // a three-byte length of 0
        ];
        for bytes in odd {
            assert!(hook_type_and_name(bytes).is_some(), "{bytes:?}");
            assert_eq!(call(bytes), by_wire(bytes), "{bytes:?}");
        }
        assert_eq!(call(odd[0]), (HookType::Post, "abcde"));
    }

    #[test]
    fn odd_records_fall_back_to_the_wire_readers() {
        let base = Object {
            hook_type: HookType::Pre as i32,
            hook_name: "Name".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let cases: [&[u8]; 5] = [
            b"\x1b\x08\x01\x1c", // a group (field 3), skipped as an unknown field
            b"\x0a\x01x",        // hook_type as a length-delimited record
            b"\x10\x01",         // hook_name as a varint
            b"\x12\x05ab",       // truncated
            b"\x12\x02\xc3\x28", // hook_name not UTF-8
        ];
        for tail in cases {
            let bytes = [base.as_slice(), tail].concat();
            if tail != b"\x12\x02\xc3\x28" {
                assert!(hook_type_and_name(&bytes).is_none(), "{tail:?} falls back");
            }
            assert_eq!(call(&bytes), by_wire(&bytes), "{tail:?}");
        }
        // Fixed-width unknown fields are skipped by the shortcut.
        let bytes = [base.as_slice(), b"\x79\0\0\0\0\0\0\0\0\x7d\0\0\0\0"].concat();
        assert!(hook_type_and_name(&bytes).is_some());
        assert_eq!(call(&bytes), (HookType::Pre, "Name"));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_as_the_wire_readers_read_them(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(call(&bytes), by_wire(&bytes));
        }
    }
}
