//! The request fields the ID extractor reads, straight from a serialized (validated) Object: no decode,
//! no copy. Each read gives what a prost decode of the Object would hold in that field: the last
//! occurrence of a singular field, the last entry of a map key, "" when absent.

use crate::chain::edit::{each, string_entry};

use coprocess_proto::fields::object::REQUEST as OBJECT_REQUEST;
use coprocess_proto::fields::request::{BODY, HEADERS, METHOD, PARAMS, RAW_BODY, REQUEST_URI, URL};

/// The `request` of an Object, read in place.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    object: &'a [u8],
}

impl<'a> RequestView<'a> {
    pub fn of(object: &'a [u8]) -> Self {
        RequestView { object }
    }

    /// Calls `f` with every length-delimited field of every `request` record (a request sent in
    /// several records merges, as in a decode).
    fn each_field(&self, mut f: impl FnMut(u32, &'a [u8])) {
        each_len_field(self.object, |tag, request| {
            if tag == OBJECT_REQUEST {
                each_len_field(request, &mut f);
            }
        });
    }

    /// A singular bytes or string field: its last occurrence, "" when absent.
    fn last(&self, tag: u32) -> &'a [u8] {
        let mut found: &[u8] = &[];
        self.each_field(|t, v| {
            if t == tag {
                found = v;
            }
        });
        found
    }

    fn text(&self, tag: u32) -> &'a str {
        utf8(self.last(tag)).unwrap_or_default()
    }

    /// A request header by name: the value of the entry with exactly that name; without one, of the
    /// first name in the Object that matches ignoring ASCII case (Tyk hands canonical names; hosts may
    /// not). `None` when absent.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let mut found = HeaderMatch {
            name: name.as_bytes(),
            exact: None,
            folded: None,
        };
        each_len_field(self.object, |tag, request| {
            if tag == OBJECT_REQUEST {
                found.in_request(request);
            }
        });
        utf8(found.value()?)
    }

    /// `params[name]`, when present.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        let mut found = None;
        self.each_field(|tag, entry| {
            if tag == PARAMS {
                let (key, value) = string_entry(entry);
                if key == name.as_bytes() {
                    found = Some(value);
                }
            }
        });
        utf8(found?)
    }

    pub fn method(&self) -> &'a str {
        self.text(METHOD)
    }

    pub fn url(&self) -> &'a str {
        self.text(URL)
    }

    pub fn request_uri(&self) -> &'a str {
        self.text(REQUEST_URI)
    }

    pub fn body(&self) -> &'a str {
        self.text(BODY)
    }

    pub fn raw_body(&self) -> &'a [u8] {
        self.last(RAW_BODY)
    }
}

/// Text of a string field: a bearer token runs to hundreds of bytes, checked with SIMD; short text
/// is checked by `core`, which costs less than setting SIMD up.
fn utf8(bytes: &[u8]) -> Option<&str> {
    const SIMD_MIN: usize = 64;
    if bytes.len() < SIMD_MIN {
        return core::str::from_utf8(bytes).ok();
    }
    simdutf8::basic::from_utf8(bytes).ok()
}

/// Calls `f` with the number and payload of every length-delimited field of `message`, in order.
/// The records every encoder writes for the fields read here (a one-byte key, a length of one or
/// two bytes; a one-byte varint such as `hook_type`) are read inline; from the first other record
/// on, the general walk ([`each`]) goes on.
#[inline(always)]
fn each_len_field<'a>(message: &'a [u8], mut f: impl FnMut(u32, &'a [u8])) {
    let mut pos = 0;
    while let Some(&key) = message.get(pos) {
        let Some((payload, end)) = short_record(message, pos + 1, key) else {
            let rest = &message[pos..];
            each(rest, |r| {
                if r.wire_type == 2 {
                    f(r.tag, &rest[r.payload..r.end]);
                }
            });
            return;
        };
        if key & 7 == 2 {
            f(u32::from(key >> 3), &message[payload..end]);
        }
        pos = end;
    }
}

