//! Objects as protobuf canonical JSON, the text Google's `json_format.MessageToJson` prints:
//! lowerCamelCase keys, enum names, base64 for bytes, 64-bit integers as strings, fields at their
//! default value left out. Keys are sorted (as `MessageToJson(m, sort_keys=True)` prints them), so the
//! output is stable although the Object's maps are unordered. Input accepts both the JSON names and
//! the original `snake_case` field names, and 64-bit integers as numbers or strings (as Google's
//! `Parse` does). The serde impls come from the proto crate's `json` feature (pbjson).

use std::io::{IsTerminal, Read};
use std::path::Path;

use clap::ValueEnum;
use coprocess_proto::{HookType, Message, Object};
use serde_json::{Map, Value};

use crate::error::{CliError, Result};

/// Parses an Object from canonical JSON. `source` names the input in the error.
pub fn object_from_json(text: &str, source: &str) -> Result<Object> {
    if text.trim().is_empty() {
        return Err(CliError::new(format!(
            "{source} is empty: expected a coprocess.Object in JSON"
        )));
    }
    serde_json::from_str(text).map_err(|e| {
        CliError::new(format!(
            "{source}: not a valid coprocess.Object in JSON: {e}"
        ))
    })
}

/// Decodes an Object from its protobuf wire bytes. `source` names the input in the error.
pub fn object_from_binary(bytes: &[u8], source: &str) -> Result<Object> {
    Object::decode(bytes).map_err(|e| {
        CliError::new(format!(
            "{source}: not a valid serialized coprocess.Object: {e}"
        ))
    })
}

/// An Object as canonical JSON (pretty, two-space indent, sorted keys), without a trailing newline.
pub fn object_to_json(object: &Object) -> Result<String> {
    let fail =
        |e: serde_json::Error| CliError::new(format!("cannot print the Object as JSON: {e}"));
    // pbjson refuses an enum number the schema does not name; MessageToJson prints the number.
    let unknown_hook = HookType::try_from(object.hook_type).is_err();
    let mut value = if unknown_hook {
        let known = Object {
            hook_type: 0,
            ..object.clone()
        };
        let mut v = serde_json::to_value(&known).map_err(fail)?;
        v["hookType"] = Value::from(object.hook_type);
        v
    } else {
        serde_json::to_value(object).map_err(fail)?
    };
    spell_non_finite(object, &mut value);
    serde_json::to_string_pretty(&sorted(value)).map_err(fail)
}

/// serde_json turns NaN and ±infinity into `null`; canonical JSON spells them "NaN", "Infinity",
/// "-Infinity". The schema's doubles are SessionState's allowance, rate, per and
/// monitor.trigger_limits.
fn spell_non_finite(object: &Object, value: &mut Value) {
    let Some(session) = &object.session else {
        return;
    };
    let spell = |x: f64| {
        Value::from(if x.is_nan() {
            "NaN"
        } else if x > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        })
    };
    let mut doubles = vec![
        ("/session/allowance".to_owned(), session.allowance),
        ("/session/rate".to_owned(), session.rate),
        ("/session/per".to_owned(), session.per),
    ];
    if let Some(monitor) = &session.monitor {
        for (i, x) in monitor.trigger_limits.iter().enumerate() {
            doubles.push((format!("/session/monitor/triggerLimits/{i}"), *x));
        }
    }
    for (pointer, x) in doubles {
        if !x.is_finite() {
            if let Some(slot) = value.pointer_mut(&pointer) {
                *slot = spell(x);
            }
        }
    }
}

/// `value` with the keys of every object in sorted order, whatever map type serde_json was built with.
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Reads an input named on the command line: a file, or standard input for `-`.
pub fn read_input(input: &Path) -> Result<(Vec<u8>, String)> {
    if input == Path::new("-") {
        if std::io::stdin().is_terminal() {
            eprintln!("coprocess: reading from standard input (end with Ctrl-D; --help for usage)");
        }
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::new(format!("cannot read standard input: {e}")))?;
        return Ok((buf, "<stdin>".into()));
    }
    let shown = input.display().to_string();
    let bytes =
        std::fs::read(input).map_err(|e| CliError::new(format!("cannot read {shown}: {e}")))?;
    Ok((bytes, shown))
}

/// Parses an Object in either form: JSON when the first non-blank byte is `{` (no serialized Object
/// starts with that byte: it would be field 15 with the start-group wire type), else protobuf bytes.
pub fn object_from_any(bytes: &[u8], source: &str) -> Result<Object> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| CliError::new(format!("{source}: not UTF-8 text: {e}")))?;
            object_from_json(text, source)
        }
        _ => object_from_binary(bytes, source),
    }
}

