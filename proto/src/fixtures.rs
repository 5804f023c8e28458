//! Deterministic sample `Object`s for tests and benchmarks (cargo feature `fixtures`).
//!
//! Every fixture is built from constants and fixed arithmetic only (no randomness, no clock), so
//! two calls return equal values. The encoded *size* is therefore fixed; the encoded *byte order*
//! of map entries is not, because prost stores maps in `std::collections::HashMap`, whose
//! iteration order is randomised per process. Compare decoded values, not encodings, across runs.
//!
//! Sizes quoted below are `encode(&fixture()).len()`, checked by this module's tests.

use std::collections::HashMap;

use prost::Message;

use crate::{
    AccessDefinition, AccessSpec, BasicAuthData, Header, HookType, JwtData, MiniRequestObject,
    Monitor, Object, ResponseObject, ReturnOverrides, SessionState,
};

/// Encoded size of [`small_object`], in bytes.
pub const SMALL_OBJECT_LEN: usize = 701;
/// Encoded size of [`typical_object`], in bytes.
pub const TYPICAL_OBJECT_LEN: usize = 3347;
/// Encoded size of [`large_object`], in bytes.
pub const LARGE_OBJECT_LEN: usize = 66309;
/// Encoded size of [`fully_populated_object`], in bytes.
pub const FULLY_POPULATED_OBJECT_LEN: usize = 1413;

/// Serializes an `Object` with prost (`encode_to_vec`).
pub fn encode(o: &Object) -> Vec<u8> {
    o.encode_to_vec()
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&s| s.to_owned()).collect()
}

/// `len` characters from the base64url alphabet, from a fixed linear congruential sequence.
fn token_chars(len: usize, seed: u32) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(ALPHABET[((state >> 16) & 63) as usize])
        })
        .collect()
}

/// A JWT-shaped bearer token of exactly 200 characters.
fn bearer_token() -> String {
    let header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"; // {"alg":"HS256","typ":"JWT"}
    let payload = token_chars(120, 7);
    let signature = token_chars(200 - header.len() - payload.len() - 2, 11);
    let token = format!("{header}.{payload}.{signature}");
    debug_assert_eq!(token.len(), 200);
    token
}

/// A JSON document (an order with line items, then padding) of exactly `len` bytes; `len >= 64`.
pub fn json_body(len: usize) -> String {
    const OPEN: &str = "{\"order\":{\"id\":12345,\"currency\":\"EUR\",\"items\":[";
    const CLOSE: &str = "]},\"note\":\"";
    assert!(
        len >= OPEN.len() + CLOSE.len() + 2,
        "json_body needs len >= 64"
    );
    let mut s = String::with_capacity(len);
    s.push_str(OPEN);
    for i in 0usize.. {
        let item = format!(
            "{}{{\"sku\":\"SKU-{:05}\",\"qty\":{},\"price\":{}.{:02}}}",
            if i > 0 { "," } else { "" },
            (i * 7919) % 100_000,
            i % 5 + 1,
            10 + i * 3,
            (i * 37) % 100
        );
        if s.len() + item.len() + CLOSE.len() + 2 > len {
            break;
        }
        s.push_str(&item);
    }
    s.push_str(CLOSE);
    let pad = len - s.len() - 2;
    s.extend((0..pad).map(|i| char::from(b'a' + (i % 26) as u8)));
    s.push_str("\"}");
    debug_assert_eq!(s.len(), len);
    s
}

fn request_headers(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut h = map(&[
        ("Host", "api.example.com"),
        ("User-Agent", "curl/8.5.0"),
        ("Accept", "application/json"),
        ("X-Request-Id", "5f0c6a1e-2b7d-4c39-9a51-8e2f4d6b7c10"),
    ]);
    h.extend(map(extra));
    h
}

fn gateway_spec() -> HashMap<String, String> {
    map(&[
        ("OrgID", "5e9d9544a1dcd60001d0ed20"),
        ("APIID", "a1b2c3d4e5f60718293a4b5c6d7e8f90"),
        ("bundle_hash", "d41d8cd98f00b204e9800998ecf8427e"),
    ])
}

