//! Writes a `coprocess.Object` straight from the host's HTTP request (and upstream response) into a
//! reused buffer: no intermediate prost `Object`, no maps, no copies of headers or bodies besides the
//! bytes written. Fields come in field-number order, maps in the `HeaderMap`'s and the query's order,
//! so the output is what prost writes for the same Object, up to the order of map entries.

use std::borrow::Cow;
use std::ops::Range;

use coprocess_proto::HookType;
use http::HeaderMap;

use crate::request::HookRequest;
use crate::response::UpstreamResponse;
use crate::wire::{
    close_message, open_message, put_key, put_len_field, put_nonempty, put_string_entry,
    put_string_entry_with, put_varint, LEN, VARINT,
};

use coprocess_proto::fields::object::{HOOK_NAME, HOOK_TYPE, REQUEST, RESPONSE, SESSION, SPEC};
use coprocess_proto::fields::request::{
    BODY, HEADERS, METHOD, PARAMS, RAW_BODY, REQUEST_URI, SCHEME, URL,
};
use coprocess_proto::fields::response::{
    BODY as RESPONSE_BODY, HEADERS as RESPONSE_HEADERS, MULTIVALUE_HEADERS,
    RAW_BODY as RESPONSE_RAW_BODY, STATUS_CODE,
};

/// `return_overrides { response_code: -1 }` (field 10): Tyk's "no override", sent with every
/// request.
const NO_OVERRIDE: [u8; 13] = [
    0x52, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
];

/// Queries with more distinct keys than this find first values through a hash set.
const LINEAR_PARAMS: usize = 16;

/// What one Object carries besides the request.
#[derive(Clone, Copy, Default)]
pub struct ObjectContext<'a> {
    pub hook_name: &'a str,
    /// An encoded `SessionState` (from a CustomKeyCheck answer, see [`crate::answer::Auth`]).
    pub session: Option<&'a [u8]>,
    /// Encoded `metadata` entries (Object field 5), as [`crate::answer::Auth`] keeps them.
    pub metadata: &'a [u8],
    /// `spec` entries: `APIID`, `OrgID`, ...
    pub spec: &'a [(&'a str, &'a str)],
    /// Some hook of the phase reads `body` as text (not every hook is `raw_body_only`).
    pub body_text: bool,
}

/// Where the request's diffable fields sit in the encoded Object, to compare a hook's answer with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentRequest {
    pub url: Range<usize>,
    pub body: Range<usize>,
    pub raw_body: Range<usize>,
}

/// Go's canonical MIME form of a lower-case header name ("x-api-key" -> "X-Api-Key"): Tyk hands
/// plugins headers under these names. `HeaderName`s are lower-case tokens, for which the rule is
/// this simple.
fn put_canonical(buf: &mut Vec<u8>, lower_name: &[u8]) {
    let mut upper = true;
    buf.extend(lower_name.iter().map(|&b| {
        let c = if upper { b.to_ascii_uppercase() } else { b };
        upper = b == b'-';
        c
    }));
}

/// The canonical name as a `String` (for hosts that compare names).
pub fn canonical(lower_name: &str) -> String {
    let mut out = Vec::with_capacity(lower_name.len());
    put_canonical(&mut out, lower_name.to_ascii_lowercase().as_bytes());
    String::from_utf8(out).unwrap_or_default()
}

fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The first value of each header under its canonical name (a `map<string, string>` field),
/// skipping `host` (the caller writes Host itself).
fn put_first_values(buf: &mut Vec<u8>, field: u32, headers: &HeaderMap, skip_host: bool) {
    // `iter` yields a name's values one after the other, its first value first: one pass, no
    // lookup per name.
    let mut previous: Option<&http::HeaderName> = None;
    for (name, value) in headers {
        if previous == Some(name) {
            continue;
        }
        previous = Some(name);
        if skip_host && name == http::header::HOST {
            continue;
        }
        let n = name.as_str().as_bytes();
        put_string_entry_with(
            buf,
            field,
            n.len(),
            |b| put_canonical(b, n),
            lossy(value.as_bytes()).as_bytes(),
        );
    }
}

