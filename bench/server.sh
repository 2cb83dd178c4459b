#!/usr/bin/env bash
#
# bench/server.sh — throughput, latency and idle memory of the HTTPS front,
# with nginx serving the same bytes over the same kind of TLS as the ceiling.
#
#   bench/server.sh [BUILD_DIR]        default BUILD_DIR: build (a Release build)
#
# What it does, all on loopback, bounded in time (about 40 s by default):
#   1. makes a throw-away test PKI (certs/make-test-pki) in a temporary dir;
#   2. starts bench-server (the srv_ API with a fixed-JSON handler) and nginx
#      (a temporary config: TLS 1.2/1.3, client certificates required and
#      checked against the same CA and CRL, the same JSON file, no access log);
#   3. runs bench-loadgen against each: keep-alive TLS with a client
#      certificate, CONNECTIONS connections, DURATION seconds, GET;
#   4. opens IDLE idle TLS connections to bench-server and reads its RSS;
#   5. prints both rows, the ratios and the targets.
#
# Settings (environment): CONNECTIONS=64 DURATION=10 WORKERS=1 (server threads
# and nginx worker processes alike) LOADGEN_THREADS=1 IDLE=1000 BODY_BYTES=2048
# PORT_BASE=18440 (uses PORT_BASE .. PORT_BASE+3).
#
# nginx is installed with apt-get when missing (as root, or through sudo).
# Only processes this script started are stopped, by their process id.
set -euo pipefail
exec </dev/null

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10}
WORKERS=${WORKERS:-1}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
IDLE=${IDLE:-1000}
BODY_BYTES=${BODY_BYTES:-2048}
PORT_BASE=${PORT_BASE:-18440}
SRV_PORT=$PORT_BASE
OPS_PORT=$((PORT_BASE + 1))
NGINX_PORT=$((PORT_BASE + 2))

die() { echo "bench/server.sh: $*" >&2; exit 1; }

# ---- prerequisites -----------------------------------------------------------

ensure_nginx() {
  if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then return; fi
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "bench/server.sh: installing nginx-light" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends nginx-light >&2 ||
    $sudo apt-get install -y -qq --no-install-recommends nginx >&2
}

ensure_binaries() {
  if [ ! -x "$BUILD/bench-server" ] || [ ! -x "$BUILD/bench-loadgen" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFHIRGW_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target bench-server bench-loadgen >/dev/null
  fi
}

# ---- processes we start, and only those, are stopped on exit ------------------

PIDS=()
TMP=
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "$TMP" ] && rm -rf -- "$TMP"
}
trap cleanup EXIT

wait_for_file_line() { # FILE SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  return 1
}

