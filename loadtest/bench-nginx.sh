#!/usr/bin/env bash
# Segment cache-hit throughput: Manifold vs nginx proxy_cache, in front of the same origin
# simulator, measured with the same load tool (wrk) in one run. Not a test: a benchmark.
#
#   loadtest/bench-nginx.sh            # 3 rounds of 20 s per proxy, 64 connections
#   DURATION=30 CONNECTIONS=128 loadtest/bench-nginx.sh
#
#   NO_BUILD=1 MANIFOLD_BIN=/tmp/manifold-other loadtest/bench-nginx.sh   # another build, A/B
# Both proxies get 2 worker threads/processes, no access log, and a memory-backed cache
# (Manifold: its moka storage; nginx: proxy_cache on /dev/shm). Caches are warmed first, and
# the origin's counters confirm that the measured requests were all hits.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
ORIGIN_PORT=${ORIGIN_PORT:-19000}
MANIFOLD_PORT=${MANIFOLD_PORT:-19080}
NGINX_PORT=${NGINX_PORT:-19081}

scripts/setup.sh
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

[[ -n ${NO_BUILD:-} ]] || cargo build --release --locked -p manifold -p manifold-origin -p manifold-loadtest

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work" /dev/shm/manifold-bench-nginx
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on port $1" >&2
  exit 1
}

# origin: no ad breaks, so the segment set is plain content
target/release/manifold-origin --listen "127.0.0.1:$ORIGIN_PORT" --ad-every 0 >/dev/null 2>"$work/origin.log" &
pids+=($!)
wait_port "$ORIGIN_PORT"

cat >"$work/manifold.toml" <<EOF
[server]
listen = ["127.0.0.1:$MANIFOLD_PORT"]
threads = 2
[cache]
size = "256MiB"
[[tenants]]
id = "t"
origin = "http://127.0.0.1:$ORIGIN_PORT"
EOF
RUST_LOG=warn ${MANIFOLD_BIN:-target/release/manifold} serve --config "$work/manifold.toml" 2>"$work/manifold.log" &
pids+=($!)
wait_port "$MANIFOLD_PORT"

mkdir -p /dev/shm/manifold-bench-nginx
cat >"$work/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  proxy_cache_path /dev/shm/manifold-bench-nginx levels=1:2 keys_zone=seg:16m max_size=256m inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /t/ {
      proxy_pass http://127.0.0.1:$ORIGIN_PORT/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache seg;
      proxy_cache_lock on;
      proxy_cache_valid 200 1h;
      add_header Cache-Status "nginx; \$upstream_cache_status";
    }
  }
}
EOF
"$NGINX" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$NGINX_PORT"

# the segment set: every published segment of the three TS variants
paths=()
for v in v0 v1 v2; do
  while read -r seg; do
    paths+=("/t/live/hls/$seg")
  done < <(curl -sf "http://127.0.0.1:$ORIGIN_PORT/live/hls/$v.m3u8" | grep '\.ts$')
done
{
  echo "local paths = {"
  for p in "${paths[@]}"; do echo "  \"$p\","; done
  echo "}"
  cat <<'LUA'
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
LUA
} >"$work/paths.lua"

bytes=0
for p in "${paths[@]}"; do
  for port in "$MANIFOLD_PORT" "$NGINX_PORT"; do
    curl -sf -o /dev/null "http://127.0.0.1:$port$p"
    curl -sf -o /dev/null "http://127.0.0.1:$port$p"
  done
  bytes=$((bytes + $(curl -sf "http://127.0.0.1:$ORIGIN_PORT${p#/t}" | wc -c)))
done
before=$(curl -sf "http://127.0.0.1:$ORIGIN_PORT/_origin/counters" | grep -o '"segment":[0-9]*' | cut -d: -f2)

run() { # port -> "req/s MB/s"
  local out
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/paths.lua" "http://127.0.0.1:$1")
  local rps mbs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  mbs=$(awk '/Transfer\/sec/ {v=$2; if (v ~ /GB/) {sub("GB","",v); v*=1024} else if (v ~ /KB/) {sub("KB","",v); v/=1024} else {sub("MB","",v)}; print v}' <<<"$out")
  if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx responses from port $1:" >&2; echo "$out" >&2; exit 1; fi
  echo "$rps $mbs"
}

declare -a m_rps n_rps m_mbs n_mbs
for r in $(seq "$ROUNDS"); do
  read -r a b < <(run "$NGINX_PORT"); n_rps+=("$a"); n_mbs+=("$b")
  read -r a b < <(run "$MANIFOLD_PORT"); m_rps+=("$a"); m_mbs+=("$b")
  echo "round $r: nginx ${n_rps[-1]} req/s ${n_mbs[-1]} MB/s | manifold ${m_rps[-1]} req/s ${m_mbs[-1]} MB/s" >&2
done
after=$(curl -sf "http://127.0.0.1:$ORIGIN_PORT/_origin/counters" | grep -o '"segment":[0-9]*' | cut -d: -f2)

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
nr=$(median "${n_rps[@]}"); mr=$(median "${m_rps[@]}")
nm=$(median "${n_mbs[@]}"); mm=$(median "${m_mbs[@]}")
avg=$((bytes / ${#paths[@]}))
cat <<EOF

Segment cache hits, ${#paths[@]} TS segments (mean ${avg} B), wrk -t1 -c$CONNECTIONS -d${DURATION}s, median of $ROUNDS alternating rounds
$(nproc) cores, $(uname -m); load generator on the same machine

| proxy | req/s | MB/s |
|---|---|---|
| nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') proxy_cache (2 workers) | $nr | $nm |
| Manifold (2 threads) | $mr | $mm |
| ratio Manifold/nginx | $(awk -v a="$mr" -v b="$nr" 'BEGIN {printf "%.2f", a/b}') | $(awk -v a="$mm" -v b="$nm" 'BEGIN {printf "%.2f", a/b}') |

origin segment requests during the measured runs: $((after - before)) (0 = every request was a cache hit)
EOF
