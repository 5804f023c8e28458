//! What the fuzz targets share: the bridge set up once per process, as a gateway would have it (the
//! example C driver loaded, APIs with hook chains and each kind of ID extractor), and small helpers
//! around the C exports.

use std::ffi::CString;
use std::sync::Once;

use coprocess_bridge::ffi::host::{
    CoProcessLoadApi, CoProcessLoadDriver, CoProcessMessageFree, CoProcessSetPlainErrors, Dispatch,
};
use coprocess_bridge::message::CoProcessMessage;

/// The API ids the seeds route to (`spec["APIID"]`), one per ID-extractor kind, plus a chain.
pub const APIS: &[(&str, &str)] = &[
    (
        "fz-chain",
        r#""pre": [{"name": "A"}, {"name": "B"}], "post": [{"name": "C"}], "auth_check": {"name": "Auth"}"#,
    ),
    (
        "fz-header",
        r#""auth_check": {"name": "Auth"}, "id_extractor": {"extract_from": "header",
           "extract_with": "value", "extractor_config": {"header_name": "Authorization"}}"#,
    ),
    (
        "fz-xpath",
        r#""auth_check": {"name": "Auth"}, "id_extractor": {"extract_from": "body",
           "extract_with": "xpath", "extractor_config": {"xpath_expression": "//auth/token"}}"#,
    ),
    (
        "fz-regex",
        r#""auth_check": {"name": "Auth"}, "id_extractor": {"extract_from": "body",
           "extract_with": "regex", "extractor_config": {"regex_expression": "tok-([0-9a-f]+)",
           "regex_match_index": 1}}"#,
    ),
    (
        "fz-form",
        r#""auth_check": {"name": "Auth"}, "id_extractor": {"extract_from": "form",
           "extract_with": "value", "extractor_config": {"form_param_name": "key"}}"#,
    ),
];

/// A classic API definition with `middleware` as its custom_middleware body.
pub fn definition(api_id: &str, middleware: &str) -> String {
    format!(
        r#"{{"api_id": "{api_id}", "org_id": "fz", "custom_plugin_auth_enabled": true,
        "config_data": {{"k": "v"}}, "custom_middleware": {{"driver": "c", {middleware}}}}}"#
    )
}

/// Loads the C driver as "c" and the APIs, once.
pub fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let name = CString::new("c").unwrap();
        let path = CString::new(env!("FUZZ_C_DRIVER")).unwrap();
        assert_eq!(
            CoProcessLoadDriver(name.as_ptr(), path.as_ptr(), std::ptr::null()),
            0,
            "loading the C driver"
        );
        for (id, middleware) in APIS {
            let def = CString::new(definition(id, middleware)).unwrap();
            assert_eq!(CoProcessLoadApi(def.as_ptr()), 0, "loading API {id}");
        }
        // Driver failures come back as errors rather than Tyk's answers: both paths are exercised by
        // the chain either way, and errors are the stricter check.
        CoProcessSetPlainErrors(0);
    });
}

/// Dispatches `input`; returns the output bytes (freed) or the error code.
pub fn dispatch(input: &[u8]) -> Result<Vec<u8>, i32> {
    let msg = CoProcessMessage {
        p_data: input.as_ptr() as *mut _,
        length: input.len() as i32,
    };
    let mut out = CoProcessMessage::empty();
    let rc = Dispatch(&msg, &mut out);
    if rc != 0 {
        return Err(rc);
    }
    let bytes = if out.p_data.is_null() || out.length <= 0 {
        Vec::new()
    } else {
        // SAFETY: a successful Dispatch leaves `length` malloc'd bytes at `p_data`, ours to read and
        // free.
        unsafe { std::slice::from_raw_parts(out.p_data as *const u8, out.length as usize) }.to_vec()
    };
    CoProcessMessageFree(&mut out);
    Ok(bytes)
}

/// `data` as a C string: up to its first NUL byte.
pub fn c_string(data: &[u8]) -> CString {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    CString::new(&data[..end]).expect("no NUL before end")
}

/// Loads the fixture API `api_id` again (after a fuzzed definition replaced it).
pub fn setup_api(api_id: &str) {
    if let Some((id, middleware)) = APIS.iter().find(|(id, _)| *id == api_id) {
        let def = CString::new(definition(id, middleware)).unwrap();
        assert_eq!(CoProcessLoadApi(def.as_ptr()), 0, "reloading API {id}");
    }
}
