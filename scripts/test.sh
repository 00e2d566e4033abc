#!/usr/bin/env bash
# The full test run of runner-spawner, as CI runs it (.ci/run) on a fresh Debian 12
# machine: it sets up a real LXD daemon and a real single-node OpenStack (Debian's
# packages, daemons started by hand, no systemd needed), runs docker-compose.yml for real
# (scripts/compose-test.sh: dockerd, every image built locally, 500 jobs through the
# stack while containers are killed), then runs every Go test with the race detector,
# dockerd still running beside LXD. The real-service suites FAIL instead of skipping here
# (SPAWNER_REQUIRE_LXD=1, SPAWNER_REQUIRE_OPENSTACK=1), and a final check fails the run
# if any of them was skipped anyway.
#
# Everything the tests use is provisioned here, idempotently: made when missing, reused
# when present (the images are keyed by their recipe's hash). Nothing an earlier run left
# is needed: after both setups' "purge" this runs as on a fresh machine.
#
# Usage: scripts/test.sh                 (as root; a non-root user is taken through sudo)
# Env:   SPAWNER_TEST_NO_SERVICES=1      skip the setups and the compose test (and let the
#                                        real-service suites skip)
#        SPAWNER_TEST_TIMEOUT (25m)      go test -timeout
set -euo pipefail
. "$(dirname "$0")/lib/root.sh"
become_root "$@"   # before the cd: it runs "$0" again
cd "$(dirname "$0")/.."
with_go
T0=$(date +%s)
log() { printf '[test %s +%ss] %s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - T0 ))" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

command -v go >/dev/null || fail "Go is not installed (Go 1.26 or newer: https://go.dev/dl, or /usr/local/go/bin on this machine type)"
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "${go_minor:-0}" -ge 26 ] || fail "Go $(go env GOVERSION) is too old: 1.26 or newer is needed"
export CGO_ENABLED=1   # the race detector needs cgo (gcc is on the machine)
WORK=$(mktemp -d)
# A run that fails early must not leave its background work (the compile, the image
# build) running: it would go on writing into this run's output and use the CPU of the
# next. Each is stopped with everything it started.
killtree() { local c; for c in $(pgrep -P "$1" 2>/dev/null); do killtree "$c"; done; kill "$1" 2>/dev/null || true; }
cleanup() {
  local p; for p in $(jobs -p); do killtree "$p"; done; rm -rf "$WORK"
  if [ "${STOP_DOCKER:-0}" = 1 ]; then bash scripts/compose-test.sh stop || true; fi
}
trap cleanup EXIT

# The Go modules: the product, and deployments/ (the deployment files' checks, a module
# of its own so that their libraries stay out of the product's go.mod).
GO_MODULES=(. deployments)
# Compile everything with -race in the background while the services install: the
# compile is CPU-bound, the installs mostly wait for the network and dpkg.
log "compiling tests in the background"
( rc=0; for m in "${GO_MODULES[@]}"; do go test -C "$m" -race -count=1 -run '^$' ./... >>"$WORK/compile.log" 2>&1 || rc=1; done; echo $rc >"$WORK/compile.rc" ) &
COMPILE=$!

STOP_DOCKER=0
if [ "${SPAWNER_TEST_NO_SERVICES:-0}" != 1 ]; then
  # Docker, the compose plugin and the stack's images: mostly compiling (6 to 10 minutes
  # of it on a fresh machine, seconds once cached), so it overlaps the setups, which wait
  # on apt and dpkg. A dockerd started here is stopped when this run ends.
  docker version >/dev/null 2>&1 || STOP_DOCKER=1
  log "Docker and the compose images in the background (scripts/compose-test.sh up)"
  ( bash scripts/compose-test.sh up >"$WORK/compose-up.log" 2>&1; echo $? >"$WORK/compose-up.rc" ) &
  COMPOSE_UP=$!
  log "setting up LXD (scripts/lxd-setup.sh up)"
  bash scripts/lxd-setup.sh up >"$WORK/lxd.log" 2>&1 || { tail -40 "$WORK/lxd.log"; fail "LXD setup"; }
  tail -1 "$WORK/lxd.log"
  # The Debian image (real systemd and cloud-init) takes minutes to debootstrap when it is
  # not cached: build it while OpenStack installs, which waits mostly on apt and MariaDB.
  log "image deb12 in the background (scripts/lxd-setup.sh image deb12)"
  ( bash scripts/lxd-setup.sh image deb12 >"$WORK/deb12.log" 2>&1; echo $? >"$WORK/deb12.rc" ) &
  DEB12=$!
  log "setting up OpenStack (scripts/openstack-setup.sh up)"
  bash scripts/openstack-setup.sh up >"$WORK/openstack.log" 2>&1 || { tail -40 "$WORK/openstack.log"; fail "OpenStack setup"; }
  grep -E 'ready in|all services up' "$WORK/openstack.log" | tail -1 || true
  wait "$DEB12" || true
  if [ "$(cat "$WORK/deb12.rc")" != 0 ]; then tail -40 "$WORK/deb12.log"; fail "image deb12"; fi
  grep -E 'built image|imported image' "$WORK/deb12.log" || log "image deb12 already imported"
  export SPAWNER_REQUIRE_LXD=1 SPAWNER_REQUIRE_OPENSTACK=1
  wait "$COMPOSE_UP" || true
  if [ "$(cat "$WORK/compose-up.rc")" != 0 ]; then tail -40 "$WORK/compose-up.log"; fail "compose images"; fi
  grep -E 'built |ready in|started' "$WORK/compose-up.log" || true
fi

wait "$COMPILE" || true
if [ "$(cat "$WORK/compile.rc")" != 0 ]; then cat "$WORK/compile.log"; fail "compile"; fi
log "compiled"

if [ "${SPAWNER_TEST_NO_SERVICES:-0}" != 1 ]; then
  # Alone on the machine: the stack is 13 containers, and the Go tests time things too.
  # It gates the run itself (it fails unless TestComposeStack passed); dockerd stays up
  # for the Go tests, so the LXD suites run beside it.
  log "compose test (scripts/compose-test.sh run)"
  bash scripts/compose-test.sh run || fail "compose test"
fi

log "go vet, gofmt"
for m in "${GO_MODULES[@]}"; do go vet -C "$m" ./...; done
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
[ -z "$unformatted" ] || fail "gofmt would change: $unformatted"

log "go test -race ./..."
rc=0
: >"$WORK/test.json"; : >"$WORK/test.err"
# TestComposeStack drives a running stack: compose-test.sh ran it above (and failed the
# run unless it passed), so here it is left out rather than listed as skipped.
for m in "${GO_MODULES[@]}"; do
  go test -C "$m" -race -count=1 -timeout "${SPAWNER_TEST_TIMEOUT:-25m}" -skip '^TestComposeStack$' -json ./... >>"$WORK/test.json" 2>>"$WORK/test.err" || rc=1
done
# Human-readable output: failures in full, a line per package.
go run ./internal/testreport <"$WORK/test.json" || rc=1
[ -s "$WORK/test.err" ] && cat "$WORK/test.err"
[ "$rc" = 0 ] || fail "go test"
log "all tests passed"
