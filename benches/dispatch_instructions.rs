//! Instructions per dispatch of the typical Object, a figure the machine's load does not move: the
//! bridge (with and without per-hook metrics) and the same pass-through driver called directly. Run
//! under valgrind with two call counts and take the difference per call (fixed costs cancel):
//!
//! ```text
//! cargo bench --bench dispatch_instructions --no-run
//! for n in 1000 3000; do valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
//!     target/release/deps/dispatch_instructions-<hash> bridge $n 2>&1 | grep 'I *refs'; done
//! ```
//!
//! Arguments: `direct`, `bridge` or `bridge_no_metrics`, and the number of calls. Without them (as
//! `cargo bench` runs it) it makes one call of each.

mod support;

use std::ffi::CString;
use std::hint::black_box;

use coprocess_bridge::metrics;
use coprocess_bridge::proto::{fixtures, Message};
use support::{bridge_call, build_pass_through, load, Direct};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (ways, calls): (Vec<&str>, u64) = match args.as_slice() {
        [way, calls] => (vec![way.as_str()], calls.parse().unwrap()),
        _ => (vec!["direct", "bridge", "bridge_no_metrics"], 1),
    };
    let input = fixtures::typical_object().encode_to_vec();
    let path = build_pass_through();
    load("pass_through", &path, "{}");
    let driver = CString::new("pass_through").unwrap();
    for way in ways {
        match way {
            "direct" => {
                let direct = Direct::open(&path);
                (0..calls).for_each(|_| direct.call(black_box(&input)));
            }
            "bridge" | "bridge_no_metrics" => {
                metrics::set_per_call_enabled(way == "bridge");
                (0..calls).for_each(|_| bridge_call(&driver, black_box(&input)));
            }
            _ => panic!("unknown way {way}: direct, bridge or bridge_no_metrics"),
        }
    }
}
