//! Bounds on the work one extraction may do. The ID extractor reads attacker-controlled input (a body,
//! a form, a header) before any plugin has checked the caller, so each request's cost must be capped:
//! a request over a bound fails extraction (Tyk's 400 "Authorization field missing" to the client, the
//! real reason in the log) instead of burning CPU or stack.
//!
//! Set in the bridge config as `id_extractor_limits` (every field optional):
//! `{"max_input_bytes": 1048576, "max_xml_depth": 128, "max_xml_elements": 10000}`.

use serde::Deserialize;

/// The largest compiled form of an extractor regex (bytes of the compiled program). The regex crate
/// matches in linear time; this keeps the per-byte factor (and memory) sane. An API definition whose
/// regex needs more is refused at load.
pub const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractLimits {
    /// The largest source text (body, joined form values, header value) an extraction reads.
    pub max_input_bytes: usize,
    /// The deepest element nesting an XPath extraction accepts (checked before parsing).
    pub max_xml_depth: usize,
    /// The most elements an XPath extraction accepts (checked before parsing).
    pub max_xml_elements: usize,
}

impl Default for ExtractLimits {
    /// What a gateway would choose: 1 MiB covers any credential-bearing body (SOAP envelopes, forms);
    /// real documents nest a few dozen levels deep. Parsing dominates an XPath extraction and costs
    /// per element (70 000 small elements took seconds in a debug build), hence the element bound.
    fn default() -> Self {
        ExtractLimits {
            max_input_bytes: 1024 * 1024,
            max_xml_depth: 128,
            max_xml_elements: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_the_defaults_and_unknown_ones_are_refused() {
        let l: ExtractLimits = serde_json::from_str(r#"{"max_xml_depth": 16}"#).unwrap();
        assert_eq!(
            l,
            ExtractLimits {
                max_xml_depth: 16,
                ..ExtractLimits::default()
            }
        );
        assert!(serde_json::from_str::<ExtractLimits>(r#"{"max_depth": 1}"#).is_err());
    }
}