/// What [`RequestView::header`] has found so far, entry by entry in the Object's order.
struct HeaderMatch<'n, 'a> {
    name: &'n [u8],
    /// The last entry named exactly `name`.
    exact: Option<&'a [u8]>,
    /// The first key equal to `name` ignoring ASCII case, and the value of its last entry.
    folded: Option<(&'a [u8], &'a [u8])>,
}

impl<'a> HeaderMatch<'_, 'a> {
    /// The header entries of one `request` record. The records every encoder writes are read by an
    /// inline loop with the entry check inlined too; from the first other record on, the general walk
    /// goes on.
    #[inline(never)]
    fn in_request(&mut self, request: &'a [u8]) {
        const HEADERS_KEY: u8 = (HEADERS << 3 | 2) as u8;
        let mut pos = 0;
        while let Some(&key) = request.get(pos) {
            let Some((payload, end)) = short_record(request, pos + 1, key) else {
                let rest = &request[pos..];
                each(rest, |r| {
                    if r.wire_type == 2 && r.tag == HEADERS {
                        self.entry(&rest[r.payload..r.end]);
                    }
                });
                return;
            };
            if key == HEADERS_KEY {
                self.entry(&request[payload..end]);
            }
            pos = end;
        }
    }

    #[inline(always)]
    fn entry(&mut self, entry: &'a [u8]) {
        let (key, value) = string_entry(entry);
        if key.len() != self.name.len() {
            // Neither a match nor the folded key (which has the name's length).
            return;
        }
        if key == self.name {
            self.exact = Some(value);
        } else if self.folded.is_some_and(|(k, _)| k == key) {
            self.folded = Some((key, value)); // a later entry of the same key wins
        } else if self.folded.is_none() && key.eq_ignore_ascii_case(self.name) {
            self.folded = Some((key, value));
        }
    }

    fn value(&self) -> Option<&'a [u8]> {
        self.exact.or(self.folded.map(|(_, v)| v))
    }
}

