#!/bin/bash
# lxd-setup.sh: a real LXD daemon for runner-spawner's LXD backend, its integration tests
# and `spawner serve --sandbox`. Works offline: no image server is used; the test images
# are built locally from Debian packages.
#
# Usage:  scripts/lxd-setup.sh [up|image NAME|stop|status|purge]   (default: up; idempotent)
#   up     install packages (apt), start lxcfs + lxd (by hand when PID 1 is not systemd),
#          create what is missing (storage pool "default", bridge "lxdbr0", the default
#          profile's root disk and eth0), build and import image alias "tiny" (busybox,
#          ~1 MB, built in about a second) and, with SPAWNER_LXD_DEBIAN=1, alias "deb12"
#          (debootstrap minbase + systemd + cloud-init, ~260 MB, ~2.5 min to build).
#   image NAME
#          build (when its cached tarballs are missing or from another recipe) and import
#          (when LXD lacks it) one image, tiny or deb12; the daemon must be up. The tests
#          need both: scripts/test.sh builds deb12 this way while OpenStack sets up.
#   stop   stop the lxd and lxcfs this script started (by PID; lxd stops its containers)
#   status print daemon PIDs, images and instances
#   purge  remove everything this script made, leaving the installed packages: every
#          instance and image, the daemons it started, the bridge and its firewall table,
#          the mounts under /var/lib/lxd and /var/lib/lxcfs, /var/lib/lxd's state (pools,
#          networks, profiles, certificates), the image cache, the pid files and the logs.
#          What follows a purge starts as on a fresh machine with the packages installed.
#
# Images are rebuilt only when their recipe changes: the recipe is the text of the build
# functions below (and the mirror), hashed. The hash is stored in the cached tarballs'
# name file and in the imported image's properties, so an edit here rebuilds by itself.
#
# Result: socket /var/lib/lxd/unix.socket (group lxd, mode 0660; root always works).
#   Instances get DHCP addresses on lxdbr0 ($SPAWNER_LXD_BRIDGE_CIDR, default
#   10.77.0.1/24) with NAT, and reach a service on the host at the bridge address
#   (default 10.77.0.1) when it listens on 0.0.0.0 or on that address: that is where a
#   runner instance calls the spawner back.
#
# Image "tiny": /sbin/init is a shell script. It brings eth0 up with busybox udhcpc,
#   waits (up to 10 s) for an address, then runs cloud-init user-data once if it is a
#   script ("#!..."; output in /var/log/cloud-init-output.log). `poweroff`, `halt` and
#   `reboot` inside, and `lxc stop` outside, stop it cleanly in well under a second.
#   user-data comes from config key cloud-init.user-data (or user.user-data) through an
#   image template rendered at create time, exactly as cloud-init's NoCloud seed.
#   A bootstrap script finds sh, wget, env, mktemp, tar, base64, timeout, setsid (busybox).
#   Debian 12's busybox wget crashes (SIGSEGV) on -T/--timeout: write `timeout 30 wget ...`.
#   (busybox sh runs its own applets before PATH, so a wrapper script would not help.)
# Image "deb12": real systemd + cloud-init (NoCloud datasource fed by the same templates),
#   so #cloud-config user-data (write_files, runcmd, ...) is really applied.
#
# Env:    SPAWNER_LXD_BRIDGE_CIDR (10.77.0.1/24)   SPAWNER_LXD_POOL_DRIVER (dir|btrfs; dir)
#         SPAWNER_LXD_BTRFS_SIZE (8GiB)            SPAWNER_LXD_DEBIAN (0|1; 0)
#         SPAWNER_LXD_IMAGE_DIR (/var/cache/spawner-lxd: built tarballs, reused if present)
#         SPAWNER_LXD_MIRROR (http://deb.debian.org/debian)
#         SPAWNER_LXD_HTTPS_ADDRESS (127.0.0.1:8443: core.https_address when unset, so the
#         remote-server tests can reach this daemon over HTTPS with a client certificate)
# Needs:  root, Debian 12 amd64, an apt mirror. No systemd needed: PIDs are kept in
#         /run/spawner-lxd-*.pid, logs in /var/log/lxd/. Unprivileged containers work.
set -euo pipefail
. "$(dirname "$0")/lib/root.sh"
become_root "$@"
ACTION=${1:-up}
BRIDGE_CIDR=${SPAWNER_LXD_BRIDGE_CIDR:-10.77.0.1/24}
POOL_DRIVER=${SPAWNER_LXD_POOL_DRIVER:-dir}
BTRFS_SIZE=${SPAWNER_LXD_BTRFS_SIZE:-8GiB}
WANT_DEBIAN=${SPAWNER_LXD_DEBIAN:-0}
IMG_DIR=${SPAWNER_LXD_IMAGE_DIR:-/var/cache/spawner-lxd}
MIRROR=${SPAWNER_LXD_MIRROR:-http://deb.debian.org/debian}
HTTPS_ADDR=${SPAWNER_LXD_HTTPS_ADDRESS:-127.0.0.1:8443}
SOCK=/var/lib/lxd/unix.socket
# debootstrap is always installed, so that "image deb12" never needs apt while another
# script (the OpenStack setup) holds its lock.
PKGS="lxd lxd-client lxcfs dnsmasq-base nftables iptables busybox-static squashfs-tools curl debootstrap"
[ "$POOL_DRIVER" = btrfs ] && PKGS="$PKGS btrfs-progs"

log() { printf '[lxd-setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
pidfile() { echo "/run/spawner-lxd-$1.pid"; }
# A pid file holds "PID STARTTIME": /run outlives the processes on a machine whose session was
# torn down, and a bare PID may by now name some other daemon (it did: a stale pid file made
# the OpenStack script skip nova-conductor because glance had been given its old PID).
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
record() { echo "$2 $(starttime "$2")" >"$(pidfile "$1")"; }
pid_of() { awk '{print $1}' "$(pidfile "$1")" 2>/dev/null; }
alive() {
  local f pid st; f=$(pidfile "$1"); [ -f "$f" ] || return 1
  read -r pid st <"$f" || true
  [ -n "$pid" ] && [ -n "$st" ] && [ "$(starttime "$pid")" = "$st" ]
}
systemd_pid1() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }
lxd_up() { [ -S "$SOCK" ] && curl -s --max-time 5 --unix-socket "$SOCK" -o /dev/null -f http://lxd/1.0; }
have_image() { lxc image info "$1" >/dev/null 2>&1; }

stop_all() {
  if systemd_pid1 && ! alive lxd; then
    systemctl stop lxd.service lxd.socket 2>/dev/null || true
  fi
  if alive lxd; then
    log "stopping lxd ($(pid_of lxd))"
    lxd shutdown --timeout 60 2>/dev/null || kill "$(pid_of lxd)" || true
    for _ in $(seq 1 60); do alive lxd || break; sleep 0.5; done
  fi
  rm -f "$(pidfile lxd)"
  if alive lxcfs; then
    log "stopping lxcfs ($(pid_of lxcfs))"
    kill "$(pid_of lxcfs)" || true
    for _ in $(seq 1 20); do alive lxcfs || break; sleep 0.25; done
    umount /var/lib/lxcfs 2>/dev/null || true
  fi
  rm -f "$(pidfile lxcfs)"
}

case "$ACTION" in
  stop) stop_all; exit 0 ;;
  status)
    for s in lxcfs lxd; do
      if alive $s; then echo "$s running, pid $(pid_of $s)"; else echo "$s: not started by this script"; fi
    done
    if lxd_up; then lxc image list; lxc list; else echo "lxd not answering on $SOCK"; fi
    exit 0 ;;
  purge)
    if lxd_up; then
      for i in $(lxc list --format csv -c n); do lxc delete -f "$i"; done
      for f in $(lxc image list --format csv -c f); do lxc image delete "$f" || true; done
    fi
    stop_all
    # A daemon this script did not start (systemd's, or one whose pid file was lost) still
    # holds /var/lib/lxd: deleting its state under it would leave it serving a ghost.
    if lxd_up; then log "FAIL: an lxd this script did not start still answers on $SOCK: stop it first"; exit 1; fi
    # lxd shutdown leaves lxdbr0 and its firewall tables behind
    ip link del lxdbr0 2>/dev/null || true
    nft delete table inet lxd 2>/dev/null || true
    for m in $(awk '$2 ~ "^/var/lib/lxd(/|$)" {print $2}' /proc/mounts | sort -r); do umount -l "$m" || true; done
    if grep -qs ' /var/lib/lxcfs fuse' /proc/mounts; then umount -l /var/lib/lxcfs 2>/dev/null || fusermount -uz /var/lib/lxcfs 2>/dev/null || true; fi
    rm -rf /var/lib/lxd/* /var/log/lxd "$IMG_DIR"
    rm -f "$(pidfile lxd)" "$(pidfile lxcfs)"
    log "purged: instances, images, daemons, lxdbr0, /var/lib/lxd, $IMG_DIR, /var/log/lxd (packages kept)"; exit 0 ;;
  up|image) ;;
  *) echo "usage: $0 [up|image NAME|stop|status|purge]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "$0: must run as root" >&2; exit 1; }

T0=$(date +%s)
if [ "$ACTION" = image ]; then
  case "${2:-}" in tiny|deb12) ;; *) echo "usage: $0 image tiny|deb12" >&2; exit 2 ;; esac
  lxd_up || { log "FAIL: lxd is not answering on $SOCK: run $0 up first"; exit 1; }
fi
if [ "$ACTION" = up ]; then
# ---------------------------------------------------------------- packages
missing=""
for p in $PKGS; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "installing:$missing"
  # Another apt (a colleague's setup script) may hold the lists lock: retry for a while.
  for try in $(seq 1 60); do
    apt-get update -qq -o DPkg::Lock::Timeout=600 && break
    [ "$try" = 60 ] && { echo "$0: apt-get update keeps failing" >&2; exit 1; }
    log "apt-get update failed (lock busy?), retrying"; sleep 5
  done
  # --no-install-recommends skips apparmor (a kernel without AppArmor is fine) and
  # lxd-agent (only VMs need it).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=900 \
    --no-install-recommends $missing >/dev/null
fi

# ---------------------------------------------------------------- daemons
# A previous lxcfs killed without unmounting (a session or CI job torn down, a crash) leaves
# a dead FUSE mount: every stat on it fails with "Transport endpoint is not connected",
# and lxd would hand that dead /proc view to containers. Detach it before starting anew.
if grep -qs ' /var/lib/lxcfs fuse' /proc/mounts && ! stat /var/lib/lxcfs >/dev/null 2>&1; then
  log "detaching a dead lxcfs mount on /var/lib/lxcfs"
  umount -l /var/lib/lxcfs 2>/dev/null || fusermount -uz /var/lib/lxcfs 2>/dev/null || true
fi
mkdir -p /var/log/lxd /var/lib/lxcfs
if systemd_pid1; then
  systemctl start lxcfs.service lxd.socket lxd.service
else
  # lxcfs gives containers a virtualised /proc/{meminfo,cpuinfo,uptime,...}; optional,
  # but it must be mounted before lxd starts for lxd to use it.
  if ! mountpoint -q /var/lib/lxcfs; then
    setsid nohup lxcfs /var/lib/lxcfs >/var/log/lxd/lxcfs.log 2>&1 </dev/null &
    record lxcfs $!
    for _ in $(seq 1 40); do mountpoint -q /var/lib/lxcfs && break; sleep 0.25; done
    log "lxcfs pid $(pid_of lxcfs)"
  fi
  if ! lxd_up; then
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    setsid nohup lxd --group lxd --logfile /var/log/lxd/lxd.log >/var/log/lxd/lxd.out 2>&1 </dev/null &
    record lxd $!
    log "lxd pid $(pid_of lxd)"
  fi
fi
lxd waitready --timeout=120

# ---------------------------------------------------------------- init (each piece only if absent)
if ! lxc storage show default >/dev/null 2>&1; then
  if [ "$POOL_DRIVER" = btrfs ]; then
    # loop-file btrfs: images are unpacked once and instances are snapshots (a deb12
    # create takes 0.6 s instead of ~19 s on dir)
    lxc storage create default btrfs size="$BTRFS_SIZE"
  else
    lxc storage create default dir
  fi
fi
if ! lxc network show lxdbr0 >/dev/null 2>&1; then
  lxc network create lxdbr0 ipv4.address="$BRIDGE_CIDR" ipv4.nat=true ipv6.address=none
fi
# HTTPS on loopback only, for the tests of the remote-server path (client certificate,
# pinned server certificate) against this real daemon. Nothing off the host reaches it.
if [ -z "$(lxc config get core.https_address)" ]; then
  if ! lxc config set core.https_address "$HTTPS_ADDR" 2>/dev/null; then
    # The port is taken by something else: any free loopback port does, the tests read
    # the address back from LXD.
    for port in $(shuf -i 20000-60000 -n 20); do
      lxc config set core.https_address "127.0.0.1:$port" 2>/dev/null && break
    done
    log "cannot listen on $HTTPS_ADDR; LXD's HTTPS address: $(lxc config get core.https_address)"
  fi
fi
devs=$(lxc profile device list default)   # (no "cmd | grep -q": SIGPIPE under pipefail)
case " $(echo $devs) " in *" root "*) ;; *) lxc profile device add default root disk path=/ pool=default ;; esac
case " $(echo $devs) " in *" eth0 "*) ;; *) lxc profile device add default eth0 nic network=lxdbr0 name=eth0 ;; esac
fi # ACTION=up

# ---------------------------------------------------------------- images
mkdir -p "$IMG_DIR"

write_templates() { # $1 = dir that gets templates/ ; prints the metadata.yaml "templates:" block
  mkdir -p "$1/templates"
  echo '{{ container.name }}' >"$1/templates/hostname.tpl"
  cat >"$1/templates/user-data.tpl" <<'T'
{% if config_get("cloud-init.user-data", "") == "" %}{{ config_get("user.user-data", properties.default) }}{% else %}{{ config_get("cloud-init.user-data", "") }}{% endif %}
T
  cat >"$1/templates/meta-data.tpl" <<'T'
instance-id: {{ container.name }}
local-hostname: {{ container.name }}
T
  cat <<'M'
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
}

build_tiny() { # -> $IMG_DIR/tiny.meta.tar.gz, $IMG_DIR/tiny.rootfs.tar.gz
  local W R a; W=$(mktemp -d); R=$W/rootfs
  mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,run,var/log,var/run,var/tmp,var/lib/cloud/seed/nocloud-net}
  cp /bin/busybox "$R/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf /bin/busybox "$R/bin/$a"; done
  # Where scripts (and busybox's own halt applets) look for them.
  for a in poweroff halt reboot; do ln -sf /bin/busybox "$R/sbin/$a"; done
  ln -sf /bin/busybox "$R/usr/bin/env"
  chmod 1777 "$R/tmp" "$R/var/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
  printf '127.0.0.1 localhost\n' >"$R/etc/hosts"
  echo tiny >"$R/etc/hostname"
  rm -f "$R/sbin/init"
  cat >"$R/sbin/init" <<'I'
#!/bin/sh
# tiny's init: network, then user-data once, then wait for a stop signal.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# lxc stop sends SIGPWR; busybox poweroff/halt/reboot send USR2/USR1/TERM to PID 1.
# Trap them before anything slow so that a stop never waits for the force timeout.
trap 'kill -TERM -1 2>/dev/null; sync; poweroff -f' PWR TERM INT USR1 USR2
mount -t tmpfs tmpfs /run 2>/dev/null
hostname -F /etc/hostname 2>/dev/null
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
  ip link set eth0 up
  udhcpc -i eth0 -b -q -s /etc/udhcpc.script >/var/log/udhcpc.log 2>&1 &
  # user-data usually calls home: give DHCP a moment (it takes ~0.1 s on a bridge).
  n=0; while [ $n -lt 100 ] && ! ip -4 addr show eth0 | grep -q inet; do sleep 0.1; n=$((n+1)); done
fi
# poor man's cloud-init: run user-data once if it is a script (#!...)
UD=/var/lib/cloud/seed/nocloud-net/user-data
if [ -s $UD ] && [ ! -e /var/lib/cloud/.ud-done ] && head -c2 $UD | grep -q '^#!'; then
  touch /var/lib/cloud/.ud-done
  cp $UD /run/user-data && chmod 700 /run/user-data
  ( /run/user-data >/var/log/cloud-init-output.log 2>&1; echo "exit=$?" >>/var/log/cloud-init-output.log ) </dev/null &
fi
while :; do sleep 3600 & wait $!; done
I
  chmod 755 "$R/sbin/init"
  cat >"$R/etc/udhcpc.script" <<'S'
#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via ${router%% *} dev "$interface"
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
S
  chmod 755 "$R/etc/udhcpc.script"
  { printf 'architecture: x86_64\ncreation_date: %s\nproperties:\n  description: tiny busybox image (runner-spawner tests)\n  os: busybox\n  release: "1.35"\n  spawner_recipe: "%s"\n' "$(date +%s)" "$(recipe tiny)"
    write_templates "$W"; } >"$W/metadata.yaml"
  tar -C "$W" -czf "$IMG_DIR/tiny.meta.tar.gz" metadata.yaml templates
  tar -C "$R" --numeric-owner -czf "$IMG_DIR/tiny.rootfs.tar.gz" .
  rm -rf "$W"
}

build_deb12() { # -> $IMG_DIR/deb12.meta.tar.gz, $IMG_DIR/deb12.rootfs.tar.gz  (~2.5 min)
  local W R; W=$(mktemp -d); R=$W/rootfs
  # python3-cffi-backend must be named explicitly: debootstrap does not resolve the virtual
  # python3-cffi-backend-api-* that python3-cryptography (a cloud-init dependency) needs.
  # udev is required: without it systemd-networkd leaves eth0 "pending" forever (no DHCP).
  debootstrap --variant=minbase \
    --include=systemd-sysv,udev,iproute2,ca-certificates,python3-cffi-backend,cloud-init,wget \
    bookworm "$R" "$MIRROR" >"$W/debootstrap.log" 2>&1 || { tail -30 "$W/debootstrap.log"; return 1; }
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R/debootstrap"
  mkdir -p "$R/etc/systemd/network" "$R/var/lib/cloud/seed/nocloud-net"
  printf '[Match]\nName=eth0\n[Network]\nDHCP=ipv4\n' >"$R/etc/systemd/network/10-eth0.network"
  chroot "$R" systemctl enable systemd-networkd >/dev/null 2>&1
  ln -sf /dev/null "$R/etc/systemd/system/systemd-binfmt.service"   # fails in containers
  echo 'network: {config: disabled}' >"$R/etc/cloud/cloud.cfg.d/99-disable-network-config.cfg"
  echo 'datasource_list: [ NoCloud, None ]' >"$R/etc/cloud/cloud.cfg.d/95-datasource.cfg"
  echo 'locale: false' >"$R/etc/cloud/cloud.cfg.d/96-no-locale.cfg"  # no locales in minbase
  : >"$R/etc/machine-id"; : >"$R/etc/resolv.conf"
  echo "deb $MIRROR bookworm main" >"$R/etc/apt/sources.list"
  { printf 'architecture: x86_64\ncreation_date: %s\nproperties:\n  description: Debian 12 minbase + systemd + cloud-init (runner-spawner tests)\n  os: debian\n  release: bookworm\n  spawner_recipe: "%s"\n' "$(date +%s)" "$(recipe deb12)"
    write_templates "$W"; } >"$W/metadata.yaml"
  tar -C "$W" -czf "$IMG_DIR/deb12.meta.tar.gz" metadata.yaml templates
  tar -C "$R" --numeric-owner -cf - . | gzip -1 >"$IMG_DIR/deb12.rootfs.tar.gz"
  rm -rf "$W"
}

# recipe NAME: a hash of everything that decides what build_NAME makes.
recipe() { { declare -f "build_$1" write_templates; if [ "$1" = deb12 ]; then echo "$MIRROR"; fi; } | sha256sum | cut -c1-16; }

import_image() { # alias: build unless cached from this recipe, import unless LXD has it from this recipe
  local alias=$1 r; r=$(recipe "$1")
  if have_image "$alias"; then
    local show; show=$(lxc image show "$alias")   # (not piped into grep -q: SIGPIPE under pipefail)
    if grep -qE "spawner_recipe: \"?$r\"?\$" <<<"$show"; then return 0; fi
    log "image $alias is from another recipe: replacing it"
    lxc image delete "$alias"
  fi
  if [ ! -s "$IMG_DIR/$alias.rootfs.tar.gz" ] || [ ! -s "$IMG_DIR/$alias.meta.tar.gz" ] ||
     [ "$(cat "$IMG_DIR/$alias.recipe" 2>/dev/null)" != "$r" ]; then
    local t0; t0=$(date +%s)
    log "building image $alias (recipe $r)"
    rm -f "$IMG_DIR/$alias.recipe"
    "build_$alias"
    echo "$r" >"$IMG_DIR/$alias.recipe"   # written last: a build cut short is rebuilt
    log "built image $alias in $(( $(date +%s) - t0 ))s"
  fi
  lxc image import "$IMG_DIR/$alias.meta.tar.gz" "$IMG_DIR/$alias.rootfs.tar.gz" --alias "$alias" >/dev/null
  log "imported image $alias"
}
if [ "$ACTION" = image ]; then
  import_image "$2"
  exit 0
fi
import_image tiny
[ "$WANT_DEBIAN" = 1 ] && import_image deb12

log "ready in $(( $(date +%s) - T0 ))s: socket $SOCK, https $(lxc config get core.https_address), bridge $BRIDGE_CIDR, images: $(lxc image list --format csv -c l | tr '\n' ' ')"
