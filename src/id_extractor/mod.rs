//! The ID extractor (DESIGN §7), as Tyk's gateway implements it for its rich plugins: take a value from
//! the request (a header, a form field, or the body), optionally through a regex or an XPath, hash it
//! (md5, hex) and turn it into a session id with the API's org id. `crate::chain` uses the session id to
//! look up a cached session before calling a CustomKeyCheck plugin (see [`cache`]).
//!
//! Tyk's details kept here: the regex match index counts whole matches (Go's `FindAllString`), not
//! capture groups; several form values are joined with "" (form body values first, then the query's);
//! an empty result is a failure; the session id is `org_id + md5hex` (legacy form) or, when the gateway
//! has a `hash_key_function`, base64 of `{"org":"<org>","id":"<md5hex>","h":"<function>"}`.

pub mod cache;
pub mod limits;
pub mod view;
mod xml_scan;
mod xpath;

use std::borrow::Cow;

use base64::Engine as _;
use coprocess_proto::{Message, MiniRequestObject};
use md5::{Digest, Md5};
use serde::Serialize;

use crate::api::parse::Obj;
use crate::error::{Error, Result, COPROCESS_ERR_INVALID_API};
pub use limits::ExtractLimits;
use view::RequestView;

/// Where the value comes from (`extract_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Header,
    Form,
    Body,
}

/// How the value is taken from the source (`extract_with`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Value,
    Regex,
    Xpath,
}

/// A configured, validated extractor (regex and XPath compiled once, at load).
#[derive(Debug, Clone, Serialize)]
pub struct IdExtractor {
    pub extract_from: Source,
    pub extract_with: Method,
    pub header_name: String,
    pub form_param_name: String,
    pub regex_expression: String,
    pub regex_match_index: usize,
    pub xpath_expression: String,
    #[serde(skip)]
    regex: Option<regex::Regex>,
    #[serde(skip)]
    xpath: Option<xpath::Compiled>,
}

impl PartialEq for IdExtractor {
    fn eq(&self, o: &Self) -> bool {
        (
            self.extract_from,
            self.extract_with,
            &self.header_name,
            &self.form_param_name,
            &self.regex_expression,
            self.regex_match_index,
            &self.xpath_expression,
        ) == (
            o.extract_from,
            o.extract_with,
            &o.header_name,
            &o.form_param_name,
            &o.regex_expression,
            o.regex_match_index,
            &o.xpath_expression,
        )
    }
}

/// Why extraction failed (the request is answered 400 "Authorization field missing" either way; the
/// reason goes to the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractError {
    pub reason: String,
    /// The request went over an [`ExtractLimits`] bound (worth a warning: a client sent something
    /// hostile or the limits are too tight), rather than simply lacking the value.
    pub over_limit: bool,
}

impl ExtractError {
    fn missing(reason: impl Into<String>) -> Self {
        ExtractError {
            reason: reason.into(),
            over_limit: false,
        }
    }

    fn over_limit(reason: impl Into<String>) -> Self {
        ExtractError {
            reason: reason.into(),
            over_limit: true,
        }
    }
}

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

fn invalid(message: String) -> Error {
    Error::new(
        COPROCESS_ERR_INVALID_API,
        format!("invalid API definition: {message}"),
    )
}

/// The form field name of a classic extractor config, from Tyk's key `param_name` or else
/// `form_param_name`, with the path of the key it came from.
fn form_param_name(config: Option<&Obj<'_>>, o: &Obj<'_>) -> Result<(String, String)> {
    for key in ["param_name", "form_param_name"] {
        if let Some(v) = config.map(|c| c.str(key)).transpose()?.flatten() {
            if !v.is_empty() {
                return Ok((
                    v.to_owned(),
                    o.field_path(&format!("extractor_config.{key}")),
                ));
            }
        }
    }
    Ok((String::new(), o.field_path("extractor_config.param_name")))
}

