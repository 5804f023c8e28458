#!/usr/bin/env bash
# Builds the fuzz targets with SanitizerCoverage on the stable toolchain (the flags cargo-fuzz passes
# with `-s none`; no cargo-fuzz or nightly needed) and runs each for FUZZ_SECONDS (default 60), from the
# committed seeds plus the corpus grown by earlier runs (fuzz/corpus/, not committed).
# Usage: fuzz/run.sh [TARGET...]   (default: every target). Exits non-zero on any crash or hang;
# the input is saved under fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(dispatch load_api event id_extractor)
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR=fuzz/target
# --target keeps the instrumentation off build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  cargo build --quiet --release --manifest-path fuzz/Cargo.toml --target "$TRIPLE" --bins

for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  # -timeout: one input running over 10 s counts as a hang (a crash).
  if ! "fuzz/target/$TRIPLE/release/$t" -max_total_time="$SECONDS_EACH" -timeout=10 \
      -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
      "fuzz/corpus/$t" "fuzz/seeds/$t" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz $t: FAILED (input saved under fuzz/artifacts/$t/)"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  corpus=$(ls "fuzz/corpus/$t" | wc -l)
  echo "fuzz $t: ${runs:-?} executions in ${SECONDS_EACH}s, 0 crashes (corpus: $corpus inputs)"
done
