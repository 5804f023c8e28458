#!/usr/bin/env bash
# Builds the bridge, the example Rust driver, the Lua driver and the gateway, then starts the demo gateway on
# 127.0.0.1:8080 with its echo upstream on 127.0.0.1:8081 (Ctrl-C stops it). Extra arguments go to
# the gateway (e.g. --listen 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p coprocess-bridge -p coprocess-rust-driver-example -p coprocess-lua-driver \
  -p coprocess-gateway
exec "${CARGO_TARGET_DIR:-target}/release/coprocess-gateway" examples/gateway/demo/gateway.json "$@"