impl IdExtractor {
    /// Classic `custom_middleware.id_extractor`: `{disabled, extract_from, extract_with,
    /// extractor_config: {header_name, param_name, regex_expression, regex_match_index,
    /// xpath_expression}}` (`param_name` is the key Tyk reads, the mapstructure tag of its
    /// `FormParamName`; `form_param_name` is accepted too). Disabled or empty (both `extract_from` and
    /// `extract_with` "") means none.
    pub(crate) fn from_classic(o: &Obj<'_>) -> Result<Option<IdExtractor>> {
        if o.bool("disabled")? {
            return Ok(None);
        }
        let from = o.string("extract_from")?;
        let with = o.string("extract_with")?;
        if from.is_empty() && with.is_empty() {
            return Ok(None);
        }
        let config = o.obj("extractor_config")?;
        let get = |key: &str| -> Result<String> {
            config.as_ref().map_or(Ok(String::new()), |c| c.string(key))
        };
        let index_path = o.field_path("extractor_config.regex_match_index");
        let index = match &config {
            Some(c) => c.int("regex_match_index")?,
            None => None,
        };
        Self::build(
            (&from, &o.field_path("extract_from")),
            (&with, &o.field_path("extract_with")),
            (
                get("header_name")?,
                o.field_path("extractor_config.header_name"),
            ),
            form_param_name(config.as_ref(), o)?,
            (
                get("regex_expression")?,
                o.field_path("extractor_config.regex_expression"),
            ),
            (index, index_path),
            (
                get("xpath_expression")?,
                o.field_path("extractor_config.xpath_expression"),
            ),
        )
        .map(Some)
    }

    /// Tyk OAS `idExtractor`: `{enabled, source, with, config: {headerName, formParamName, regexp,
    /// regexpMatchIndex, xPathExp}}`.
    pub(crate) fn from_oas(o: &Obj<'_>) -> Result<Option<IdExtractor>> {
        if !o.bool("enabled")? {
            return Ok(None);
        }
        let config = o.obj("config")?;
        let get = |key: &str| -> Result<String> {
            config.as_ref().map_or(Ok(String::new()), |c| c.string(key))
        };
        let index = match &config {
            Some(c) => c.int("regexpMatchIndex")?,
            None => None,
        };
        Self::build(
            (&o.string("source")?, &o.field_path("source")),
            (&o.string("with")?, &o.field_path("with")),
            (get("headerName")?, o.field_path("config.headerName")),
            (get("formParamName")?, o.field_path("config.formParamName")),
            (get("regexp")?, o.field_path("config.regexp")),
            (index, o.field_path("config.regexpMatchIndex")),
            (get("xPathExp")?, o.field_path("config.xPathExp")),
        )
        .map(Some)
    }

    /// Validates a configuration; each argument is (value, its path in the definition).
    fn build(
        from: (&str, &str),
        with: (&str, &str),
        header_name: (String, String),
        form_param_name: (String, String),
        regex_expression: (String, String),
        regex_match_index: (Option<i64>, String),
        xpath_expression: (String, String),
    ) -> Result<IdExtractor> {
        let extract_from = match from.0 {
            "header" => Source::Header,
            "form" => Source::Form,
            "body" => Source::Body,
            other => {
                return Err(invalid(format!(
                    "{} must be one of header, form, body (not '{other}')",
                    from.1
                )))
            }
        };
        let extract_with = match with.0 {
            "value" => Method::Value,
            "regex" => Method::Regex,
            "xpath" => Method::Xpath,
            other => {
                return Err(invalid(format!(
                    "{} must be one of value, regex, xpath (not '{other}')",
                    with.1
                )))
            }
        };
        let required = |(v, path): &(String, String), why: &str| {
            if v.is_empty() {
                Err(invalid(format!("{path} is required {why}")))
            } else {
                Ok(())
            }
        };
        match extract_from {
            Source::Header => required(&header_name, "to extract from a header")?,
            Source::Form => required(&form_param_name, "to extract from a form")?,
            Source::Body => {}
        }
        let mut regex = None;
        let mut xpath = None;
        let mut index = 0;
        match extract_with {
            Method::Value => {}
            Method::Regex => {
                required(&regex_expression, "for a regex extractor")?;
                regex = Some(compile_regex(&regex_expression.0).map_err(|e| {
                    invalid(format!("{} is not a valid regex: {e}", regex_expression.1))
                })?);
                index = match regex_match_index.0 {
                    None => 0,
                    Some(i) => usize::try_from(i).map_err(|_| {
                        invalid(format!(
                            "{} must not be negative ({i})",
                            regex_match_index.1
                        ))
                    })?,
                };
            }
            Method::Xpath => {
                required(&xpath_expression, "for an xpath extractor")?;
                xpath = Some(xpath::Compiled::new(&xpath_expression.0).map_err(|e| {
                    invalid(format!(
                        "{} is not a valid XPath expression: {e}",
                        xpath_expression.1
                    ))
                })?);
            }
        }
        Ok(IdExtractor {
            extract_from,
            extract_with,
            header_name: header_name.0,
            form_param_name: form_param_name.0,
            regex_expression: regex_expression.0,
            regex_match_index: index,
            xpath_expression: xpath_expression.0,
            regex,
            xpath,
        })
    }

