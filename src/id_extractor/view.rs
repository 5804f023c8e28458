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
        let object = self.object;
        each(object, |r| {
            if r.tag != OBJECT_REQUEST || r.wire_type != 2 {
                return;
            }
            let request = &object[r.payload..r.end];
            each(request, |field| {
                if field.wire_type == 2 {
                    f(field.tag, &request[field.payload..field.end]);
                }
            });
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
        std::str::from_utf8(self.last(tag)).unwrap_or_default()
    }

    /// A request header by name: the value of the entry with exactly that name; without one, of the
    /// first name in the Object that matches ignoring ASCII case (Tyk hands canonical names; hosts may
    /// not). `None` when absent.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let name = name.as_bytes();
        let mut exact: Option<&'a [u8]> = None;
        let mut folded: Option<(&'a [u8], &'a [u8])> = None;
        self.each_field(|tag, entry| {
            if tag != HEADERS {
                return;
            }
            let (key, value) = string_entry(entry);
            if key == name {
                exact = Some(value);
            } else if folded.is_some_and(|(k, _)| k == key) {
                folded = Some((key, value)); // a later entry of the same key wins
            } else if folded.is_none() && key.eq_ignore_ascii_case(name) {
                folded = Some((key, value));
            }
        });
        std::str::from_utf8(exact.or(folded.map(|(_, v)| v))?).ok()
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
        std::str::from_utf8(found?).ok()
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
