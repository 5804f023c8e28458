//! The request a host holds while hooks run, and how a hook's answer edits it (Tyk's
//! `ObjectPostProcess`, as the demo gateway applies it).

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};

use crate::answer::{RequestEdits, ADD_PARAMS, DELETE_HEADERS, DELETE_PARAMS, SET_HEADERS};
use crate::encode::SentRequest;
use crate::wire::Malformed;

/// The request while it passes through the hooks.
#[derive(Debug, Clone)]
pub struct HookRequest {
    pub method: Method,
    /// Path and query as they stand now (hooks may change them).
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The Host the client asked for (sent to every hook as the `Host` header).
    pub host: String,
    /// The request target as the client sent it.
    pub request_uri: String,
}

/// Why an answer could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    Malformed(Malformed),
    /// A hook set a method that is not an HTTP token.
    BadMethod(String),
    /// A hook set a URL that is not UTF-8.
    BadUrl,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Malformed(m) => write!(f, "the hook's answer is malformed: {m}"),
            ApplyError::BadMethod(m) => write!(f, "the hook set an invalid method {m:?}"),
            ApplyError::BadUrl => write!(f, "the hook set a URL that is not UTF-8"),
        }
    }
}

impl std::error::Error for ApplyError {}

impl From<Malformed> for ApplyError {
    fn from(m: Malformed) -> Self {
        ApplyError::Malformed(m)
    }
}

fn split_query(url: &str) -> (&str, Option<&str>) {
    match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    }
}

impl HookRequest {
    /// Applies a hook's request edits: delete_headers, set_headers, url (when the hook changed it; a
    /// URL without `?` keeps the current query), delete_params, add_params (by key, in key order),
    /// method, and the body when the hook changed raw_body, or else body. `sent` is the encoded
    /// Object the hook was given and `at` where its fields sit (from [`crate::encode_object`]).
    /// An answer without a `request` empties the body, as a decoded default request would.
    pub fn apply(
        &mut self,
        edits: &RequestEdits<'_>,
        sent: &[u8],
        at: &SentRequest,
    ) -> Result<(), ApplyError> {
        for name in edits.strings(DELETE_HEADERS) {
            if let Ok(n) = HeaderName::from_bytes(name) {
                self.headers.remove(n);
            }
        }
        for &(name, value) in last_entries(edits.entries(SET_HEADERS))?.as_slice() {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                self.headers.insert(n, v);
            }
        }
        if let Some(url) = edits
            .url
            .filter(|u| !u.is_empty() && *u != &sent[at.url.clone()])
        {
            let url = std::str::from_utf8(url).map_err(|_| ApplyError::BadUrl)?;
            self.url = match (split_query(url), split_query(&self.url)) {
                ((path, None), (_, Some(query))) => format!("{path}?{query}"),
                _ => url.to_owned(),
            };
        }
        if edits.has(DELETE_PARAMS) || edits.has(ADD_PARAMS) {
            self.edit_params(edits)?;
        }
        if let Some(method) = edits.method.filter(|m| !m.is_empty()) {
            self.method = Method::from_bytes(method)
                .map_err(|_| ApplyError::BadMethod(String::from_utf8_lossy(method).into_owned()))?;
        }
        let raw_body = edits.raw_body.unwrap_or_default();
        let body = edits.body.unwrap_or_default();
        if raw_body != &sent[at.raw_body.clone()] {
            self.body = Bytes::copy_from_slice(raw_body);
        } else if body != &sent[at.body.clone()] {
            self.body = Bytes::copy_from_slice(body);
        }
        Ok(())
    }

    /// delete_params, then add_params (the last value of each key, in key order, each replacing the
    /// key's pairs); the query is written again form-urlencoded.
    fn edit_params(&mut self, edits: &RequestEdits<'_>) -> Result<(), ApplyError> {
        let (path, query) = split_query(&self.url);
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let deleted: Vec<&[u8]> = edits.strings(DELETE_PARAMS).collect();
        pairs.retain(|(k, _)| !deleted.contains(&k.as_bytes()));
        let mut added: Vec<(String, String)> = Vec::new();
        for entry in edits.entries(ADD_PARAMS) {
            let (k, v) = entry?;
            let (k, v) = (lossless(k)?, lossless(v)?);
            added.retain(|(seen, _)| *seen != k);
            added.push((k, v));
        }
        added.sort();
        for (k, v) in added {
            pairs.retain(|(q, _)| *q != k);
            pairs.push((k, v));
        }
        let mut url = path.to_owned();
        if !pairs.is_empty() {
            url.push('?');
            url.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&pairs)
                    .finish(),
            );
        }
        self.url = url;
        Ok(())
    }
}

