#!/usr/bin/env bash
# Install runner-spawner on this machine and start it.
#
#   scripts/quickstart.sh       (as root; a non-root user is taken through sudo)
#
# It builds the static `spawner` binary into /usr/local/bin, sets up a local LXD daemon
# with a tiny test image (scripts/lxd-setup.sh; skip with SPAWNER_NO_LXD=1), and then:
#   - with /etc/spawner/spawner.yaml present (your GitHub credentials, your flavors):
#       spawner serve --config /etc/spawner/spawner.yaml
#   - without it: spawner serve --sandbox — everything in one process on the embedded
#     NATS server, with a fake GitHub that queues jobs, and runners as real LXD
#     containers coming and going (simulated instances if LXD is not usable).
# Stop it with Ctrl-C. Extra arguments go to `spawner serve`.
set -euo pipefail
. "$(dirname "$0")/lib/root.sh"
become_root "$@"   # before the cd: it runs "$0" again
cd "$(dirname "$0")/.."
with_go
log() { printf '[quickstart] %s\n' "$*"; }
command -v go >/dev/null || { echo "Go 1.26 or newer is needed to build spawner (https://go.dev/dl)" >&2; exit 1; }

log "building /usr/local/bin/spawner"
static go build -ldflags "-s -w -X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" \
  -o /usr/local/bin/spawner ./cmd/spawner
/usr/local/bin/spawner version

if [ "${SPAWNER_NO_LXD:-0}" != 1 ]; then
  log "setting up LXD (scripts/lxd-setup.sh; SPAWNER_NO_LXD=1 skips it)"
  if ! bash scripts/lxd-setup.sh up; then
    log "LXD setup failed: the sandbox will use simulated instances"
  fi
fi

if [ -f /etc/spawner/spawner.yaml ]; then
  log "starting: spawner serve --config /etc/spawner/spawner.yaml"
  /usr/local/bin/spawner config check --config /etc/spawner/spawner.yaml
  exec /usr/local/bin/spawner serve --config /etc/spawner/spawner.yaml "$@"
fi
log "no /etc/spawner/spawner.yaml: starting the sandbox (deployments/examples/spawner.yaml shows a real config)"
exec /usr/local/bin/spawner serve --sandbox "$@"
