#!/usr/bin/env bash
# Noisy neighbour benchmark (issue 11): the healthy tenant's manifest latency with and without
# an attacking tenant at full pressure, same proxy, same run. The attacker's plugin spins until
# its 5 s deadline on every call and keeps ATTACKERS requests in flight; the healthy tenant
# stitches ads for VIEWERS load-test viewers. Target: its manifest p99 moves by at most 10 %.
#
#   loadtest/bench-isolation.sh            # 200 viewers, 40 attacking requests in flight, 45 s
#   VIEWERS=500 ATTACKERS=80 loadtest/bench-isolation.sh
#   NO_BUILD=1 loadtest/bench-isolation.sh  # use the release binaries as they are
#
# Prints a table (also in $RESULTS/summary.md): p50/p99 manifest and segment latency, errors
# and plugin outcomes, for the baseline and under attack.
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS=${VIEWERS:-200}
ATTACKERS=${ATTACKERS:-40}
DURATION=${DURATION:-45}
ORIGIN_PORT=${ORIGIN_PORT:-19200}
MANIFOLD_PORT=${MANIFOLD_PORT:-19280}
RESULTS=${RESULTS:-loadtest/out/isolation-$(date -u +%Y%m%dT%H%M%SZ)}
((VIEWERS >= 1 && VIEWERS <= 5000)) || { echo "VIEWERS: 1..5000" >&2; exit 2; }
((ATTACKERS >= 1 && ATTACKERS <= 500)) || { echo "ATTACKERS: 1..500" >&2; exit 2; }
((DURATION >= 10 && DURATION <= 300)) || { echo "DURATION: 10..300 s" >&2; exit 2; }
command -v jq >/dev/null || { sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"; $sudo apt-get install -y -qq jq >/dev/null; }

if [[ -z ${NO_BUILD:-} ]]; then
  scripts/setup.sh
  scripts/build-plugins.sh
  cargo build --release --locked -p manifold -p manifold-origin -p manifold-loadtest
fi
PLUGINS=$PWD/target/wasm32-wasip2/release
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  cp "$work"/*.log "$RESULTS/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 200); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on port $1" >&2
  exit 1
}

target/release/manifold-origin --listen "127.0.0.1:$ORIGIN_PORT" --ad-first 20 --ad-every 40 \
  --ad-duration 20 >/dev/null 2>"$work/origin.log" &
pids+=($!)
wait_port "$ORIGIN_PORT"

catalog=""
for ad in ad10 ad15 slate; do
  dur=${ad#ad} slate=false
  [[ $ad == slate ]] && { dur=10; slate=true; }
  catalog+="[[tenants.creatives]]
name = \"$ad\"
duration = $dur.0
hls = \"/ads/$ad/hls/master.m3u8\"
hls_fmp4 = \"/ads/$ad/cmaf/master.m3u8\"
slate = $slate
"
done
cat >"$work/manifold.toml" <<EOF2
[server]
listen = ["127.0.0.1:$MANIFOLD_PORT"]
threads = 2
upgrade_sock = "$work/upgrade.sock"
[plugins]
dir = "$work/plugins"
max_instances = 32
[[tenants]]
id = "healthy"
origin = "http://127.0.0.1:$ORIGIN_PORT"
sessions = { per_client_per_minute = 0 }
[tenants.plugin]
file = "$PLUGINS/scte35_breaks.wasm"
config = "pod=ad10"
deadline = "1s"
$catalog
[[tenants]]
id = "attacker"
origin = "http://127.0.0.1:$ORIGIN_PORT"
sessions = { per_client_per_minute = 0 }
[tenants.plugin]
file = "$PLUGINS/misbehave.wasm"
config = "mode=loop"
deadline = "5s"
EOF2
RUST_LOG=warn target/release/manifold serve --config "$work/manifold.toml" 2>"$work/manifold.log" &
MANIFOLD_PID=$!
pids+=($MANIFOLD_PID)
wait_port "$MANIFOLD_PORT"
HEALTHY=http://127.0.0.1:$MANIFOLD_PORT/healthy/live/hls/master.m3u8
ATTACK=http://127.0.0.1:$MANIFOLD_PORT/attacker/live/hls/master.m3u8
curl -sf -o /dev/null "$HEALTHY"

run() { # name
  target/release/manifold-loadtest "$HEALTHY" --viewers "$VIEWERS" --ramp 5 --duration "$DURATION" \
    --proxy-pid "$MANIFOLD_PID" --json "$RESULTS/$1.json" >"$RESULTS/$1.txt"
}
attack() { # keeps ATTACKERS requests in flight from one curl process, and logs each outcome
  # (one client process, not a shell loop per request: spawning processes every time a batch
  # of spinning calls ends took the cores from the proxy and the load generator alike)
  for i in $(seq $((ATTACKERS * 10))); do
    echo "url = \"$ATTACK?a=$i\""
    echo 'output = "/dev/null"'
  done >"$work/attack.cfg"
  while [[ ! -e $work/stop ]]; do
    curl -s --no-progress-meter -Z --parallel-max "$ATTACKERS" -K "$work/attack.cfg" \
      -w '%header{manifold-plugin}\n' 2>/dev/null || true
  done >>"$work/attacker.out"
}

echo "== baseline: $VIEWERS viewers of the healthy tenant" >&2
run baseline
echo "== under attack: the same, with $ATTACKERS spinning requests in flight" >&2
attack &
attacker=$!
pids+=($attacker)
sleep 2
run attacked
touch "$work/stop"
pkill -f -- "-K $work/attack.cfg" || true
wait "$attacker" 2>/dev/null || true
outcomes=$(grep -E '(served|version)='  "$work/attacker.out" | sed 's/; version=[0-9]*//; s/; us=[0-9]*//' | sort | uniq -c | awk '{c=$1; $1=""; printf "%s×%s; ", c, $0}')

row() {
  jq -r --arg n "$1" '[$n, .latency_ms.manifest.p50, .latency_ms.manifest.p99, .latency_ms.segment.p99,
    .requests.total, .errors.total, .consistency.violations.total] | @tsv' "$RESULTS/$1.json" |
    awk -F'\t' '{printf "| %s | %.2f | %.2f | %.2f | %d | %d | %d |\n", $1, $2, $3, $4, $5, $6, $7}'
}
p99() { jq -r '.latency_ms.manifest.p99' "$RESULTS/$1.json"; }
{
  echo "date: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $(nproc) cores"
  echo "$VIEWERS viewers of the healthy tenant (scte35_breaks, ads stitched), $DURATION s; attacker: $ATTACKERS requests in flight to a plugin spinning to its 5 s deadline; max_instances 32 (16 per tenant)"
  echo
  echo "| run | manifest p50 ms | manifest p99 ms | segment p99 ms | requests | errors | violations |"
  echo "|---|---|---|---|---|---|---|"
  row baseline
  row attacked
  echo
  echo "healthy manifest p99 under attack / baseline: $(awk -v a="$(p99 attacked)" -v b="$(p99 baseline)" 'BEGIN {printf "%.2f", a / b}')"
  echo "attacker's answers: $outcomes"
} | tee "$RESULTS/summary.md"
