# Sourced by the scripts that install packages and start daemons: they need root.
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
