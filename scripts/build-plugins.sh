#!/usr/bin/env bash
# Builds the plugin SDK's sample and test plugins for wasm32-wasip2 into
# target/wasm32-wasip2/release/*.wasm (the proxy's tests and the demo load them from there).
set -euo pipefail
cd "$(dirname "$0")/../plugins"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --locked
