//! Encoding fidelity: the fully populated fixture round-trips and really populates every field,
//! and a small Object encodes to bytes derived by hand from the protobuf encoding rules.

use std::collections::HashMap;

use coprocess_proto::fixtures::{self, encode};
use coprocess_proto::wire::{hook_type, spec_value, validate_object};
use coprocess_proto::{
    AccessDefinition, AccessSpec, BasicAuthData, Header, HookType, JwtData, Message,
    MiniRequestObject, Monitor, Object, ResponseObject, ReturnOverrides, SessionState,
};

#[test]
fn every_fixture_round_trips() {
    for o in [
        fixtures::small_object(),
        fixtures::typical_object(),
        fixtures::large_object(),
        fixtures::fully_populated_object(),
    ] {
        let bytes = encode(&o);
        assert_eq!(bytes.len(), o.encoded_len());
        validate_object(&bytes).unwrap();
        let back = Object::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, o);
        // A second encode of the decoded value has the same size (map order may differ).
        assert_eq!(encode(&back).len(), bytes.len());
        assert_eq!(hook_type(&bytes).unwrap_or(0), o.hook_type);
        for (k, v) in &o.spec {
            assert_eq!(spec_value(&bytes, k), Some(v.as_str()));
        }
    }
}

// --- "every field is non-default" ---------------------------------------------------------------
//
// Each check destructures its message exhaustively (no `..`), so adding a field to the schema
// breaks the build here until the fixture and the check cover it.

#[track_caller]
fn s(v: &str, what: &str) {
    assert!(!v.is_empty(), "{what} is empty");
}

#[track_caller]
fn several<T>(v: &[T], what: &str) {
    assert!(v.len() >= 2, "{what} has {} elements, want >= 2", v.len());
}

#[track_caller]
fn strings(v: &[String], what: &str) {
    several(v, what);
    v.iter().for_each(|x| s(x, what));
}

#[track_caller]
fn string_map(m: &HashMap<String, String>, what: &str) {
    assert!(m.len() >= 2, "{what} has {} entries, want >= 2", m.len());
    for (k, v) in m {
        s(k, what);
        s(v, what);
    }
}

fn check_object(o: &Object) {
    let Object {
        hook_type,
        hook_name,
        request,
        session,
        metadata,
        spec,
        response,
    } = o;
    assert_eq!(*hook_type, HookType::CustomKeyCheck as i32);
    s(hook_name, "hook_name");
    check_request(request.as_ref().expect("request"));
    check_session(session.as_ref().expect("session"));
    string_map(metadata, "metadata");
    string_map(spec, "spec");
    check_response(response.as_ref().expect("response"));
}

fn check_request(r: &MiniRequestObject) {
    let MiniRequestObject {
        headers,
        set_headers,
        delete_headers,
        body,
        url,
        params,
        add_params,
        extended_params,
        delete_params,
        return_overrides,
        method,
        request_uri,
        scheme,
        raw_body,
    } = r;
    string_map(headers, "request.headers");
    string_map(set_headers, "request.set_headers");
    strings(delete_headers, "request.delete_headers");
    s(body, "request.body");
    s(url, "request.url");
    string_map(params, "request.params");
    string_map(add_params, "request.add_params");
    string_map(extended_params, "request.extended_params");
    strings(delete_params, "request.delete_params");
    let ReturnOverrides {
        response_code,
        response_error,
        headers,
        override_error,
        response_body,
    } = return_overrides.as_ref().expect("request.return_overrides");
    assert_ne!(*response_code, 0);
    s(response_error, "return_overrides.response_error");
    string_map(headers, "return_overrides.headers");
    assert!(*override_error);
    s(response_body, "return_overrides.response_body");
    s(method, "request.method");
    s(request_uri, "request.request_uri");
    s(scheme, "request.scheme");
    several(raw_body, "request.raw_body");
}

fn check_access_definition(d: &AccessDefinition) {
    let AccessDefinition {
        api_name,
        api_id,
        versions,
        allowed_urls,
    } = d;
    s(api_name, "api_name");
    s(api_id, "api_id");
    strings(versions, "versions");
    several(allowed_urls, "allowed_urls");
    for AccessSpec { url, methods } in allowed_urls {
        s(url, "allowed_urls.url");
        strings(methods, "allowed_urls.methods");
    }
}

