//! Instructions per wire walk, a figure the machine's load does not move: run this under valgrind
//! with two call counts and take the difference per call (fixed costs cancel):
//!
//! ```text
//! cargo bench -p coprocess-proto --features fixtures --bench walk_instructions --no-run
//! for n in 1000 2000; do valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
//!     target/release/deps/walk_instructions-<hash> typical check_object $n 2>&1 | grep 'I *refs'; done
//! ```
//!
//! Ir per call = (Ir(2000) - Ir(1000)) / 1000. Arguments: the fixture (`small`, `typical`, `large`,
//! `full`), the function (`check_object`, `validate_object`, `prost_decode`) and the number of calls;
//! `<fixture> dump` writes the fixture's bytes to stdout.
//! Without them (as `cargo bench` runs it) it walks each fixture once.

use std::hint::black_box;

use coprocess_proto::{fixtures, wire, Message, Object};

fn fixture(name: &str) -> Vec<u8> {
    match name {
        "small" => fixtures::small_object(),
        "typical" => fixtures::typical_object(),
        "large" => fixtures::large_object(),
        "full" => fixtures::fully_populated_object(),
        _ => panic!("unknown fixture {name}: small, typical, large or full"),
    }
    .encode_to_vec()
}

fn run(function: &str, bytes: &[u8], calls: u64) {
    for _ in 0..calls {
        let ok = match function {
            "check_object" => wire::check_object(black_box(bytes)).is_ok(),
            "validate_object" => wire::validate_object(black_box(bytes)).is_ok(),
            "prost_decode" => Object::decode(black_box(bytes)).is_ok(),
            _ => panic!("unknown function {function}"),
        };
        assert!(ok);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [object, function, calls] => run(function, &fixture(object), calls.parse().unwrap()),
        [object, dump] if dump == "dump" => {
            std::io::Write::write_all(&mut std::io::stdout(), &fixture(object)).unwrap()
        }
        _ => {
            for object in ["small", "typical", "large", "full"] {
                run("check_object", &fixture(object), 1);
            }
            println!("usage: walk_instructions <small|typical|large|full> <function> <calls> (under valgrind)");
        }
    }
}
