//! The answer a hook asks for through `return_overrides`, as Tyk's coprocess middleware writes it.

use bytes::Bytes;
use coprocess_proto::ReturnOverrides;

/// A response decided by a hook instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideAnswer {
    pub status: u16,
    /// The override's headers, sorted by name.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The answer for `return_overrides` with `response_code > 0` (0 and below are Tyk's "no
/// override": `None`). `response_error`, when set, stands for `response_body`; a code >= 400 without
/// `override_error` is an auth failure, answered with Tyk's JSON error body (the text, or "Key not
/// authorised"); any other code answers with the body as it is. A code outside 100..=999 is 500.
pub fn override_answer(ro: &ReturnOverrides) -> Option<OverrideAnswer> {
    if ro.response_code <= 0 {
        return None;
    }
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
        return Some(OverrideAnswer {
            status,
            headers,
            body: Bytes::from(json.into_bytes()),
        });
    }
    Some(OverrideAnswer {
        status,
        headers,
        body: Bytes::from(text.clone().into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ro: ReturnOverrides) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let a = override_answer(&ro).expect("an answer");
        (a.status, a.headers, a.body.to_vec())
    }

    #[test]
    fn overrides_answer_like_tyk() {
        let (s, h, b) = answer(ReturnOverrides {
            response_code: 403,
            response_error: "Key not authorised".into(),
            ..Default::default()
        });
        assert_eq!(s, 403);
        assert_eq!(b, br#"{"error":"Key not authorised"}"#);
        assert_eq!(
            h,
            [("Content-Type".to_string(), "application/json".to_string())]
        );
        let (s, _, b) = answer(ReturnOverrides {
            response_code: 200,
            response_body: "ok".into(),
            ..Default::default()
        });
        assert_eq!((s, &b[..]), (200, &b"ok"[..]));
        let (s, h, b) = answer(ReturnOverrides {
            response_code: 401,
            response_body: "<html>".into(),
            headers: [("Content-Type".to_string(), "text/html".to_string())].into(),
            ..Default::default()
        });
        assert_eq!((s, &b[..]), (401, &br#"{"error":"<html>"}"#[..]));
        assert_eq!(h[0].1, "application/json");
        let (_, _, b) = answer(ReturnOverrides {
            response_code: 403,
            ..Default::default()
        });
        assert_eq!(b, br#"{"error":"Key not authorised"}"#);
        let (s, _, b) = answer(ReturnOverrides {
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
        for code in [0, -1] {
            let ro = ReturnOverrides {
                response_code: code,
                ..Default::default()
            };
            assert_eq!(override_answer(&ro), None, "{code} is no override");
        }
    }
}
