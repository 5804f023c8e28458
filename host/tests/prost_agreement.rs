//! The encoder and the answer reader against prost: the Object written from a request decodes to the
//! Object the gateway built with prost before (and encodes to the same bytes up to map order), and
//! applying an answer by walking its bytes edits the request exactly as decoding it and applying the
//! decoded request did. The reference code below is the gateway's former prost path, kept as the
//! oracle.

use std::collections::HashMap;

use bytes::Bytes;
use coprocess_host::{
    encode_object, override_answer, Auth, HookRequest, ObjectContext, RequestEdits,
    UpstreamResponse,
};
use coprocess_proto::prost::encoding::{decode_key, decode_varint, WireType};
use coprocess_proto::{
    Header, HookType, Message, MiniRequestObject, Object, ResponseObject, ReturnOverrides,
    SessionState,
};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The reference: how the gateway built and applied Objects with prost.
// ---------------------------------------------------------------------------------------------

fn canonical(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

fn first_values(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .keys()
        .map(|n| {
            let v = headers.get(n).unwrap();
            (
                canonical(n.as_str()),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The gateway's former request state: path, decoded query pairs, headers, method, body.
#[derive(Debug, Clone, PartialEq)]
struct Reference {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

fn split_query(url: &str) -> (String, Vec<(String, String)>) {
    match url.split_once('?') {
        Some((p, q)) => (
            p.to_owned(),
            form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
        ),
        None => (url.to_owned(), Vec::new()),
    }
}

impl Reference {
    fn of(r: &HookRequest) -> Reference {
        let (path, query) = split_query(&r.url);
        Reference {
            method: r.method.as_str().to_owned(),
            path,
            query,
            headers: r.headers.clone(),
            body: r.body.clone(),
        }
    }

    fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            let q = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&self.query)
                .finish();
            format!("{}?{q}", self.path)
        }
    }

    fn mini_request(&self, r: &HookRequest, body_text: bool) -> MiniRequestObject {
        let mut headers = first_values(&self.headers);
        headers.insert("Host".into(), r.host.clone());
        let mut params = HashMap::new();
        for (k, v) in &self.query {
            params.entry(k.clone()).or_insert_with(|| v.clone());
        }
        MiniRequestObject {
            headers,
            body: if body_text {
                String::from_utf8_lossy(&self.body).into_owned()
            } else {
                String::new()
            },
            raw_body: self.body.to_vec(),
            url: self.path_and_query(),
            params,
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            method: self.method.clone(),
            request_uri: r.request_uri.clone(),
            scheme: "http".into(),
            ..Default::default()
        }
    }

    fn apply(&mut self, sent: &MiniRequestObject, got: &MiniRequestObject) {
        for name in &got.delete_headers {
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                self.headers.remove(n);
            }
        }
        for (name, value) in &got.set_headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                self.headers.insert(n, v);
            }
        }
        if !got.url.is_empty() && got.url != sent.url {
            let (path, query) = split_query(&got.url);
            self.path = path;
            if got.url.contains('?') {
                self.query = query;
            }
        }
        self.query.retain(|(k, _)| !got.delete_params.contains(k));
        let mut added: Vec<_> = got.add_params.iter().collect();
        added.sort();
        for (k, v) in added {
            self.query.retain(|(q, _)| q != k);
            self.query.push((k.clone(), v.clone()));
        }
        if !got.method.is_empty() {
            self.method = got.method.clone();
        }
        if got.raw_body != sent.raw_body {
            self.body = Bytes::from(got.raw_body.clone());
        } else if got.body != sent.body {
            self.body = Bytes::from(got.body.clone().into_bytes());
        }
    }
}