    /// Extracts the identifying value from a request, within `limits`.
    pub fn extract(
        &self,
        request: &MiniRequestObject,
        limits: &ExtractLimits,
    ) -> Result<String, ExtractError> {
        let object = coprocess_proto::Object {
            request: Some(request.clone()),
            ..Default::default()
        }
        .encode_to_vec();
        self.extract_from_object(&object, limits)
            .map(Cow::into_owned)
    }

    /// As `extract`, from a serialized Object (validated): every source is read straight from the
    /// bytes (see [`view`]), and the value is borrowed from them when it is a plain slice of one field.
    pub fn extract_from_object<'a>(
        &self,
        object: &'a [u8],
        limits: &ExtractLimits,
    ) -> Result<Cow<'a, str>, ExtractError> {
        let request = RequestView::of(object);
        let input = match self.extract_from {
            Source::Header => Cow::Borrowed(
                request
                    .header(&self.header_name)
                    .ok_or_else(|| self.no_header())?,
            ),
            Source::Form => Cow::Owned(
                form_value(&request, &self.form_param_name, limits)?.ok_or_else(|| {
                    ExtractError::missing(format!("no '{}' form value", self.form_param_name))
                })?,
            ),
            Source::Body => body_text(&request, limits)?,
        };
        self.apply(input, limits)
    }

    fn no_header(&self) -> ExtractError {
        ExtractError::missing(format!("no '{}' header", self.header_name))
    }

    /// Runs the value, regex or XPath step on the source's text.
    fn apply<'a>(
        &self,
        input: Cow<'a, str>,
        limits: &ExtractLimits,
    ) -> Result<Cow<'a, str>, ExtractError> {
        if input.is_empty() {
            return Err(ExtractError::missing("the extracted input is empty"));
        }
        within_limit(input.len(), "the extracted input", limits)?;
        let value = match self.extract_with {
            Method::Value => input,
            Method::Regex => {
                let re = self.regex.as_ref().expect("compiled at load");
                let found = re
                    .find_iter(&input)
                    .nth(self.regex_match_index)
                    .map(|m| m.range())
                    .ok_or_else(|| {
                        ExtractError::missing(format!(
                            "regex '{}' has no match number {}",
                            self.regex_expression, self.regex_match_index
                        ))
                    })?;
                match input {
                    Cow::Borrowed(text) => Cow::Borrowed(&text[found]),
                    Cow::Owned(text) => Cow::Owned(text[found].to_owned()),
                }
            }
            Method::Xpath => Cow::Owned(
                self.xpath
                    .as_ref()
                    .expect("compiled at load")
                    .first_string(&input, limits)
                    .map_err(|f| match f {
                        xpath::Failure::OverLimit(why) => ExtractError::over_limit(why),
                        xpath::Failure::NotFound(why) => ExtractError::missing(why),
                    })?,
            ),
        };
        if value.is_empty() {
            return Err(ExtractError::missing("the extracted value is empty"));
        }
        Ok(value)
    }
}

/// An extractor regex, its compiled size bounded (see [`limits::REGEX_SIZE_LIMIT`]).
fn compile_regex(expression: &str) -> std::result::Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(expression)
        .size_limit(limits::REGEX_SIZE_LIMIT)
        .build()
}

