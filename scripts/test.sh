#!/usr/bin/env bash
# The full test run of runner-spawner, as CI runs it (.ci/run) on a fresh Debian 12
# machine: it sets up a real LXD daemon and a real single-node OpenStack (Debian's
# packages, daemons started by hand, no systemd needed), runs docker-compose.yml for real
# (scripts/compose-test.sh: dockerd, every image built locally, 500 jobs through the
# stack while containers are killed), and runs every Go test, with the race detector in
# every product package but cmd/spawner (whose tests run the released binary as
# processes; they and the deployments module's checks run in the released, static
# build configuration, see static() below). The
# Go tests start once the compile and LXD are ready, while the compose images may still
# be building; those that need a setup still under way wait for it (SPAWNER_TEST_AWAIT);
# the compose test runs last. The real-service suites FAIL instead of skipping
# here (SPAWNER_REQUIRE_LXD=1, SPAWNER_REQUIRE_OPENSTACK=1), and a final check fails the
# run if any of them was skipped anyway.
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
# Every build configuration is a compile of every dependency (nats-server, go-github,
# gophercloud, ... and, for deployments/, Kubernetes and compose-go), which on an empty
# build cache is minutes of CPU. So there are two: -race (with cgo, as the race detector
# needs) for the product's packages, and the released one, static and -trimpath, for
# everything else: cmd/spawner's tests and the binary their TestMain builds, the
# deployments module's tests (they check files and run the binary), go vet, and the
# compose image's binary (scripts/compose-test.sh). static CMD... (scripts/lib/root.sh)
# runs CMD in the latter.
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
# cmd/spawner's tests run the released binary (static, built without -race) as separate
# processes; its test process holds only the harness, the fakes and in-process NATS
# servers, so -race there would cost its run several times the CPU
# (TestClusterSurvivesFailures: 285 s with it, 99-145 s without, in comparable runs) and
# instrument no product code: every product package gets -race in its own tests.
E2E_PKG=./cmd/spawner
# race_pkgs: the product module's packages that run with -race (all but cmd/spawner).
race_pkgs() { go list ./... | grep -vx "$(go list "$E2E_PKG")"; }

# bg NAME CMD...: run CMD in the background, its output in $WORK/NAME.log and its exit
# status in $WORK/NAME.rc. need NAME: wait for it and fail the run unless it succeeded.
# done NAME: whether it has ended (well or not). await_bg NAME: wait for it, and return
# non-zero, its log's tail printed, unless it succeeded.
declare -A BG_PID
bg() { local name=$1; shift; ( set +e; "$@" >"$WORK/$name.log" 2>&1; echo $? >"$WORK/$name.rc" ) & BG_PID[$name]=$!; }
done_bg() { [ -e "$WORK/$1.rc" ]; }
await_bg() {
  wait "${BG_PID[$1]}" || true
  if [ "$(cat "$WORK/$1.rc" 2>/dev/null)" != 0 ]; then tail -60 "$WORK/$1.log"; log "FAIL: $1"; return 1; fi
}
need() { await_bg "$1" || exit 1; }

# Compile every test binary in the background while the services install (the compile is
# CPU-bound, the installs mostly wait for the network and dpkg). go vet and gofmt run
# beside the tests, after the packages of their stream, at a lower CPU priority: they
# reuse its compile.
compile_tests() {
  local m
  go test -race -count=1 -run '^$' $(race_pkgs) || return 1
  static go test -count=1 -run '^$' "$E2E_PKG" || return 1
  for m in "${GO_MODULES[@]:1}"; do static go test -C "$m" -count=1 -run '^$' ./... || return 1; done
}
vet_and_fmt() {
  local m unformatted
  for m in "${GO_MODULES[@]}"; do static nice -n 10 go vet -C "$m" ./... || return 1; done
  unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
  [ -z "$unformatted" ] || { echo "gofmt would change: $unformatted"; return 1; }
}
log "compiling tests in the background"
bg compile compile_tests

STOP_DOCKER=0
SERVICES=1
[ "${SPAWNER_TEST_NO_SERVICES:-0}" = 1 ] && SERVICES=0
if [ "$SERVICES" = 1 ]; then
  # Docker, the compose plugin and the stack's images: mostly compiling (6 to 15 minutes
  # of it on a fresh machine, seconds once cached), so it overlaps the setups, which wait
  # on apt and dpkg. A dockerd started here is stopped when this run ends.
  docker version >/dev/null 2>&1 || STOP_DOCKER=1
  log "Docker and the compose images in the background (scripts/compose-test.sh up)"
  bg compose-up bash scripts/compose-test.sh up
  log "setting up LXD (scripts/lxd-setup.sh up)"
  bash scripts/lxd-setup.sh up >"$WORK/lxd.log" 2>&1 || { tail -40 "$WORK/lxd.log"; fail "LXD setup"; }
  tail -1 "$WORK/lxd.log"
  # The Debian image (real systemd and cloud-init) takes minutes to debootstrap when it is
  # not cached: build it while OpenStack installs, which waits mostly on apt and MariaDB.
  log "image deb12 in the background (scripts/lxd-setup.sh image deb12)"
  bg deb12 bash scripts/lxd-setup.sh image deb12
  log "OpenStack in the background (scripts/openstack-setup.sh up)"
  bg openstack bash scripts/openstack-setup.sh up
  export SPAWNER_REQUIRE_LXD=1 SPAWNER_REQUIRE_OPENSTACK=1