fn to_object(r: &UpstreamResponse, body_text: bool) -> ResponseObject {
    ResponseObject {
        status_code: i32::from(r.status),
        raw_body: r.body.to_vec(),
        body: if body_text {
            String::from_utf8_lossy(&r.body).into_owned()
        } else {
            String::new()
        },
        headers: first_values(&r.headers),
        multivalue_headers: r
            .headers
            .keys()
            .map(|n| Header {
                key: canonical(n.as_str()),
                values: r
                    .headers
                    .get_all(n)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect(),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Byte-for-byte comparison up to the order of map entries.
// ---------------------------------------------------------------------------------------------

/// How a message's fields are compared: which are maps (entries compared as a set) and which are
/// messages (compared recursively).
struct Shape {
    maps: &'static [u32],
    messages: &'static [(u32, &'static Shape)],
}

static RETURN_OVERRIDES_SHAPE: Shape = Shape {
    maps: &[3],
    messages: &[],
};
static REQUEST_SHAPE: Shape = Shape {
    maps: &[1, 2, 6, 7, 8],
    messages: &[(10, &RETURN_OVERRIDES_SHAPE)],
};
static RESPONSE_SHAPE: Shape = Shape {
    maps: &[4],
    messages: &[],
};
static OBJECT_SHAPE: Shape = Shape {
    maps: &[5, 6],
    messages: &[(3, &REQUEST_SHAPE), (7, &RESPONSE_SHAPE)],
};

/// The message's top-level records (key and payload bytes), nested messages in canonical form,
/// each run of one map field's entries sorted.
fn canonical_records(mut buf: &[u8], shape: &Shape) -> Vec<(u32, Vec<u8>)> {
    let mut records: Vec<(u32, Vec<u8>)> = Vec::new();
    while !buf.is_empty() {
        let (field, wire_type) = decode_key(&mut buf).unwrap();
        let mut record = Vec::new();
        prost::encoding::encode_key(field, wire_type, &mut record);
        match wire_type {
            WireType::Varint => {
                prost::encoding::encode_varint(decode_varint(&mut buf).unwrap(), &mut record)
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).unwrap() as usize;
                let (payload, rest) = buf.split_at(len);
                buf = rest;
                match shape.messages.iter().find(|(f, _)| *f == field) {
                    Some((_, inner)) => {
                        let flat: Vec<u8> = canonical_records(payload, inner)
                            .into_iter()
                            .flat_map(|(_, r)| r)
                            .collect();
                        prost::encoding::encode_varint(flat.len() as u64, &mut record);
                        record.extend(flat);
                    }
                    None => {
                        prost::encoding::encode_varint(len as u64, &mut record);
                        record.extend_from_slice(payload);
                    }
                }
            }
            other => panic!("unexpected wire type {other:?}"),
        }
        records.push((field, record));
    }
    let mut i = 0;
    while i < records.len() {
        let field = records[i].0;
        let run = records[i..].iter().take_while(|r| r.0 == field).count();
        if shape.maps.contains(&field) {
            records[i..i + run].sort();
        }
        i += run;
    }
    records
}

fn same_bytes_up_to_map_order(ours: &[u8], prost: &[u8]) -> bool {
    canonical_records(ours, &OBJECT_SHAPE) == canonical_records(prost, &OBJECT_SHAPE)
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        Just(HeaderName::from_static("content-type")),
        Just(HeaderName::from_static("accept")),
        Just(HeaderName::from_static("authorization")),
        Just(HeaderName::from_static("host")),
        "[a-z][a-z0-9-]{0,12}".prop_map(|s| HeaderName::from_bytes(s.as_bytes()).unwrap()),
    ]
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        "[ -~]{0,20}".prop_map(|s| HeaderValue::from_str(&s).unwrap()),
        // obs-text: not UTF-8, sent to hooks lossily.
        proptest::collection::vec(0x80u8..=0xff, 1..4)
            .prop_map(|b| HeaderValue::from_bytes(&b).unwrap()),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    proptest::collection::vec((header_name(), header_value()), 0..8).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(n, v);
        }
        h
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9]{0,6}", "[ -~]{0,8}", "\\PC{0,4}"]
}

/// A path with a query already in the form `form_urlencoded` writes (the former gateway rewrote
/// every query so).
fn url() -> impl Strategy<Value = String> {
    (
        "/[a-z0-9/]{0,10}",
        proptest::collection::vec((text(), text()), 0..20),
    )
        .prop_map(|(path, pairs)| {
            if pairs.is_empty() {
                path
            } else {
                let q = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&pairs)
                    .finish();
                format!("{path}?{q}")
            }
        })
}

fn body() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        "[ -~]{0,40}".prop_map(|s| Bytes::from(s.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from),
        // Long enough for two-byte lengths.
        Just(Bytes::from(vec![b'x'; 300])),
    ]
}

fn hook_request() -> impl Strategy<Value = HookRequest> {
    (
        prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT)],
        url(),
        headers(),
        body(),
        "[a-z.:0-9]{0,12}",
        "/[ -~]{0,12}",
    )
        .prop_map(
            |(method, url, headers, body, host, request_uri)| HookRequest {
                method,
                url,
                headers,
                body,
                host,
                request_uri,
            },
        )
}