/// Refuses a source text longer than `max_input_bytes`, before anything parses or copies it.
fn within_limit(len: usize, what: &str, limits: &ExtractLimits) -> Result<(), ExtractError> {
    if len > limits.max_input_bytes {
        return Err(ExtractError::over_limit(format!(
            "{what} is {len} bytes, over the {} byte limit (id_extractor_limits.max_input_bytes)",
            limits.max_input_bytes
        )));
    }
    Ok(())
}

/// The body as text: `raw_body` when set (hosts send it for raw_body_only hooks), else `body`; its size
/// is checked before anything reads it.
fn body_text<'a>(
    request: &RequestView<'a>,
    limits: &ExtractLimits,
) -> Result<Cow<'a, str>, ExtractError> {
    let raw = request.raw_body();
    if raw.is_empty() {
        let body = request.body();
        within_limit(body.len(), "the body", limits)?;
        Ok(Cow::Borrowed(body))
    } else {
        within_limit(raw.len(), "the body", limits)?;
        Ok(String::from_utf8_lossy(raw))
    }
}

/// Go's `r.ParseForm(); strings.Join(r.Form[name], "")`: values from a urlencoded body (POST, PUT and
/// PATCH with that content type), then from the query string. Without a query in `request_uri` or
/// `url`, the `params` map stands in for it. `None` when no value exists. A body or query over the
/// input limit is refused before it is parsed.
fn form_value(
    request: &RequestView<'_>,
    name: &str,
    limits: &ExtractLimits,
) -> Result<Option<String>, ExtractError> {
    let mut values: Vec<String> = Vec::new();
    let urlencoded = request.header("Content-Type").is_some_and(|ct| {
        ct.trim_start()
            .get(..FORM_CONTENT_TYPE.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(FORM_CONTENT_TYPE))
    });
    let method = request.method();
    let has_form_body = ["POST", "PUT", "PATCH"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method));
    if urlencoded && has_form_body {
        let body = body_text(request, limits)?;
        values.extend(
            form_urlencoded::parse(body.as_bytes())
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned()),
        );
    }
    let query = [request.request_uri(), request.url()]
        .into_iter()
        .find_map(|u| u.split_once('?').map(|(_, q)| q));
    match query {
        Some(q) => {
            within_limit(q.len(), "the query string", limits)?;
            values.extend(
                form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned()),
            );
        }
        None => values.extend(request.param(name).map(str::to_owned)),
    }
    Ok((!values.is_empty()).then(|| values.concat()))
}

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// md5 of the value, lower-case hex (Go's `fmt.Sprintf("%x", md5.Sum(data))`).
pub fn md5_hex(value: &str) -> String {
    String::from(md5_hex_str(&md5_hex_bytes(value)))
}

