//! `input ‖ patch` must decode to exactly the Object a full decode-modify-encode produces. Each patch
//! operation is applied here a second way, by editing the decoded struct, and the two are compared.

use coprocess_driver::proto::{
    fixtures, HookType, MiniRequestObject, Object, ResponseObject, ReturnOverrides, SessionState,
};
use coprocess_driver::{Message, ObjectPatch};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    SetHeader(String, String),
    DeleteHeader(String),
    AddParam(String, String),
    DeleteParam(String),
    SetUrl(String),
    SetMethod(String),
    SetBody(String),
    SetRawBody(Vec<u8>),
    ReturnOverride(i32, String),
    ReturnError(i32, String),
    ReturnHeader(String, String),
    OverrideError(bool),
    Metadata(String, String),
    Session(f64, f64, i64, String, String),
    ResponseStatus(i32),
    ResponseHeader(String, String),
    ResponseBody(Vec<u8>),
}

fn patch_of(ops: &[Op]) -> ObjectPatch {
    ops.iter()
        .fold(ObjectPatch::new(), |p, op| match op.clone() {
            Op::SetHeader(k, v) => p.set_header(&k, &v),
            Op::DeleteHeader(k) => p.delete_header(&k),
            Op::AddParam(k, v) => p.add_param(&k, &v),
            Op::DeleteParam(k) => p.delete_param(&k),
            Op::SetUrl(u) => p.set_url(&u),
            Op::SetMethod(m) => p.set_method(&m),
            Op::SetBody(b) => p.set_body(&b),
            Op::SetRawBody(b) => p.set_raw_body(&b),
            Op::ReturnOverride(c, b) => p.return_override(c, &b),
            Op::ReturnError(c, e) => p.return_error(c, &e),
            Op::ReturnHeader(k, v) => p.return_header(&k, &v),
            Op::OverrideError(on) => p.override_error(on),
            Op::Metadata(k, v) => p.metadata(&k, &v),
            Op::Session(rate, per, deadline, k, v) => {
                let mut s = SessionState {
                    rate,
                    per,
                    id_extractor_deadline: deadline,
                    ..Default::default()
                };
                s.metadata.insert(k, v);
                p.session(&s)
            }
            Op::ResponseStatus(c) => p.response_status(c),
            Op::ResponseHeader(k, v) => p.response_header(&k, &v),
            Op::ResponseBody(b) => p.response_body(&b),
        })
}

/// The same edits, made on the decoded Object.
fn apply(o: &mut Object, ops: &[Op]) {
    for op in ops.iter().cloned() {
        let req = || MiniRequestObject::default();
        match op {
            Op::SetHeader(k, v) => {
                o.request.get_or_insert_with(req).set_headers.insert(k, v);
            }
            Op::DeleteHeader(k) => o.request.get_or_insert_with(req).delete_headers.push(k),
            Op::AddParam(k, v) => {
                o.request.get_or_insert_with(req).add_params.insert(k, v);
            }
            Op::DeleteParam(k) => o.request.get_or_insert_with(req).delete_params.push(k),
            Op::SetUrl(u) => o.request.get_or_insert_with(req).url = u,
            Op::SetMethod(m) => o.request.get_or_insert_with(req).method = m,
            Op::SetBody(b) => {
                let r = o.request.get_or_insert_with(req);
                r.raw_body = b.clone().into_bytes();
                r.body = b;
            }
            Op::SetRawBody(b) => o.request.get_or_insert_with(req).raw_body = b,
            Op::ReturnOverride(c, b) => {
                let ro = overrides(o);
                ro.response_code = c;
                ro.response_body = b;
            }
            Op::ReturnError(c, e) => {
                let ro = overrides(o);
                ro.response_code = c;
                ro.response_error = e;
            }
            Op::ReturnHeader(k, v) => {
                overrides(o).headers.insert(k, v);
            }
            Op::OverrideError(on) => overrides(o).override_error = on,
            Op::Metadata(k, v) => {
                o.metadata.insert(k, v);
            }
            Op::Session(rate, per, deadline, k, v) => {
                let s = o.session.get_or_insert_with(Default::default);
                // proto3 merge: only non-default scalars of the patch replace the input's.
                if rate != 0.0 {
                    s.rate = rate;
                }
                if per != 0.0 {
                    s.per = per;
                }
                if deadline != 0 {
                    s.id_extractor_deadline = deadline;
                }
                s.metadata.insert(k, v);
            }
            Op::ResponseStatus(c) => response(o).status_code = c,
            Op::ResponseHeader(k, v) => {
                response(o).headers.insert(k, v);
            }
            Op::ResponseBody(b) => {
                let r = response(o);
                r.body = String::from_utf8(b.clone()).unwrap_or_default();
                r.raw_body = b;
            }
        }
    }
}