/// A Pre-hook request as the gateway builds it: a few headers, `spec` with `OrgID`, `APIID` and
/// `bundle_hash`, `return_overrides.response_code = -1`, url/method/scheme/request_uri, no body.
///
/// Encodes to [`SMALL_OBJECT_LEN`] = 701 bytes.
pub fn small_object() -> Object {
    Object {
        hook_type: HookType::Pre as i32,
        hook_name: "MyPreHook".into(),
        request: Some(MiniRequestObject {
            headers: request_headers(&[
                ("Accept-Encoding", "gzip, deflate, br"),
                ("X-Forwarded-For", "203.0.113.7, 198.51.100.23"),
                (
                    "Traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            ]),
            url: "/orders/12345/items?expand=product&limit=20".into(),
            method: "GET".into(),
            scheme: "https".into(),
            request_uri: "/v1/orders/12345/items?expand=product&limit=20".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: {
            let mut spec = gateway_spec();
            spec.extend(map(&[(
                "config_data",
                r#"{"upstream_timeout_ms":2500,"allowed_tenants":["acme","globex","initech"],"feature_flags":{"new_routing":true,"strict_auth":false}}"#,
            )]));
            spec
        },
        ..Default::default()
    }
}

/// An authenticated POST with a JSON body: 12 headers (one is `Authorization: Bearer` with a
/// 200-character token), the same 1 KiB JSON document in `body` and `raw_body`, a session with
/// metadata, tags and three access rights, and the gateway's `spec`.
///
/// Encodes to [`TYPICAL_OBJECT_LEN`] = 3347 bytes.
pub fn typical_object() -> Object {
    let body = json_body(1024);
    let authorization = format!("Bearer {}", bearer_token());
    let headers = request_headers(&[
        ("Authorization", authorization.as_str()),
        ("Content-Type", "application/json"),
        ("Content-Length", "1024"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("X-Forwarded-For", "203.0.113.7, 198.51.100.23"),
        ("X-Forwarded-Proto", "https"),
        ("X-Api-Version", "2"),
        ("Cookie", "sid=8c1f2e7a"),
    ]);
    debug_assert_eq!(headers.len(), 12);
    let access = |name: &str, id: &str, url: &str| AccessDefinition {
        api_name: name.into(),
        api_id: id.into(),
        versions: strings(&["Default"]),
        allowed_urls: vec![AccessSpec {
            url: url.into(),
            methods: strings(&["GET", "POST"]),
        }],
    };
    Object {
        hook_type: HookType::Pre as i32,
        hook_name: "AuthCheck".into(),
        request: Some(MiniRequestObject {
            headers,
            body: body.clone(),
            raw_body: body.into_bytes(),
            url: "/orders".into(),
            method: "POST".into(),
            scheme: "https".into(),
            request_uri: "/v1/orders".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        session: Some(SessionState {
            last_check: 1_700_000_000,
            allowance: 1000.0,
            rate: 1000.0,
            per: 60.0,
            expires: 1_893_456_000,
            quota_max: 100_000,
            quota_renews: 1_700_086_400,
            quota_remaining: 99_321,
            quota_renewal_rate: 86_400,
            access_rights: [
                access(
                    "Orders API",
                    "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                    "/orders.*",
                ),
                access(
                    "Catalog API",
                    "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                    "/products.*",
                ),
                access("Users API", "9a8b7c6d5e4f30211203f4e5d6c7b8a9", "/users/me"),
            ]
            .into_iter()
            .map(|d| (d.api_id.clone(), d))
            .collect(),
            org_id: "5e9d9544a1dcd60001d0ed20".into(),
            metadata: map(&[
                ("tenant", "acme"),
                ("plan", "enterprise"),
                ("user_id", "u-7f3a9c"),
            ]),
            tags: strings(&["partner"]),
            alias: "acme-mobile-app".into(),
            ..Default::default()
        }),
        spec: gateway_spec(),
        ..Default::default()
    }
}

/// [`small_object`] as a PUT with a 64 KiB (65 536-byte) binary `raw_body` and matching
/// `Content-Type`/`Content-Length` headers.
///
/// Encodes to [`LARGE_OBJECT_LEN`] = 66309 bytes.
pub fn large_object() -> Object {
    let mut o = small_object();
    let request = o.request.get_or_insert_with(Default::default);
    request.method = "PUT".into();
    request.headers.extend(map(&[
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", "65536"),
    ]));
    request.raw_body = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    o
}

/// An `Object` in which every field of every message reachable from `Object` is non-default,
/// every map has several entries with non-empty keys and values, and every repeated field has
/// several elements. `hook_type` is `CustomKeyCheck`.
///
/// Encodes to [`FULLY_POPULATED_OBJECT_LEN`] = 1413 bytes.
pub fn fully_populated_object() -> Object {
    let access = |n: u32| AccessDefinition {
        api_name: format!("API {n}"),
        api_id: format!("api-{n}"),
        versions: strings(&["v1", "v2"]),
        allowed_urls: vec![
            AccessSpec {
                url: format!("/api{n}/items.*"),
                methods: strings(&["GET", "HEAD"]),
            },
            AccessSpec {
                url: format!("/api{n}/admin"),
                methods: strings(&["POST", "DELETE"]),
            },
        ],
    };
    Object {
        hook_type: HookType::CustomKeyCheck as i32,
        hook_name: "MyAuthCheck".into(),
        request: Some(MiniRequestObject {
            headers: request_headers(&[("Authorization", "Bearer abc.def.ghi")]),
            set_headers: map(&[("X-Set-One", "1"), ("X-Set-Two", "2")]),
            delete_headers: strings(&["X-Remove-Me", "Cookie"]),
            body: "{\"hello\":\"w\u{f6}rld\"}".into(),
            url: "/items/42?q=x".into(),
            params: map(&[("q", "x"), ("page", "2")]),
            add_params: map(&[("added", "yes"), ("trace", "on")]),
            extended_params: map(&[("ext1", "a"), ("ext2", "b")]),
            delete_params: strings(&["debug", "token"]),
            return_overrides: Some(ReturnOverrides {
                response_code: 403,
                response_error: "forbidden".into(),
                headers: map(&[("X-Reason", "policy"), ("Retry-After", "30")]),
                override_error: true,
                response_body: "{\"error\":\"forbidden\"}".into(),
            }),
            method: "PATCH".into(),
            request_uri: "/v2/items/42?q=x".into(),
            scheme: "https".into(),
            raw_body: vec![0x00, 0xFF, 0x7B, 0x7D, 0x80, 0x01],
        }),
        session: Some(SessionState {
            last_check: 1_700_000_001,
            allowance: 99.5,
            rate: 100.0,
            per: 1.5,
            expires: -1,
            quota_max: 5000,
            quota_renews: 1_700_086_401,
            quota_remaining: 4999,
            quota_renewal_rate: 3600,
            access_rights: (1..=3).map(|n| (format!("api-{n}"), access(n))).collect(),
            org_id: "org-1".into(),
            oauth_client_id: "client-1".into(),
            oauth_keys: map(&[("key-a", "client-a"), ("key-b", "client-b")]),
            basic_auth_data: Some(BasicAuthData {
                password: "hunter2".into(),
                hash: "bcrypt".into(),
            }),
            jwt_data: Some(JwtData {
                secret: "jwt-secret".into(),
            }),
            hmac_enabled: true,
            hmac_secret: "hmac-secret".into(),
            is_inactive: true,
            apply_policy_id: "policy-1".into(),
            data_expires: 86_400,
            monitor: Some(Monitor {
                trigger_limits: vec![50.0, 80.0, 99.9],
            }),
            enable_detailed_recording: true,
            metadata: map(&[("tier", "gold"), ("region", "eu")]),
            tags: strings(&["t1", "t2", "t3"]),
            alias: "alias-1".into(),
            last_updated: "1700000000".into(),
            id_extractor_deadline: 1_700_000_600,
            session_lifetime: 7200,
            apply_policies: strings(&["policy-1", "policy-2"]),
            certificate: "cert-sha256:0123abcd".into(),
            max_query_depth: 7,
            key_id: "key-1".into(),
            post_expiry_action: "delete".into(),
            post_expiry_grace_period: 600,
        }),
        metadata: map(&[("token", "abc"), ("user", "alice")]),
        spec: {
            let mut spec = gateway_spec();
            spec.insert("config_data".into(), "{\"k\":\"v\"}".into());
            spec
        },
        response: Some(ResponseObject {
            status_code: 201,
            raw_body: vec![0xDE, 0xAD, 0xBE, 0xEF],
            body: "created".into(),
            headers: map(&[("Content-Type", "text/plain"), ("X-Upstream", "svc-a")]),
            multivalue_headers: vec![
                Header {
                    key: "Set-Cookie".into(),
                    values: strings(&["a=1", "b=2"]),
                },
                Header {
                    key: "Vary".into(),
                    values: strings(&["Accept", "Origin"]),
                },
            ],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_docs() {
        let sizes = [
            encode(&small_object()).len(),
            encode(&typical_object()).len(),
            encode(&large_object()).len(),
            encode(&fully_populated_object()).len(),
        ];
        assert_eq!(
            sizes,
            [
                SMALL_OBJECT_LEN,
                TYPICAL_OBJECT_LEN,
                LARGE_OBJECT_LEN,
                FULLY_POPULATED_OBJECT_LEN
            ]
        );
    }

    #[test]
    fn deterministic_and_valid() {
        for f in [
            small_object,
            typical_object,
            large_object,
            fully_populated_object,
        ] {
            assert_eq!(f(), f());
            let bytes = encode(&f());
            crate::wire::validate_object(&bytes).unwrap();
            assert_eq!(Object::decode(bytes.as_slice()).unwrap(), f());
        }
        let t = typical_object();
        let req = t.request.unwrap();
        assert_eq!(req.headers.len(), 12);
        assert_eq!(req.headers["Authorization"].len(), "Bearer ".len() + 200);
        assert_eq!(req.body.len(), 1024);
        assert_eq!(req.raw_body, req.body.as_bytes());
        assert_eq!(large_object().request.unwrap().raw_body.len(), 65_536);
    }
}
