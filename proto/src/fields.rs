//! Field numbers of the coprocess messages (the `.proto` files beside this crate), for code that reads
//! or writes the wire format in place instead of decoding: the bridge's wire walks and chains, the
//! host's encoder and answer reader, the SDK's patches, the drivers' lazy layouts. One list, checked
//! against prost's encoding by the tests below, so no walker carries its own copy of the schema.

/// `coprocess.Object`.
pub mod object {
    pub const HOOK_TYPE: u32 = 1;
    pub const HOOK_NAME: u32 = 2;
    pub const REQUEST: u32 = 3;
    pub const SESSION: u32 = 4;
    pub const METADATA: u32 = 5;
    pub const SPEC: u32 = 6;
    pub const RESPONSE: u32 = 7;
}

/// `coprocess.MiniRequestObject` (an Object's `request`).
pub mod request {
    pub const HEADERS: u32 = 1;
    pub const SET_HEADERS: u32 = 2;
    pub const DELETE_HEADERS: u32 = 3;
    pub const BODY: u32 = 4;
    pub const URL: u32 = 5;
    pub const PARAMS: u32 = 6;
    pub const ADD_PARAMS: u32 = 7;
    pub const EXTENDED_PARAMS: u32 = 8;
    pub const DELETE_PARAMS: u32 = 9;
    pub const RETURN_OVERRIDES: u32 = 10;
    pub const METHOD: u32 = 11;
    pub const REQUEST_URI: u32 = 12;
    pub const SCHEME: u32 = 13;
    pub const RAW_BODY: u32 = 14;
}

/// `coprocess.ReturnOverrides` (a request's `return_overrides`).
pub mod overrides {
    pub const RESPONSE_CODE: u32 = 1;
    pub const RESPONSE_ERROR: u32 = 2;
    pub const HEADERS: u32 = 3;
    pub const OVERRIDE_ERROR: u32 = 4;
    pub const RESPONSE_BODY: u32 = 5;
}

/// `coprocess.ResponseObject` (an Object's `response`).
pub mod response {
    pub const STATUS_CODE: u32 = 1;
    pub const RAW_BODY: u32 = 2;
    pub const BODY: u32 = 3;
    pub const HEADERS: u32 = 4;
    pub const MULTIVALUE_HEADERS: u32 = 5;
}