/// `--hook-type`: the names Tyk's API definitions use for the hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookTypeArg {
    /// Pre: before authentication (HookType Pre).
    Pre,
    /// Post: after authentication and quotas, before the upstream (HookType Post).
    Post,
    /// Right after authentication (HookType PostKeyAuth).
    #[value(name = "post_key_auth", alias = "post-key-auth")]
    PostKeyAuth,
    /// Custom authentication, Tyk's auth_check (HookType CustomKeyCheck).
    #[value(
        name = "custom_key_check",
        alias = "custom-key-check",
        alias = "auth_check"
    )]
    CustomKeyCheck,
    /// On the upstream's response (HookType Response).
    Response,
}

impl From<HookTypeArg> for HookType {
    fn from(h: HookTypeArg) -> HookType {
        match h {
            HookTypeArg::Pre => HookType::Pre,
            HookTypeArg::Post => HookType::Post,
            HookTypeArg::PostKeyAuth => HookType::PostKeyAuth,
            HookTypeArg::CustomKeyCheck => HookType::CustomKeyCheck,
            HookTypeArg::Response => HookType::Response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coprocess_proto::{MiniRequestObject, ResponseObject, SessionState};
    use serde_json::json;

    #[test]
    fn canonical_forms() {
        let o = Object {
            hook_type: HookType::CustomKeyCheck as i32,
            request: Some(MiniRequestObject {
                raw_body: vec![0xDE, 0xAD, 0xBE, 0xEF],
                request_uri: "/x".into(),
                ..Default::default()
            }),
            session: Some(SessionState {
                last_check: 1_700_000_000,
                rate: 2.5,
                ..Default::default()
            }),
            response: Some(ResponseObject::default()),
            ..Default::default()
        };
        let v: Value = serde_json::from_str(&object_to_json(&o).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({
                "hookType": "CustomKeyCheck",
                "request": {"rawBody": "3q2+7w==", "requestUri": "/x"},
                "response": {},
                "session": {"lastCheck": "1700000000", "rate": 2.5},
            })
        );
    }

    #[test]
    fn non_finite_doubles_and_unknown_enum_numbers() {
        let o = Object {
            hook_type: 9,
            session: Some(SessionState {
                allowance: f64::NAN,
                rate: f64::INFINITY,
                per: f64::NEG_INFINITY,
                monitor: Some(coprocess_proto::Monitor {
                    trigger_limits: vec![1.5, f64::NAN],
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v: Value = serde_json::from_str(&object_to_json(&o).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({
                "hookType": 9,
                "session": {
                    "allowance": "NaN", "rate": "Infinity", "per": "-Infinity",
                    "monitor": {"triggerLimits": [1.5, "NaN"]},
                },
            })
        );
    }

    #[test]
    fn keys_are_sorted_and_defaults_omitted() {
        let o: Object = object_from_json(
            r#"{"spec": {"b": "2", "a": "1"}, "hookName": "", "hookType": "Pre"}"#,
            "t",
        )
        .unwrap();
        assert_eq!(
            object_to_json(&o).unwrap(),
            "{\n  \"hookType\": \"Pre\",\n  \"spec\": {\n    \"a\": \"1\",\n    \"b\": \"2\"\n  }\n}"
        );
        assert_eq!(object_to_json(&Object::default()).unwrap(), "{}");
    }

    #[test]
    fn accepts_proto_field_names_and_numbers_for_int64() {
        let a = object_from_json(
            r#"{"hook_type": "Post", "session": {"quota_max": 5, "last_check": "7"},
                "request": {"return_overrides": {"response_code": -1}}}"#,
            "t",
        )
        .unwrap();
        assert_eq!(a.hook_type, HookType::Post as i32);
        let s = a.session.unwrap();
        assert_eq!((s.quota_max, s.last_check), (5, 7));
        assert_eq!(
            a.request.unwrap().return_overrides.unwrap().response_code,
            -1
        );
    }

    #[test]
    fn bad_json_names_the_source() {
        let e = object_from_json(r#"{"hookType": "Sideways"}"#, "in.json").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("in.json: not a valid coprocess.Object in JSON"),
            "{e}"
        );
        let e = object_from_json(r#"{"nope": 1}"#, "in.json").unwrap_err();
        assert!(e.to_string().contains("unknown field `nope`"), "{e}");
        let e = object_from_json(" \n", "<stdin>").unwrap_err();
        assert_eq!(
            e.to_string(),
            "<stdin> is empty: expected a coprocess.Object in JSON"
        );
        let e = object_from_binary(b"\xff\xff", "in.bin").unwrap_err();
        assert!(
            e.to_string().starts_with("in.bin: not a valid serialized"),
            "{e}"
        );
    }

    #[test]
    fn any_form() {
        let o = coprocess_proto::fixtures::typical_object();
        let bin = o.encode_to_vec();
        assert_eq!(object_from_any(&bin, "b").unwrap(), o);
        let text = object_to_json(&o).unwrap();
        assert_eq!(
            object_from_any(format!("\n {text}").as_bytes(), "j").unwrap(),
            o
        );
    }
}
