#!/usr/bin/env bash
# tests/install/run.sh BUILD_DIR WORK_DIR — `cmake --install BUILD_DIR` into a fresh
# prefix under WORK_DIR, then use the installed tree only, from a folder that has
# nothing to do with the source or build trees:
#   the layout (bin/, share/fhirgw/, the systemd unit pointing at bin/fhirgw);
#   `fhirgw --version`, `fhirgw config` on the installed example configuration;
#   `fhirgw validate` on a valid and an invalid sample (exit 0 and 1), and with the installed
#   implementation guide package as --conformance;
#   `fhirgw serve --dev` loading that package by default, making its test PKI with the installed certs/make-test-pki,
#   /healthz on the ops port, GET /metadata over mutual TLS with the dev PKI, a backup beside
#   it into a folder named by its time, and a graceful stop on SIGTERM (exit 0);
#   the systemd units (the gateway, the backup's service and timer) naming the installed binary.
set -euo pipefail
build=$1 work=$2
rm -rf "$work" && mkdir -p "$work/elsewhere"
prefix=$work/prefix
fail() { echo "install test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install failed"; }

bin=$prefix/bin/fhirgw
[ -x "$bin" ] || fail "no $bin"
[ -x "$prefix/share/fhirgw/certs/make-test-pki" ] || fail "no executable share/fhirgw/certs/make-test-pki"
[ -f "$prefix/share/fhirgw/deploy/fhirgw.conf" ] || fail "no share/fhirgw/deploy/fhirgw.conf"
unit=$prefix/lib/systemd/system/fhirgw.service
[ -f "$unit" ] || fail "no lib/systemd/system/fhirgw.service"
grep -qx "ExecStart=$bin serve --config /etc/fhirgw/fhirgw.conf" "$unit" ||
  fail "the unit does not start the installed binary: $(grep ExecStart "$unit")"
backup_unit=$prefix/lib/systemd/system/fhirgw-backup.service
grep -q "^ExecStart=$bin backup --config /etc/fhirgw/fhirgw.conf --to " "$backup_unit" ||
  fail "the backup unit does not run the installed binary: $(grep ExecStart "$backup_unit" 2>&1)"
grep -q "^Unit=\|^OnCalendar=" "$prefix/lib/systemd/system/fhirgw-backup.timer" || fail "no fhirgw-backup.timer"
[ -f "$prefix/share/fhirgw/ig/package/package.json" ] && [ -f "$prefix/share/fhirgw/ig/package/.index.json" ] ||
  fail "no share/fhirgw/ig/package (the implementation guide's package)"
ls "$prefix"/share/fhirgw/ig/*.tgz >/dev/null 2>&1 || fail "no share/fhirgw/ig/*.tgz"
[ ! -e "$prefix/etc" ] || fail "nothing is installed under etc/ (see cmake/Install.cmake)"

# From here on, nothing of the source or build tree may be needed.
cd "$work/elsewhere"
unset FHIRGW_PKI_SCRIPT

"$bin" --version | grep -q '^fhirgw [0-9]' || fail "fhirgw --version"
"$bin" config "$prefix/share/fhirgw/deploy/fhirgw.conf" >/dev/null || fail "the installed example configuration does not load"

printf '%s\n' '{"resourceType":"Patient","gender":"female","birthDate":"1950-01-01"}' >good.json
printf '%s\n' '{"resourceType":"Patient","gender":"female","birthDate":"2019-02-30"}' >bad.json
"$bin" validate good.json >good.out 2>&1 || fail "a valid Patient did not validate: $(cat good.out)"
status=0
"$bin" validate bad.json >bad.out 2>&1 || status=$?
[ "$status" = 1 ] || fail "an invalid Patient: exit $status, expected 1"
grep -q "day does not exist" bad.out || fail "an invalid Patient: $(cat bad.out)"
"$bin" validate --conformance "$prefix/share/fhirgw/ig/package" good.json >guide.out 2>&1 ||
  fail "validate --conformance with the installed guide package: $(cat guide.out)"

# below the kernel's ephemeral range (32768+), where other tests' port-0 listeners land
port=$((10000 + RANDOM % 20000))
"$bin" serve --dev dev --port "$port" >access.log 2>server.log &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q 'serving' server.log 2>/dev/null && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
grep -q 'serving' server.log || { cat server.log >&2; fail "serve --dev did not start"; }
[ -f dev/ca.pem ] && [ -f dev/clients/hospital-a.crt ] || fail "serve --dev made no test PKI in dev/"
grep -q "implementation guide's package $prefix/bin/../share/fhirgw/ig/package" server.log ||
  fail "serve did not load the installed guide package: $(grep conformance server.log)"

code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((port + 1))/healthz" || true)
[ "$code" = 200 ] || fail "/healthz on the ops port $((port + 1)) answered '$code'"
curl -sS --fail --max-time 20 --cacert dev/ca.pem --cert dev/clients/hospital-a.crt --key dev/clients/hospital-a.key \
  "https://127.0.0.1:$port/metadata" >metadata.json || fail "GET /metadata over mutual TLS failed"
grep -q '"resourceType":"CapabilityStatement"' metadata.json || fail "GET /metadata: $(head -c 300 metadata.json)"
# without a client certificate the handshake is refused
! curl -s --max-time 20 --cacert dev/ca.pem "https://127.0.0.1:$port/metadata" >/dev/null 2>&1 ||
  fail "a client without a certificate was served"

# a backup beside the serving gateway, into a folder named by its time (as the backup unit names it)
"$bin" backup --dev dev --to 'backups/%Y-%m-%dT%H%M%S' >backup.out 2>&1 || fail "fhirgw backup: $(cat backup.out)"
set -- backups/*/fhirgw.db
[ -f "$1" ] && [ -d "${1%/fhirgw.db}/fhirgw.db-documents" ] && [ -f "${1%/fhirgw.db}/audit-checkpoints" ] ||
  fail "fhirgw backup made no database, document folder and checkpoint file under backups/: $(cat backup.out)"
case "$1" in backups/20[0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]/fhirgw.db) ;;
  *) fail "the backup's folder is not named by its time: $1" ;;
esac

kill -TERM $pid
status=0
wait $pid || status=$?
trap - EXIT
[ "$status" = 0 ] || { tail -20 server.log >&2; fail "serve --dev exited with $status on SIGTERM"; }
grep -q 'stopped' server.log || fail "no 'stopped' in the server log"
echo "install test: installed tree in $prefix works from $(pwd)"
cd / && rm -rf "$work"
