#!/usr/bin/env bash
# HTTPS segment cache hits: Manifold vs nginx proxy_cache, both terminating TLS with the same
# certificate (self-signed P-256, made by `manifold tls self-signed`) in front of the same
# origin simulator, measured with the same load tools in one run. Not a test: a benchmark.
#
#   loadtest/bench-tls.sh                 # 3 alternating rounds of 15 s per proxy and case
#   DURATION=30 CONNECTIONS=128 loadtest/bench-tls.sh
#
# Cases: HTTP/1.1 keep-alive (wrk), HTTP/2 with 10 streams per connection (h2load), and a new
# TLS connection per request (wrk with `Connection: close`): full handshakes per second, the
# handshake cost. Plain HTTP on both is measured in the same run as the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
ORIGIN_PORT=${ORIGIN_PORT:-19000}
MANIFOLD_PORT=${MANIFOLD_PORT:-19080}
MANIFOLD_TLS=${MANIFOLD_TLS:-19443}
NGINX_PORT=${NGINX_PORT:-19081}
NGINX_TLS=${NGINX_TLS:-19444}

scripts/setup.sh
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

[[ -n ${NO_BUILD:-} ]] || cargo build --release --locked -p manifold -p manifold-origin -p manifold-loadtest
MANIFOLD=${MANIFOLD_BIN:-target/release/manifold}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work" /dev/shm/manifold-bench-tls
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

"$MANIFOLD" tls self-signed --names localhost,127.0.0.1 --cert "$work/cert.pem" --key "$work/key.pem" >/dev/null

target/release/manifold-origin --listen "127.0.0.1:$ORIGIN_PORT" --ad-every 0 >/dev/null 2>"$work/origin.log" &
pids+=($!)
wait_port "$ORIGIN_PORT"

cat >"$work/manifold.toml" <<EOF
[server]
listen = ["127.0.0.1:$MANIFOLD_PORT"]
threads = 2
[tls]
listen = ["127.0.0.1:$MANIFOLD_TLS"]
[[tls.certificates]]
cert = "$work/cert.pem"
key = "$work/key.pem"
[cache]
size = "256MiB"
[[tenants]]
id = "t"
origin = "http://127.0.0.1:$ORIGIN_PORT"
EOF
RUST_LOG=warn "$MANIFOLD" serve --config "$work/manifold.toml" 2>"$work/manifold.log" &
pids+=($!)
wait_port "$MANIFOLD_PORT"
wait_port "$MANIFOLD_TLS"

mkdir -p /dev/shm/manifold-bench-tls
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
  proxy_cache_path /dev/shm/manifold-bench-tls levels=1:2 keys_zone=seg:16m max_size=256m inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    listen 127.0.0.1:$NGINX_TLS ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location /t/ {
      proxy_pass http://127.0.0.1:$ORIGIN_PORT/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache seg;
      proxy_cache_lock on;
      proxy_cache_valid 200 1h;
    }
  }
}
EOF
"$NGINX" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$NGINX_TLS"

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
local close = os.getenv("CLOSE") == "1"
request = function()
  i = i % #paths + 1
  if close then
    return wrk.format("GET", paths[i], { ["Connection"] = "close" })
  end
  return wrk.format("GET", paths[i])
end
LUA
} >"$work/paths.lua"
printf 'https://127.0.0.1:PORT%s\n' "${paths[@]}" >"$work/urls.txt"

bytes=0
for p in "${paths[@]}"; do
  for port in "$MANIFOLD_PORT" "$NGINX_PORT"; do
    curl -sf -o /dev/null "http://127.0.0.1:$port$p"
    curl -sf -o /dev/null "http://127.0.0.1:$port$p"
  done
  bytes=$((bytes + $(curl -sf "http://127.0.0.1:$ORIGIN_PORT${p#/t}" | wc -c)))
done
before=$(curl -sf "http://127.0.0.1:$ORIGIN_PORT/_origin/counters" | grep -o '"segment":[0-9]*' | cut -d: -f2)

wrk_rps() { # scheme port [close] -> req/s
  local out
  out=$(CLOSE=${3:-0} wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/paths.lua" "$1://127.0.0.1:$2")
  if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx responses from port $2:" >&2; echo "$out" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}
h2_rps() { # port -> req/s over HTTP/2, 10 concurrent streams per connection
  local out
  sed "s/PORT/$1/" "$work/urls.txt" >"$work/urls-$1.txt"
  out=$(h2load -D "$DURATION" -c "$CONNECTIONS" -m 10 -t 1 -i "$work/urls-$1.txt" 2>&1)
  if ! grep -q "h2" <<<"$(grep -i 'application protocol' <<<"$out")"; then echo "no h2 on port $1: $out" >&2; exit 1; fi
  local failed
  failed=$(awk '/^requests:/ {for (i=1;i<=NF;i++) if ($(i+1)=="failed,") print $i}' <<<"$out")
  [[ ${failed:-0} == 0 ]] || { echo "h2load failures on port $1: $out" >&2; exit 1; }
  awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out"
}

declare -A res
cases=("http" "https-h1" "https-h2" "handshakes")
for r in $(seq "$ROUNDS"); do
  for who in nginx manifold; do
    if [[ $who == nginx ]]; then plain=$NGINX_PORT; tls=$NGINX_TLS; else plain=$MANIFOLD_PORT; tls=$MANIFOLD_TLS; fi
    res[$who,http]+="$(wrk_rps http "$plain") "
    res[$who,https-h1]+="$(wrk_rps https "$tls") "
    res[$who,https-h2]+="$(h2_rps "$tls") "
    res[$who,handshakes]+="$(wrk_rps https "$tls" 1) "
  done
  echo "round $r done" >&2
done
after=$(curl -sf "http://127.0.0.1:$ORIGIN_PORT/_origin/counters" | grep -o '"segment":[0-9]*' | cut -d: -f2)

median() { printf '%s\n' $@ | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
avg=$((bytes / ${#paths[@]}))
cat <<EOF

HTTPS segment cache hits, ${#paths[@]} TS segments (mean ${avg} B), $CONNECTIONS connections, ${DURATION} s per case, median of $ROUNDS alternating rounds
$(nproc) cores, $(uname -m); load generators on the same machine; TLS 1.3, P-256 certificate

| case | nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') (2 workers) | Manifold (2 threads) | Manifold/nginx |
|---|---|---|---|
EOF
for c in "${cases[@]}"; do
  n=$(median ${res[nginx,$c]}); m=$(median ${res[manifold,$c]})
  label=$c
  case $c in
    http) label="plain HTTP/1.1, keep-alive (baseline), req/s" ;;
    https-h1) label="HTTPS HTTP/1.1, keep-alive, req/s" ;;
    https-h2) label="HTTPS HTTP/2, 10 streams per connection, req/s" ;;
    handshakes) label="HTTPS, a new connection per request (full handshakes/s)" ;;
  esac
  echo "| $label | $n | $m | $(awk -v a="$m" -v b="$n" 'BEGIN {printf "%.2f", a/b}') |"
done
cat <<EOF

per round: $(for c in "${cases[@]}"; do echo -n "$c nginx [${res[nginx,$c]% }] manifold [${res[manifold,$c]% }]; "; done)
origin segment requests during the measured runs: $((after - before)) (0 = every request was a cache hit)
EOF
