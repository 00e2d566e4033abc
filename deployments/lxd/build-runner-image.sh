#!/bin/bash
# build-runner-image.sh: build an LXD container image with the GitHub Actions runner
# pre-installed and cloud-init, and import it under an alias, for runner-spawner's
# lxd flavors (bootstrap: cloud-init).
#
# Usage:  build-runner-image.sh --runner-tarball FILE [options]
#   --runner-tarball FILE  actions-runner-linux-x64-<version>.tar.gz, downloaded by you
#                          from https://github.com/actions/runner/releases (required;
#                          this script never downloads it)
#   --alias NAME           image alias to import as (default: gha-runner-<suite>)
#   --suite NAME           Debian suite (default: bookworm)
#   --mirror URL           Debian mirror (default: http://deb.debian.org/debian)
#   --packages "a b"       extra Debian packages for jobs (default: "git jq unzip zip xz-utils")
#   --base-rootfs FILE     start from this rootfs tarball instead of debootstrap (e.g. the
#                          deb12 image that scripts/lxd-setup.sh builds); it must be the
#                          same suite and have apt sources
#   --no-sudo              do not give the runner user passwordless sudo
#   --out DIR              keep the image tarballs here (default: a temporary directory)
#   --no-import            build the tarballs only (import later with `lxc image import`)
#   --project NAME         LXD project to import into
#
# Needs: root, debootstrap (unless --base-rootfs), lxc (unless --no-import). Takes about
# 3-5 minutes with debootstrap; the image is ~500 MB unpacked.
#
# What the image holds:
#   - Debian minbase + systemd + udev + systemd-networkd (DHCP on eth0) + cloud-init
#     (datasources LXD and NoCloud; NoCloud is seeded from LXD image templates, so
#     cloud-init.user-data and user.user-data both work on every LXD version)
#   - the runner's dependencies (ICU, Kerberos, lttng, OpenSSL, zlib), curl, wget, git
#   - user "runner" (uid 1001, sudo unless --no-sudo) and the runner unpacked in
#     /home/runner/actions-runner, ready for `./run.sh --jitconfig ...`
#   - no runner registration and no secret: the spawner's bootstrap user-data fetches
#     the one-time config at boot.
set -euo pipefail

TARBALL="" ALIAS="" SUITE=bookworm MIRROR=http://deb.debian.org/debian
PACKAGES="git jq unzip zip xz-utils" BASE="" SUDO=1 OUT="" IMPORT=1 PROJECT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runner-tarball) TARBALL=$2; shift 2 ;;
    --alias) ALIAS=$2; shift 2 ;;
    --suite) SUITE=$2; shift 2 ;;
    --mirror) MIRROR=$2; shift 2 ;;
    --packages) PACKAGES=$2; shift 2 ;;
    --base-rootfs) BASE=$2; shift 2 ;;
    --no-sudo) SUDO=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    --no-import) IMPORT=0; shift ;;
    --project) PROJECT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "$0: $*" >&2; exit 1; }
log() { printf '[runner-image %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
[ -n "$TARBALL" ] || die "--runner-tarball is required (download it from https://github.com/actions/runner/releases)"
[ -s "$TARBALL" ] || die "no runner tarball at $TARBALL"
# (no "tar | grep -q": SIGPIPE under pipefail)
case $'\n'"$(tar -tzf "$TARBALL" 2>/dev/null || true)"$'\n' in
  *$'\n'./run.sh$'\n'*|*$'\n'run.sh$'\n'*) ;;
  *) die "$TARBALL does not look like an actions-runner tarball (no run.sh at its top)" ;;
esac
[ "$IMPORT" = 1 ] || [ -n "$OUT" ] || die "--no-import needs --out DIR (the tarballs would be deleted)"
ALIAS=${ALIAS:-gha-runner-$SUITE}
VERSION=$(basename "$TARBALL" | sed -n 's/^actions-runner-linux-[a-z0-9]*-\([0-9.]*\)\.tar\.gz$/\1/p')
VERSION=${VERSION:-unknown}

W=$(mktemp -d /var/tmp/runner-image.XXXXXX)
R=$W/rootfs
cleanup() {
  for m in dev/pts dev proc sys; do umount "$R/$m" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
T0=$(date +%s)

# ------------------------------------------------------------------ root file system
# The runner (.NET) needs ICU, Kerberos, lttng, OpenSSL and zlib (what its
# bin/installdependencies.sh installs on Debian 12).
RUNNER_DEPS="libicu72 libkrb5-3 liblttng-ust1 libssl3 zlib1g"
BASE_PKGS="systemd-sysv,udev,iproute2,ca-certificates,python3-cffi-backend,cloud-init,sudo,curl,wget,tar,gzip"
if [ -n "$BASE" ]; then
  log "unpacking base rootfs $BASE"
  mkdir -p "$R"
  tar -C "$R" --numeric-owner -xzf "$BASE"
else
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap), or use --base-rootfs"
  log "debootstrap $SUITE (a few minutes)"
  # python3-cffi-backend must be named: debootstrap does not resolve the virtual package
  # python3-cryptography (a cloud-init dependency) needs. udev is needed for
  # systemd-networkd to bring eth0 up.
  debootstrap --variant=minbase --include="$BASE_PKGS" "$SUITE" "$R" "$MIRROR" >"$W/debootstrap.log" 2>&1 ||
    { tail -30 "$W/debootstrap.log"; die "debootstrap failed"; }
