//! Property tests: `wire::validate_object` accepts exactly what `Object::decode` (prost) accepts,
//! and the routing readers (and `check_object`, which validates and reads in one walk) agree with the
//! decoded Object.
//!
//! Inputs: (a) random bytes, (b) mutated fixture encodings, (c) random valid Objects (and
//! mutations of their encodings), (d) random structurally valid wire data that prost's encoder
//! never produces (unknown fields, groups, deep group nesting around the recursion limit,
//! non-canonical varints, unpacked doubles, repeated singular fields), plus mutations of it.
//!
//! Cases per property: 2000, or `WIRE_EQ_CASES` from the environment.

use std::collections::HashMap;
use std::sync::OnceLock;

use coprocess_proto::fixtures;
use coprocess_proto::wire::{check_object, hook_type, spec_value, validate_object};
use coprocess_proto::{
    AccessDefinition, AccessSpec, BasicAuthData, Header, JwtData, Message, MiniRequestObject,
    Monitor, Object, ResponseObject, ReturnOverrides, SessionState,
};
use proptest::array::{uniform11, uniform3, uniform9};
use proptest::collection::{hash_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;

fn config() -> ProptestConfig {
    let cases = std::env::var("WIRE_EQ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The property: same verdict; on valid input the routing readers match the decoded Object.
fn check(buf: &[u8]) -> Result<bool, TestCaseError> {
    let ours = validate_object(buf);
    let prost = Object::decode(buf);
    prop_assert_eq!(
        ours.is_ok(),
        prost.is_ok(),
        "validate_object {:?} vs prost {:?} on {:02x?}",
        ours,
        prost,
        buf
    );
    // The walk that also reads the routing values: the same verdict and report, the same values.
    let routing = check_object(buf);
    prop_assert_eq!(routing.clone().map(drop), ours);
    if let (Ok(r), Ok(o)) = (routing, &prost) {
        prop_assert_eq!(r.hook_type(), o.hook_type);
        prop_assert_eq!(r.api_id(), o.spec.get("APIID").map(String::as_str));
    }
    if let Ok(o) = prost {
        prop_assert_eq!(hook_type(buf).unwrap_or(0), o.hook_type);
        for (k, v) in &o.spec {
            prop_assert_eq!(spec_value(buf, k), Some(v.as_str()));
        }
        for probe in ["APIID", "OrgID", "", "config_data"] {
            prop_assert_eq!(
                spec_value(buf, probe),
                o.spec.get(probe).map(String::as_str)
            );
        }
        return Ok(true);
    }
    // Must not panic on garbage.
    let _ = (hook_type(buf), spec_value(buf, "APIID"));
    Ok(false)
}

// --- mutations ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

/// Bytes that are likely to matter: keys of known fields, group keys, varint continuation.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x02, 0x07, 0x08, 0x0a, 0x0b, 0x0c, 0x0d, 0x10, 0x11, 0x12, 0x15, 0x1a, 0x22, 0x2a,
    0x32, 0x3a, 0x4b, 0x4c, 0x52, 0x7f, 0x80, 0xa9, 0xc3, 0xe2, 0xf0, 0xff,
];

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), proptest::sample::select(INTERESTING)]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut buf: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match *m {
            Mutation::Insert(ref i, b) => {
                let at = i.index(buf.len() + 1);
                buf.insert(at, b);
            }
            _ if buf.is_empty() => {}
            Mutation::Flip(ref i, bit) => {
                let at = i.index(buf.len());
                buf[at] ^= 1 << bit;
            }
            Mutation::Set(ref i, b) => {
                let at = i.index(buf.len());
                buf[at] = b;
            }
            Mutation::Delete(ref i) => {
                let at = i.index(buf.len());
                buf.remove(at);
            }
            Mutation::Truncate(ref i) => {
                let at = i.index(buf.len());
                buf.truncate(at);
            }
        }
    }
    buf
}

fn fixture_encodings() -> &'static [Vec<u8>] {
    static ENC: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ENC.get_or_init(|| {
        vec![
            fixtures::encode(&fixtures::small_object()),
            fixtures::encode(&fixtures::typical_object()),
            fixtures::encode(&fixtures::fully_populated_object()),
            fixtures::encode(&fixtures::large_object()),
        ]
    })
}

// --- random valid Objects ----------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_./-]{0,12}",
        1 => any::<String>(),
    ]
}

fn smap() -> impl Strategy<Value = HashMap<String, String>> {
    hash_map(text(), text(), 0..4)
}

fn svec() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..3)
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..40)
}

prop_compose! {
    fn return_overrides()(
        response_code in any::<i32>(), response_error in text(), headers in smap(),
        override_error in any::<bool>(), response_body in text(),
    ) -> ReturnOverrides {
        ReturnOverrides { response_code, response_error, headers, override_error, response_body }
    }
}