/// The payload range of the record after a one-byte `key` at `at - 1` when it is a length-delimited
/// field with a one- or two-byte length, or a varint of one byte (an empty range); `None` for any
/// other record, or one that runs past the end.
#[inline(always)]
fn short_record(message: &[u8], at: usize, key: u8) -> Option<(usize, usize)> {
    if !(8..0x80).contains(&key) {
        return None;
    }
    let b0 = *message.get(at)?;
    match key & 7 {
        0 if b0 < 0x80 => Some((at + 1, at + 1)),
        2 => {
            let (len, payload) = if b0 < 0x80 {
                (usize::from(b0), at + 1)
            } else {
                let b1 = *message.get(at + 1)?;
                if b1 >= 0x80 {
                    return None;
                }
                (usize::from(b0 & 0x7f) | usize::from(b1) << 7, at + 2)
            };
            let end = payload + len;
            (end <= message.len()).then_some((payload, end))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_proto::{fixtures, Message, MiniRequestObject, Object};

    fn object(request: MiniRequestObject) -> Vec<u8> {
        Object {
            request: Some(request),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn fields_read_in_place_are_what_a_decode_gives() {
        let typical = fixtures::typical_object();
        let bytes = typical.encode_to_vec();
        let view = RequestView::of(&bytes);
        let r = typical.request.unwrap();
        assert_eq!(
            (view.method(), view.url(), view.request_uri(), view.body()),
            (
                r.method.as_str(),
                r.url.as_str(),
                r.request_uri.as_str(),
                r.body.as_str()
            )
        );
        assert_eq!(view.raw_body(), r.raw_body.as_slice());
        for (k, v) in &r.headers {
            assert_eq!(view.header(k), Some(v.as_str()), "{k}");
        }
        for (k, v) in &r.params {
            assert_eq!(view.param(k), Some(v.as_str()), "{k}");
        }
        assert_eq!(view.param("absent"), None);
        let empty = RequestView::of(&[]);
        assert_eq!((empty.method(), empty.raw_body()), ("", &[][..]));
    }

    /// Records the inline reads do not take (a non-minimal varint, a length of three bytes, a
    /// two-byte key, a fixed64 field) hand the rest of the message to the general walk: the fields
    /// after them are still found, as a decode finds them.
    #[test]
    fn records_outside_the_inline_shapes_are_walked_too() {
        use coprocess_proto::prost::encoding::{encode_key, encode_varint, WireType};
        let long = MiniRequestObject {
            body: "b".repeat(20_000),
            ..Default::default()
        };
        let mut request = long.encode_to_vec();
        encode_key(16, WireType::SixtyFourBit, &mut request);
        request.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        let mut tail = MiniRequestObject {
            method: "GET".into(),
            ..Default::default()
        };
        tail.headers
            .insert("Authorization".into(), "Bearer z".into());
        request.extend(tail.encode_to_vec());
        let mut bytes = vec![0x08, 0x81, 0x00]; // hook_type 1, in two bytes
        encode_key(3, WireType::LengthDelimited, &mut bytes);
        encode_varint(request.len() as u64, &mut bytes);
        bytes.extend(&request);
        let decoded = Object::decode(bytes.as_slice()).unwrap();
        let r = decoded.request.unwrap();
        assert_eq!((decoded.hook_type, r.body.len()), (1, 20_000));
        let view = RequestView::of(&bytes);
        assert_eq!(view.header("authorization"), Some("Bearer z"));
        assert_eq!((view.method(), view.body()), ("GET", r.body.as_str()));
        assert_eq!(
            RequestView::of(&bytes[..bytes.len() - 1]).method(),
            "",
            "cut short"
        );
    }

    /// Keys of another length than the name are passed over before any comparison (the shortcut);
    /// keys of its length are compared exactly, then ignoring case.
    #[test]
    fn keys_of_another_length_never_match() {
        let mut r = MiniRequestObject::default();
        for (k, v) in [
            ("Authorizatio", "short"),
            ("Authorization2", "long"),
            ("AUTHORIZATION", "f"),
        ] {
            r.headers.insert(k.into(), v.into());
        }
        let bytes = object(r);
        let view = RequestView::of(&bytes);
        assert_eq!(view.header("Authorization"), Some("f"), "the folded match");
        assert_eq!(view.header("Authorizatio"), Some("short"));
        assert_eq!(view.header("authorization2"), Some("long"));
        assert_eq!(
            view.header("Authorizatio0"),
            None,
            "same length, other text"
        );
        assert_eq!(view.header("Auth"), None);
    }

    /// Short text is checked by `core`, long text by simdutf8: both refuse what is not UTF-8.
    #[test]
    fn text_is_checked_short_and_long() {
        for len in [0, 1, 63, 64, 300] {
            let mut text = vec![b'a'; len];
            assert_eq!(utf8(&text).map(str::len), Some(len));
            if len > 0 {
                text[len - 1] = 0xC3;
                assert_eq!(utf8(&text), None, "{len}");
            }
        }
    }

    #[test]
    fn headers_match_exactly_then_ignoring_case_and_later_records_win() {
        let mut r = MiniRequestObject::default();
        r.headers.insert("Authorization".into(), "Bearer a".into());
        r.headers.insert("x-lower".into(), "l".into());
        let mut bytes = object(r);
        let view = RequestView::of(&bytes);
        assert_eq!(view.header("Authorization"), Some("Bearer a"));
        assert_eq!(view.header("X-Lower"), Some("l"));
        assert_eq!(view.header("Absent"), None);
        // A second request record merges: its entries replace the first's, as in a decode.
        let mut later = MiniRequestObject::default();
        later
            .headers
            .insert("Authorization".into(), "Bearer b".into());
        later.headers.insert("x-lower".into(), "m".into());
        later.method = "PUT".into();
        bytes.extend(object(later));
        let view = RequestView::of(&bytes);
        let decoded = Object::decode(bytes.as_slice()).unwrap().request.unwrap();
        assert_eq!(decoded.headers["x-lower"], "m");
        assert_eq!(view.header("Authorization"), Some("Bearer b"));
        assert_eq!(
            view.header("X-LOWER"),
            Some("m"),
            "the folded key's last entry"
        );
        assert_eq!(view.method(), "PUT");
    }
}