fn md5_hex_bytes(value: &str) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(value.as_bytes());
    let mut hex = [0u8; 32];
    for (i, b) in digest.iter().enumerate() {
        hex[2 * i] = HEX[usize::from(b >> 4)];
        hex[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    hex
}

fn md5_hex_str(hex: &[u8; 32]) -> &str {
    std::str::from_utf8(hex).expect("hex digits are ASCII")
}

/// Hash functions Tyk knows for `hash_key_function`; any other name falls back to "murmur64", as in
/// Tyk's `storage.GenerateToken`.
const HASH_FUNCTIONS: [&str; 4] = ["murmur32", "murmur64", "murmur128", "sha256"];

/// The session id for an extracted value: Tyk's `generateToken(org_id, md5hex(value))`.
pub fn session_id(org_id: &str, value: &str, hash_key_function: Option<&str>) -> String {
    let mut id = String::new();
    push_session_id(
        &mut id,
        org_id,
        value,
        hash_key_function,
        &mut String::new(),
    );
    id
}

/// Appends [`session_id`] to `out`, using `json` as scratch space (buffers a caller reuses make a
/// cache hit allocation-free).
pub fn push_session_id(
    out: &mut String,
    org_id: &str,
    value: &str,
    hash_key_function: Option<&str>,
    json: &mut String,
) {
    let hex = md5_hex_bytes(value);
    let hex = md5_hex_str(&hex);
    let key = hex.strip_prefix(org_id).unwrap_or(hex);
    match hash_key_function.filter(|h| !h.is_empty()) {
        None => {
            out.push_str(org_id);
            out.push_str(key);
        }
        Some(h) => {
            let h = if HASH_FUNCTIONS.contains(&h) {
                h
            } else {
                "murmur64"
            };
            // Tyk formats this with %s, without JSON escaping; so do we.
            json.clear();
            for part in [
                r#"{"org":""#,
                org_id,
                r#"","id":""#,
                key,
                r#"","h":""#,
                h,
                r#""}"#,
            ] {
                json.push_str(part);
            }
            base64::engine::general_purpose::STANDARD.encode_string(json.as_bytes(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_definition;

    fn extractor(json: &str) -> IdExtractor {
        let def = format!(
            r#"{{"api_id": "a", "org_id": "org1", "enable_coprocess_auth": true,
            "custom_middleware": {{"auth_check": {{"name": "A"}}, "id_extractor": {json}}}}}"#
        );
        parse_definition(&def).unwrap().id_extractor.unwrap()
    }

    fn limits() -> ExtractLimits {
        ExtractLimits::default()
    }

    fn request() -> MiniRequestObject {
        MiniRequestObject {
            method: "GET".into(),
            url: "/x".into(),
            request_uri: "/x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn md5_and_session_ids_match_tyk() {
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            session_id("org1", "abc", None),
            "org1900150983cd24fb0d6963f7d28e17f72"
        );
        let b64 = session_id("org1", "abc", Some("murmur64"));
        let json = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"org":"org1","id":"900150983cd24fb0d6963f7d28e17f72","h":"murmur64"}"#
        );
        let unknown = session_id("o", "abc", Some("crc"));
        let json = base64::engine::general_purpose::STANDARD
            .decode(unknown)
            .unwrap();
        assert!(String::from_utf8(json)
            .unwrap()
            .ends_with(r#""h":"murmur64"}"#));
        // Tyk trims the org id off the key id before joining them.
        assert_eq!(
            session_id("9001", "abc", None),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn header_value_extractor() {
        let ex = extractor(
            r#"{"extract_from": "header", "extract_with": "value",
            "extractor_config": {"header_name": "Authorization"}}"#,
        );
        let mut r = request();
        assert!(ex.extract(&r, &limits()).is_err());
        r.headers.insert("authorization".into(), "Bearer t".into());
        assert_eq!(
            ex.extract(&r, &limits()).unwrap(),
            "Bearer t",
            "case-insensitive"
        );
        r.headers.insert("authorization".into(), "".into());
        assert!(ex.extract(&r, &limits()).is_err(), "empty is missing");
    }

    #[test]
    fn regex_index_counts_whole_matches_not_groups() {
        let ex = extractor(
            r#"{"extract_from": "header", "extract_with": "regex",
            "extractor_config": {"header_name": "X-Ids", "regex_expression": "id-(\\d+)", "regex_match_index": 1}}"#,
        );
        let mut r = request();
        r.headers.insert("X-Ids".into(), "id-1 id-22 id-333".into());
        assert_eq!(ex.extract(&r, &limits()).unwrap(), "id-22");
        r.headers.insert("X-Ids".into(), "id-1".into());
        assert!(
            ex.extract(&r, &limits()).is_err(),
            "one match (with a capture group) has no index 1"
        );
    }

    #[test]
    fn form_names_come_from_tyks_param_name_or_form_param_name() {
        for key in ["param_name", "form_param_name"] {
            let ex = extractor(&format!(
                r#"{{"extract_from": "form", "extract_with": "value",
                "extractor_config": {{"{key}": "k"}}}}"#
            ));
            assert_eq!(ex.form_param_name, "k", "{key}");
        }
        let def = r#"{"x-tyk-api-gateway": {"info": {"id": "o"}, "server": {"authentication": {
            "enabled": true, "custom": {"enabled": true, "config": {"enabled": true, "functionName": "A"},
            "idExtractor": {"enabled": true, "source": "form", "with": "value",
                            "config": {"formParamName": "f"}}}}}}}"#;
        let api = parse_definition(def).unwrap();
        assert_eq!(
            api.id_extractor.unwrap().form_param_name,
            "f",
            "beside config"
        );
    }

    #[test]
    fn form_joins_body_then_query_values() {
        let ex = extractor(
            r#"{"extract_from": "form", "extract_with": "value",
            "extractor_config": {"form_param_name": "key"}}"#,
        );
        let mut r = request();
        r.method = "POST".into();
        r.headers.insert(
            "Content-Type".into(),
            "application/x-www-form-urlencoded; charset=utf-8".into(),
        );
        r.body = "key=a&other=z&key=b%21".into();
        r.request_uri = "/x?key=c&q=1".into();
        assert_eq!(ex.extract(&r, &limits()).unwrap(), "ab!c");
        r.method = "GET".into();
        assert_eq!(
            ex.extract(&r, &limits()).unwrap(),
            "c",
            "GET bodies are not forms"
        );
        r.request_uri = "/x".into();
        r.params.insert("key".into(), "p".into());
        assert_eq!(
            ex.extract(&r, &limits()).unwrap(),
            "p",
            "params stand in for a missing query"
        );
        r.params.clear();
        assert!(ex.extract(&r, &limits()).is_err());
    }

    #[test]
    fn body_xpath_and_regex() {
        let ex = extractor(
            r#"{"extract_from": "body", "extract_with": "xpath",
            "extractor_config": {"xpath_expression": "//auth/token"}}"#,
        );
        let mut r = request();
        r.body = "<req><auth><token>t-1</token></auth><auth><token>t-2</token></auth></req>".into();
        assert_eq!(ex.extract(&r, &limits()).unwrap(), "t-1");
        r.body = "<req/>".into();
        assert!(ex.extract(&r, &limits()).is_err());
        r.body = "not xml <".into();
        assert!(ex.extract(&r, &limits()).is_err());
        let ex = extractor(
            r#"{"extract_from": "body", "extract_with": "regex",
            "extractor_config": {"regex_expression": "[0-9]+"}}"#,
        );
        r.body = String::new();
        r.raw_body = b"abc 42 7".to_vec();
        assert_eq!(
            ex.extract(&r, &limits()).unwrap(),
            "42",
            "raw_body first, index 0 by default"
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            (
                r#"{"extract_from": "form", "extract_with": "value"}"#,
                "custom_middleware.id_extractor.extractor_config.param_name is required to extract from a form",
            ),
            (
                r#"{"extract_from": "header", "extract_with": "value"}"#,
                "custom_middleware.id_extractor.extractor_config.header_name is required to extract from a header",
            ),
            (
                r#"{"extract_from": "body", "extract_with": "regex", "extractor_config": {"regex_expression": "("}}"#,
                "custom_middleware.id_extractor.extractor_config.regex_expression is not a valid regex",
            ),
            (
                r#"{"extract_from": "body", "extract_with": "xpath", "extractor_config": {"xpath_expression": "///["}}"#,
                "custom_middleware.id_extractor.extractor_config.xpath_expression is not a valid XPath expression",
            ),
            (
                r#"{"extract_from": "body", "extract_with": "jsonpath"}"#,
                "custom_middleware.id_extractor.extract_with must be one of value, regex, xpath (not 'jsonpath')",
            ),
            (
                r#"{"extract_from": "body", "extract_with": "regex", "extractor_config": {"regex_expression": "a", "regex_match_index": -1}}"#,
                "custom_middleware.id_extractor.extractor_config.regex_match_index must not be negative (-1)",
            ),
        ];
        for (json, want) in cases {
            let def = format!(
                r#"{{"api_id": "a", "enable_coprocess_auth": true,
                "custom_middleware": {{"auth_check": {{"name": "A"}}, "id_extractor": {json}}}}}"#
            );
            let msg = parse_definition(&def).unwrap_err().message;
            assert!(msg.contains(want), "{msg}\nwanted: {want}");
        }
        let disabled = r#"{"api_id": "a", "enable_coprocess_auth": true, "custom_middleware": {
            "auth_check": {"name": "A"}, "id_extractor": {"disabled": true, "extract_from": "x"}}}"#;
        assert!(parse_definition(disabled).unwrap().id_extractor.is_none());
    }
}
