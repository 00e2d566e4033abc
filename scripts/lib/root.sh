# Sourced by the scripts that install packages and start daemons: they need root. It
# also holds what they share about Go: where it is (with_go), and the released build
# configuration (static).
#
# become_root "$@" returns at once when the script already runs as root, which is how a
# bare Debian image is used (it has no sudo). Otherwise it runs the script again through
# sudo, keeping the caller's PATH (sudo's secure_path would drop Go from /usr/local/go/bin)
# and the variables that tune the scripts, so that a non-root user with sudo types the
# same command as root does.
become_root() {
  [ "$(id -u)" = 0 ] && return 0
  if ! command -v sudo >/dev/null 2>&1; then
    echo "$0: must run as root, and sudo is not installed: run it from a root shell" >&2
    exit 1
  fi
  local keep v
  keep=$(env | sed -n -E 's/^((SPAWNER|OSDEV|GO)[A-Z0-9_]*|CGO_ENABLED)=.*/\1/p' | paste -sd, -)
  v=${keep:+--preserve-env=$keep}
  exec sudo $v env "PATH=$PATH" bash "$0" "$@"
}

# with_go puts Go on PATH when it is installed where this machine type has it but the
# shell was not told (a root login shell on Debian does not have /usr/local/go/bin).
with_go() {
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH=$PATH:/usr/local/go/bin
  fi
}

# static CMD... runs a go command in the released build configuration: static
# (CGO_ENABLED=0) and -trimpath, as the Dockerfile builds the binary. scripts/test.sh
# (cmd/spawner's and deployments/'s tests, go vet), compose-test.sh (the image's binary,
# TestComposeStack) and quickstart.sh build in it, and so do the two modules' TestMains,
# so that one compile of the dependencies serves them all: on an empty build cache each
# build configuration is a compile of every dependency, minutes of CPU.
static() { CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath" "$@"; }
