//! A tyk.conf-shaped CoProcessInit (`coprocess_options` with python_path_prefix, python_version and
//! coprocess_grpc_server, and a `TYK_GW_COPROCESSOPTIONS_*` variable) that loads drivers which refuse
//! unknown config keys: each driver gets only the options meant for it, and the Python driver puts
//! Tyk's module directories under python_path_prefix on its module path.
//! (Its own test process: CoProcessInit and the environment are process-wide.)

mod abi;
mod common;

use std::fs;
use std::process::Command;

use abi::*;
use coprocess_bridge::ffi::host::CoProcessInit;
use coprocess_bridge::proto::{HookType, Message, MiniRequestObject, Object, ReturnOverrides};

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import google.protobuf"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        common::report_skip("python3 with the protobuf package (the Python part of this test)");
    }
    ok
}

#[test]
fn tyk_conf_options_reach_only_the_drivers_that_understand_them() {
    let root = common::target_dir()
        .join("tyk-conf-drivers")
        .join(std::process::id().to_string());
    let _ = fs::remove_dir_all(&root);
    // Tyk's install directory: python_path_prefix/coprocess/python holds modules plugins import.
    let prefix = root.join("tyk-gateway");
    fs::create_dir_all(prefix.join("coprocess/python")).unwrap();
    fs::write(
        prefix.join("coprocess/python/tyk_install_helper.py"),
        "VALUE = 'from python_path_prefix'\n",
    )
    .unwrap();
    let bundles = root.join("bundles");
    let bundle = bundles.join("b1");
    fs::create_dir_all(&bundle).unwrap();
    fs::write(
        bundle.join("manifest.json"),
        r#"{"file_list": ["middleware.py"], "custom_middleware": {"driver": "python",
            "pre": [{"name": "UsesPrefix", "path": "middleware.py"}]}}"#,
    )
    .unwrap();
    fs::write(
        bundle.join("middleware.py"),
        "from tyk.decorators import *\nimport tyk_install_helper as helper\n\n@Hook\ndef UsesPrefix(request, session, spec):\n    request.add_header('X-Prefix', helper.VALUE)\n    return request, session\n",
    )
    .unwrap();

    let rust =
        common::build_workspace_cdylib("coprocess-rust-driver-example", "coprocess_rust_driver");
    let c_driver = common::build_c_driver(
        &common::repo_root().join("tests/drivers/test_driver.c"),
        &[],
    );
    let mut drivers = vec![
        serde_json::json!({"name": "native", "path": rust, "config": {"tokens": ["t"]}}),
        serde_json::json!({"name": "c", "path": c_driver, "config": {"own": 1}}),
    ];
    let python = python_ready();
    if python {
        let lib = common::build_workspace_cdylib("coprocess-python-driver", "coprocess_python");
        drivers.push(
            serde_json::json!({"name": "python", "path": lib, "config": {"bundle_root": bundles}}),
        );
    }
    // SAFETY: set before CoProcessInit reads it; this file's only test, so no thread reads the
    // environment meanwhile.
    unsafe {
        std::env::set_var("TYK_GW_COPROCESSOPTIONS_PYTHONPATHPREFIX", &prefix);
    }
    let config = serde_json::json!({
        "coprocess_options": {
            "enable_coprocess": true,
            "coprocess_grpc_server": "tcp://127.0.0.1:1",
            "python_path_prefix": "/overridden/by/the/environment",
            "python_version": "3",
        },
        "drivers": drivers,
    });
    let text = c(&config.to_string());
    assert_eq!(CoProcessInit(text.as_ptr()), 0, "{}", last_error());

    assert_eq!(
        get("test_driver:config"),
        r#"{"own":1}"#,
        "the C driver got its own config only"
    );
    let pre = dispatch_with("native", &pre_object()).unwrap();
    assert_eq!(set_header(&pre, "X-Rust-Driver").as_deref(), Some("rust"));

    if python {
        let o = Object {
            hook_type: HookType::Pre as i32,
            hook_name: "UsesPrefix".into(),
            request: Some(MiniRequestObject {
                url: "/".into(),
                method: "GET".into(),
                return_overrides: Some(ReturnOverrides {
                    response_code: -1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            spec: [("bundle_hash", "b1"), ("APIID", "none")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let out = dispatch_with("python", &o.encode_to_vec()).unwrap();
        assert_eq!(
            set_header(&out, "X-Prefix").as_deref(),
            Some("from python_path_prefix")
        );
    }
}