wait_for_port() { # PORT SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---- fixtures -------------------------------------------------------------------

make_body() { # a CarePlan-shaped JSON of exactly BODY_BYTES bytes
  local head='{"resourceType":"CarePlan","id":"bench","status":"active","intent":"plan","subject":{"reference":"Patient/1"},"note":[{"text":"'
  local tail='"}]}'
  local fill=$((BODY_BYTES - ${#head} - ${#tail}))
  [ "$fill" -ge 0 ] || die "BODY_BYTES too small"
  { printf '%s' "$head"; head -c "$fill" /dev/zero | tr '\0' 'x'; printf '%s' "$tail"; } >"$TMP/body.json"
}

write_nginx_conf() {
  mkdir -p "$TMP/nginx/logs" "$TMP/nginx/www"
  cp "$TMP/body.json" "$TMP/nginx/www/body.json"
  cat >"$TMP/nginx/nginx.conf" <<EOF
# written by bench/server.sh; removed when it ends
daemon off;
worker_processes $WORKERS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $TMP/pki/server.crt;
        ssl_certificate_key $TMP/pki/server.key;
        ssl_client_certificate $TMP/pki/ca-bundle.pem;
        ssl_crl $TMP/pki/crl.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
        location / {
            root $TMP/nginx/www;
            default_type application/fhir+json;
            try_files /body.json =404;
        }
    }
}
EOF
}

# ---- runs -------------------------------------------------------------------------

loadgen() { # PORT -> one result line
  "$BUILD/bench-loadgen" --port "$1" --cert "$TMP/pki/clients/hospital-a.crt" \
    --key "$TMP/pki/clients/hospital-a.key" --ca "$TMP/pki/ca-bundle.pem" \
    --connections "$CONNECTIONS" --threads "$LOADGEN_THREADS" --duration "$DURATION" --path /CarePlan/1
}

field() { # LINE NAME
  sed -n "s/.*\\b$2=\\([0-9.]*\\).*/\\1/p" <<<"$1"
}

start_bench_server() {
  : >"$TMP/server.out"
  "$BUILD/bench-server" --pki "$TMP/pki" --port "$SRV_PORT" --ops-port "$OPS_PORT" --workers "$WORKERS" \
    --body "$TMP/body.json" >"$TMP/server.out" 2>"$TMP/server.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_for_file_line "$TMP/server.out" 10 || { cat "$TMP/server.err" >&2; die "bench-server did not start"; }
}

stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

main() {
  ensure_nginx
  ensure_binaries
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
  TMP=$(mktemp -d /tmp/fhirgw-bench-XXXXXX)
  "$ROOT/certs/make-test-pki" "$TMP/pki" >/dev/null
  make_body
  write_nginx_conf

  echo "bench/server.sh: $CONNECTIONS keep-alive TLS connections, ${DURATION}s each, $WORKERS worker(s)," \
       "$BODY_BYTES-byte JSON, client certificates on both sides, $(nproc) cores"

  start_bench_server
  local ours; ours=$(loadgen "$SRV_PORT")
  stop_pid "$SERVER_PID"

  "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" &
  local nginx_pid=$!
  PIDS+=("$nginx_pid")
  wait_for_port "$NGINX_PORT" 10 || { cat "$TMP/nginx/logs/error.log" >&2; die "nginx did not start"; }
  local theirs; theirs=$(loadgen "$NGINX_PORT")
  stop_pid "$nginx_pid"

  # Idle memory: a fresh server, IDLE handshaken connections held open.
  start_bench_server
  local rss_before rss_idle opened
  rss_before=$(rss_kb "$SERVER_PID")
  "$BUILD/bench-loadgen" --port "$SRV_PORT" --cert "$TMP/pki/clients/gp.crt" --key "$TMP/pki/clients/gp.key" \
    --ca "$TMP/pki/ca-bundle.pem" --idle "$IDLE" --hold 4 >"$TMP/idle.out" &
  local idle_pid=$!
  PIDS+=("$idle_pid")
  wait_for_file_line "$TMP/idle.out" 60 || die "idle connections did not open"
  sleep 1
  rss_idle=$(rss_kb "$SERVER_PID")
  opened=$(field "$(cat "$TMP/idle.out")" idle_connections)
  wait "$idle_pid" || true
  stop_pid "$SERVER_PID"

  printf '\n%-14s %10s %10s %10s %10s %8s\n' "" "req/s" "p50 ms" "p99 ms" "max ms" "errors"
  row() {
    printf '%-14s %10s %10.2f %10.2f %10.2f %8s\n' "$1" "$(field "$2" rps)" \
      "$(echo "$(field "$2" p50_us) / 1000" | bc -l)" "$(echo "$(field "$2" p99_us) / 1000" | bc -l)" \
      "$(echo "$(field "$2" max_us) / 1000" | bc -l)" "$(field "$2" errors)"
  }
  row "bench-server" "$ours"
  row "nginx" "$theirs"
  local ratio p99_ms idle_mb
  ratio=$(echo "100 * $(field "$ours" rps) / $(field "$theirs" rps)" | bc -l)
  p99_ms=$(echo "$(field "$ours" p99_us) / 1000" | bc -l)
  idle_mb=$(echo "$rss_idle / 1024" | bc -l)
  printf '\nthroughput vs nginx: %.0f%% (target >= 70%%)\n' "$ratio"
  printf 'p99 latency: %.2f ms (target < 10 ms)\n' "$p99_ms"
  printf 'p99 vs nginx: %.2fx\n' "$(echo "$(field "$ours" p99_us) / $(field "$theirs" p99_us)" | bc -l)"
  printf 'resident memory: %.1f MB at start, %.1f MB with %s idle TLS connections (target <= 64 MB)\n' \
    "$(echo "$rss_before / 1024" | bc -l)" "$idle_mb" "$opened"
}

main "$@"
