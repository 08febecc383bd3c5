#!/usr/bin/env bash
# The live-event scenario against three edges in front of the same origin simulator, one after
# the other, with the same viewer simulator (manifold-loadtest), seed and scenario:
#
#   nginx   nginx proxy_cache (Debian package): segments cached, manifests unmodified (cached per
#           the origin's max-age=1, as Manifold does)
#   pass    Manifold, a tenant without plugin: manifests pass through, segments cached
#   ssai    Manifold, a tenant whose plugin (scte35_breaks) fills every break with ads: a session
#           per viewer, personalized manifests
#
# and prints the ratios Manifold/nginx and personalized/pass-through (requests/s, p99 manifest
# and segment latency, requests per CPU-second of the proxy). Everything on 127.0.0.1; the
# JSON summaries, SVG plots and tables stay in the results directory. Not a test: a benchmark.
#
#   loadtest/compare.sh                                  # 1000 HLS viewers, 2 s segments, 60 s
#   VIEWERS=20000 SEGMENT=6 DURATION=90 loadtest/compare.sh
#   PROTOCOL=dash TARGETS="pass ssai" loadtest/compare.sh
#
# Knobs (environment): VIEWERS, RAMP (s), DURATION (s, after the ramp), SCENARIO (steady,
# flash-crowd, churn, ad-storm), PROTOCOL (hls, dash), SEGMENT (2 or 6 s), TARGETS (any of
# "nginx pass ssai", in order), THREADS (proxy threads = nginx workers, default 2),
# LOADGEN_THREADS, CONNECTIONS (load generator connections per edge), RESULTS (directory),
# NO_BUILD=1 (use the release binaries as they are), EXTRA (more manifold-loadtest arguments),
# PLUGIN (the ssai tenant's component, e.g. target/wasm32-wasip2/release/scte35_breaks_ts.wasm).
# Bounds: at most 100000 viewers and 600 s per run (the tool's own limits are wider).
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS=${VIEWERS:-1000}
RAMP=${RAMP:-10}
DURATION=${DURATION:-60}
SCENARIO=${SCENARIO:-steady}
PROTOCOL=${PROTOCOL:-hls}
SEGMENT=${SEGMENT:-2}
TARGETS=${TARGETS:-nginx pass ssai}
THREADS=${THREADS:-2}
LOADGEN_THREADS=${LOADGEN_THREADS:-2}
CONNECTIONS=${CONNECTIONS:-1024}
ORIGIN_PORT=${ORIGIN_PORT:-19100}
MANIFOLD_PORT=${MANIFOLD_PORT:-19180}
NGINX_PORT=${NGINX_PORT:-19181}
RESULTS=${RESULTS:-loadtest/out/compare-$(date -u +%Y%m%dT%H%M%SZ)}
EXTRA=${EXTRA:-}

((VIEWERS >= 1 && VIEWERS <= 100000)) || { echo "VIEWERS: 1..100000" >&2; exit 2; }
((RAMP + DURATION <= 600)) || { echo "RAMP + DURATION: at most 600 s per run" >&2; exit 2; }
[[ $SEGMENT == 2 || $SEGMENT == 6 ]] || { echo "SEGMENT: 2 or 6 (the sample media)" >&2; exit 2; }
case $PROTOCOL in
  hls) ENTRY=live/hls/master.m3u8 ;;
  dash) ENTRY=live/dash/manifest.mpd ;;
  *) echo "PROTOCOL: hls or dash" >&2; exit 2 ;;
esac

# every viewer connection and every proxy-side socket is a descriptor
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 2 * CONNECTIONS + 1024)); then
  echo "open files limit $(ulimit -n) is too low for CONNECTIONS=$CONNECTIONS" >&2
  exit 2
fi

missing=()
command -v jq >/dev/null || missing+=(jq)
if [[ " $TARGETS " == *" nginx "* ]]; then
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
fi
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ -z ${NO_BUILD:-} ]]; then
  scripts/setup.sh
  [[ -f target/wasm32-wasip2/release/scte35_breaks.wasm ]] || scripts/build-plugins.sh
  cargo build --release --locked -p manifold -p manifold-origin -p manifold-loadtest
fi
PLUGIN=${PLUGIN:-$PWD/target/wasm32-wasip2/release/scte35_breaks.wasm}
[[ -f $PLUGIN ]] || { echo "$PLUGIN is missing: scripts/build-plugins.sh" >&2; exit 2; }
# the config lives in a temporary directory: a relative path would resolve from there
PLUGIN=$(realpath "$PLUGIN")

mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  cp "$work"/*.log "$RESULTS/" 2>/dev/null || true
  rm -rf "$work" /dev/shm/manifold-compare-nginx
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

# CPU seconds (user + system) of a process and its children (nginx's workers)
cpu_seconds() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    [[ -r /proc/$p/stat ]] || continue
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}

# a live channel with SCTE-35 breaks: 30 s of every minute, so every run of a minute sees one
target/release/manifold-origin --listen "127.0.0.1:$ORIGIN_PORT" --segment-duration "$SEGMENT" \
  --ad-first 30 --ad-every 60 --ad-duration 30 >/dev/null 2>"$work/origin.log" &
pids+=($!)
wait_port "$ORIGIN_PORT"

catalog=""
for ad in ad10 ad15 ad30 slate; do
  dur=${ad#ad} slate=false
  if [[ $ad == slate ]]; then dur=10 slate=true; fi
  catalog+="[[tenants.creatives]]
name = \"$ad\"
duration = $dur.0
hls = \"/ads/$ad/hls/master.m3u8\"
hls_fmp4 = \"/ads/$ad/cmaf/master.m3u8\"
dash = \"/ads/$ad/dash/manifest.mpd\"
slate = $slate
"
done
cat >"$work/manifold.toml" <<EOF
[server]
listen = ["127.0.0.1:$MANIFOLD_PORT"]
threads = $THREADS
[cache]
size = "1GiB"
[plugins]
dir = "$work/plugins"
[[tenants]]
id = "pass"
origin = "http://127.0.0.1:$ORIGIN_PORT"
[[tenants]]
id = "ssai"
origin = "http://127.0.0.1:$ORIGIN_PORT"
# every viewer of the load test comes from 127.0.0.1: no per-address session limit
sessions = { per_client_per_minute = 0 }
[tenants.plugin]
file = "$PLUGIN"
capabilities = ["ads", "log"]
$catalog
EOF
RUST_LOG=warn target/release/manifold serve --config "$work/manifold.toml" 2>"$work/manifold.log" &
MANIFOLD_PID=$!
pids+=($MANIFOLD_PID)
wait_port "$MANIFOLD_PORT"

if [[ " $TARGETS " == *" nginx "* ]]; then
  mkdir -p /dev/shm/manifold-compare-nginx
  # origin Cache-Control decides the TTLs: max-age=1 for live manifests, longer for segments
  cat >"$work/nginx.conf" <<EOF
worker_processes $THREADS;
worker_rlimit_nofile 65536;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  proxy_cache_path /dev/shm/manifold-compare-nginx levels=1:2 keys_zone=edge:32m max_size=1g inactive=10m use_temp_path=off;
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location /t/ {
      proxy_pass http://origin/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 5s;
      proxy_cache_valid 200 1s;
      proxy_cache_use_stale updating;
      add_header Cache-Status "nginx; \$upstream_cache_status";
    }
  }
}
EOF
  "$NGINX" -c "$work/nginx.conf" -g 'daemon off;' 2>"$work/nginx.log" &
  NGINX_PID=$!
  pids+=($NGINX_PID)
  wait_port "$NGINX_PORT"
fi

cat >"$RESULTS/conditions.txt" <<EOF
date: $(date -u +%FT%TZ)
commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- proxy loadtest || echo " (with uncommitted changes)")
machine: $(nproc) cores, $(uname -m), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average before: $(cut -d' ' -f1-3 /proc/loadavg)
scenario: $SCENARIO, $PROTOCOL, $VIEWERS viewers, ramp $RAMP s, hold $DURATION s, $SEGMENT s segments
proxy threads / nginx workers: $THREADS; load generator threads: $LOADGEN_THREADS, connections: $CONNECTIONS
nginx: $([[ -n ${NGINX_PID:-} ]] && "$NGINX" -v 2>&1 | sed 's/.*: //')
EOF

declare -A URL PID CPU
URL[nginx]="http://127.0.0.1:$NGINX_PORT/t/$ENTRY"
URL[pass]="http://127.0.0.1:$MANIFOLD_PORT/pass/$ENTRY"
URL[ssai]="http://127.0.0.1:$MANIFOLD_PORT/ssai/$ENTRY"
PID[nginx]=${NGINX_PID:-}
PID[pass]=$MANIFOLD_PID
PID[ssai]=$MANIFOLD_PID

for t in $TARGETS; do
  [[ -n ${URL[$t]:-} && -n ${PID[$t]} ]] || { echo "unknown or not started target $t" >&2; exit 2; }
  echo "== $t: ${URL[$t]}" >&2
  pidarg=()
  [[ $t != nginx ]] && pidarg=(--proxy-pid "${PID[$t]}")
  # warm-up: the edge's first requests (connections, lazy set-up) stay out of the figures
  curl -sfL -o /dev/null "${URL[$t]}" || { echo "$t: ${URL[$t]} does not answer" >&2; exit 1; }
  before=$(cpu_seconds "${PID[$t]}")
  # the whole machine's idle CPU alongside: other processes taking cores skew every figure
  vmstat -n 5 >"$RESULTS/$t.vmstat" 2>/dev/null &
  vmstat_pid=$!
  pids+=($vmstat_pid)
  rc=0
  # shellcheck disable=SC2086
  target/release/manifold-loadtest "${URL[$t]}" --scenario "$SCENARIO" --viewers "$VIEWERS" \
    --ramp "$RAMP" --duration "$DURATION" --connections "$CONNECTIONS" --threads "$LOADGEN_THREADS" \
    --origin "http://127.0.0.1:$ORIGIN_PORT" "${pidarg[@]}" --progress \
    --json "$RESULTS/$t.json" --plots "$RESULTS/$t" $EXTRA | tee "$RESULTS/$t.txt" || rc=$?
  after=$(cpu_seconds "${PID[$t]}")
  kill "$vmstat_pid" 2>/dev/null || true
  CPU[$t]=$(awk -v a="$after" -v b="$before" 'BEGIN {printf "%.2f", a - b}')
  echo "exit status $rc; proxy CPU $(echo "${CPU[$t]}") s (process and children)" | tee -a "$RESULTS/$t.txt" >&2
done

# figures of one run: req/s, manifest p99, segment p99, errors, requests per proxy CPU-second
figures() {
  jq -r --arg cpu "${CPU[$1]}" '[.requests.per_second, .latency_ms.manifest.p99,
    .latency_ms.segment.p99, .errors.total, .consistency.violations.total,
    (if ($cpu | tonumber) > 0 then (.requests.total / ($cpu | tonumber)) else 0 end),
    (.origin.segment_fetches.max // 0), (.origin.offload_ratio // 0)] | @tsv' "$RESULTS/$1.json"
}
# idle CPU of the machine during a run (vmstat's "id" column): "min/mean %"
idle() {
  awk 'NR > 3 && $15 ~ /^[0-9]+$/ {n++; s += $15; if (m == "" || $15 < m) m = $15}
    END {if (n) printf "%d/%.0f", m, s / n; else print "-"}' "$RESULTS/$1.vmstat" 2>/dev/null || echo -
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
{
  cat "$RESULTS/conditions.txt"
  echo
  echo "| edge | req/s | manifest p99 ms | segment p99 ms | errors | violations | req per proxy CPU-s | proxy CPU s | origin fetches/segment (max) | offload | machine idle % min/mean |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  declare -A F
  for t in $TARGETS; do
    F[$t]=$(figures "$t")
    IFS=$'\t' read -r rps mp99 sp99 err vio eff fmax off <<<"${F[$t]}"
    printf '| %s | %.0f | %.1f | %.1f | %s | %s | %.0f | %s | %s | %s | %s |\n' \
      "$t" "$rps" "$mp99" "$sp99" "$err" "$vio" "$eff" "${CPU[$t]}" "$fmax" "$off" "$(idle "$t")"
  done
  echo
  pair() { # a b label
    [[ -n ${F[$1]:-} && -n ${F[$2]:-} ]] || return 0
    IFS=$'\t' read -r ar am as _ _ ae _ _ <<<"${F[$1]}"
    IFS=$'\t' read -r br bm bs _ _ be _ _ <<<"${F[$2]}"
    echo "$3: req/s $(ratio "$ar" "$br"), manifest p99 $(ratio "$am" "$bm"), segment p99 $(ratio "$as" "$bs"), requests per proxy CPU-second $(ratio "$ae" "$be")"
  }
  pair pass nginx "Manifold pass-through / nginx"
  pair ssai nginx "Manifold personalized / nginx"
  pair ssai pass "personalized / pass-through"
  echo
  echo "(req/s is what the viewers asked for: equal while no edge saturates. Latency ratios > 1 and"
  echo " request-per-CPU-second ratios < 1 mean the first edge is slower / costlier. A machine idle"
  echo " minimum near 0 while the proxy and the generator do not use all cores means other processes"
  echo " took CPU during the run: re-run before quoting.)"
} | tee "$RESULTS/summary.md"
echo "results: $RESULTS" >&2
