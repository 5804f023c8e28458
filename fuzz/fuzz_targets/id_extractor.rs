//! The ID extractor on arbitrary input: the first byte picks an extractor (XPath, regex, form, header)
//! and a limit set (defaults, or small limits so the bound paths run often); the rest is the body,
//! header value or query. Invariants: no crash, no hang; a success is a non-empty value no longer
//! than the input allows.
#![no_main]

use std::sync::OnceLock;

use coprocess_bridge::api::parse_definition;
use coprocess_bridge::id_extractor::{ExtractLimits, IdExtractor};
use coprocess_proto::MiniRequestObject;
use libfuzzer_sys::fuzz_target;

fn extractors() -> &'static [IdExtractor] {
    static ALL: OnceLock<Vec<IdExtractor>> = OnceLock::new();
    ALL.get_or_init(|| {
        coprocess_fuzz::APIS
            .iter()
            .filter_map(|(id, middleware)| {
                parse_definition(&coprocess_fuzz::definition(id, middleware))
                    .expect("the fixture APIs parse")
                    .id_extractor
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let all = extractors();
    let extractor = &all[usize::from(selector & 0x7f) % all.len()];
    let limits = if selector & 0x80 == 0 {
        ExtractLimits::default()
    } else {
        ExtractLimits {
            max_input_bytes: 256,
            max_xml_depth: 4,
            max_xml_elements: 16,
        }
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let request = MiniRequestObject {
        method: "POST".into(),
        headers: [
            ("Authorization".to_string(), text.clone()),
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
        ]
        .into(),
        request_uri: format!("/x?{text}"),
        body: text,
        raw_body: rest.to_vec(),
        ..Default::default()
    };
    if let Ok(value) = extractor.extract(&request, &limits) {
        assert!(!value.is_empty(), "an empty value is a failure");
    }
});
