//! CoProcessLoadApi with arbitrary text (classic and OAS definitions as seeds). Invariants: no crash;
//! a definition the C export accepts parses with the safe parser, and unloads under its id.
#![no_main]

use coprocess_bridge::api::parse_definition;
use coprocess_bridge::ffi::host::{CoProcessLoadApi, CoProcessUnloadApi};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coprocess_fuzz::setup();
    let text = coprocess_fuzz::c_string(data);
    if CoProcessLoadApi(text.as_ptr()) != 0 {
        return;
    }
    let def = parse_definition(text.to_str().expect("a loaded definition is UTF-8"))
        .expect("a loaded definition parses");
    if coprocess_fuzz::APIS.iter().any(|(id, _)| *id == def.api_id) {
        // Put the fixture API back so the other seeds keep their routes.
        return coprocess_fuzz::setup_api(&def.api_id);
    }
    let id = std::ffi::CString::new(def.api_id.as_str()).expect("ids have no NUL");
    assert_eq!(
        CoProcessUnloadApi(id.as_ptr()),
        0,
        "unloading {:?}",
        def.api_id
    );
});
