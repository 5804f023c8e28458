//! The response a Response chain works on, kept between hooks as Tyk's gateway keeps the live
//! `http.Response` between two Response hooks (`CustomMiddlewareResponseHook.HandleResponse`):
//!
//! - a hook's Object shows the response as `BuildObject` shows it: `status_code`, `raw_body`, `body`
//!   only when the body is UTF-8 and the hook is not `raw_body_only`, `headers` with each name's first
//!   value and `multivalue_headers` with all of them;
//! - its answer is applied as `HandleResponse` applies it: no `response` is a failed hook; the headers
//!   are cleared; when the answer's `headers` map differs from the one the hook was shown,
//!   `multivalue_headers` is synchronised from it first (`syncHeadersAndMultiValueHeaders`: a changed
//!   name's first value replaced, a new name added, a removed name dropped); then every
//!   `multivalue_headers` value is added under its canonical name, the body becomes `raw_body`,
//!   `Content-Length` its length, and the status `status_code`;
//! - request, session, spec and metadata are the host's for every hook (Tyk builds them from the request
//!   and the session, which Response hooks cannot change).
//!
//! The host gets the last hook's answer with the response as the chain left it, headers and
//! multivalue headers consistent, so that whether or not the host synchronises them it ends with the
//! same response as Tyk would.

use std::collections::HashMap;

use coprocess_proto::{Header, Message, ResponseObject};

use super::edit::{each, put_bytes};
use super::go_rules::canonical_header;

use coprocess_proto::fields::object::{HOOK_NAME as OBJECT_HOOK_NAME, RESPONSE as OBJECT_RESPONSE};
use coprocess_proto::fields::response::{BODY as RESPONSE_BODY, RAW_BODY as RESPONSE_RAW_BODY};

/// The Object's `response` as a decode gives it (all its records merged); `None` without one.
fn response_of(object: &[u8]) -> Option<Result<ResponseObject, String>> {
    let mut merged: Option<Vec<u8>> = None;
    each(object, |r| {
        if r.tag == OBJECT_RESPONSE && r.wire_type == 2 {
            merged
                .get_or_insert_with(Vec::new)
                .extend_from_slice(&object[r.payload..r.end]);
        }
    });
    merged.map(|bytes| ResponseObject::decode(bytes.as_slice()).map_err(|e| e.to_string()))
}

/// `object` without its `response` and `hook_name` records.
pub fn without_response(object: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(object.len());
    each(object, |r| {
        if r.tag != OBJECT_RESPONSE && r.tag != OBJECT_HOOK_NAME {
            out.extend_from_slice(&object[r.start..r.end]);
        }
    });
    out
}

/// Appends to a hook's Object what makes its `response.body` the hook's view of the body as
/// `BuildObject` makes it: the text of a UTF-8 `raw_body`, nothing for a `raw_body_only` hook. A host
/// that sends only `body` gives the body as text: `raw_body` gets the same bytes.
pub fn show_body(object: &mut Vec<u8>, raw_body_only: bool) {
    let (mut raw, mut text): (Option<&[u8]>, &[u8]) = (None, &[]);
    let mut present = false;
    each(object, |r| {
        if r.tag != OBJECT_RESPONSE || r.wire_type != 2 {
            return;
        }
        present = true;
        let response = &object[r.payload..r.end];
        each(response, |f| match (f.tag, f.wire_type) {
            (RESPONSE_RAW_BODY, 2) => raw = Some(&response[f.payload..f.end]),
            (RESPONSE_BODY, 2) => text = &response[f.payload..f.end],
            _ => {}
        });
    });
    if !present {
        return;
    }
    let sent_raw = raw.unwrap_or(&[]);
    let raw = if sent_raw.is_empty() { text } else { sent_raw };
    let shown: &[u8] = if !raw_body_only && std::str::from_utf8(raw).is_ok() {
        raw
    } else {
        &[]
    };
    let mut fix = Vec::new();
    if raw != sent_raw {
        put_bytes(&mut fix, RESPONSE_RAW_BODY, raw);
    }
    if shown != text {
        // An empty string field replaces the text (protobuf merges a singular field by its last value).
        put_bytes(&mut fix, RESPONSE_BODY, shown);
    }
    if !fix.is_empty() {
        put_bytes(object, OBJECT_RESPONSE, &fix);
    }
}

/// `syncHeadersAndMultiValueHeaders`: names first seen in `headers` (in name order; Go's map order is
/// random), then the multivalue entries whose name `headers` still has, the first matching entry of
/// each name with its first value replaced by the map's.
fn sync(headers: &HashMap<String, String>, mut multivalue: Vec<Header>) -> Vec<Header> {
    let mut names: Vec<&String> = headers.keys().collect();
    names.sort();
    let mut synced = Vec::with_capacity(headers.len());
    for name in names {
        let value = &headers[name];
        match multivalue.iter_mut().find(|h| h.key == *name) {
            Some(h) => {
                if let Some(first) = h.values.first_mut() {
                    first.clone_from(value);
                }
            }
            None => synced.push(Header {
                key: name.clone(),
                values: vec![value.clone()],
            }),
        }
    }
    synced.extend(
        multivalue
            .into_iter()
            .filter(|h| headers.contains_key(&h.key)),
    );
    synced
}

