//! `ObjectPatch`: change an Object without decoding it.
//!
//! Protobuf's merge rules let a hook state its changes as bytes appended to its input: when a message
//! field occurs twice its contents merge, map entries merge per key, repeated fields append, and for a
//! singular scalar the last occurrence wins. So `input ‖ patch` decodes to the input with the patch
//! applied, and building it costs a copy of the input plus a few dozen bytes, instead of a full
//! decode-modify-encode (≈ 50× cheaper on a typical 3.3 KB Object; see `cargo bench --bench patch`).
//!
//! What a patch cannot do: remove an entry from a map or a repeated field, or clear a message. Use the
//! full decode (`Call::decode`) for those, or the fields Tyk provides for the purpose
//! (`delete_header`, `delete_param`).

use coprocess_proto::prost::bytes::BufMut;
use coprocess_proto::prost::encoding::{encode_key, encode_varint, WireType};
use coprocess_proto::{Message, MiniRequestObject, ResponseObject, SessionState};

use coprocess_proto::fields::object::{
    METADATA as OBJECT_METADATA, REQUEST as OBJECT_REQUEST, RESPONSE as OBJECT_RESPONSE,
    SESSION as OBJECT_SESSION,
};
use coprocess_proto::fields::overrides::{
    HEADERS as OVERRIDES_HEADERS, OVERRIDE_ERROR as OVERRIDES_OVERRIDE_ERROR,
    RESPONSE_BODY as OVERRIDES_RESPONSE_BODY, RESPONSE_CODE as OVERRIDES_RESPONSE_CODE,
    RESPONSE_ERROR as OVERRIDES_RESPONSE_ERROR,
};
use coprocess_proto::fields::request::{
    ADD_PARAMS as REQUEST_ADD_PARAMS, BODY as REQUEST_BODY,
    DELETE_HEADERS as REQUEST_DELETE_HEADERS, DELETE_PARAMS as REQUEST_DELETE_PARAMS,
    METHOD as REQUEST_METHOD, RAW_BODY as REQUEST_RAW_BODY,
    RETURN_OVERRIDES as REQUEST_RETURN_OVERRIDES, SET_HEADERS as REQUEST_SET_HEADERS,
    URL as REQUEST_URL,
};
use coprocess_proto::fields::response::{
    BODY as RESPONSE_BODY, HEADERS as RESPONSE_HEADERS, RAW_BODY as RESPONSE_RAW_BODY,
    STATUS_CODE as RESPONSE_STATUS_CODE,
};

/// Bytes to append to an Object: each method adds one complete top-level field record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectPatch {
    bytes: Vec<u8>,
}

/// A length-delimited field's payload under construction (a few bytes; built on the stack of calls).
struct Fields(Vec<u8>);

impl Fields {
    fn new() -> Self {
        Fields(Vec::with_capacity(32))
    }

    fn bytes(mut self, tag: u32, value: &[u8]) -> Self {
        encode_key(tag, WireType::LengthDelimited, &mut self.0);
        encode_varint(value.len() as u64, &mut self.0);
        self.0.put_slice(value);
        self
    }

    fn str(self, tag: u32, value: &str) -> Self {
        self.bytes(tag, value.as_bytes())
    }

    fn varint(mut self, tag: u32, value: u64) -> Self {
        encode_key(tag, WireType::Varint, &mut self.0);
        encode_varint(value, &mut self.0);
        self
    }

    /// A map<string, string> entry.
    fn entry(self, tag: u32, key: &str, value: &str) -> Self {
        let entry = Fields::new().str(1, key).str(2, value);
        self.bytes(tag, &entry.0)
    }
}