/// The `coprocess.SessionState` fields read in place (its map fields and `metadata`).
pub mod session {
    pub const ACCESS_RIGHTS: u32 = 10;
    pub const OAUTH_KEYS: u32 = 13;
    pub const METADATA: u32 = 23;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        AccessDefinition, Header, HookType, MiniRequestObject, Object, ResponseObject,
        ReturnOverrides, SessionState,
    };
    use prost::encoding::decode_key;
    use prost::Message;
    use std::collections::HashMap;

    /// The field number prost writes first for `message` (which must set exactly one field).
    fn only_field(message: &impl Message) -> u32 {
        let bytes = message.encode_to_vec();
        let mut buf = bytes.as_slice();
        let (tag, _) = decode_key(&mut buf).expect("a field record");
        tag
    }

    fn entry() -> HashMap<String, String> {
        HashMap::from([("k".to_string(), "v".to_string())])
    }

    #[test]
    fn object_fields_are_those_prost_writes() {
        let cases: [(u32, Object); 7] = [
            (
                object::HOOK_TYPE,
                Object {
                    hook_type: HookType::Pre as i32,
                    ..Default::default()
                },
            ),
            (
                object::HOOK_NAME,
                Object {
                    hook_name: "h".into(),
                    ..Default::default()
                },
            ),
            (
                object::REQUEST,
                Object {
                    request: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                object::SESSION,
                Object {
                    session: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                object::METADATA,
                Object {
                    metadata: entry(),
                    ..Default::default()
                },
            ),
            (
                object::SPEC,
                Object {
                    spec: entry(),
                    ..Default::default()
                },
            ),
            (
                object::RESPONSE,
                Object {
                    response: Some(Default::default()),
                    ..Default::default()
                },
            ),
        ];
        for (field, message) in cases {
            assert_eq!(only_field(&message), field, "{message:?}");
        }
    }

    #[test]
    fn request_fields_are_those_prost_writes() {
        let r = MiniRequestObject::default;
        let cases: [(u32, MiniRequestObject); 14] = [
            (
                request::HEADERS,
                MiniRequestObject {
                    headers: entry(),
                    ..r()
                },
            ),
            (
                request::SET_HEADERS,
                MiniRequestObject {
                    set_headers: entry(),
                    ..r()
                },
            ),
            (
                request::DELETE_HEADERS,
                MiniRequestObject {
                    delete_headers: vec!["a".into()],
                    ..r()
                },
            ),
            (
                request::BODY,
                MiniRequestObject {
                    body: "b".into(),
                    ..r()
                },
            ),
            (
                request::URL,
                MiniRequestObject {
                    url: "/".into(),
                    ..r()
                },
            ),
            (
                request::PARAMS,
                MiniRequestObject {
                    params: entry(),
                    ..r()
                },
            ),
            (
                request::ADD_PARAMS,
                MiniRequestObject {
                    add_params: entry(),
                    ..r()
                },
            ),
            (
                request::EXTENDED_PARAMS,
                MiniRequestObject {
                    extended_params: entry(),
                    ..r()
                },
            ),
            (
                request::DELETE_PARAMS,
                MiniRequestObject {
                    delete_params: vec!["a".into()],
                    ..r()
                },
            ),
            (
                request::RETURN_OVERRIDES,
                MiniRequestObject {
                    return_overrides: Some(Default::default()),
                    ..r()
                },
            ),
            (
                request::METHOD,
                MiniRequestObject {
                    method: "GET".into(),
                    ..r()
                },
            ),
            (
                request::REQUEST_URI,
                MiniRequestObject {
                    request_uri: "/".into(),
                    ..r()
                },
            ),
            (
                request::SCHEME,
                MiniRequestObject {
                    scheme: "http".into(),
                    ..r()
                },
            ),
            (
                request::RAW_BODY,
                MiniRequestObject {
                    raw_body: vec![1],
                    ..r()
                },
            ),
        ];
        for (field, message) in cases {
            assert_eq!(only_field(&message), field, "{message:?}");
        }
    }

    #[test]
    fn overrides_response_and_session_fields_are_those_prost_writes() {
        let o = ReturnOverrides::default;
        for (field, message) in [
            (
                overrides::RESPONSE_CODE,
                ReturnOverrides {
                    response_code: 403,
                    ..o()
                },
            ),
            (
                overrides::RESPONSE_ERROR,
                ReturnOverrides {
                    response_error: "e".into(),
                    ..o()
                },
            ),
            (
                overrides::HEADERS,
                ReturnOverrides {
                    headers: entry(),
                    ..o()
                },
            ),
            (
                overrides::OVERRIDE_ERROR,
                ReturnOverrides {
                    override_error: true,
                    ..o()
                },
            ),
            (
                overrides::RESPONSE_BODY,
                ReturnOverrides {
                    response_body: "b".into(),
                    ..o()
                },
            ),
        ] {
            assert_eq!(only_field(&message), field, "{message:?}");
        }
        let p = ResponseObject::default;
        for (field, message) in [
            (
                response::STATUS_CODE,
                ResponseObject {
                    status_code: 200,
                    ..p()
                },
            ),
            (
                response::RAW_BODY,
                ResponseObject {
                    raw_body: vec![1],
                    ..p()
                },
            ),
            (
                response::BODY,
                ResponseObject {
                    body: "b".into(),
                    ..p()
                },
            ),
            (
                response::HEADERS,
                ResponseObject {
                    headers: entry(),
                    ..p()
                },
            ),
            (
                response::MULTIVALUE_HEADERS,
                ResponseObject {
                    multivalue_headers: vec![Header::default()],
                    ..p()
                },
            ),
        ] {
            assert_eq!(only_field(&message), field, "{message:?}");
        }
        let s = SessionState::default;
        let access = HashMap::from([("api".to_string(), AccessDefinition::default())]);
        for (field, message) in [
            (
                session::ACCESS_RIGHTS,
                SessionState {
                    access_rights: access,
                    ..s()
                },
            ),
            (
                session::OAUTH_KEYS,
                SessionState {
                    oauth_keys: entry(),
                    ..s()
                },
            ),
            (
                session::METADATA,
                SessionState {
                    metadata: entry(),
                    ..s()
                },
            ),
        ] {
            assert_eq!(only_field(&message), field, "{message:?}");
        }
    }
}