prop_compose! {
    fn request()(
        maps in uniform3(smap()), set_headers in smap(), extended_params in smap(),
        lists in [svec(), svec()], strs in uniform3(text()), request_uri in text(),
        return_overrides in option::of(return_overrides()), raw_body in bytes(),
    ) -> MiniRequestObject {
        let [headers, params, add_params] = maps;
        let [delete_headers, delete_params] = lists;
        let [body, url, method] = strs;
        MiniRequestObject {
            headers, set_headers, delete_headers, body, url, params, add_params, extended_params,
            delete_params, return_overrides, method, request_uri, scheme: "https".into(), raw_body,
        }
    }
}

prop_compose! {
    fn access_definition()(
        api_name in text(), api_id in text(), versions in svec(),
        allowed_urls in vec((text(), svec()).prop_map(|(url, methods)| AccessSpec { url, methods }), 0..3),
    ) -> AccessDefinition {
        AccessDefinition { api_name, api_id, versions, allowed_urls }
    }
}

prop_compose! {
    fn session()(
        ints in uniform11(any::<i64>()), doubles in uniform3(any::<f64>()),
        bools in uniform3(any::<bool>()), strs in uniform9(text()),
        access_rights in hash_map(text(), access_definition(), 0..3),
        maps in [smap(), smap()], lists in [svec(), svec()],
        basic in option::of((text(), text())), jwt in option::of(text()),
        monitor in option::of(vec(any::<f64>(), 0..4)),
    ) -> SessionState {
        let [last_check, expires, quota_max, quota_renews, quota_remaining, quota_renewal_rate,
             data_expires, id_extractor_deadline, session_lifetime, max_query_depth,
             post_expiry_grace_period] = ints;
        let [allowance, rate, per] = doubles;
        let [hmac_enabled, is_inactive, enable_detailed_recording] = bools;
        let [org_id, oauth_client_id, hmac_secret, apply_policy_id, alias, last_updated,
             certificate, key_id, post_expiry_action] = strs;
        let [oauth_keys, metadata] = maps;
        let [tags, apply_policies] = lists;
        SessionState {
            last_check, allowance, rate, per, expires, quota_max, quota_renews, quota_remaining,
            quota_renewal_rate, access_rights, org_id, oauth_client_id, oauth_keys,
            basic_auth_data: basic.map(|(password, hash)| BasicAuthData { password, hash }),
            jwt_data: jwt.map(|secret| JwtData { secret }),
            hmac_enabled, hmac_secret, is_inactive, apply_policy_id, data_expires,
            monitor: monitor.map(|trigger_limits| Monitor { trigger_limits }),
            enable_detailed_recording, metadata, tags, alias, last_updated, id_extractor_deadline,
            session_lifetime, apply_policies, certificate, max_query_depth, key_id,
            post_expiry_action, post_expiry_grace_period,
        }
    }
}

prop_compose! {
    fn response()(
        status_code in any::<i32>(), raw_body in bytes(), body in text(), headers in smap(),
        multivalue_headers in vec((text(), svec()).prop_map(|(key, values)| Header { key, values }), 0..3),
    ) -> ResponseObject {
        ResponseObject { status_code, raw_body, body, headers, multivalue_headers }
    }
}

fn spec() -> impl Strategy<Value = HashMap<String, String>> {
    (smap(), option::of(text()), option::of(text())).prop_map(|(mut m, api, org)| {
        if let Some(v) = api {
            m.insert("APIID".into(), v);
        }
        if let Some(v) = org {
            m.insert("OrgID".into(), v);
        }
        m
    })
}

prop_compose! {
    fn object()(
        hook_type in prop_oneof![0i32..6, any::<i32>()], hook_name in text(),
        request in option::of(request()), session in option::of(session()),
        metadata in smap(), spec in spec(), response in option::of(response()),
    ) -> Object {
        Object { hook_type, hook_name, request, session, metadata, spec, response }
    }
}

// --- random structurally valid wire data (beyond what the encoder writes) ----------------------

