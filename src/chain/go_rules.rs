//! The Go standard library rules Tyk's gateway applies to a hook's answer, so that a chain run inside
//! the bridge edits the request exactly as Tyk's `ObjectPostProcess` does: header names in canonical
//! MIME form (`textproto.CanonicalMIMEHeaderKey`), query strings as `url.Values` (`ParseQuery`,
//! `Values.Encode`), and the URL check of `url.ParseRequestURI`.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// RFC 7230 token characters: the bytes `CanonicalMIMEHeaderKey` accepts in a name it rewrites.
const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

fn is_token_byte(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Byte classes for the canonical-form check: a token byte, and which case a letter is in.
const IS_TOKEN: u8 = 1;
const LOWER: u8 = 2;
const UPPER: u8 = 4;
const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if TOKEN[b] { IS_TOKEN } else { 0 }
            | if c.is_ascii_lowercase() { LOWER } else { 0 }
            | if c.is_ascii_uppercase() { UPPER } else { 0 };
        b += 1;
    }
    table
};

/// `textproto.CanonicalMIMEHeaderKey`: the first letter and every letter after a `-` upper case, the
/// rest lower case; a name with any byte outside the token set is left as it is. A name already in
/// that form (the common case) is checked in one pass without a branch per byte, and borrowed.
pub fn canonical_header(name: &[u8]) -> Cow<'_, [u8]> {
    // The case a letter must not be in here: lower at the start and after '-', upper elsewhere.
    let mut wrong_case = LOWER;
    let mut all_token = IS_TOKEN;
    let mut any_wrong = 0;
    for &b in name {
        let class = CLASS[usize::from(b)];
        all_token &= class;
        any_wrong |= class & wrong_case;
        wrong_case = if b == b'-' { LOWER } else { UPPER };
    }
    if all_token == 0 || any_wrong == 0 {
        return Cow::Borrowed(name);
    }
    // Rewriting from the start leaves the letters already in the right case as they are.
    let mut out = name.to_vec();
    let mut upper = true;
    for c in &mut out {
        *c = if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        };
        upper = *c == b'-';
    }
    Cow::Owned(out)
}

/// Whether two header names are the same name to Go's `http.Header` (equal canonical forms). A name
/// with a non-token byte is not canonicalised, so it only matches itself.
pub fn same_header(a: &[u8], b: &[u8]) -> bool {
    // Canonicalisation depends only on positions, so equal canonical forms = equal up to case; two
    // spellings that differ only in case are both token names or both not (then only equal bytes
    // match). Equal bytes (the usual case: both spelt canonically) settle it with one compare.
    a == b
        || (a.len() == b.len() && a.eq_ignore_ascii_case(b) && a.iter().all(|&c| is_token_byte(c)))
}

/// `url.Values`: each key's values in order; keys ordered as `Values.Encode` writes them.
pub type Values = BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `url.QueryUnescape`: `+` is a space, `%XX` a byte; a bad escape is an error (`None`).
fn query_unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = hex(*s.get(i + 1)?)?;
                let lo = hex(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// `url.ParseQuery` as `URL.Query()` uses it: pairs split on `&`; a pair with a `;` or a bad escape is
/// dropped (Go reports it and keeps the rest).
pub fn parse_query(query: &[u8]) -> Values {
    let mut values = Values::new();
    for pair in query.split(|&b| b == b'&') {
        if pair.is_empty() || pair.contains(&b';') {
            continue;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        if let (Some(k), Some(v)) = (query_unescape(k), query_unescape(v)) {
            values.entry(k).or_default().push(v);
        }
    }
    values
}

/// `url.QueryEscape`, appended to `out`.
fn query_escape(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
}

/// `Values.Encode`: `k=v` pairs, keys sorted, joined with `&`.
pub fn encode_query(values: &Values) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, vs) in values {
        for v in vs {
            if !out.is_empty() {
                out.push(b'&');
            }
            query_escape(k, &mut out);
            out.push(b'=');
            query_escape(v, &mut out);
        }
    }
    out
}

/// A URL split as `url.ParseRequestURI` splits it: everything before the first `?`, and the raw query.
pub fn split_query(url: &[u8]) -> (&[u8], &[u8]) {
    match url.iter().position(|&b| b == b'?') {
        Some(at) => (&url[..at], &url[at + 1..]),
        None => (url, &[]),
    }
}

/// Whether `url.ParseRequestURI` accepts `url` (what Tyk checks before taking a hook's `url`): not
/// empty, no control characters, `*`, an absolute path or an absolute URL (`scheme:...`), and valid
/// `%` escapes before the query.
pub fn valid_request_uri(url: &[u8]) -> bool {
    if url.is_empty() || url.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if url == b"*" {
        return true;
    }
    let (before_query, _) = split_query(url);
    let rest = match scheme_end(before_query) {
        Some(end) => &before_query[end + 1..],
        None if before_query.starts_with(b"/") => before_query,
        None => return false,
    };
    valid_escapes(rest)
}

