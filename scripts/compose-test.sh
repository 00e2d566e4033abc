#!/bin/bash
# compose-test.sh: docker-compose.yml run for real, on a Docker host that reaches no image
# registry. Every image is built here, from the Go module proxy and Debian's packages:
#   runner-spawner:local             the Dockerfile's "prebuilt" target: FROM scratch, the
#                                    static spawner built on this host, the CA bundle
#   runner-spawner/nats-server:VER   nats-server VER (go.mod's) from the module proxy
#   runner-spawner/caddy:VER         Caddy VER from the module proxy (the balancer)
# Both of the latter are FROM scratch with Debian's static busybox as /bin/wget, which is
# all docker-compose.yml's health checks need. The tags are read from
# deployments/compose/no-registry.yml, the override file that points the stack at them.
# The Compose v2 CLI plugin (docker/compose v$COMPOSE_VERSION) is built from the module
# proxy too and installed as a CLI plugin, so `docker compose` is what is tested.
#
# Usage:  scripts/compose-test.sh [run|up|stop|status|purge]     (default: run)
#   up     install docker.io when missing, start dockerd when no daemon answers (by hand,
#          recorded in /run/spawner-docker-dockerd.pid), put the DOCKER-USER rules that
#          keep LXD's bridge forwarding in place (before dockerd starts), build the plugin
#          and the three images. Idempotent; the binaries are cached by version in
#          $SPAWNER_COMPOSE_CACHE, the images rebuilt only when their inputs changed.
#   run    up, then the test: `docker compose up -d --scale consumer=3` (3 NATS nodes,
#          2 webhook receivers behind Caddy, 3 consumers, a janitor and its standby, the
#          fake GitHub, the simulated cloud), then deployments/composerun's TestComposeStack
#          sends 500 signed jobs through the balancer while it kills a NATS node (and starts
#          it again), a consumer and the active janitor, and checks every job ran on its
#          flavor, no flavor went over max_runners, nothing was left; then
#          `docker compose down -v` must leave no container, network or volume. Exits
#          non-zero on any failure. A dockerd this run started is stopped at its end.
#   stop   stop the dockerd this script started (by PID; its containers stop with it)
#   status print the daemon, the plugin, the images and the stack's containers
#   purge  remove everything this script made, leaving the packages: the stack (down -v),
#          the images, the build cache, the dockerd it started and Docker's state under
#          /var/lib/docker, the iptables rules (its own DOCKER-USER rules and, once its
#          dockerd is gone, Docker's chains), the plugin and $SPAWNER_COMPOSE_CACHE.
#          What follows a purge starts as on a fresh machine with the packages installed.
#
# Docker and LXD on one host: dockerd makes FORWARD's policy DROP (Docker 20.10 when it
# has to turn on ip_forward itself; newer ones always), which would cut LXD's instances off
# from NAT. Docker sends forwarded traffic to the DOCKER-USER chain first; this script makes
# that chain before dockerd starts, with "-i lxdbr0 -j ACCEPT" and "-o lxdbr0 -j ACCEPT"
# (docs/operations.md, "Docker and LXD on one host").
#
# Env:   SPAWNER_COMPOSE_CACHE (/var/cache/spawner-compose)  SPAWNER_COMPOSE_JOBS (500)
#        SPAWNER_COMPOSE_BRIDGES (lxdbr0: the bridges DOCKER-USER lets through)
# Needs: root, Debian 12, the apt mirror, the Go module proxy, Go 1.26.
set -euo pipefail
. "$(dirname "$0")/lib/root.sh"
become_root "$@"
cd "$(dirname "$0")/.."
with_go
ACTION=${1:-run}
COMPOSE_VERSION=v5.6.0
CACHE=${SPAWNER_COMPOSE_CACHE:-/var/cache/spawner-compose}
BRIDGES=${SPAWNER_COMPOSE_BRIDGES:-lxdbr0}
JOBS=${SPAWNER_COMPOSE_JOBS:-500}
OVERRIDE=deployments/compose/no-registry.yml
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
PIDFILE=/run/spawner-docker-dockerd.pid
LOGDIR=/var/log/spawner-docker
SOCK=/var/run/docker.sock
PROJECT=runner-spawner
export COMPOSE_FILE=docker-compose.yml:$OVERRIDE COMPOSE_PROJECT_NAME=$PROJECT
# The fake GitHub queues nothing by itself: the test sends the jobs.
export SANDBOX_JOBS=0
T0=$(date +%s)
log() { printf '[compose-test %s +%ss] %s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - T0 ))" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

# A pid file holds "PID STARTTIME" (as in lxd-setup.sh): a bare PID may by now name some
# other process.
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
ours() {
  local pid st; [ -f "$PIDFILE" ] || return 1
  read -r pid st <"$PIDFILE" || true
  [ -n "$pid" ] && [ -n "$st" ] && [ "$(starttime "$pid")" = "$st" ]
}
docker_up() { [ -S "$SOCK" ] && timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
image_tag() { # repository -> the tag the override file names
  sed -n -E "s#.*image: *$1:([^ ,}]+).*#\\1#p" "$OVERRIDE" | head -1
}

# ---------------------------------------------------------------- iptables
# The rules are inserted into DOCKER-USER whether or not dockerd runs: the chain is only
# reached from FORWARD's jump, which dockerd adds. Made before dockerd starts, they are in
# force from its first packet on (dockerd keeps an existing DOCKER-USER's rules).
docker_user_rules() {
  local b d
  iptables -w -t filter -N DOCKER-USER 2>/dev/null || true
  for b in $BRIDGES; do
    for d in -i -o; do
      iptables -w -C DOCKER-USER "$d" "$b" -j ACCEPT 2>/dev/null || iptables -w -I DOCKER-USER "$d" "$b" -j ACCEPT
    done
  done
  # Until dockerd adds it, jump there ourselves (dockerd replaces the jump, keeping it first).
  iptables -w -C FORWARD -j DOCKER-USER 2>/dev/null || iptables -w -I FORWARD -j DOCKER-USER
}
remove_docker_user_rules() {
  local b d
  for b in $BRIDGES; do
    for d in -i -o; do
      while iptables -w -D DOCKER-USER "$d" "$b" -j ACCEPT 2>/dev/null; do :; done
    done
  done
}
# Docker's own chains, once no dockerd is left to use them: what dockerd made at start
# and does not remove when it stops.
remove_docker_chains() {
  local t line
  for t in filter nat; do
    # every rule that jumps to a DOCKER chain or names a Docker bridge, then the chains
    iptables -w -t "$t" -S | grep -E '^-A ' | grep -E -- '-j DOCKER|docker0|br-[0-9a-f]{12}' |
      while read -r line; do eval "iptables -w -t $t ${line/-A/-D}" 2>/dev/null || true; done
    for c in $(iptables -w -t "$t" -S | sed -n -E 's/^-N (DOCKER[A-Z0-9_-]*)$/\1/p'); do
      iptables -w -t "$t" -F "$c" 2>/dev/null || true
      iptables -w -t "$t" -X "$c" 2>/dev/null || true
    done
  done
  # dockerd set FORWARD's policy to DROP: a host with no Docker forwards as it did before.
  if [ -f "$CACHE/forward-policy" ]; then iptables -w -P FORWARD "$(cat "$CACHE/forward-policy")"; fi
  # iptables-nft leaves its tables behind, empty: drop them when nothing else uses them
  # (no rule, every policy ACCEPT).
  if iptables -V 2>/dev/null | grep -q nf_tables && command -v nft >/dev/null; then
    for t in filter nat; do
      if [ -z "$(iptables -w -t "$t" -S | grep -v -E '^-P [A-Z]+ ACCEPT$')" ]; then nft delete table ip "$t" 2>/dev/null || true; fi
    done
  fi
}

# ---------------------------------------------------------------- daemon
install_docker() {
  local missing="" p st
  for p in docker.io busybox-static ca-certificates git; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  log "installing:$missing"
  for try in $(seq 1 60); do
    apt-get update -qq -o DPkg::Lock::Timeout=600 && break
    [ "$try" = 60 ] && fail "apt-get update keeps failing"
    log "apt-get update failed (lock busy?), retrying"; sleep 5
  done
  # --no-install-recommends: no apparmor, no git-man, no pigz. The package's own service
  # is not started (no systemd here; policy-rc.d): this script starts dockerd by hand.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=900 \
    --no-install-recommends $missing >/dev/null
}

start_dockerd() {
  if docker_up; then
    if ours; then log "dockerd running (pid $(awk '{print $1}' "$PIDFILE"), started by this script)"
    else log "dockerd running (not started by this script: it is left alone)"; fi
    docker_user_rules
    return 0
  fi
  mkdir -p "$LOGDIR" "$CACHE"
  # What FORWARD's policy was before any dockerd: purge puts it back.
  [ -f "$CACHE/forward-policy" ] || iptables -w -S FORWARD | sed -n 's/^-P FORWARD //p' >"$CACHE/forward-policy"
  docker_user_rules
  # cgroupfs: there is no systemd to delegate cgroups; overlay2 on the host's filesystem.
  # dockerd starts and supervises its own containerd.
  setsid nohup dockerd --host "unix://$SOCK" --storage-driver overlay2 \
    --exec-opt native.cgroupdriver=cgroupfs --log-level warn \
    >"$LOGDIR/dockerd.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid $(starttime "$pid")" >"$PIDFILE"
  for _ in $(seq 1 120); do docker_up && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  docker_up || { tail -20 "$LOGDIR/dockerd.log"; fail "dockerd did not start (log: $LOGDIR/dockerd.log)"; }
  docker_user_rules   # dockerd re-made the FORWARD jump: check ours are still first in DOCKER-USER
  log "dockerd $(docker version --format '{{.Server.Version}}') started (pid $pid); DOCKER-USER accepts $BRIDGES"
}

stop_dockerd() {
  ours || { rm -f "$PIDFILE"; return 0; }
  local pid; pid=$(awk '{print $1}' "$PIDFILE")
  log "stopping dockerd ($pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do ours || break; sleep 0.5; done
  if ours; then kill -9 "$pid" 2>/dev/null || true; sleep 1; fi
  rm -f "$PIDFILE"
}

# ---------------------------------------------------------------- builds
# go_build_module MODULE VERSION PACKAGE OUT [LDFLAGS]: build PACKAGE of MODULE@VERSION, as
# downloaded from the module proxy, as the main module (with its own go.mod and go.sum, so
# its replace and exclude directives apply: `go install pkg@version` refuses those). The
# binary is cached by version: a run that finds it builds nothing.
go_build_module() {
  local mod=$1 ver=$2 pkg=$3 out=$4 ldflags=${5:-} tags=${6:-} dir src t
  [ -x "$out" ] && return 0
  t=$(date +%s)
  dir=$(GOFLAGS=-mod=mod go mod download -json "$mod@$ver" | sed -n -E 's/^\s*"Dir": "(.*)",?$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || fail "go mod download $mod@$ver"
  src=$(mktemp -d)
  cp -r "$dir/." "$src/" && chmod -R u+w "$src"
  # Its own GOCACHE: these builds share nothing with the project's, and purge empties it.
  # At a lower CPU priority: scripts/test.sh runs this while tests run, and a test that
  # times things should not wait for a tool's compile (which only needs to be done by
  # the time the compose test starts).
  ( cd "$src" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly GOWORK=off GOCACHE="$CACHE/gocache" \
      nice -n 10 go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg" ) || { rm -rf "$src"; fail "build of $mod@$ver"; }
  rm -rf "$src"
  mv "$out.tmp" "$out"
  log "built $(basename "$out") from $mod@$ver in $(( $(date +%s) - t ))s"
}

# build_image TAG CONTEXT [docker build args...]: BuildKit (the docker.io CLI's own; the
# newer CLI some machines put first on PATH needs the buildx plugin for it). The build
# cache makes an unchanged image a no-op.
build_image() {
  local tag=$1 ctx=$2; shift 2
  DOCKER_BUILDKIT=1 /usr/bin/docker build -q -t "$tag" "$@" "$ctx" >/dev/null || fail "docker build $tag"
}

# scratch_image TAG BINARY NAME: FROM scratch with the binary at /usr/local/bin/NAME and
# Debian's static busybox as /bin/wget (for the health checks); a non-root user owns /data.
scratch_image() {
  local tag=$1 bin=$2 name=$3 ctx; shift 3
  ctx=$(mktemp -d)
  cp "$bin" "$ctx/$name"
  cp /bin/busybox "$ctx/wget"
  mkdir -p "$ctx/empty"
  # (what follows is the Dockerfile, passed on standard input)
  { cat <<EOF
FROM scratch
COPY $name /usr/local/bin/$name
COPY wget /bin/wget
COPY --chown=65532:65532 empty/ /data/
COPY --chown=65532:65532 empty/ /config/
COPY --chown=65532:65532 empty/ /tmp/
ENV PATH=/usr/local/bin:/bin HOME=/data XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config
USER 65532:65532
ENTRYPOINT ["$name"]
EOF
    printf '%s\n' "$@"; } >"$ctx/Dockerfile"
  build_image "$tag" "$ctx"
  rm -rf "$ctx"
}

build_all() {
  local t nats_ver caddy_ver ctx ver
  mkdir -p "$CACHE/bin" "$PLUGIN_DIR"
  t=$(date +%s)
  go_build_module github.com/docker/compose/v5 "$COMPOSE_VERSION" ./cmd "$CACHE/bin/docker-compose-$COMPOSE_VERSION" \
    "-X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION"
  cmp -s "$CACHE/bin/docker-compose-$COMPOSE_VERSION" "$PLUGIN_DIR/docker-compose" ||
    install -m 0755 "$CACHE/bin/docker-compose-$COMPOSE_VERSION" "$PLUGIN_DIR/docker-compose"
  nats_ver=$(image_tag runner-spawner/nats-server); caddy_ver=$(image_tag runner-spawner/caddy)
  [ -n "$nats_ver" ] && [ -n "$caddy_ver" ] || fail "$OVERRIDE names no runner-spawner/nats-server or runner-spawner/caddy tag"
  go_build_module github.com/nats-io/nats-server/v2 "v$nats_ver" . "$CACHE/bin/nats-server-v$nats_ver"
  # Without the certificate authority's SQL and Badger stores (the build tags Caddy's own
  # releases use): the balancer needs neither, and they are much of the compile.
  go_build_module github.com/caddyserver/caddy/v2 "v$caddy_ver" ./cmd/caddy "$CACHE/bin/caddy-v$caddy_ver" \
    "" "nobadger,nomysql,nopgx"
  log "tools ready in $(( $(date +%s) - t ))s: $(docker compose version)"

  t=$(date +%s)
  scratch_image "runner-spawner/nats-server:$nats_ver" "$CACHE/bin/nats-server-v$nats_ver" nats-server \
    'EXPOSE 4222 6222 8222' 'CMD ["--config", "/etc/nats/nats-server.conf"]'
  scratch_image "runner-spawner/caddy:$caddy_ver" "$CACHE/bin/caddy-v$caddy_ver" caddy \
    'EXPOSE 8080' 'CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]'
  # The spawner: built here like the Dockerfile's build stage builds it, then packaged by
  # its "prebuilt" target.
  ctx=$CACHE/spawner-context
  mkdir -p "$ctx"
  ver=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
  GOFLAGS=-mod=readonly static go build -buildvcs=false \
    -ldflags "-s -w -X main.version=$ver" -o "$ctx/spawner" ./cmd/spawner
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  build_image runner-spawner:local "$ctx" -f Dockerfile --target prebuilt
  log "images ready in $(( $(date +%s) - t ))s: runner-spawner:local ($ver), runner-spawner/nats-server:$nats_ver, runner-spawner/caddy:$caddy_ver"
}

up() {
  install_docker
  start_dockerd
  build_all
}

# ---------------------------------------------------------------- the test
leftovers() { # containers, networks, volumes of the project, one line
  local c n v
  c=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
  n=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
  v=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
  echo "$c containers, $n networks, $v volumes"
}

run_test() {
  local work rc=0 t left
  work=$(mktemp -d)
  # What an earlier run cut short may have left.
  if [ "$(leftovers)" != "0 containers, 0 networks, 0 volumes" ]; then
    log "removing what an earlier run left: $(leftovers)"
    docker compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  t=$(date +%s)
  log "docker compose up -d --scale consumer=3 --wait"
  if ! docker compose up -d --no-build --scale consumer=3 --wait --wait-timeout 300 >"$work/up.log" 2>&1; then
    cat "$work/up.log"; docker compose ps -a || true
    docker compose logs --no-color --tail 50 || true
    docker compose down -v --remove-orphans >/dev/null 2>&1 || true
    fail "docker compose up"
  fi
  log "stack up in $(( $(date +%s) - t ))s:"
  docker compose ps --format 'table {{.Name}}\t{{.Image}}\t{{.Status}}'

  log "TestComposeStack: $JOBS jobs through the balancer, kills of a NATS node, a consumer and the active janitor"
  set +e
  # In the released configuration, as scripts/test.sh builds the deployments module's
  # tests: its compile is reused.
  SPAWNER_COMPOSE_DIR=$PWD SPAWNER_COMPOSE_JOBS=$JOBS static go test -C deployments -count=1 -v -timeout 20m \
    -run '^TestComposeStack$' ./composerun/ 2>&1 | tee "$work/test.log"
  rc=${PIPESTATUS[0]}
  set -e
  # A test that skipped (or ran nothing) passes go test: only its PASS line counts here.
  grep -q -- '^--- PASS: TestComposeStack ' "$work/test.log" || rc=1
  if [ "$rc" != 0 ]; then
    log "the stack's logs (last 40 lines of each service):"
    docker compose logs --no-color --tail 40 2>&1 | tail -400 || true
  fi

  t=$(date +%s)
  docker compose down -v --remove-orphans >"$work/down.log" 2>&1 || { cat "$work/down.log"; rc=1; }
  left=$(leftovers)
  log "docker compose down -v in $(( $(date +%s) - t ))s; left behind: $left"
  [ "$left" = "0 containers, 0 networks, 0 volumes" ] || { docker ps -a; docker network ls; docker volume ls; rc=1; }
  rm -rf "$work"
  [ "$rc" = 0 ] || fail "compose test"
  log "compose test passed"
}

# ---------------------------------------------------------------- verbs
case "$ACTION" in
  up) up; log "ready in $(( $(date +%s) - T0 ))s" ;;
  run)
    started=0; docker_up || started=1
    up
    # (set -e is off inside a subshell that is part of an || list: turn it on in there)
    set +e; ( set -e; run_test ); rc=$?; set -e
    # stops only what this run started
    if [ "$started" = 1 ]; then stop_dockerd; fi
    [ "$rc" = 0 ] || exit "$rc"
    log "done in $(( $(date +%s) - T0 ))s" ;;
  stop) stop_dockerd ;;
  status)
    if ours; then echo "dockerd running, pid $(awk '{print $1}' "$PIDFILE") (started by this script)"
    elif docker_up; then echo "dockerd running (not started by this script)"
    else echo "dockerd: not running"; fi
    [ -x "$PLUGIN_DIR/docker-compose" ] && docker compose version || echo "compose plugin: not installed"
    ls -l "$CACHE/bin" 2>/dev/null || true
    if docker_up; then docker images 'runner-spawner*'; docker compose ps -a; fi
    iptables -w -S DOCKER-USER 2>/dev/null || echo "no DOCKER-USER chain" ;;
  purge)
    if docker_up; then
      [ -x "$PLUGIN_DIR/docker-compose" ] && docker compose down -v --remove-orphans --rmi all >/dev/null 2>&1 || true
      for img in $(docker images -q --filter 'reference=runner-spawner*' --filter 'reference=runner-spawner/*' | sort -u); do
        docker rmi -f "$img" >/dev/null 2>&1 || true
      done
      # The build cache is the daemon's: pruned only on a daemon this script runs.
      if ours; then /usr/bin/docker builder prune -af >/dev/null 2>&1 || true; fi
    fi
    wasours=0; ours && wasours=1
    stop_dockerd
    remove_docker_user_rules
    if [ "$wasours" = 1 ] || ! docker_up; then
      if docker_up; then fail "a dockerd this script did not start still answers on $SOCK: stop it first"; fi
      # Docker's state: containers, images, volumes, networks, the build cache.
      for m in $(awk '$2 ~ "^/var/lib/docker(/|$)" || $2 ~ "^/run/docker(/|$)" {print $2}' /proc/mounts | sort -r); do umount -l "$m" || true; done
      rm -rf /var/lib/docker /run/docker /var/run/docker.sock
      ip link del docker0 2>/dev/null || true
      for l in $(ip -o link show type bridge | sed -n -E 's/^[0-9]+: (br-[0-9a-f]{12}).*/\1/p'); do ip link del "$l" || true; done
      remove_docker_chains
    fi
    rm -f "$PLUGIN_DIR/docker-compose"
    rmdir -p "$PLUGIN_DIR" 2>/dev/null || true
    rm -rf "$CACHE" "$LOGDIR"
    log "purged: the stack, the images, the build cache, dockerd's state, the DOCKER-USER rules, the compose plugin, $CACHE (packages kept)" ;;
  *) echo "usage: $0 [run|up|stop|status|purge]" >&2; exit 2 ;;
esac