/// Wire-level field shapes, mirroring the schema independently of `wire.rs`.
#[derive(Clone, Copy)]
enum T {
    V,
    D,
    Rd,
    S,
    B,
    M(&'static [T]),
    /// A map field: length-delimited; the generator sometimes writes another wire type (refused).
    Mp(&'static [T]),
}

const SMAP: &[T] = &[T::S, T::S];
const ACCESS_SPEC: &[T] = &[T::S, T::S];
const ACCESS_DEF: &[T] = &[T::S, T::S, T::S, T::M(ACCESS_SPEC)];
const AMAP: &[T] = &[T::S, T::M(ACCESS_DEF)];
const RETURN_OVERRIDES: &[T] = &[T::V, T::S, T::Mp(SMAP), T::V, T::S];
const REQUEST: &[T] = &[
    T::Mp(SMAP),
    T::Mp(SMAP),
    T::S,
    T::S,
    T::S,
    T::Mp(SMAP),
    T::Mp(SMAP),
    T::Mp(SMAP),
    T::S,
    T::M(RETURN_OVERRIDES),
    T::S,
    T::S,
    T::S,
    T::B,
];
const HEADER: &[T] = &[T::S, T::S];
const RESPONSE: &[T] = &[T::V, T::B, T::S, T::Mp(SMAP), T::M(HEADER)];
const SESSION: &[T] = &[
    T::V,
    T::D,
    T::D,
    T::D,
    T::V,
    T::V,
    T::V,
    T::V,
    T::V,
    T::Mp(AMAP),
    T::S,
    T::S,
    T::Mp(SMAP),
    T::M(&[T::S, T::S]),
    T::M(&[T::S]),
    T::V,
    T::S,
    T::V,
    T::S,
    T::V,
    T::M(&[T::Rd]),
    T::V,
    T::Mp(SMAP),
    T::S,
    T::S,
    T::S,
    T::V,
    T::V,
    T::S,
    T::S,
    T::V,
    T::S,
    T::S,
    T::V,
];
const OBJECT: &[T] = &[
    T::V,
    T::S,
    T::M(REQUEST),
    T::M(SESSION),
    T::Mp(SMAP),
    T::Mp(SMAP),
    T::M(RESPONSE),
];

/// SplitMix64: a tiny deterministic generator driven by a proptest-chosen seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// A varint, sometimes non-canonically padded with redundant continuation bytes (still <= 10).
fn varint(r: &mut Rng, out: &mut Vec<u8>, x: u64) {
    let mut bytes = Vec::new();
    put_varint(&mut bytes, x);
    if bytes.len() < 10 && r.chance(10) {
        let pad = 1 + r.below(10 - bytes.len() as u64) as usize;
        let last = bytes.len() - 1;
        bytes[last] |= 0x80;
        bytes.extend(std::iter::repeat_n(0x80, pad - 1));
        bytes.push(0x00);
    }
    out.extend_from_slice(&bytes);
}

fn key(r: &mut Rng, out: &mut Vec<u8>, tag: u32, wt: u8) {
    varint(r, out, (u64::from(tag) << 3) | u64::from(wt));
}

fn ld(r: &mut Rng, out: &mut Vec<u8>, tag: u32, payload: &[u8]) {
    key(r, out, tag, 2);
    varint(r, out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn random_value(r: &mut Rng) -> u64 {
    match r.below(4) {
        0 => r.below(128),
        1 => r.below(1 << 20),
        2 => u64::MAX - r.below(3),
        _ => r.next(),
    }
}

fn random_utf8(r: &mut Rng) -> Vec<u8> {
    const PIECES: &[&str] = &["a", "Host", "é", "€", "😀", " ", "api1", "APIID", "\0"];
    let n = r.below(6) as usize;
    (0..n)
        .flat_map(|_| PIECES[r.below(PIECES.len() as u64) as usize].bytes())
        .collect()
}

fn random_bytes(r: &mut Rng) -> Vec<u8> {
    let n = r.below(12) as usize;
    (0..n).map(|_| r.next() as u8).collect()
}

/// An unknown field with number `tag`, possibly a group nested up to `depth` levels.
fn unknown_field(r: &mut Rng, out: &mut Vec<u8>, tag: u32, depth: u32) {
    match r.below(6) {
        0 => {
            key(r, out, tag, 0);
            let v = random_value(r);
            varint(r, out, v);
        }
        1 => {
            key(r, out, tag, 1);
            out.extend_from_slice(&r.next().to_le_bytes());
        }
        2 => {
            let payload = random_bytes(r);
            ld(r, out, tag, &payload);
        }
        3 => {
            key(r, out, tag, 5);
            out.extend_from_slice(&(r.next() as u32).to_le_bytes());
        }
        _ if depth > 0 => {
            key(r, out, tag, 3);
            for _ in 0..r.below(3) {
                let inner = 1 + r.below(40) as u32;
                unknown_field(r, out, inner, depth - 1);
            }
            key(r, out, tag, 4);
        }
        _ => {
            key(r, out, tag, 0);
            out.push(0);
        }
    }
}

/// `n` nested unknown groups, optionally holding a varint: probes the recursion limit.
fn deep_groups(r: &mut Rng, out: &mut Vec<u8>, n: usize) {
    let tag = 100 + r.below(50) as u32;
    let inner = r.chance(50);
    for _ in 0..n {
        key(r, out, tag, 3);
    }
    if inner {
        key(r, out, tag + 1, 0);
        out.push(1);
    }
    for _ in 0..n {
        key(r, out, tag, 4);
    }
}

fn message(r: &mut Rng, schema: &[T], depth: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let fields = r.below(7);
    for _ in 0..fields {
        if r.chance(15) {
            let tag = match r.below(3) {
                0 => schema.len() as u32 + 1 + r.below(5) as u32,
                1 => 16 + r.below(2000) as u32,
                _ => (1 << 29) - 1 - r.below(3) as u32,
            };
            unknown_field(r, &mut out, tag, 3);
            continue;
        }
        if r.chance(2) {
            let n = 90 + r.below(13) as usize;
            deep_groups(r, &mut out, n);
            continue;
        }
        let i = r.below(schema.len() as u64) as usize;
        let tag = i as u32 + 1;
        match schema[i] {
            T::V => {
                key(r, &mut out, tag, 0);
                let v = random_value(r);
                varint(r, &mut out, v);
            }
            T::D => {
                key(r, &mut out, tag, 1);
                out.extend_from_slice(&r.next().to_le_bytes());
            }
            T::Rd => {
                if r.chance(50) {
                    key(r, &mut out, tag, 1);
                    out.extend_from_slice(&r.next().to_le_bytes());
                } else {
                    let n = r.below(3) as usize;
                    let payload: Vec<u8> = (0..n).flat_map(|_| r.next().to_le_bytes()).collect();
                    ld(r, &mut out, tag, &payload);
                }
            }
            T::S => {
                let s = random_utf8(r);
                ld(r, &mut out, tag, &s);
            }
            T::B => {
                let b = random_bytes(r);
                ld(r, &mut out, tag, &b);
            }
            T::M(inner) => {
                let payload = if depth < 5 {
                    message(r, inner, depth + 1)
                } else {
                    Vec::new()
                };
                ld(r, &mut out, tag, &payload);
            }
            T::Mp(entry) => {
                let payload = message(r, entry, depth + 1);
                let wt = if r.chance(10) {
                    [0, 1, 3, 4, 5][r.below(5) as usize]
                } else {
                    2
                };
                key(r, &mut out, tag, wt);
                varint(r, &mut out, payload.len() as u64);
                out.extend_from_slice(&payload);
            }
        }
    }
    out
}

fn raw_object(seed: u64) -> Vec<u8> {
    message(&mut Rng(seed), OBJECT, 0)
}

// --- properties --------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_random_bytes(buf in vec(byte(), 0..96)) {
        check(&buf)?;
    }

    #[test]
    fn a_random_bytes_behind_a_valid_prefix(
        fixture in 0usize..3, cut in any::<Index>(), tail in vec(byte(), 0..32),
    ) {
        let mut buf = fixture_encodings()[fixture].clone();
        buf.truncate(cut.index(buf.len() + 1));
        buf.extend_from_slice(&tail);
        check(&buf)?;
    }

    #[test]
    fn b_mutated_fixtures(
        fixture in prop_oneof![10 => 0usize..3, 1 => Just(3usize)],
        mutations in vec(mutation(), 1..4),
    ) {
        let buf = mutate(fixture_encodings()[fixture].clone(), &mutations);
        check(&buf)?;
    }

    #[test]
    fn c_random_valid_objects(o in object()) {
        let buf = o.encode_to_vec();
        prop_assert!(validate_object(&buf).is_ok(), "{:?}", validate_object(&buf));
        prop_assert!(check(&buf)?);
        prop_assert_eq!(hook_type(&buf).unwrap_or(0), o.hook_type);
        for (k, v) in &o.spec {
            prop_assert_eq!(spec_value(&buf, k), Some(v.as_str()));
        }
    }

    #[test]
    fn c_mutated_random_objects(o in object(), mutations in vec(mutation(), 1..4)) {
        let buf = mutate(o.encode_to_vec(), &mutations);
        check(&buf)?;
    }

    #[test]
    fn d_structurally_valid_wire(seed in any::<u64>()) {
        let buf = raw_object(seed);
        check(&buf)?;
    }

    #[test]
    fn d_mutated_structurally_valid_wire(seed in any::<u64>(), mutations in vec(mutation(), 1..3)) {
        let buf = mutate(raw_object(seed), &mutations);
        check(&buf)?;
    }
}

/// The raw generator mostly produces input prost accepts (otherwise (d) would only test errors).
#[test]
fn raw_generator_is_mostly_valid() {
    let total = 500u64;
    let ok = (0..total)
        .filter(|&seed| Object::decode(raw_object(seed).as_slice()).is_ok())
        .count() as u64;
    assert!(
        ok * 100 >= total * 60,
        "only {ok}/{total} raw objects decode"
    );
    assert!(
        ok < total,
        "the generator should also probe the recursion limit"
    );
}
