//! The upstream's response while Response hooks run, and how a Response hook's answer edits it.

use bytes::Bytes;
use coprocess_proto::ResponseObject;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// The upstream's response.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl UpstreamResponse {
    /// Applies a Response hook's output: status (when > 0), headers (multivalue_headers as returned
    /// when the hook changed them, then any `headers` entry the hook changed or added), and the body
    /// when the hook changed raw_body, or else body. `sent` is the ResponseObject the hook was given.
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
