#!/usr/bin/env bash
# Installs what building, testing and running the demo need on a fresh Debian machine:
# a C toolchain's helpers for pingora (cmake for zlib-ng, pkg-config + libssl-dev for OpenSSL)
# ffmpeg (the end-to-end tests decode streams through the proxy with it), redis-server (the
# multi-node session tests share one Redis between two proxies), and for the browser tests
# Debian's Chromium plus the players and their driver from npm (hls.js, shaka-player,
# playwright-core; pinned in tests/browser/package-lock.json), and the TypeScript plugin SDK's
# build tools (pinned in plugins/sdk-ts/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake pkg-config libssl-dev ffmpeg fonts-dejavu-core redis-server chromium)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup)" >&2; exit 1; }

# The players, from the lock file; the browser is Debian's (no download from elsewhere).
browser=tests/browser
stamp=$browser/node_modules/.manifold-lock
if ! cmp -s "$browser/package-lock.json" "$stamp" 2>/dev/null; then
  echo "setup: npm ci in $browser" >&2
  (cd "$browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  cp "$browser/package-lock.json" "$stamp"
fi

# The TypeScript plugin SDK's tools (componentize-qjs, jco, esbuild, tsc), from its lock file
sdk_ts=plugins/sdk-ts
stamp=$sdk_ts/node_modules/.manifold-lock
if ! cmp -s "$sdk_ts/package-lock.json" "$stamp" 2>/dev/null; then
  echo "setup: npm ci in $sdk_ts" >&2
  (cd "$sdk_ts" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$sdk_ts/package-lock.json" "$stamp"
fi

# cargo-deny (licences, bans and sources of the dependency tree), from crates.io
if ! cargo deny --version >/dev/null 2>&1; then
  echo "setup: cargo install cargo-deny" >&2
  cargo install cargo-deny --locked --quiet
fi
