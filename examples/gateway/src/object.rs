//! Between HTTP and `coprocess.Object`: the request as the gateway holds it while hooks run, the
//! Objects built from it (as Tyk's gateway builds them), and how a hook's output is applied back.

use std::collections::HashMap;

use bytes::Bytes;
use coprocess_proto::{
    Header, HookType, MiniRequestObject, Object, ResponseObject, ReturnOverrides, SessionState,
};
use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;

/// Go's canonical MIME header name ("content-type" -> "Content-Type"): Tyk hands plugins headers
/// under these names, and plugins look them up that way.
pub fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
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

/// The first value of each header, under canonical names.
fn first_values(headers: &HeaderMap) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for name in headers.keys() {
        if let Some(v) = headers.get(name) {
            map.insert(
                canonical(name.as_str()),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            );
        }
    }
    map
}

/// The request while it passes through the hooks.
#[derive(Debug, Clone)]
pub struct Working {
    pub method: String,
    pub path: String,
    /// Query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub host: String,
    pub request_uri: String,
}

impl Working {
    pub fn new(
        method: &str,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
        host: &str,
    ) -> Self {
        let (path, query) = split_query(path_and_query);
        Working {
            method: method.to_owned(),
            path,
            query,
            headers,
            body,
            host: host.to_owned(),
            request_uri: path_and_query.to_owned(),
        }
    }

