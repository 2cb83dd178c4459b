#!/usr/bin/env bash
# tests/fhirkit/run.sh FHIRGW_BIN WORK_DIR — start `fhirgw serve --dev` on a free port with a
# fresh test PKI in WORK_DIR, install fhir-kit-client there (npm, pinned by package-lock.json),
# run smoke.mjs against it, stop the server gracefully. Exit status: the smoke test's.
set -euo pipefail
bin=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$here/smoke.mjs" "$work/"
(cd "$work" && npm ci --silent --no-audit --no-fund >/dev/null 2>&1) || { echo "npm ci failed"; exit 1; }
# below the kernel's ephemeral range (32768+), where other tests' port-0 listeners land
port=$(( 10000 + RANDOM % 20000 ))
"$bin" serve --dev "$work/dev" --port "$port" >"$work/access.log" 2>"$work/server.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q 'serving' "$work/server.log" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
if ! grep -q 'serving' "$work/server.log"; then
  echo "the server did not start:"; cat "$work/server.log"; exit 1
fi
# the ops endpoints of a dev instance started with only --port N are on N+1 (README, serve --help)
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((port + 1))/healthz" || true)
[ "$code" = 200 ] || { echo "ops port $((port + 1)): /healthz answered '$code'"; exit 1; }
node "$work/smoke.mjs" "https://127.0.0.1:$port" "$work/dev" "$here/../../ig/examples" || { echo "server log:"; tail -20 "$work/server.log"; exit 1; }