impl ObjectPatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes to append to the input.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn top(mut self, tag: u32, payload: &[u8]) -> Self {
        encode_key(tag, WireType::LengthDelimited, &mut self.bytes);
        encode_varint(payload.len() as u64, &mut self.bytes);
        self.bytes.reserve(payload.len());
        self.bytes.put_slice(payload);
        self
    }

    fn request_fields(self, f: Fields) -> Self {
        self.top(OBJECT_REQUEST, &f.0)
    }

    fn overrides(self, f: Fields) -> Self {
        let inner = Fields::new().bytes(REQUEST_RETURN_OVERRIDES, &f.0);
        self.request_fields(inner)
    }

    fn response_fields(self, f: Fields) -> Self {
        self.top(OBJECT_RESPONSE, &f.0)
    }

    /// `request.set_headers[name] = value`: the gateway adds or replaces the header upstream.
    pub fn set_header(self, name: &str, value: &str) -> Self {
        self.request_fields(Fields::new().entry(REQUEST_SET_HEADERS, name, value))
    }

    /// Appends `name` to `request.delete_headers`.
    pub fn delete_header(self, name: &str) -> Self {
        self.request_fields(Fields::new().str(REQUEST_DELETE_HEADERS, name))
    }

    /// `request.add_params[name] = value`.
    pub fn add_param(self, name: &str, value: &str) -> Self {
        self.request_fields(Fields::new().entry(REQUEST_ADD_PARAMS, name, value))
    }

    /// Appends `name` to `request.delete_params`.
    pub fn delete_param(self, name: &str) -> Self {
        self.request_fields(Fields::new().str(REQUEST_DELETE_PARAMS, name))
    }

    /// Replaces `request.url` (the gateway rewrites the upstream URL).
    pub fn set_url(self, url: &str) -> Self {
        self.request_fields(Fields::new().str(REQUEST_URL, url))
    }

    /// Replaces `request.method`.
    pub fn set_method(self, method: &str) -> Self {
        self.request_fields(Fields::new().str(REQUEST_METHOD, method))
    }

    /// Replaces the request body: `raw_body`, which is what Tyk's gateway sends upstream (its
    /// `ObjectPostProcess` reads nothing else), and `body` with the same text, so that the two never
    /// disagree (a later hook, or code reading `body`, sees the new text too).
    pub fn set_body(self, body: &str) -> Self {
        self.request_fields(
            Fields::new()
                .bytes(REQUEST_RAW_BODY, body.as_bytes())
                .str(REQUEST_BODY, body),
        )
    }

    /// Replaces `request.raw_body` (the body Tyk's gateway sends upstream), leaving the `body` text as
    /// it was: for bodies that are not text. Prefer [`ObjectPatch::set_body`] for text.
    pub fn set_raw_body(self, body: &[u8]) -> Self {
        self.request_fields(Fields::new().bytes(REQUEST_RAW_BODY, body))
    }

    /// Answers the client directly: `return_overrides.response_code = code`, `response_body = body`.
    /// The gateway stops the chain and does not call the upstream.
    pub fn return_override(self, code: i32, body: &str) -> Self {
        // int32 is encoded as a sign-extended 64-bit varint (a negative code takes 10 bytes).
        self.overrides(
            Fields::new()
                .varint(OVERRIDES_RESPONSE_CODE, code as i64 as u64)
                .str(OVERRIDES_RESPONSE_BODY, body),
        )
    }

    /// `return_overrides.response_error`: with a code >= 400 and no `override_error`, Tyk treats the
    /// answer as an error carrying this text.
    pub fn return_error(self, code: i32, error: &str) -> Self {
        self.overrides(
            Fields::new()
                .varint(OVERRIDES_RESPONSE_CODE, code as i64 as u64)
                .str(OVERRIDES_RESPONSE_ERROR, error),
        )
    }

    /// `return_overrides.headers[name] = value`.
    pub fn return_header(self, name: &str, value: &str) -> Self {
        self.overrides(Fields::new().entry(OVERRIDES_HEADERS, name, value))
    }

    /// `return_overrides.override_error = on`.
    pub fn override_error(self, on: bool) -> Self {
        self.overrides(Fields::new().varint(OVERRIDES_OVERRIDE_ERROR, on as u64))
    }

    /// Top-level `metadata[key] = value`.
    pub fn metadata(self, key: &str, value: &str) -> Self {
        let entry = Fields::new().str(1, key).str(2, value);
        self.top(OBJECT_METADATA, &entry.0)
    }

    /// Merges `session` into the Object's session: its non-default scalars replace the input's, its map
    /// entries are added or replaced per key, its repeated fields are appended. Typical for a
    /// CustomKeyCheck hook: `rate`, `per`, `metadata`, `id_extractor_deadline`.
    pub fn session(self, session: &SessionState) -> Self {
        self.top(OBJECT_SESSION, &session.encode_to_vec())
    }

    /// Merges `request` into the Object's request, as `session` does.
    pub fn request(self, request: &MiniRequestObject) -> Self {
        self.top(OBJECT_REQUEST, &request.encode_to_vec())
    }

    /// Merges `response` into the Object's response (Response hooks), as `session` does.
    pub fn response(self, response: &ResponseObject) -> Self {
        self.top(OBJECT_RESPONSE, &response.encode_to_vec())
    }

    /// `response.status_code = code` (Response hooks).
    pub fn response_status(self, code: i32) -> Self {
        self.response_fields(Fields::new().varint(RESPONSE_STATUS_CODE, code as i64 as u64))
    }

    /// `response.headers[name] = value` (Response hooks).
    pub fn response_header(self, name: &str, value: &str) -> Self {
        self.response_fields(Fields::new().entry(RESPONSE_HEADERS, name, value))
    }

    /// Replaces `response.raw_body`, and `response.body` with the same text (or "" when `body` is not
    /// UTF-8, so the two never disagree). Response hooks.
    pub fn response_body(self, body: &[u8]) -> Self {
        let text = std::str::from_utf8(body).unwrap_or("");
        let f = Fields::new()
            .bytes(RESPONSE_RAW_BODY, body)
            .str(RESPONSE_BODY, text);
        self.response_fields(f)
    }

    /// The size of `input ‖ patch`.
    pub fn patched_len(&self, input_len: usize) -> usize {
        input_len + self.bytes.len()
    }
}