fi

# The tests start as soon as the compile is done, while the compose images may still be
# building (at a lower CPU priority, see compose-test.sh): two streams, cmd/spawner (the
# longest package by far) beside every other package of both modules, which run one at
# a time (-p 1), then go vet and gofmt. A setup still running then (on a fresh machine,
# the OpenStack packages and the deb12 image take minutes) does not hold them all back:
# only a test that needs it waits for it, where it calls realservice's Await
# (SPAWNER_TEST_AWAIT names the file its exit status will be in), and the package that
# needs OpenStack most runs last in its stream. The compose test runs once the tests are
# done, alone: run together, the stack, the OpenStack tests and the tests that pace
# against a compressed clock starved each other and failed (BENCHMARKS.md, "CI on a
# fresh machine").
need compile
log "compiled"
# setup_ready NAME: wait for a background setup and say what it did.
setup_ready() {
  await_bg "$1" || return 1
  case $1 in
    deb12) grep -E 'built image|imported image' "$WORK/deb12.log" || log "image deb12 already imported" ;;
    openstack) grep -E 'ready in|all services up' "$WORK/openstack.log" | tail -1 || true ;;
  esac
}
AWAIT=()
if [ "$SERVICES" = 1 ]; then
  for s in deb12 openstack; do   # the names of realservice.Readiness
    if done_bg "$s"; then setup_ready "$s" || exit 1; else AWAIT+=("$s=$WORK/$s.rc"); fi
  done
fi
export SPAWNER_TEST_AWAIT="${AWAIT[*]}"
# The packages whose tests need OpenStack, last in their stream: they wait for its
# setup on a fresh machine, and nothing else should wait behind them.
OPENSTACK_PKGS=(./backends/openstack)
TIMEOUT=${SPAWNER_TEST_TIMEOUT:-25m}
run_go_tests() {
  local m rc=0 first_pkgs
  static go test -count=1 -timeout "$TIMEOUT" -json "$E2E_PKG" >"$WORK/e2e.json" 2>"$WORK/e2e.err" & local e2e=$!
  first_pkgs=$(race_pkgs | grep -vxF -f <(go list "${OPENSTACK_PKGS[@]}"))
  go test -race -p 1 -count=1 -timeout "$TIMEOUT" -json $first_pkgs >"$WORK/unit.json" 2>"$WORK/unit.err" || rc=1
  # TestComposeStack drives a running stack: compose-test.sh runs it (and fails the run
  # unless it passed), so here it is left out rather than listed as skipped.
  for m in "${GO_MODULES[@]:1}"; do
    static go test -C "$m" -p 1 -count=1 -timeout "$TIMEOUT" -skip '^TestComposeStack$' -json ./... >>"$WORK/unit.json" 2>>"$WORK/unit.err" || rc=1
  done
  go test -race -p 1 -count=1 -timeout "$TIMEOUT" -json "${OPENSTACK_PKGS[@]}" >>"$WORK/unit.json" 2>>"$WORK/unit.err" || rc=1
  vet_and_fmt >"$WORK/vet.log" 2>&1 || { cat "$WORK/vet.log"; log "FAIL: go vet or gofmt"; rc=1; }
  wait "$e2e" || rc=1
  return $rc
}
rc=0
log "go test (-race; cmd/spawner without it, see above)${SPAWNER_TEST_AWAIT:+; tests that need it wait for: ${SPAWNER_TEST_AWAIT}}"
run_go_tests || rc=1
for a in "${AWAIT[@]}"; do setup_ready "${a%%=*}" || rc=1; done
log "go test ended"
# Human-readable output: failures in full, a line per package.
cat "$WORK"/unit.json "$WORK"/e2e.json | static go run ./internal/testreport || rc=1
for f in "$WORK"/unit.err "$WORK"/e2e.err; do [ -s "$f" ] && cat "$f"; done
[ "$rc" = 0 ] || fail "go test"

if [ "$SERVICES" = 1 ]; then
  need compose-up
  grep -E 'built |ready in|started' "$WORK/compose-up.log" || true
  log "compose test (scripts/compose-test.sh run)"
  bash scripts/compose-test.sh run || fail "compose test"
fi
log "all tests passed"