fi
echo "deb $MIRROR $SUITE main" >"$R/etc/apt/sources.list"
mount -t proc proc "$R/proc"; mount -t sysfs sys "$R/sys"
mount --bind /dev "$R/dev"; mount --bind /dev/pts "$R/dev/pts"
cp /etc/resolv.conf "$R/etc/resolv.conf"
log "installing packages"
# shellcheck disable=SC2086
chroot "$R" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
  "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${BASE_PKGS//,/ } $RUNNER_DEPS $PACKAGES >/dev/null" ||
  die "package installation failed"
chroot "$R" apt-get clean
rm -rf "$R"/var/lib/apt/lists/* "$R/debootstrap"

# ------------------------------------------------------------------ system settings
mkdir -p "$R/etc/systemd/network" "$R/var/lib/cloud/seed/nocloud-net"
printf '[Match]\nName=eth0\n[Network]\nDHCP=ipv4\n' >"$R/etc/systemd/network/10-eth0.network"
chroot "$R" systemctl enable systemd-networkd >/dev/null 2>&1
ln -sf /dev/null "$R/etc/systemd/system/systemd-binfmt.service"   # fails in containers
# LXD's own datasource where cloud-init has it; NoCloud (seeded by the templates below)
# everywhere else. Networking is systemd-networkd's, above.
echo 'datasource_list: [ LXD, NoCloud, None ]' >"$R/etc/cloud/cloud.cfg.d/95-datasource.cfg"
echo 'network: {config: disabled}' >"$R/etc/cloud/cloud.cfg.d/99-disable-network-config.cfg"
echo 'locale: false' >"$R/etc/cloud/cloud.cfg.d/96-no-locale.cfg"
# The instance name in /etc/hosts, or sudo complains on every call.
echo 'manage_etc_hosts: true' >"$R/etc/cloud/cloud.cfg.d/97-etc-hosts.cfg"
: >"$R/etc/machine-id"; : >"$R/etc/resolv.conf"

# ------------------------------------------------------------------ runner
chroot "$R" useradd --create-home --uid 1001 --shell /bin/bash runner
if [ "$SUDO" = 1 ]; then
  echo 'runner ALL=(ALL) NOPASSWD:ALL' >"$R/etc/sudoers.d/runner"; chmod 0440 "$R/etc/sudoers.d/runner"
fi
mkdir -p "$R/home/runner/actions-runner"
tar -C "$R/home/runner/actions-runner" -xzf "$TARBALL"
chroot "$R" chown -R runner:runner /home/runner
echo "$VERSION" >"$R/home/runner/actions-runner/.spawner-runner-version"
log "runner $VERSION installed in /home/runner/actions-runner"

for m in dev/pts dev proc sys; do umount "$R/$m"; done

# ------------------------------------------------------------------ image
mkdir -p "$W/templates"
echo '{{ container.name }}' >"$W/templates/hostname.tpl"
cat >"$W/templates/user-data.tpl" <<'T'
{% if config_get("cloud-init.user-data", "") == "" %}{{ config_get("user.user-data", properties.default) }}{% else %}{{ config_get("cloud-init.user-data", "") }}{% endif %}
T
cat >"$W/templates/meta-data.tpl" <<'T'
instance-id: {{ container.name }}
local-hostname: {{ container.name }}
T
cat >"$W/metadata.yaml" <<M
architecture: $(uname -m)
creation_date: $(date +%s)
properties:
  description: GitHub Actions runner $VERSION on Debian $SUITE (runner-spawner)
  os: debian
  release: $SUITE
  runner_version: "$VERSION"
templates:
  /etc/hostname:
    when: [create, copy, rename]
    template: hostname.tpl
  /var/lib/cloud/seed/nocloud-net/user-data:
    when: [create, copy]
    template: user-data.tpl
    properties:
      default: |
        #cloud-config
        {}
  /var/lib/cloud/seed/nocloud-net/meta-data:
    when: [create, copy]
    template: meta-data.tpl
M
OUT=${OUT:-$W/out}
mkdir -p "$OUT"
log "packing"
tar -C "$W" -czf "$OUT/$ALIAS.meta.tar.gz" metadata.yaml templates
tar -C "$R" --numeric-owner -cf - . | gzip -1 >"$OUT/$ALIAS.rootfs.tar.gz"
if [ "$IMPORT" = 1 ]; then
  P=(); [ -n "$PROJECT" ] && P=(--project "$PROJECT")
  if lxc image info "${P[@]}" "$ALIAS" >/dev/null 2>&1; then
    # Move the alias to the new image; instances made from the old one keep working.
    lxc image alias delete "${P[@]}" "$ALIAS"
  fi
  lxc image import "${P[@]}" "$OUT/$ALIAS.meta.tar.gz" "$OUT/$ALIAS.rootfs.tar.gz" --alias "$ALIAS" >/dev/null
  log "imported as $ALIAS in $(( $(date +%s) - T0 ))s"
else
  log "built $OUT/$ALIAS.{meta,rootfs}.tar.gz in $(( $(date +%s) - T0 ))s"
fi
