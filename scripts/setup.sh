#!/usr/bin/env bash
# Installs what building, testing and running the demo need on a fresh Debian machine:
# a C toolchain's helpers for pingora (cmake for zlib-ng, pkg-config + libssl-dev for OpenSSL)
# ffmpeg (the end-to-end tests decode streams through the proxy with it) and redis-server (the
# multi-node session tests share one Redis between two proxies).
set -euo pipefail

packages=(cmake pkg-config libssl-dev ffmpeg fonts-dejavu-core redis-server)
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