fn hook_type() -> impl Strategy<Value = HookType> {
    prop_oneof![
        Just(HookType::Pre),
        Just(HookType::CustomKeyCheck),
        Just(HookType::PostKeyAuth),
        Just(HookType::Post),
        Just(HookType::Response),
        Just(HookType::Unknown),
    ]
}

fn string_map() -> impl Strategy<Value = HashMap<String, String>> {
    proptest::collection::hash_map(text(), text(), 0..4)
}

fn session() -> impl Strategy<Value = Option<SessionState>> {
    proptest::option::of((any::<f64>(), string_map(), any::<i64>()).prop_map(
        |(rate, metadata, deadline)| SessionState {
            rate,
            metadata,
            id_extractor_deadline: deadline,
            ..Default::default()
        },
    ))
}

/// Header names each spelled one way, so that no two set_headers keys name the same header (the
/// former code applied a HashMap, whose order between such keys is unspecified).
fn edited_header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("X-Edit".to_owned()),
        Just("x-other".to_owned()),
        Just("Content-Type".to_owned()),
        Just("Accept".to_owned()),
        Just("Bad Name".to_owned()),
        Just(String::new()),
    ]
}

fn request_edit() -> impl Strategy<Value = MiniRequestObject> {
    (
        proptest::collection::hash_map(edited_header(), "[ -~]{0,6}|\u{7f}", 0..3),
        proptest::collection::vec(edited_header(), 0..2),
        proptest::option::of(prop_oneof![url(), "[a-z]{1,4}", Just(String::new())]),
        proptest::option::of(prop_oneof![
            "GET|PATCH|DELETE",
            Just("BAD METHOD".to_owned())
        ]),
        proptest::option::of(text()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        proptest::collection::hash_map(text(), text(), 0..3),
        proptest::collection::vec(text(), 0..2),
        proptest::option::of((-2i32..600, text(), any::<bool>(), string_map())),
    )
        .prop_map(
            |(set, del, url, method, body, raw_body, add, rm, ro)| MiniRequestObject {
                set_headers: set,
                delete_headers: del,
                url: url.unwrap_or_default(),
                method: method.unwrap_or_default(),
                body: body.unwrap_or_default(),
                raw_body: raw_body.unwrap_or_default(),
                add_params: add,
                delete_params: rm,
                return_overrides: ro.map(|(code, body, override_error, headers)| ReturnOverrides {
                    response_code: code,
                    response_body: body,
                    override_error,
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
}

/// A patch a hook appends: edits, and maybe a session and metadata.
fn patch() -> impl Strategy<Value = Object> {
    (
        proptest::option::of(request_edit()),
        session(),
        proptest::collection::hash_map(prop_oneof![Just("token".to_owned()), text()], text(), 0..3),
    )
        .prop_map(|(request, session, metadata)| Object {
            request,
            session,
            metadata,
            ..Default::default()
        })
}

/// How an answer is built from what the hook was sent.
#[derive(Debug, Clone)]
enum Answering {
    /// The SDK's way: the Object as sent, patches appended.
    Appended(Vec<Object>),
    /// A driver that decodes, edits and encodes again.
    Reencoded(Vec<Object>),
    /// A driver that answers an Object of its own.
    Replaced(Box<Object>),
}

fn answering() -> impl Strategy<Value = Answering> {
    prop_oneof![
        proptest::collection::vec(patch(), 0..4).prop_map(Answering::Appended),
        proptest::collection::vec(patch(), 0..3).prop_map(Answering::Reencoded),
        patch().prop_map(|o| Answering::Replaced(Box::new(o))),
    ]
}

fn answer_bytes(sent: &[u8], how: &Answering) -> Vec<u8> {
    match how {
        Answering::Appended(patches) => {
            let mut out = sent.to_vec();
            for p in patches {
                p.encode(&mut out).unwrap();
            }
            out
        }
        Answering::Reencoded(patches) => {
            let mut o = Object::decode(sent).unwrap();
            for p in patches {
                o.merge(p.encode_to_vec().as_slice()).unwrap();
            }
            o.encode_to_vec()
        }
        Answering::Replaced(o) => o.encode_to_vec(),
    }
}

fn ctx_parts(
    session: &Option<SessionState>,
    metadata: &HashMap<String, String>,
) -> (Option<Vec<u8>>, Vec<u8>) {
    let session = session.as_ref().map(|s| s.encode_to_vec());
    // Metadata as the reader keeps it: Object field 5 entries.
    let metadata = Object {
        metadata: metadata.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    (session, metadata)
}

const SPEC: [(&str, &str); 3] = [("APIID", "api"), ("OrgID", "org"), ("bundle_hash", "")];

fn reference_object(
    hook_type: HookType,
    request: MiniRequestObject,
    session: &Option<SessionState>,
    metadata: &HashMap<String, String>,
    response: Option<ResponseObject>,
) -> Object {
    Object {
        hook_type: hook_type as i32,
        hook_name: String::new(),
        request: Some(request),
        session: session.clone(),
        metadata: metadata.clone(),
        spec: SPEC
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        response,
    }
}

/// What can be compared of a request: method, path, decoded query, headers, body.
fn observable(r: &HookRequest) -> Reference {
    Reference::of(r)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The encoder writes the Object the former prost code built, to the byte up to map order.
    #[test]
    fn the_encoder_writes_what_prost_writes(
        request in hook_request(),
        hook_type in hook_type(),
        body_text in any::<bool>(),
        session in session(),
        metadata in string_map(),
        response in proptest::option::of((100u16..600, headers(), body())),
    ) {
        let response = response.map(|(status, headers, body)| UpstreamResponse { status, headers, body });
        let (session_bytes, metadata_bytes) = ctx_parts(&session, &metadata);
        let ctx = ObjectContext {
            hook_name: "",
            session: session_bytes.as_deref(),
            metadata: &metadata_bytes,
            spec: &SPEC,
            body_text,
        };
        let mut buf = Vec::new();
        let sent = encode_object(&mut buf, hook_type, &request, response.as_ref(), &ctx);
        let reference = reference_object(
            hook_type,
            Reference::of(&request).mini_request(&request, body_text),
            &session,
            &metadata,
            response.as_ref().map(|r| to_object(r, body_text)),
        );
        let decoded = Object::decode(buf.as_slice()).expect("prost decodes our Object");
        prop_assert_eq!(&decoded, &reference);
        prop_assert!(same_bytes_up_to_map_order(&buf, &reference.encode_to_vec()));
        let req = decoded.request.unwrap();
        prop_assert_eq!(&buf[sent.url], req.url.as_bytes());
        prop_assert_eq!(&buf[sent.body], req.body.as_bytes());
        prop_assert_eq!(&buf[sent.raw_body], &req.raw_body[..]);
    }

    /// Walking an answer and applying it edits the request as decoding it and applying the decoded
    /// request did; return_overrides, the auth outcome, the session and metadata agree too.
    #[test]
    fn the_reader_applies_what_prost_decodes(
        request in hook_request(),
        body_text in any::<bool>(),
        how in answering(),
    ) {
        let mut buf = Vec::new();
        let ctx = ObjectContext { spec: &SPEC, body_text, ..Default::default() };
        let at = encode_object(&mut buf, HookType::Pre, &request, None, &ctx);
        let answer = answer_bytes(&buf, &how);
        prop_assert!(coprocess_proto::wire::validate_object(&answer).is_ok());
        let got = Object::decode(answer.as_slice()).unwrap();

        let edits = RequestEdits::read(&answer).expect("a well-formed answer");
        let ours_ro = edits.return_overrides().unwrap();
        let theirs_ro = got.request.as_ref().and_then(|r| r.return_overrides.clone());
        prop_assert_eq!(&ours_ro, &theirs_ro);
        prop_assert_eq!(
            ours_ro.as_ref().and_then(override_answer),
            theirs_ro.as_ref().and_then(override_answer)
        );

        let mut reference = Reference::of(&request);
        let sent = reference.mini_request(&request, body_text);
        let got_request = got.request.clone().unwrap_or_default();
        reference.apply(&sent, &got_request);
        let mut ours = request.clone();
        match ours.apply(&edits, &buf, &at) {
            Ok(()) => prop_assert_eq!(observable(&ours), reference),
            Err(coprocess_host::ApplyError::BadMethod(m)) => {
                // The former code kept any method and failed at the upstream; ours refuses it here.
                prop_assert!(Method::from_bytes(m.as_bytes()).is_err());
                prop_assert_eq!(m, got_request.method);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }

        // CustomKeyCheck: session and token, as the gateway read them from the decoded Object.
        let token = got
            .metadata
            .get("token")
            .or_else(|| got.session.as_ref()?.metadata.get("token"));
        let granted = got.session.is_some() && token.is_some_and(|t| !t.is_empty());
        let auth = Auth::read(&answer).unwrap();
        prop_assert_eq!(auth.is_some(), granted);
        if let Some(auth) = auth {
            prop_assert_eq!(Some(SessionState::decode(auth.session.as_slice()).unwrap()), got.session.clone());
            prop_assert_eq!(Object::decode(auth.metadata.as_slice()).unwrap().metadata, got.metadata.clone());
        }
    }

    /// On any bytes the reader does not panic; where prost decodes them, it reads what prost reads.
    #[test]
    fn the_reader_agrees_with_prost_on_damaged_answers(
        request in hook_request(),
        how in answering(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut buf = Vec::new();
        let ctx = ObjectContext { spec: &SPEC, ..Default::default() };
        encode_object(&mut buf, HookType::Pre, &request, None, &ctx);
        let mut answer = answer_bytes(&buf, &how);
        for (at, byte, kind) in damage {
            let i = at.index(answer.len() + 1);
            match kind {
                0 if i < answer.len() => answer[i] = byte,
                1 => answer.insert(i, byte),
                _ => answer.truncate(i),
            }
        }
        let edits = RequestEdits::read(&answer);
        let auth = Auth::read(&answer);
        let _ = coprocess_host::answer::response(&answer);
        if let Ok(got) = Object::decode(answer.as_slice()) {
            let edits = edits.expect("prost decodes it, so the reader reads it");
            let r = got.request.clone().unwrap_or_default();
            let last = |v: &str| (!v.is_empty()).then(|| v.as_bytes().to_vec());
            prop_assert_eq!(edits.present, got.request.is_some());
            prop_assert_eq!(edits.url.filter(|u| !u.is_empty()).map(<[u8]>::to_vec), last(&r.url));
            prop_assert_eq!(edits.method.filter(|u| !u.is_empty()).map(<[u8]>::to_vec), last(&r.method));
            prop_assert_eq!(edits.body.unwrap_or_default(), r.body.as_bytes());
            prop_assert_eq!(edits.raw_body.unwrap_or_default(), &r.raw_body[..]);
            prop_assert_eq!(edits.return_overrides().unwrap(), r.return_overrides.clone());
            let auth = auth.expect("prost decodes it, so the reader reads it");
            if let Some(auth) = auth {
                prop_assert_eq!(Some(SessionState::decode(auth.session.as_slice()).unwrap()), got.session);
            }
        }
    }
}

/// GET / with no header and no body.
fn plain_request() -> HookRequest {
    HookRequest {
        method: Method::GET,
        url: "/".into(),
        headers: HeaderMap::new(),
        body: Bytes::new(),
        host: "h".into(),
        request_uri: "/".into(),
    }
}

#[test]
fn many_query_keys_take_the_hash_set_path_and_still_match() {
    let pairs: Vec<(String, String)> = (0..40)
        .map(|i| (format!("k{}", i % 25), format!("v{i}")))
        .collect();
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let request = HookRequest {
        method: Method::GET,
        url: format!("/p?{q}"),
        headers: HeaderMap::new(),
        body: Bytes::new(),
        host: "h".into(),
        request_uri: "/p".into(),
    };
    let mut buf = Vec::new();
    encode_object(
        &mut buf,
        HookType::Pre,
        &request,
        None,
        &ObjectContext::default(),
    );
    let params = Object::decode(buf.as_slice())
        .unwrap()
        .request
        .unwrap()
        .params;
    assert_eq!(params.len(), 25);
    assert_eq!(params["k3"], "v3", "the first value of each key");
}

#[test]
fn edits_in_a_later_appended_request_are_found() {
    // The first pass notes which list fields have entries; a set_headers entry that only the third
    // request occurrence carries must still be applied.
    let request = plain_request();
    let mut buf = Vec::new();
    let at = encode_object(
        &mut buf,
        HookType::Pre,
        &request,
        None,
        &ObjectContext::default(),
    );
    let mut answer = buf.clone();
    for set in [None, Some(("X-Late", "yes"))] {
        Object {
            request: Some(MiniRequestObject {
                set_headers: set
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                method: "PUT".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode(&mut answer)
        .unwrap();
    }
    let edits = RequestEdits::read(&answer).unwrap();
    let mut r = request.clone();
    r.apply(&edits, &buf, &at).unwrap();
    assert_eq!(r.headers["x-late"], "yes");
    assert_eq!(r.method, Method::PUT);
}

#[test]
fn metadata_entries_with_an_odd_wire_type_are_refused_as_prost_refuses_them() {
    // Field 5 with a varint key: prost (>= 0.14.6) and the bridge's wire check refuse it.
    let session = SessionState::default().encode_to_vec();
    let mut answer = vec![0x22, session.len() as u8];
    answer.extend(&session);
    let entry = [0x0a, 0x05, b't', b'o', b'k', b'e', b'n', 0x12, 0x01, b'x'];
    answer.extend([0x28, entry.len() as u8]);
    answer.extend(entry);
    assert!(Object::decode(answer.as_slice()).is_err());
    assert!(Auth::read(&answer).is_err());
    let key_at = answer.len() - entry.len() - 2;
    answer[key_at] = 0x2a; // the proper key
    let decoded = Object::decode(answer.as_slice()).unwrap();
    assert_eq!(decoded.metadata["token"], "x");
    let auth = Auth::read(&answer).unwrap().expect("granted");
    assert_eq!(
        Object::decode(auth.metadata.as_slice()).unwrap().metadata,
        decoded.metadata
    );
}

#[test]
fn an_empty_token_in_the_object_metadata_is_not_overridden_by_the_session() {
    // Tyk reads metadata["token"] first; only a missing one falls back to the session's.
    let mut session = SessionState::default();
    session.metadata.insert("token".into(), "good".into());
    let mut o = Object {
        session: Some(session),
        ..Default::default()
    };
    assert!(Auth::read(&o.encode_to_vec()).unwrap().is_some());
    o.metadata.insert("token".into(), String::new());
    assert!(Auth::read(&o.encode_to_vec()).unwrap().is_none());
    o.session = None;
    o.metadata.insert("token".into(), "t".into());
    assert!(
        Auth::read(&o.encode_to_vec()).unwrap().is_none(),
        "no session"
    );
}

#[test]
fn response_changes_are_applied() {
    let mut h = HeaderMap::new();
    h.append("set-cookie", HeaderValue::from_static("a=1"));
    h.append("set-cookie", HeaderValue::from_static("b=2"));
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    let mut r = UpstreamResponse {
        status: 502,
        headers: h,
        body: Bytes::from_static(b"x"),
    };
    let request = plain_request();
    let mut buf = Vec::new();
    let ctx = ObjectContext {
        body_text: true,
        ..Default::default()
    };
    encode_object(&mut buf, HookType::Response, &request, Some(&r), &ctx);
    let sent = coprocess_host::answer::response(&buf).unwrap();
    assert_eq!(sent, to_object(&r, true));
    let mut got = sent.clone();
    got.status_code = 200;
    got.headers
        .insert("Content-Type".into(), "application/json".into());
    got.multivalue_headers.push(Header {
        key: "X-Multi".into(),
        values: vec!["1".into(), "2".into()],
    });
    got.body = "{}".into();
    // A driver that decodes, edits and encodes again (appending would merge: repeated fields add up).
    let mut object = Object::decode(buf.as_slice()).unwrap();
    object.response = Some(got);
    let answer = object.encode_to_vec();
    let got = coprocess_host::answer::response(&answer).unwrap();
    r.apply(&sent, &got);
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers.get_all("x-multi").iter().count(), 2);
    assert_eq!(r.headers.get_all("set-cookie").iter().count(), 2);
    assert_eq!(&r.body[..], b"{}");
}

#[test]
fn many_set_headers_take_the_hash_index_and_the_last_value_wins() {
    let request = plain_request();
    let mut buf = Vec::new();
    let at = encode_object(
        &mut buf,
        HookType::Pre,
        &request,
        None,
        &ObjectContext::default(),
    );
    let mut answer = buf.clone();
    // 30 keys, each set three times; the last value of key 7 is refused (a control byte), so the
    // header stays unset as a decoded map would leave it.
    for round in 0..3 {
        let set_headers = (0..30)
            .map(|k| {
                let v = if round == 2 && k == 7 {
                    "\u{1}".to_owned()
                } else {
                    format!("v{round}")
                };
                (format!("X-K{k}"), v)
            })
            .collect();
        Object {
            request: Some(MiniRequestObject {
                set_headers,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode(&mut answer)
        .unwrap();
    }
    let edits = RequestEdits::read(&answer).unwrap();
    let mut ours = request.clone();
    ours.apply(&edits, &buf, &at).unwrap();
    let mut reference = Reference::of(&request);
    let sent = reference.mini_request(&request, false);
    let got = Object::decode(answer.as_slice()).unwrap().request.unwrap();
    reference.apply(&sent, &got);
    assert_eq!(observable(&ours), reference);
    assert_eq!(ours.headers.len(), 29);
    assert_eq!(ours.headers["x-k3"], "v2");
}