/// `params`: the first value of each query key, decoded as `form_urlencoded` decodes it.
fn put_params(buf: &mut Vec<u8>, query: &str) {
    if query.is_empty() {
        return;
    }
    let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> =
        form_urlencoded::parse(query.as_bytes()).collect();
    if pairs.len() <= LINEAR_PARAMS {
        for (i, (k, v)) in pairs.iter().enumerate() {
            if !pairs[..i].iter().any(|(seen, _)| seen == k) {
                put_string_entry(buf, PARAMS, k.as_bytes(), v.as_bytes());
            }
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(pairs.len());
        for (k, v) in &pairs {
            if seen.insert(k.as_ref()) {
                put_string_entry(buf, PARAMS, k.as_bytes(), v.as_bytes());
            }
        }
    }
}

/// About the size of the encoded request: bodies, headers at 64 bytes each, url and query twice.
fn request_size_hint(request: &HookRequest, body_text: bool) -> usize {
    request.body.len() * (1 + usize::from(body_text))
        + 64 * request.headers.len()
        + 2 * request.url.len()
        + request.request_uri.len()
        + request.host.len()
        + 64
}

/// About the size of the encoded response: bodies, headers at 96 bytes each (both maps).
fn response_size_hint(response: &UpstreamResponse) -> usize {
    response.body.len() * 2 + 96 * response.headers.len() + 16
}

/// Writes `request` as Object field 3 (a `MiniRequestObject` as Tyk's gateway builds it: first
/// value of each header plus Host, params, url, method, request_uri, scheme "http", raw_body, body
/// when `body_text`, return_overrides.response_code = -1).
fn put_request(buf: &mut Vec<u8>, request: &HookRequest, body_text: bool) -> SentRequest {
    let open = open_message(buf, REQUEST, request_size_hint(request, body_text));
    put_first_values(buf, HEADERS, &request.headers, true);
    put_string_entry(buf, HEADERS, b"Host", request.host.as_bytes());
    let mut sent = SentRequest::default();
    let field = |buf: &mut Vec<u8>, tag: u32, bytes: &[u8]| {
        put_nonempty(buf, tag, bytes);
        buf.len() - bytes.len()..buf.len()
    };
    if body_text {
        let text = lossy(&request.body);
        sent.body = field(buf, BODY, text.as_bytes());
    }
    sent.url = field(buf, URL, request.url.as_bytes());
    put_params(buf, request.url.split_once('?').map_or("", |(_, q)| q));
    buf.extend_from_slice(&NO_OVERRIDE);
    put_nonempty(buf, METHOD, request.method.as_str().as_bytes());
    put_nonempty(buf, REQUEST_URI, request.request_uri.as_bytes());
    put_len_field(buf, SCHEME, b"http");
    sent.raw_body = field(buf, RAW_BODY, &request.body);
    // Ranges are relative to the request's contents, which move if the length prefix grows.
    let start = buf.len();
    close_message(buf, open);
    let shift = buf.len() as isize - start as isize;
    let moved = |r: Range<usize>| {
        if r.is_empty() {
            0..0
        } else {
            (r.start as isize + shift) as usize..(r.end as isize + shift) as usize
        }
    };
    SentRequest {
        url: moved(sent.url),
        body: moved(sent.body),
        raw_body: moved(sent.raw_body),
    }
}

/// Writes `response` as Object field 7 (a `ResponseObject`: status_code, raw_body, body when
/// `body_text`, first value of each header, every value in multivalue_headers).
fn put_response(buf: &mut Vec<u8>, response: &UpstreamResponse, body_text: bool) {
    let open = open_message(buf, RESPONSE, response_size_hint(response));
    if response.status != 0 {
        put_key(buf, STATUS_CODE, VARINT);
        put_varint(buf, u64::from(response.status));
    }
    put_nonempty(buf, RESPONSE_RAW_BODY, &response.body);
    if body_text {
        put_nonempty(buf, RESPONSE_BODY, lossy(&response.body).as_bytes());
    }
    put_first_values(buf, RESPONSE_HEADERS, &response.headers, false);
    for name in response.headers.keys() {
        let header = open_message(buf, MULTIVALUE_HEADERS, 64);
        let n = name.as_str().as_bytes();
        put_key(buf, 1, LEN);
        put_varint(buf, n.len() as u64);
        put_canonical(buf, n);
        for value in response.headers.get_all(name) {
            // A repeated string keeps empty elements.
            put_len_field(buf, 2, lossy(value.as_bytes()).as_bytes());
        }
        close_message(buf, header);
    }
    close_message(buf, open);
}

/// Encodes the Object of one hook phase into `buf` (cleared first): `hook_type`, the context's
/// `hook_name`, the request, the session and metadata, `spec`, and for Response hooks the upstream
/// response. Returns where the request's url and bodies sit, for [`crate::answer::RequestEdits`].
pub fn encode_object(
    buf: &mut Vec<u8>,
    hook_type: HookType,
    request: &HookRequest,
    response: Option<&UpstreamResponse>,
    ctx: &ObjectContext<'_>,
) -> SentRequest {
    buf.clear();
    // One allocation (none once the buffer is reused) instead of doubling as fields are appended.
    let spec: usize = ctx.spec.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
    buf.reserve(
        32 + ctx.hook_name.len()
            + request_size_hint(request, ctx.body_text)
            + ctx.session.map_or(0, |s| s.len() + 8)
            + ctx.metadata.len()
            + spec
            + response.map_or(0, response_size_hint),
    );
    if hook_type != HookType::Unknown {
        put_key(buf, HOOK_TYPE, VARINT);
        put_varint(buf, hook_type as i32 as u64);
    }
    put_nonempty(buf, HOOK_NAME, ctx.hook_name.as_bytes());
    let sent = put_request(buf, request, ctx.body_text);
    if let Some(session) = ctx.session {
        put_len_field(buf, SESSION, session);
    }
    buf.extend_from_slice(ctx.metadata);
    for (k, v) in ctx.spec {
        put_string_entry(buf, SPEC, k.as_bytes(), v.as_bytes());
    }
    if let Some(response) = response {
        put_response(buf, response, ctx.body_text);
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_proto::{Message, Object};
    use http::{HeaderValue, Method};

    #[test]
    fn each_header_goes_once_with_its_first_value_and_host_as_the_client_asked() {
        let mut headers = HeaderMap::new();
        headers.append("x-multi", HeaderValue::from_static("first"));
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("second"));
        headers.append("host", HeaderValue::from_static("ignored"));
        let request = HookRequest {
            method: Method::GET,
            url: "/".into(),
            headers,
            body: bytes::Bytes::new(),
            host: "asked".into(),
            request_uri: "/".into(),
        };
        let mut buf = Vec::new();
        encode_object(
            &mut buf,
            HookType::Pre,
            &request,
            None,
            &ObjectContext::default(),
        );
        // One entry per name on the wire (a decode keeps the last of repeated keys).
        let entries = buf.windows(7).filter(|w| w == b"X-Multi").count();
        assert_eq!(entries, 1);
        let sent = Object::decode(buf.as_slice()).unwrap().request.unwrap();
        assert_eq!(sent.headers.len(), 3, "{:?}", sent.headers);
        assert_eq!(sent.headers["X-Multi"], "first");
        assert_eq!(sent.headers["Accept"], "a");
        assert_eq!(sent.headers["Host"], "asked");
    }
}
