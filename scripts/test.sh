#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and end-to-end tests (real proxy and
# origin processes on 127.0.0.1, ffmpeg decoding through the proxy, hls.js and Shaka playing in
# headless Chromium). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
# One clean build: incremental caches would only add gigabytes to the disk it needs.
export CARGO_INCREMENTAL=0
df -h . | tail -1 | awk '{print "test.sh: disk free before the build: " $4}'
scripts/setup.sh
scripts/build-plugins.sh
cargo fmt --all -- --check
(cd plugins && cargo fmt --all -- --check && cargo clippy --release --locked -- -D warnings)
cargo clippy --workspace --all-targets --locked -- -D warnings
# licences, bans and sources (offline: advisories need GitHub's RustSec database, see
# docs/security.md). cargo deny reads the metadata of every platform's crates, which the build
# never downloads (windows-sys, android_system_properties): fetch them first.
cargo fetch --locked
cargo deny --offline check licenses bans sources
# the end-to-end tests run the built binaries
cargo build --workspace --locked
cargo test --workspace --locked