fn overrides(o: &mut Object) -> &mut ReturnOverrides {
    o.request
        .get_or_insert_with(Default::default)
        .return_overrides
        .get_or_insert_with(Default::default)
}

fn response(o: &mut Object) -> &mut ResponseObject {
    o.response.get_or_insert_with(Default::default)
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _\\-é☃]{0,12}"
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (text(), text()).prop_map(|(k, v)| Op::SetHeader(k, v)),
        text().prop_map(Op::DeleteHeader),
        (text(), text()).prop_map(|(k, v)| Op::AddParam(k, v)),
        text().prop_map(Op::DeleteParam),
        text().prop_map(Op::SetUrl),
        text().prop_map(Op::SetMethod),
        text().prop_map(Op::SetBody),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::SetRawBody),
        (any::<i32>(), text()).prop_map(|(c, b)| Op::ReturnOverride(c, b)),
        (any::<i32>(), text()).prop_map(|(c, e)| Op::ReturnError(c, e)),
        (text(), text()).prop_map(|(k, v)| Op::ReturnHeader(k, v)),
        any::<bool>().prop_map(Op::OverrideError),
        (text(), text()).prop_map(|(k, v)| Op::Metadata(k, v)),
        (any::<f64>(), any::<f64>(), any::<i64>(), text(), text())
            .prop_filter("NaN never compares equal", |(r, p, ..)| !r.is_nan()
                && !p.is_nan())
            .prop_map(|(r, p, d, k, v)| Op::Session(r, p, d, k, v)),
        any::<i32>().prop_map(Op::ResponseStatus),
        (text(), text()).prop_map(|(k, v)| Op::ResponseHeader(k, v)),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::ResponseBody),
    ]
}

fn base() -> impl Strategy<Value = Object> {
    prop_oneof![
        Just(Object::default()),
        Just(fixtures::small_object()),
        Just(fixtures::typical_object()),
        Just(fixtures::fully_populated_object()),
        Just(Object {
            hook_type: HookType::Response as i32,
            ..Default::default()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn patched_bytes_decode_to_the_re_encoded_object(object in base(), ops in proptest::collection::vec(op(), 0..8)) {
        let input = object.encode_to_vec();
        let mut patched = input.clone();
        patched.extend_from_slice(patch_of(&ops).as_bytes());

        let mut expected = object.clone();
        apply(&mut expected, &ops);
        let re_encoded = Object::decode(expected.encode_to_vec().as_slice()).unwrap();

        let decoded = Object::decode(patched.as_slice()).expect("patched bytes decode");
        prop_assert_eq!(&decoded, &expected);
        prop_assert_eq!(&decoded, &re_encoded);
        prop_assert!(coprocess_driver::proto::wire::validate_object(&patched).is_ok());
    }
}

#[test]
fn a_negative_return_code_survives_a_patch() {
    let input = fixtures::small_object().encode_to_vec();
    let mut patched = input.clone();
    patched.extend_from_slice(ObjectPatch::new().return_override(-1, "").as_bytes());
    let o = Object::decode(patched.as_slice()).unwrap();
    assert_eq!(
        o.request.unwrap().return_overrides.unwrap().response_code,
        -1
    );
}