/// The position of the `:` ending a URL scheme (`[A-Za-z][A-Za-z0-9+.-]*:`), if there is one.
fn scheme_end(url: &[u8]) -> Option<usize> {
    for (i, &b) in url.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i > 0 => return Some(i),
            _ => return None,
        }
    }
    None
}

fn valid_escapes(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let ok = s.get(i + 1).and_then(|&b| hex(b)).is_some()
                && s.get(i + 2).and_then(|&b| hex(b)).is_some();
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        String::from_utf8(canonical_header(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn header_names_canonicalise_as_go_does() {
        assert_eq!(canon("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canon("CONTENT-TYPE"), "Content-Type");
        assert_eq!(canon("x_under"), "X_under");
        assert_eq!(canon("Already-Fine"), "Already-Fine");
        assert_eq!(canon("has space"), "has space", "not a token: unchanged");
        assert_eq!(canon(""), "");
        assert!(matches!(canonical_header(b"X-Ok"), Cow::Borrowed(_)));
        assert!(matches!(canonical_header(b"x-Ok"), Cow::Owned(_)));
        assert!(matches!(canonical_header(b"x ok"), Cow::Borrowed(_)));
        assert!(same_header(b"x-a", b"X-A"));
        assert!(!same_header(b"x a", b"X A"));
        assert!(same_header(b"x a", b"x a"));
        assert!(!same_header(b"x-a", b"x-b"));
    }

    /// `CanonicalMIMEHeaderKey` as Go's source states it: a name with a non-token byte unchanged,
    /// else upper case at the start and after each `-`, lower case elsewhere.
    fn reference(name: &[u8]) -> Vec<u8> {
        let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if !name.iter().all(token) {
            return name.to_vec();
        }
        let mut upper = true;
        name.iter()
            .map(|b| {
                let c = if upper {
                    b.to_ascii_uppercase()
                } else {
                    b.to_ascii_lowercase()
                };
                upper = c == b'-';
                c
            })
            .collect()
    }

    proptest::proptest! {
        /// The one-pass canonical form and the case-blind comparison agree with the definition.
        #[test]
        fn header_name_shortcuts_agree_with_the_definition(
            a in "[-a-cA-C0-9 _~:]{0,10}",
            flips in proptest::collection::vec(proptest::prelude::any::<bool>(), 10),
        ) {
            let a = a.as_bytes();
            let b: Vec<u8> = a
                .iter()
                .zip(&flips)
                .map(|(c, flip)| if *flip { c ^ (0x20 * u8::from(c.is_ascii_alphabetic())) } else { *c })
                .collect();
            proptest::prop_assert_eq!(&*canonical_header(a), &reference(a)[..]);
            proptest::prop_assert_eq!(same_header(a, &b), reference(a) == reference(&b));
            proptest::prop_assert_eq!(same_header(a, b"X-A"), reference(a) == b"X-A");
        }
    }

    #[test]
    fn queries_parse_and_encode_as_url_values() {
        let v = parse_query(b"b=2&a=1&a=x+y&c=%41&bad=%zz&semi=1;2&&flag");
        let keys: Vec<_> = v.keys().map(|k| String::from_utf8_lossy(k)).collect();
        assert_eq!(keys, ["a", "b", "c", "flag"]);
        assert_eq!(v[&b"a"[..]], vec![b"1".to_vec(), b"x y".to_vec()]);
        assert_eq!(v[&b"c"[..]], vec![b"A".to_vec()]);
        assert_eq!(
            encode_query(&v),
            b"a=1&a=x+y&b=2&c=A&flag=".to_vec(),
            "sorted, escaped"
        );
        let mut w = Values::new();
        w.insert(b"k~*".to_vec(), vec![b"a/b&c=d".to_vec()]);
        assert_eq!(encode_query(&w), b"k~%2A=a%2Fb%26c%3Dd".to_vec());
    }

    #[test]
    fn request_uris_are_checked_as_parse_request_uri_does() {
        for ok in ["/", "/a/b?x=%zz", "*", "http://h/p", "mailto:x", "/a%20b"] {
            assert!(valid_request_uri(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "relative/path",
            "/a\nb",
            "/bad%zz",
            "/bad%2",
            "1http://h",
        ] {
            assert!(!valid_request_uri(bad.as_bytes()), "{bad:?}");
        }
        assert_eq!(split_query(b"/p?q=1?2"), (&b"/p"[..], &b"q=1?2"[..]));
    }
}