/// A `map<string, string>` entry: key and value bytes.
type Entry<'a> = (&'a [u8], &'a [u8]);

/// Distinct keys [`last_entries`] keeps on the stack (an answer's set_headers are a few); more go
/// to the heap with a hash index.
const ON_STACK: usize = 16;

/// Map entries as a decoded map holds them: the last value of each key, at its first key's place.
/// (Applying every entry in turn is not the same: an earlier valid value would stay where the
/// winning one is refused.)
fn last_entries<'a>(
    entries: impl Iterator<Item = Result<Entry<'a>, Malformed>>,
) -> Result<LastEntries<'a>, Malformed> {
    let mut out = LastEntries::Stack([(&[][..], &[][..]); ON_STACK], 0);
    for entry in entries {
        let (k, v) = entry?;
        match &mut out {
            // Linear search while short.
            LastEntries::Stack(kept, len) => {
                if let Some(i) = kept[..*len].iter().position(|(seen, _)| *seen == k) {
                    kept[i].1 = v;
                } else if *len < ON_STACK {
                    kept[*len] = (k, v);
                    *len += 1;
                } else {
                    let mut list = kept.to_vec();
                    list.push((k, v));
                    let index = list.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
                    out = LastEntries::Heap(list, index);
                }
            }
            LastEntries::Heap(list, index) => match index.get(k) {
                Some(&i) => list[i].1 = v,
                None => {
                    index.insert(k, list.len());
                    list.push((k, v));
                }
            },
        }
    }
    Ok(out)
}

/// What [`last_entries`] found: up to [`ON_STACK`] distinct keys in place, more in a list with a
/// hash index of its keys.
// The large variant is the point: it lives on the stack for one `apply`, instead of an allocation.
#[allow(clippy::large_enum_variant)]
enum LastEntries<'a> {
    Stack([Entry<'a>; ON_STACK], usize),
    Heap(Vec<Entry<'a>>, std::collections::HashMap<&'a [u8], usize>),
}

impl<'a> LastEntries<'a> {
    fn as_slice(&self) -> &[Entry<'a>] {
        match self {
            LastEntries::Stack(kept, len) => &kept[..*len],
            LastEntries::Heap(list, _) => list,
        }
    }
}

/// A string field's bytes as a `String` (the bridge only hands on UTF-8).
fn lossless(bytes: &[u8]) -> Result<String, Malformed> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Malformed { offset: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a decoded map holds, in first-key order: the reference for [`last_entries`].
    fn reference<'a>(entries: &[Entry<'a>]) -> Vec<Entry<'a>> {
        let mut out: Vec<Entry<'a>> = Vec::new();
        for &(k, v) in entries {
            match out.iter_mut().find(|(seen, _)| *seen == k) {
                Some(kept) => kept.1 = v,
                None => out.push((k, v)),
            }
        }
        out
    }

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("k{i}").into_bytes()).collect()
    }

    #[test]
    fn few_keys_stay_on_the_stack_and_many_go_to_the_heap_with_the_same_result() {
        for distinct in [0, 1, 3, ON_STACK, ON_STACK + 1, 3 * ON_STACK] {
            let keys = keys(distinct);
            // Every key twice, the second value winning, plus a repeat of the first key at the end.
            let mut entries: Vec<Entry<'_>> = Vec::new();
            for round in [&b"first"[..], b"second"] {
                entries.extend(keys.iter().map(|k| (k.as_slice(), round)));
            }
            if let Some(k) = keys.first() {
                entries.push((k.as_slice(), b"last"));
            }
            let got = last_entries(entries.iter().map(|e| Ok(*e))).unwrap();
            assert_eq!(
                matches!(got, LastEntries::Stack(..)),
                distinct <= ON_STACK,
                "{distinct} keys"
            );
            assert_eq!(got.as_slice(), reference(&entries), "{distinct} keys");
        }
    }

    #[test]
    fn a_malformed_entry_fails_the_whole_list() {
        let entries = [Ok((&b"a"[..], &b"1"[..])), Err(Malformed { offset: 3 })];
        assert!(last_entries(entries.into_iter()).is_err());
    }
}
