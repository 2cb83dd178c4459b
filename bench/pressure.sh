#!/usr/bin/env bash
#
# bench/pressure.sh — peak memory of `fhirgw serve` under hostile load: the
# cases of the penetration test, on loopback, bounded in time (about a
# minute and a half with the defaults).
#
#   bench/pressure.sh [BUILD_DIR] [FHIRGW_BIN]
#       BUILD_DIR   where bench-pressure is (default: build, a Release build)
#       FHIRGW_BIN  the server to measure (default: BUILD_DIR/fhirgw); give
#                   the binary of an older commit to compare before and after
#
# Phases, each against a freshly started server (so its peak RSS, VmHWM, is
# the phase's own), all with one store and test PKI in a temporary dir:
#   idle       start, one request, stop
#   stalled    UPLOADS connections each declare DECLARE body bytes, send
#              64 KiB and stall for HOLD seconds
#   filled     the same, but each sends FILL bytes before stalling
#   answers    ANSWERS clients at once GET a search page of PAGE_RESOURCES
#              Binary resources of RESOURCE_BYTES each (created beforehand);
#              meanwhile a probe sends small searches one after another and
#              reports the slowest (how long a huge page keeps others waiting)
# For each phase it prints the server's peak RSS and what the clients saw.
#
# Settings (environment): UPLOADS=64 DECLARE=16m FILL=12m HOLD=4 ANSWERS=4
# PAGE_RESOURCES=400 RESOURCE_BYTES=262144 WORKERS=2 PORT=18540 (uses PORT
# and PORT+1); PHASES="idle stalled filled answers" (a subset runs only
# those); PAGE_MAX_BYTES (the server's page_max_bytes, e.g. 1g to measure
# uncut pages; unset: the server's default, and the only choice for servers
# older than that setting). Only processes this script started are stopped,
# by their id.
set -euo pipefail
exec </dev/null

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
FHIRGW=${2:-$BUILD/fhirgw}
UPLOADS=${UPLOADS:-64}
DECLARE=${DECLARE:-16m}
FILL=${FILL:-12m}
HOLD=${HOLD:-4}
ANSWERS=${ANSWERS:-4}
PAGE_RESOURCES=${PAGE_RESOURCES:-400}
RESOURCE_BYTES=${RESOURCE_BYTES:-262144}
WORKERS=${WORKERS:-2}
PORT=${PORT:-18540}
PHASES=${PHASES:-idle stalled filled answers}
PAGE_MAX_BYTES=${PAGE_MAX_BYTES:-}

die() { echo "bench/pressure.sh: $*" >&2; exit 1; }

[ -x "$BUILD/bench-pressure" ] || {
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFHIRGW_TESTS=OFF >/dev/null
  cmake --build "$BUILD" -j2 --target bench-pressure fhirgw >/dev/null
}
[ -x "$FHIRGW" ] || die "no server binary at $FHIRGW"

GW_PID=
TMP=$(mktemp -d /tmp/fhirgw-pressure-XXXXXX)
cleanup() {
  if [ -n "$GW_PID" ]; then kill -TERM "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; fi
  rm -rf -- "$TMP"
}
trap cleanup EXIT

DEV=$TMP/dev
CERT=(--cert "$DEV/clients/hospital-a.crt" --key "$DEV/clients/hospital-a.key" --ca "$DEV/ca-bundle.pem")
printf 'workers %s\nrate_limit_per_second 0\naccess_log\n' "$WORKERS" >"$TMP/fhirgw.conf"
[ -z "$PAGE_MAX_BYTES" ] || printf 'page_max_bytes %s\n' "$PAGE_MAX_BYTES" >>"$TMP/fhirgw.conf"
phase_on() { case " $PHASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

start_server() {
  "$FHIRGW" serve --config "$TMP/fhirgw.conf" --dev "$DEV" --port "$PORT" >/dev/null 2>"$TMP/server.log" &
  GW_PID=$!
  local i
  for ((i = 0; i < 600; i++)); do
    grep -q serving "$TMP/server.log" 2>/dev/null && return 0
    kill -0 "$GW_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$TMP/server.log" >&2
  die "the server did not start"
}

# Stop the server and print its peak RSS in MiB.
stop_server() {
  local hwm
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$GW_PID/status")
  kill -TERM "$GW_PID"
  wait "$GW_PID" 2>/dev/null || true
  GW_PID=
  echo $((hwm / 1024))
}

curl_gw() {
  curl -s --max-time 60 --cacert "$DEV/ca.pem" --cert "$DEV/clients/hospital-a.crt" \
    --key "$DEV/clients/hospital-a.key" "$@"
}

pressure() { "$BUILD/bench-pressure" --port "$PORT" "${CERT[@]}" "$@"; }

# ---- phases --------------------------------------------------------------------------

if phase_on idle; then
  start_server
  curl_gw -o /dev/null "https://127.0.0.1:$PORT/metadata"
  printf '%-8s peak RSS %5s MiB\n' idle "$(stop_server)"
fi

for phase in stalled filled; do
  phase_on "$phase" || continue
  send=64k
  [ "$phase" = filled ] && send=$FILL
  start_server
  seen=$(pressure uploads --connections "$UPLOADS" --declare "$DECLARE" --send "$send" --hold "$HOLD" | tail -1)
  printf '%-8s peak RSS %5s MiB  (%s uploads declaring %s, %s sent each: %s)\n' "$phase" "$(stop_server)" \
    "$UPLOADS" "$DECLARE" "$send" "$seen"
done

phase_on answers || exit 0

# Binary resources for the big search page, created once (not measured).
start_server
data=$(head -c $((RESOURCE_BYTES * 3 / 4)) /dev/zero | tr '\0' 'A')
printf '{"resourceType":"Binary","contentType":"application/octet-stream","data":"%s"}' "$data" >"$TMP/binary.json"
for ((i = 0; i < PAGE_RESOURCES; i++)); do
  curl_gw -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/fhir+json' \
    --data-binary @"$TMP/binary.json" "https://127.0.0.1:$PORT/Binary"
done | sort | uniq -c | sed 's/^/  created: /' >&2
stop_server >/dev/null

start_server
pressure answers --connections "$ANSWERS" --path "/Binary?_count=$PAGE_RESOURCES" --timeout 120 \
  >"$TMP/answers.txt" &
PRESSURE_PID=$!
# The probe: small searches, one after another, while the huge pages are produced and read
# (at most 600, so the loop ends even if the answers never do).
sleep 0.2
for ((i = 0; i < 600; i++)); do
  kill -0 "$PRESSURE_PID" 2>/dev/null || break
  curl_gw -o /dev/null -w '%{time_total}\n' "https://127.0.0.1:$PORT/Patient?_count=1" || echo 60
done >"$TMP/probe.txt"
wait "$PRESSURE_PID" || true
seen=$(sed 's/answer [0-9]*: //' "$TMP/answers.txt" | tr '\n' ' ')
probe=$(sort -g "$TMP/probe.txt" | awk '{v[NR] = $1} END {if (NR) printf "%d small searches meanwhile, median %.3f s, max %.3f s", NR, v[int((NR + 1) / 2)], v[NR]; else printf "no small search ran meanwhile"}')
printf '%-8s peak RSS %5s MiB  (%s clients at once, a page of %s x %s bytes: %s; %s)\n' answers "$(stop_server)" \
  "$ANSWERS" "$PAGE_RESOURCES" "$RESOURCE_BYTES" "$seen" "$probe"