fn check_session(x: &SessionState) {
    let SessionState {
        last_check,
        allowance,
        rate,
        per,
        expires,
        quota_max,
        quota_renews,
        quota_remaining,
        quota_renewal_rate,
        access_rights,
        org_id,
        oauth_client_id,
        oauth_keys,
        basic_auth_data,
        jwt_data,
        hmac_enabled,
        hmac_secret,
        is_inactive,
        apply_policy_id,
        data_expires,
        monitor,
        enable_detailed_recording,
        metadata,
        tags,
        alias,
        last_updated,
        id_extractor_deadline,
        session_lifetime,
        apply_policies,
        certificate,
        max_query_depth,
        key_id,
        post_expiry_action,
        post_expiry_grace_period,
    } = x;
    for (v, what) in [
        (last_check, "last_check"),
        (expires, "expires"),
        (quota_max, "quota_max"),
        (quota_renews, "quota_renews"),
        (quota_remaining, "quota_remaining"),
        (quota_renewal_rate, "quota_renewal_rate"),
        (data_expires, "data_expires"),
        (id_extractor_deadline, "id_extractor_deadline"),
        (session_lifetime, "session_lifetime"),
        (max_query_depth, "max_query_depth"),
        (post_expiry_grace_period, "post_expiry_grace_period"),
    ] {
        assert_ne!(*v, 0, "session.{what} is 0");
    }
    for (v, what) in [(allowance, "allowance"), (rate, "rate"), (per, "per")] {
        assert_ne!(*v, 0.0, "session.{what} is 0");
    }
    assert!(access_rights.len() >= 2);
    for (k, d) in access_rights {
        s(k, "access_rights key");
        check_access_definition(d);
    }
    for (v, what) in [
        (org_id, "org_id"),
        (oauth_client_id, "oauth_client_id"),
        (hmac_secret, "hmac_secret"),
        (apply_policy_id, "apply_policy_id"),
        (alias, "alias"),
        (last_updated, "last_updated"),
        (certificate, "certificate"),
        (key_id, "key_id"),
        (post_expiry_action, "post_expiry_action"),
    ] {
        s(v, what);
    }
    string_map(oauth_keys, "session.oauth_keys");
    let BasicAuthData { password, hash } = basic_auth_data.as_ref().expect("basic_auth_data");
    s(password, "basic_auth_data.password");
    s(hash, "basic_auth_data.hash");
    let JwtData { secret } = jwt_data.as_ref().expect("jwt_data");
    s(secret, "jwt_data.secret");
    assert!(*hmac_enabled && *is_inactive && *enable_detailed_recording);
    let Monitor { trigger_limits } = monitor.as_ref().expect("monitor");
    several(trigger_limits, "monitor.trigger_limits");
    assert!(trigger_limits.iter().all(|&t| t != 0.0));
    string_map(metadata, "session.metadata");
    strings(tags, "session.tags");
    strings(apply_policies, "session.apply_policies");
}

fn check_response(r: &ResponseObject) {
    let ResponseObject {
        status_code,
        raw_body,
        body,
        headers,
        multivalue_headers,
    } = r;
    assert_ne!(*status_code, 0);
    several(raw_body, "response.raw_body");
    s(body, "response.body");
    string_map(headers, "response.headers");
    several(multivalue_headers, "response.multivalue_headers");
    for Header { key, values } in multivalue_headers {
        s(key, "multivalue_headers.key");
        strings(values, "multivalue_headers.values");
    }
}

#[test]
fn fully_populated_object_populates_every_field() {
    let o = fixtures::fully_populated_object();
    check_object(&o);
    let bytes = encode(&o);
    let back = Object::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, o);
    check_object(&back);
}

// --- golden bytes ------------------------------------------------------------------------------

