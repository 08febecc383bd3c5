#!/usr/bin/env bash
# The demo: builds Manifold, starts the embedded live origin simulator and the proxy on
# 127.0.0.1 with samples/config/demo.toml, and prints the URLs to play. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
cargo build --locked -p manifold
exec target/debug/manifold demo "$@"
