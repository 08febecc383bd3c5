#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and end-to-end tests (real proxy and
# origin processes on 127.0.0.1, ffmpeg decoding through the proxy). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
cargo fmt --all -- --check
(cd plugins && cargo fmt --all -- --check && cargo clippy --release --locked -- -D warnings)
cargo clippy --workspace --all-targets --locked -- -D warnings
# the end-to-end tests run the built binaries
cargo build --workspace --locked
cargo test --workspace --locked
