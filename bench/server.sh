#!/usr/bin/env bash
#
# bench/server.sh — throughput, latency and idle memory of the gateway
# (`fhirgw serve`: the real REST handlers, validation and the SQLite store),
# with nginx serving a static JSON of the same size over the same kind of TLS
# as the ceiling, all in the same run.
#
#   bench/server.sh [BUILD_DIR]        default BUILD_DIR: build (a Release build)
#
# What it does, all on loopback, bounded in time (about 40 s by default):
#   1. makes a throw-away test PKI (certs/make-test-pki) in a temporary dir;
#   2. starts `fhirgw serve` with a temporary config (store in the temporary
#      dir, rate limits off, no access log) and nginx (a temporary config:
#      TLS 1.2/1.3, client certificates required and checked against the same
#      CA and CRL, no access log);
#   3. runs bench-loadgen (keep-alive TLS with a client certificate,
#      CONNECTIONS connections, DURATION seconds) for GET /metadata,
#      GET /CarePlan/{id} and POST /CarePlan (validated, indexed, stored,
#      durable), and against nginx serving files of the same sizes as the two
#      read answers;
#   4. also the bare HTTPS front (bench-server, a fixed-JSON handler);
#   5. opens IDLE idle TLS connections to fhirgw and reads its RSS;
#   6. prints the rows, the ratios and the targets.
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
  if [ ! -x "$BUILD/bench-server" ] || [ ! -x "$BUILD/bench-loadgen" ] || [ ! -x "$BUILD/fhirgw" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFHIRGW_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target bench-server bench-loadgen fhirgw >/dev/null
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

make_body() { # [SUBJECT] -> a CarePlan-shaped JSON of exactly BODY_BYTES bytes
  local head='{"resourceType":"CarePlan","id":"bench","status":"active","intent":"plan","subject":{"reference":"'"${1:-Patient/1}"'"},"note":[{"text":"'
  local tail='"}]}'
  local fill=$((BODY_BYTES - ${#head} - ${#tail}))
  [ "$fill" -ge 0 ] || die "BODY_BYTES too small"
  { printf '%s' "$head"; head -c "$fill" /dev/zero | tr '\0' 'x'; printf '%s' "$tail"; } >"$TMP/body.json"
}

write_nginx_conf() {
  mkdir -p "$TMP/nginx/logs" "$TMP/nginx/www"
  chmod 755 "$TMP/nginx" "$TMP/nginx/www"
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
        }
    }
}
EOF
}

# ---- runs -------------------------------------------------------------------------

loadgen() { # PORT PATH [extra args] -> one result line
  local port=$1 path=$2
  shift 2
  "$BUILD/bench-loadgen" --port "$port" --cert "$TMP/pki/clients/hospital-a.crt" \
    --key "$TMP/pki/clients/hospital-a.key" --ca "$TMP/pki/ca-bundle.pem" \
    --connections "$CONNECTIONS" --threads "$LOADGEN_THREADS" --duration "$DURATION" --path "$path" "$@"
}

curl_gw() { # curl as hospital-a against fhirgw
  curl -s --cacert "$TMP/pki/ca.pem" --cert "$TMP/pki/clients/hospital-a.crt" \
    --key "$TMP/pki/clients/hospital-a.key" "$@"
}

start_fhirgw() {
  {
    echo "listen 127.0.0.1:$GW_PORT"
    echo "ops_listen 127.0.0.1:$GW_OPS_PORT"
    echo "base_url https://127.0.0.1:$GW_PORT"
    echo "workers $WORKERS"
    echo "tls_cert $TMP/pki/server.crt"
    echo "tls_key $TMP/pki/server.key"
    echo "tls_client_ca $TMP/pki/ca-bundle.pem"
    echo "tls_crl $TMP/pki/crl.pem"
    echo "organisations $TMP/pki/organisations.tsv"
    echo "outbound_cert $TMP/pki/outbound.crt"
    echo "outbound_key $TMP/pki/outbound.key"
    echo "outbound_ca $TMP/pki/ca-bundle.pem"
    echo "audit_key_file $TMP/pki/audit.key"
    echo "audit_checkpoint_key $TMP/pki/audit-checkpoint.pem"
    echo "audit_checkpoint_file $TMP/pki/audit-checkpoints"
    echo "pseudonym_key_file $TMP/pki/pseudonym.key"
    echo "seal_key_file $TMP/pki/seal.key"
    echo "store_path $TMP/fhirgw.db"
    echo "rate_limit_per_second 0"
    echo "store_batch_wait_us ${BATCH_WAIT_US:-0}"
    echo "access_log"
  } >"$TMP/fhirgw.conf"
  "$BUILD/fhirgw" serve --config "$TMP/fhirgw.conf" >"$TMP/fhirgw.out" 2>"$TMP/fhirgw.err" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  wait_for_port "$GW_PORT" 20 || { cat "$TMP/fhirgw.err" >&2; die "fhirgw did not start"; }
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

row() { # NAME RESULT_LINE
  printf '%-26s %10s %10.2f %10.2f %10.2f %8s %8s\n' "$1" "$(field "$2" rps)" \
    "$(echo "$(field "$2" p50_us) / 1000" | bc -l)" "$(echo "$(field "$2" p99_us) / 1000" | bc -l)" \
    "$(echo "$(field "$2" max_us) / 1000" | bc -l)" "$(field "$2" errors)" "$(field "$2" non2xx)"
}

ratio() { echo "100 * $(field "$1" rps) / $(field "$2" rps)" | bc -l; }

main() {
  ensure_nginx
  ensure_binaries
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
  TMP=$(mktemp -d /tmp/fhirgw-bench-XXXXXX)
  chmod 755 "$TMP" # nginx's workers run as an unprivileged user and must reach www/
  GW_PORT=$((PORT_BASE + 3))
  GW_OPS_PORT=$((PORT_BASE + 4))
  "$ROOT/certs/make-test-pki" "$TMP/pki" >/dev/null
  make_body
  write_nginx_conf

  echo "bench/server.sh: $CONNECTIONS keep-alive TLS connections, ${DURATION}s per run, $WORKERS worker(s)," \
       "client certificates on both sides, $(nproc) cores"

  # The gateway: one CarePlan to read; the two read answers saved for nginx to serve at the same size.
  start_fhirgw
  # The gateway refuses references that do not resolve (referential integrity): a real Patient first.
  local patient
  patient=$(curl_gw -H 'Content-Type: application/fhir+json' --data-binary '{"resourceType":"Patient"}' \
    "https://127.0.0.1:$GW_PORT/Patient" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  [ -n "$patient" ] || die "could not create the Patient the CarePlans refer to"
  make_body "Patient/$patient" # same size as before, now with a reference that resolves
  printf '%s' '{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/'"$patient"'"},"period":{"start":"2026-01-01"},"category":[{"coding":[{"system":"http://snomed.info/sct","code":"736271009"}]}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Zorgplan</div>"}}' >"$TMP/careplan.json"
  local id
  id=$(curl_gw -H 'Content-Type: application/fhir+json' --data-binary @"$TMP/careplan.json" \
    "https://127.0.0.1:$GW_PORT/CarePlan" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  [ -n "$id" ] || die "could not create the CarePlan to read"
  curl_gw "https://127.0.0.1:$GW_PORT/metadata" >"$TMP/nginx/www/metadata.json"
  curl_gw "https://127.0.0.1:$GW_PORT/CarePlan/$id" >"$TMP/nginx/www/careplan.json"
  local meta read write
  meta=$(loadgen "$GW_PORT" /metadata)
  read=$(loadgen "$GW_PORT" "/CarePlan/$id")
  write=$(loadgen "$GW_PORT" /CarePlan --method POST --body "$TMP/careplan.json")
  local commits
  commits=$(curl -s "http://127.0.0.1:$GW_OPS_PORT/metrics" | awk '/^fhirgw_store_commit_seconds_count/ {print $2}')
  stop_pid "$GW_PID"

  "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" &
  local nginx_pid=$!
  PIDS+=("$nginx_pid")
  wait_for_port "$NGINX_PORT" 10 || { cat "$TMP/nginx/logs/error.log" >&2; die "nginx did not start"; }
  local n_meta n_read n_body
  n_meta=$(loadgen "$NGINX_PORT" /metadata.json)
  n_read=$(loadgen "$NGINX_PORT" /careplan.json)
  n_body=$(loadgen "$NGINX_PORT" /body.json)
  stop_pid "$nginx_pid"

  # The bare HTTPS front with a fixed-JSON handler: what the REST layer costs on top.
  start_bench_server
  local bare
  bare=$(loadgen "$SRV_PORT" /CarePlan/1)
  stop_pid "$SERVER_PID"

  # Idle memory: a fresh gateway, IDLE handshaken connections held open.
  start_fhirgw
  local rss_before rss_idle opened
  rss_before=$(rss_kb "$GW_PID")
  "$BUILD/bench-loadgen" --port "$GW_PORT" --cert "$TMP/pki/clients/gp.crt" --key "$TMP/pki/clients/gp.key" \
    --ca "$TMP/pki/ca-bundle.pem" --idle "$IDLE" --hold 4 >"$TMP/idle.out" &
  local idle_pid=$!
  PIDS+=("$idle_pid")
  wait_for_file_line "$TMP/idle.out" 60 || die "idle connections did not open"
  sleep 1
  rss_idle=$(rss_kb "$GW_PID")
  opened=$(field "$(cat "$TMP/idle.out")" idle_connections)
  wait "$idle_pid" || true
  stop_pid "$GW_PID"

  printf '\n%-26s %10s %10s %10s %10s %8s %8s\n' "" "req/s" "p50 ms" "p99 ms" "max ms" "errors" "non-2xx"
  row "fhirgw GET /metadata" "$meta"
  row "nginx same-size file" "$n_meta"
  row "fhirgw GET /CarePlan/id" "$read"
  row "nginx same-size file" "$n_read"
  row "fhirgw POST /CarePlan" "$write"
  row "bare front, fixed JSON" "$bare"
  row "nginx $BODY_BYTES-byte file" "$n_body"
  printf '\nreads vs nginx: /metadata %.0f%%, /CarePlan/{id} %.0f%% (target >= 70%%)\n' \
    "$(ratio "$meta" "$n_meta")" "$(ratio "$read" "$n_read")"
  printf 'durable writes: %s/s (target >= 5000/s) in %s commits: %.1f writes per sync (group commit)\n' \
    "$(field "$write" rps)" "$commits" "$(echo "$(field "$write" requests) / ($commits + 0.0001)" | bc -l)"
  printf 'p99 latency: read %.2f ms, write %.2f ms (target < 10 ms)\n' \
    "$(echo "$(field "$read" p99_us) / 1000" | bc -l)" "$(echo "$(field "$write" p99_us) / 1000" | bc -l)"
  printf 'bare front vs nginx: %.0f%%\n' "$(ratio "$bare" "$n_body")"
  printf 'resident memory: %.1f MB at start, %.1f MB with %s idle TLS connections (target <= 64 MB)\n' \
    "$(echo "$rss_before / 1024" | bc -l)" "$(echo "$rss_idle / 1024" | bc -l)" "$opened"
}

main "$@"