/// Derived by hand (not printed from the encoder). A key is `(field_number << 3) | wire_type`
/// as a varint; wire type 0 = varint, 2 = length-delimited (key, length varint, payload). A map
/// entry is a length-delimited message `{ key = 1; value = 2; }`. prost writes fields in
/// field-number order, and skips default values (so hook_type = 0, empty strings etc. never appear).
#[rustfmt::skip]
const GOLDEN_HEX: &str = concat!(
    // Object.hook_type = Pre (1): field 1, varint -> key 0x08, value 0x01.
    "08", "01",
    // Object.hook_name = "MyPreHook": field 2, LEN -> key 0x12, length 9,
    // M y P r e H o o k.
    "12", "09", "4d", "79", "50", "72", "65", "48", "6f", "6f", "6b",
    // Object.request: field 3, LEN -> key (3 << 3) | 2 = 0x1a, length 39 = 0x27
    // (headers 2 + 19, return_overrides 2 + 11, method 2 + 3).
    "1a", "27",
    //   MiniRequestObject.headers["Host"]: field 1, LEN -> key 0x0a, entry length 19 = 0x13.
    "0a", "13",
    //     entry key: field 1, LEN -> 0x0a, length 4, H o s t.
    "0a", "04", "48", "6f", "73", "74",
    //     entry value: field 2, LEN -> 0x12, length 11 = 0x0b, e x a m p l e . c o m.
    "12", "0b", "65", "78", "61", "6d", "70", "6c", "65", "2e", "63", "6f", "6d",
    //   MiniRequestObject.return_overrides: field 10, LEN -> key (10 << 3) | 2 = 82 = 0x52,
    //   length 11 = 0x0b.
    "52", "0b",
    //     ReturnOverrides.response_code = -1: field 1, varint -> key 0x08. An int32 is
    //     sign-extended to 64 bits, so -1 is 0xFFFF_FFFF_FFFF_FFFF: nine groups of seven 1-bits,
    //     each with the continuation bit (0xff), then a tenth byte holding bit 63 (0x01).
    "08", "ff", "ff", "ff", "ff", "ff", "ff", "ff", "ff", "ff", "01",
    //   MiniRequestObject.method = "GET": field 11, LEN -> key (11 << 3) | 2 = 90 = 0x5a,
    //   length 3, G E T.
    "5a", "03", "47", "45", "54",
    // Object.spec["APIID"] = "api1": field 6, LEN -> key (6 << 3) | 2 = 50 = 0x32,
    // entry length 13 = 0x0d (2 + 5, 2 + 4).
    "32", "0d",
    //   entry key: 0x0a, length 5, A P I I D.
    "0a", "05", "41", "50", "49", "49", "44",
    //   entry value: 0x12, length 4, a p i 1.
    "12", "04", "61", "70", "69", "31",
);

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() & 1, 0);
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn golden_object() -> Object {
    let mut o = Object {
        hook_type: HookType::Pre as i32,
        hook_name: "MyPreHook".into(),
        request: Some(MiniRequestObject {
            headers: HashMap::from([("Host".to_owned(), "example.com".to_owned())]),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            method: "GET".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    o.spec.insert("APIID".into(), "api1".into());
    o
}

#[test]
fn golden_bytes() {
    let golden = unhex(GOLDEN_HEX);
    assert_eq!(golden.len(), 2 + 11 + (2 + 39) + (2 + 13));
    let o = golden_object();
    assert_eq!(
        encode(&o),
        golden,
        "encoder output differs from the hand-derived bytes"
    );
    assert_eq!(Object::decode(golden.as_slice()).unwrap(), o);
    validate_object(&golden).unwrap();
    assert_eq!(hook_type(&golden), Some(HookType::Pre as i32));
    assert_eq!(spec_value(&golden, "APIID"), Some("api1"));
    assert_eq!(spec_value(&golden, "OrgID"), None);
    // The -1 response code is the 10-byte varint right after return_overrides' key and length.
    let rc = golden.iter().position(|&b| b == 0x52).unwrap() + 2;
    assert_eq!(golden[rc], 0x08);
    assert_eq!(&golden[rc + 1..rc + 11], &unhex("ffffffffffffffffff01")[..]);
}

#[test]
fn negative_int32_is_a_ten_byte_varint() {
    let ro = ReturnOverrides {
        response_code: -1,
        ..Default::default()
    };
    let bytes = ro.encode_to_vec();
    assert_eq!(bytes.len(), 1 + 10);
    assert_eq!(bytes[0], 0x08);
    assert_eq!(&bytes[1..10], &[0xFF; 9]);
    assert_eq!(bytes[10], 0x01);
    assert_eq!(ReturnOverrides::decode(bytes.as_slice()).unwrap(), ro);
    // i32::MIN also sign-extends to ten bytes; a positive int32 does not.
    let min = ReturnOverrides {
        response_code: i32::MIN,
        ..Default::default()
    };
    assert_eq!(min.encoded_len(), 11);
    let ok = ReturnOverrides {
        response_code: 200,
        ..Default::default()
    };
    assert_eq!(ok.encode_to_vec(), [0x08, 0xC8, 0x01]);
}