/// The live response between the hooks of one chain run.
pub struct LiveResponse {
    status: i32,
    raw_body: Vec<u8>,
    /// `http.Header`: canonical names in the order first added, each with its values.
    headers: Vec<(String, Vec<String>)>,
    /// The `headers` map of the Object the current hook was given.
    shown: HashMap<String, String>,
}

impl LiveResponse {
    /// Starts a run: `first_input` is the Object the first hook was given.
    pub fn new(first_input: &[u8]) -> LiveResponse {
        let shown = response_of(first_input)
            .and_then(Result::ok)
            .map(|r| r.headers)
            .unwrap_or_default();
        LiveResponse {
            status: 0,
            raw_body: Vec::new(),
            headers: Vec::new(),
            shown,
        }
    }

    /// `http.Header.Add` (canonical name).
    fn add(&mut self, name: &str, value: String) {
        let name = String::from_utf8_lossy(&canonical_header(name.as_bytes())).into_owned();
        match self.headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => self.headers.push((name, vec![value])),
        }
    }

    /// Applies the answer of the hook that was shown `self.shown`, or says why it cannot be.
    pub fn apply(&mut self, output: &[u8]) -> Result<(), String> {
        let answer = match response_of(output) {
            Some(r) => r?,
            None => return Err("the Response hook returned no response object".into()),
        };
        let multivalue = if answer.headers != self.shown {
            sync(&answer.headers, answer.multivalue_headers)
        } else {
            answer.multivalue_headers
        };
        self.headers.clear();
        for h in multivalue {
            for value in h.values {
                self.add(&h.key, value);
            }
        }
        let length = vec![answer.raw_body.len().to_string()];
        match self.headers.iter_mut().find(|(n, _)| n == "Content-Length") {
            Some((_, values)) => *values = length,
            None => self.headers.push(("Content-Length".into(), length)),
        }
        self.status = answer.status_code;
        self.raw_body = answer.raw_body;
        Ok(())
    }

    /// The response as `BuildObject` shows it to a hook.
    fn view(&self, raw_body_only: bool) -> ResponseObject {
        let text = !raw_body_only;
        ResponseObject {
            status_code: self.status,
            raw_body: self.raw_body.clone(),
            body: text
                .then(|| std::str::from_utf8(&self.raw_body).ok())
                .flatten()
                .unwrap_or_default()
                .to_owned(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v[0].clone()))
                .collect(),
            multivalue_headers: self
                .headers
                .iter()
                .map(|(n, v)| Header {
                    key: n.clone(),
                    values: v.clone(),
                })
                .collect(),
        }
    }

    /// Appends the live response, as the next hook is shown it, to `object` (its Object without a
    /// response).
    pub fn show(&mut self, object: &mut Vec<u8>, raw_body_only: bool) {
        let view = self.view(raw_body_only);
        put_bytes(object, OBJECT_RESPONSE, &view.encode_to_vec());
        self.shown = view.headers;
    }

    /// The answer for the host: the last hook's `output` with the response as the chain left it.
    pub fn answer(&self, output: &[u8], raw_body_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(output.len() + self.raw_body.len());
        each(output, |r| {
            if r.tag != OBJECT_RESPONSE {
                out.extend_from_slice(&output[r.start..r.end]);
            }
        });
        put_bytes(
            &mut out,
            OBJECT_RESPONSE,
            &self.view(raw_body_only).encode_to_vec(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_proto::{HookType, Object};

    fn strings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn header(key: &str, values: &[&str]) -> Header {
        Header {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// A Response hook's Object as Tyk builds it.
    fn tyk_object() -> Object {
        Object {
            hook_type: HookType::Response as i32,
            hook_name: "first".into(),
            response: Some(ResponseObject {
                status_code: 200,
                raw_body: b"upstream".to_vec(),
                body: "upstream".into(),
                headers: strings(&[("Set-Cookie", "a=1"), ("Content-Type", "text/plain")]),
                multivalue_headers: vec![
                    header("Set-Cookie", &["a=1", "b=2"]),
                    header("Content-Type", &["text/plain"]),
                ],
            }),
            ..Default::default()
        }
    }

    fn response(bytes: &[u8]) -> ResponseObject {
        Object::decode(bytes).unwrap().response.unwrap()
    }

    fn sorted(r: &ResponseObject) -> Vec<(String, Vec<String>)> {
        let mut v: Vec<_> = r
            .multivalue_headers
            .iter()
            .map(|h| (h.key.clone(), h.values.clone()))
            .collect();
        v.sort();
        v
    }

    fn pairs(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_changed_headers_map_is_synchronised_into_the_multivalue_headers() {
        let input = tyk_object().encode_to_vec();
        let mut live = LiveResponse::new(&input);
        let mut answer = tyk_object();
        let r = answer.response.as_mut().unwrap();
        r.headers.insert("Set-Cookie".into(), "z=9".into());
        r.headers.insert("x-new".into(), "n".into());
        r.headers.remove("Content-Type");
        r.raw_body = b"changed".to_vec();
        r.status_code = 201;
        live.apply(&answer.encode_to_vec()).unwrap();
        let mut next = without_response(&input);
        live.show(&mut next, false);
        let r = response(&next);
        assert_eq!(r.status_code, 201);
        assert_eq!(
            (r.body.as_str(), r.raw_body.as_slice()),
            ("changed", &b"changed"[..])
        );
        assert_eq!(
            sorted(&r),
            pairs(&[
                ("Content-Length", &["7"]),
                ("Set-Cookie", &["z=9", "b=2"]),
                ("X-New", &["n"]),
            ]),
            "first value replaced, new name canonical, removed name gone"
        );
        assert_eq!(
            r.headers,
            strings(&[
                ("Content-Length", "7"),
                ("Set-Cookie", "z=9"),
                ("X-New", "n")
            ])
        );
    }

    #[test]
    fn an_unchanged_headers_map_leaves_the_multivalue_headers_as_answered() {
        let input = tyk_object().encode_to_vec();
        let mut live = LiveResponse::new(&input);
        let mut answer = tyk_object();
        let r = answer.response.as_mut().unwrap();
        r.multivalue_headers.push(header("set-cookie", &["c=3"]));
        r.multivalue_headers.push(header("X-Only-Multi", &["m"]));
        r.multivalue_headers
            .push(header("Content-Length", &["999"]));
        live.apply(&answer.encode_to_vec()).unwrap();
        let r = live.view(true);
        assert_eq!(
            sorted(&r),
            pairs(&[
                ("Content-Length", &["8"]),
                ("Content-Type", &["text/plain"]),
                ("Set-Cookie", &["a=1", "b=2", "c=3"]),
                ("X-Only-Multi", &["m"]),
            ])
        );
        assert_eq!(
            (r.body.as_str(), r.raw_body.as_slice()),
            ("", &b"upstream"[..])
        );
    }

    #[test]
    fn no_response_is_a_failed_hook() {
        let mut live = LiveResponse::new(&tyk_object().encode_to_vec());
        let e = live.apply(&Object::default().encode_to_vec()).unwrap_err();
        assert!(e.contains("no response"), "{e}");
    }

    #[test]
    fn the_first_hook_gets_the_body_as_its_definition_wants_it() {
        let mut o = tyk_object().encode_to_vec();
        show_body(&mut o, true);
        let r = response(&o);
        assert_eq!(
            (r.body.as_str(), r.raw_body.as_slice()),
            ("", &b"upstream"[..])
        );
        let before = o.len();
        show_body(&mut o, true);
        assert_eq!(o.len(), before, "already the hook's view: nothing appended");
        show_body(&mut o, false);
        assert_eq!(response(&o).body, "upstream");
        // Text only: raw_body gets the bytes.
        let mut only_text = tyk_object();
        only_text.response.as_mut().unwrap().raw_body.clear();
        let mut o = only_text.encode_to_vec();
        show_body(&mut o, false);
        let r = response(&o);
        assert_eq!(
            (r.body.as_str(), r.raw_body.as_slice()),
            ("upstream", &b"upstream"[..])
        );
        // Not UTF-8: no text.
        let mut binary = tyk_object();
        let r = binary.response.as_mut().unwrap();
        r.raw_body = vec![0xff];
        let mut o = binary.encode_to_vec();
        show_body(&mut o, false);
        assert_eq!(response(&o).body, "");
    }

    #[test]
    fn the_answer_carries_the_chains_response_consistently() {
        let input = tyk_object().encode_to_vec();
        let mut live = LiveResponse::new(&input);
        let mut answer = tyk_object();
        answer
            .response
            .as_mut()
            .unwrap()
            .headers
            .insert("X-A".into(), "1".into());
        let bytes = answer.encode_to_vec();
        live.apply(&bytes).unwrap();
        let host = response(&live.answer(&bytes, false));
        for h in &host.multivalue_headers {
            assert_eq!(host.headers[&h.key], h.values[0], "{h:?}");
        }
        assert_eq!(host.headers.len(), host.multivalue_headers.len());
        assert_eq!(host.headers["X-A"], "1");
    }
}