    /// Path and query as they stand now.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&self.query)
                .finish();
            format!("{}?{q}", self.path)
        }
    }

    /// The MiniRequestObject of a hook: first value of each header plus Host, params (first value of
    /// each), raw_body always, body unless every hook of the phase is raw_body_only,
    /// return_overrides.response_code = -1 (Tyk's "no override").
    pub fn mini_request(&self, with_body_text: bool) -> MiniRequestObject {
        let mut headers = first_values(&self.headers);
        headers.insert("Host".into(), self.host.clone());
        let mut params = HashMap::new();
        for (k, v) in &self.query {
            params.entry(k.clone()).or_insert_with(|| v.clone());
        }
        MiniRequestObject {
            headers,
            body: if with_body_text {
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
            request_uri: self.request_uri.clone(),
            scheme: "http".into(),
            ..Default::default()
        }
    }

    /// Applies a hook's request changes (Tyk's ObjectPostProcess): delete_headers, set_headers,
    /// delete_params, add_params, url, method, and the body when the hook changed it.
    pub fn apply(&mut self, sent: &MiniRequestObject, got: &MiniRequestObject) {
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

fn split_query(path_and_query: &str) -> (String, Vec<(String, String)>) {
    match path_and_query.split_once('?') {
        Some((p, q)) => (
            p.to_owned(),
            form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
        ),
        None => (path_and_query.to_owned(), Vec::new()),
    }
}

/// What the Object of one phase carries besides the request.
pub struct Context<'a> {
    pub api_id: &'a str,
    pub org_id: &'a str,
    pub session: Option<&'a SessionState>,
    pub metadata: &'a HashMap<String, String>,
}

/// An Object for `hook_type` with an empty hook_name (the bridge runs the API's chain).
pub fn object(hook_type: HookType, request: MiniRequestObject, ctx: &Context<'_>) -> Object {
    let spec = [
        ("APIID", ctx.api_id),
        ("OrgID", ctx.org_id),
        ("bundle_hash", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Object {
        hook_type: hook_type as i32,
        hook_name: String::new(),
        request: Some(request),
        session: ctx.session.cloned(),
        metadata: ctx.metadata.clone(),
        spec,
        response: None,
    }
}

/// The upstream's response while response hooks run.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl UpstreamResponse {
    /// The ResponseObject of a Response hook: headers (first values), multivalue_headers (all),
    /// raw_body, and body unless the phase is raw_body_only.
    pub fn to_object(&self, with_body_text: bool) -> ResponseObject {
        let mut multivalue: Vec<Header> = Vec::new();
        for name in self.headers.keys() {
            multivalue.push(Header {
                key: canonical(name.as_str()),
                values: self
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect(),
            });
        }
        ResponseObject {
            status_code: i32::from(self.status),
            raw_body: self.body.to_vec(),
            body: if with_body_text {
                String::from_utf8_lossy(&self.body).into_owned()
            } else {
                String::new()
            },
            headers: first_values(&self.headers),
            multivalue_headers: multivalue,
        }
    }

    /// Applies a Response hook's output: status, headers (multivalue_headers as returned, then any
    /// `headers` entry the hook changed or added), and the body when the hook changed it.
    pub fn apply(&mut self, sent: &ResponseObject, got: &ResponseObject) {
        if got.status_code > 0 {
            self.status = u16::try_from(got.status_code).unwrap_or(self.status);
        }
        if got.multivalue_headers != sent.multivalue_headers {
            let mut headers = HeaderMap::new();
            for h in &got.multivalue_headers {
                if let Ok(n) = HeaderName::from_bytes(h.key.as_bytes()) {
                    for v in &h.values {
                        if let Ok(v) = HeaderValue::from_str(v) {
                            headers.append(n.clone(), v);
                        }
                    }
                }
            }
            self.headers = headers;
        }
        for (k, v) in &got.headers {
            if sent.headers.get(k) != Some(v) {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    self.headers.insert(n, v);
                }
            }
        }
        if got.raw_body != sent.raw_body {
            self.body = Bytes::from(got.raw_body.clone());
        } else if got.body != sent.body {
            self.body = Bytes::from(got.body.clone().into_bytes());
        }
    }
}

/// The answer a hook asked for through return_overrides (response_code > 0), as Tyk's coprocess
/// middleware gives it: `response_error`, when set, stands for `response_body`; a code >= 400 without
/// `override_error` is an auth failure, answered with Tyk's JSON error body (the text, or "Key not
/// authorised"); any other code answers with the body as it is. Returns status, the override's
/// headers and the body.
pub fn override_answer(ro: &ReturnOverrides) -> (u16, Vec<(String, String)>, Bytes) {
    let status = u16::try_from(ro.response_code)
        .ok()
        .filter(|s| (100..=999).contains(s))
        .unwrap_or(500);
    let mut headers: Vec<(String, String)> = ro
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    headers.sort();
    let text = if ro.response_error.is_empty() {
        &ro.response_body
    } else {
        &ro.response_error
    };
    if status >= 400 && !ro.override_error {
        let message = if text.is_empty() {
            "Key not authorised"
        } else {
            text
        };
        let json = serde_json::json!({ "error": message }).to_string();
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        headers.push(("Content-Type".into(), "application/json".into()));
        return (status, headers, Bytes::from(json.into_bytes()));
    }
    (status, headers, Bytes::from(text.clone().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn working() -> Working {
        let mut h = HeaderMap::new();
        h.insert("x-one", HeaderValue::from_static("1"));
        h.append("accept", HeaderValue::from_static("a"));
        h.append("accept", HeaderValue::from_static("b"));
        Working::new(
            "POST",
            "/p?a=1&a=2&b=3",
            h,
            Bytes::from_static(b"hi"),
            "example:80",
        )
    }

    #[test]
    fn requests_become_objects_as_tyk_builds_them() {
        let r = working().mini_request(true);
        assert_eq!(r.headers["X-One"], "1");
        assert_eq!(r.headers["Accept"], "a", "first value");
        assert_eq!(r.headers["Host"], "example:80");
        assert_eq!(r.params["a"], "1");
        assert_eq!((r.body.as_str(), r.raw_body.as_slice()), ("hi", &b"hi"[..]));
        assert_eq!(r.url, "/p?a=1&a=2&b=3");
        assert_eq!(r.return_overrides.unwrap().response_code, -1);
        assert_eq!(working().mini_request(false).body, "");
        assert_eq!(canonical("x-api-KEY"), "X-Api-Key");
    }

    #[test]
    fn hook_changes_are_applied() {
        let mut w = working();
        let sent = w.mini_request(true);
        let mut got = sent.clone();
        got.set_headers.insert("X-New".into(), "n".into());
        got.delete_headers.push("X-One".into());
        got.add_params.insert("c".into(), "4".into());
        got.delete_params.push("b".into());
        got.method = "PUT".into();
        got.url = "/q".into();
        got.raw_body = b"new".to_vec();
        w.apply(&sent, &got);
        assert_eq!(w.headers["x-new"], "n");
        assert!(w.headers.get("x-one").is_none());
        assert_eq!(w.path_and_query(), "/q?a=1&a=2&c=4");
        assert_eq!(w.method, "PUT");
        assert_eq!(&w.body[..], b"new");
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
        let sent = r.to_object(true);
        let mut got = sent.clone();
        got.status_code = 200;
        got.headers
            .insert("Content-Type".into(), "application/json".into());
        got.multivalue_headers.push(Header {
            key: "X-Multi".into(),
            values: vec!["1".into(), "2".into()],
        });
        got.body = "{}".into();
        r.apply(&sent, &got);
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers.get_all("x-multi").iter().count(), 2);
        assert_eq!(r.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(&r.body[..], b"{}");
    }

    #[test]
    fn overrides_answer_like_tyk() {
        let (s, h, b) = override_answer(&ReturnOverrides {
            response_code: 403,
            response_error: "Key not authorised".into(),
            ..Default::default()
        });
        assert_eq!(s, 403);
        assert_eq!(&b[..], br#"{"error":"Key not authorised"}"#);
        assert_eq!(
            h,
            [("Content-Type".to_string(), "application/json".to_string())]
        );
        let (s, _, b) = override_answer(&ReturnOverrides {
            response_code: 200,
            response_body: "ok".into(),
            ..Default::default()
        });
        assert_eq!((s, &b[..]), (200, &b"ok"[..]));
        let (s, h, b) = override_answer(&ReturnOverrides {
            response_code: 401,
            response_body: "<html>".into(),
            headers: [("Content-Type".to_string(), "text/html".to_string())].into(),
            ..Default::default()
        });
        assert_eq!((s, &b[..]), (401, &br#"{"error":"<html>"}"#[..]));
        assert_eq!(h[0].1, "application/json");
        let (_, _, b) = override_answer(&ReturnOverrides {
            response_code: 403,
            ..Default::default()
        });
        assert_eq!(&b[..], br#"{"error":"Key not authorised"}"#);
        let (s, _, b) = override_answer(&ReturnOverrides {
            response_code: 418,
            response_body: "teapot".into(),
            override_error: true,
            ..Default::default()
        });
        assert_eq!(
            (s, &b[..]),
            (418, &b"teapot"[..]),
            "override_error: as it is"
        );
    }
}
