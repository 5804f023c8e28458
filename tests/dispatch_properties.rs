//! Property tests: random bytes and mutated valid Objects fed to Dispatch through the C export. The bridge
//! must accept exactly what a protobuf decoder accepts, never crash, and never hand a driver bad input.

mod abi;
mod common;

use std::sync::OnceLock;

use abi::*;
use coprocess_bridge::error::CoProcessStatus::*;
use coprocess_bridge::proto::{fixtures, Message, Object};
use proptest::prelude::*;

fn driver() -> &'static str {
    static LOADED: OnceLock<()> = OnceLock::new();
    LOADED.get_or_init(|| {
        let path = common::build_c_driver(
            &common::repo_root().join("tests/drivers/test_driver.c"),
            &["VERSION_TAG=\"prop\""],
        );
        load("prop", &path, None).unwrap();
    });
    "prop"
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoded = Object::decode(bytes);
    match dispatch_with(driver(), bytes) {
        Ok(out) => {
            let mut expected = decoded.map_err(|e| {
                TestCaseError::fail(format!(
                    "bridge accepted bytes prost rejects ({e}): {bytes:x?}"
                ))
            })?;
            expected
                .request
                .get_or_insert_with(Default::default)
                .set_headers
                .insert("X-Test-Driver".into(), "prop".into());
            prop_assert_eq!(Object::decode(out.as_slice()).unwrap(), expected);
        }
        Err((code, msg)) => {
            prop_assert_eq!(code, COPROCESS_ERR_INVALID_OBJECT as i32, "{}", msg);
            prop_assert!(
                decoded.is_err(),
                "bridge refused bytes prost accepts: {}",
                msg
            );
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let at = |i: usize| i % bytes.len();
        match *m {
            Mutation::Flip(i, x) => {
                let i = at(i);
                bytes[i] ^= x | 1;
            }
            Mutation::Insert(i, x) => {
                let i = at(i);
                bytes.insert(i, x);
            }
            Mutation::Delete(i) => {
                let i = at(i);
                bytes.remove(i);
            }
            Mutation::Truncate(i) => {
                let i = at(i);
                bytes.truncate(i);
            }
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn valid_object() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(fixtures::small_object().encode_to_vec()),
        Just(fixtures::typical_object().encode_to_vec()),
        Just(fixtures::fully_populated_object().encode_to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_refused_or_dispatched_never_crash(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes)?;
    }

    #[test]
    fn mutated_objects_are_refused_or_dispatched_never_crash(
        base in valid_object(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        check(&apply(base, &mutations))?;
    }
}
