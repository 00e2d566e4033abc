#!/bin/bash
# build-runner-image.sh: turn a distribution's cloud image into a GitHub Actions runner
# image for runner-spawner's openstack flavors, and (optionally) upload it to Glance.
#
# Usage:  build-runner-image.sh --base-image FILE --runner-tarball FILE [options]
#   --base-image FILE      a cloud image with cloud-init, downloaded by you: e.g.
#                          debian-12-genericcloud-amd64.qcow2 or
#                          ubuntu-24.04-server-cloudimg-amd64.img (required)
#   --runner-tarball FILE  actions-runner-linux-x64-<version>.tar.gz, downloaded by you
#                          from https://github.com/actions/runner/releases (required;
#                          this script never downloads it)
#   --name NAME            Glance image name (default: gha-runner). Upload every build
#                          under the same name: the spawner boots the newest active one.
#   --packages "a b"       extra packages for jobs (default: "git jq unzip zip xz-utils")
#   --size SIZE            grow the disk's virtual size (e.g. 20G); cloud-init's growpart
#                          grows the root file system at first boot
#   --no-sudo              do not give the runner user passwordless sudo
#   --allow-metadata       do not block the runner user from the metadata service
#   --out FILE             where to write the image (default: ./NAME-<date>.qcow2)
#   --upload               upload with `openstack image create` (OS_CLOUD or --os-cloud)
#   --os-cloud NAME        clouds.yaml entry for --upload
#   --visibility V         private (default), shared, community or public
#
# Needs: virt-customize and virt-sparsify (Debian/Ubuntu: libguestfs-tools), qemu-img,
# network access from the build appliance to the distribution's package mirror, and
# the openstack CLI for --upload. Takes 5-15 minutes (faster with /dev/kvm).
#
# What the image holds, besides the base image's cloud-init:
#   - user "runner" (uid 1001, passwordless sudo unless --no-sudo) with the runner in
#     /home/runner/actions-runner and its dependencies (the tarball's own
#     bin/installdependencies.sh), ready for `./run.sh --jitconfig ...`
#   - cloud-init reads the OpenStack metadata service or a config drive only, upgrades
#     nothing at boot (a runner must start fast), and allows no password logins
#   - spawner-metadata-guard.service: nftables rules that keep uid 1001 (jobs) from the
#     metadata service, where the user-data (the bootstrap URL and its one-time token)
#     and the instance's metadata stay readable for the server's whole life
#   - no runner registration and no secret: the spawner's bootstrap user-data fetches
#     the one-time runner config at boot.
set -euo pipefail

BASE="" TARBALL="" NAME=gha-runner PACKAGES="git jq unzip zip xz-utils" SIZE="" SUDO=1
GUARD=1 OUT="" UPLOAD=0 OSCLOUD="" VISIBILITY=private
while [ $# -gt 0 ]; do
  case "$1" in
    --base-image) BASE=$2; shift 2 ;;
    --runner-tarball) TARBALL=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --packages) PACKAGES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --no-sudo) SUDO=0; shift ;;
    --allow-metadata) GUARD=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    --upload) UPLOAD=1; shift ;;
    --os-cloud) OSCLOUD=$2; shift 2 ;;
    --visibility) VISIBILITY=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "$0: $*" >&2; exit 1; }
log() { printf '[runner-image %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "$BASE" ] || die "--base-image is required (a distribution cloud image with cloud-init)"
[ -s "$BASE" ] || die "no base image at $BASE"
[ -n "$TARBALL" ] || die "--runner-tarball is required (download it from https://github.com/actions/runner/releases)"
[ -s "$TARBALL" ] || die "no runner tarball at $TARBALL"
# (no "tar | grep -q": SIGPIPE under pipefail)
case $'\n'"$(tar -tzf "$TARBALL" 2>/dev/null || true)"$'\n' in
  *$'\n'./run.sh$'\n'*|*$'\n'run.sh$'\n'*) ;;
  *) die "$TARBALL does not look like an actions-runner tarball (no run.sh at its top)" ;;
esac
case "$VISIBILITY" in private|shared|community|public) ;; *) die "--visibility must be private, shared, community or public" ;; esac
for tool in qemu-img virt-customize virt-sparsify; do
  command -v "$tool" >/dev/null || die "$tool is not installed (Debian/Ubuntu: apt-get install qemu-utils libguestfs-tools)"
done
if [ "$UPLOAD" = 1 ]; then
  command -v openstack >/dev/null || die "--upload needs the openstack CLI (python3-openstackclient)"
fi
VERSION=$(basename "$TARBALL" | sed -n 's/^actions-runner-linux-[a-z0-9]*-\([0-9.]*\)\.tar\.gz$/\1/p')
VERSION=${VERSION:-unknown}
OUT=${OUT:-./$NAME-$(date +%Y%m%d%H%M).qcow2}
T0=$(date +%s)

W=$(mktemp -d /var/tmp/runner-image.XXXXXX)
trap 'rm -rf "$W"' EXIT

log "copying $BASE"
qemu-img convert -O qcow2 "$BASE" "$W/image.qcow2"
[ -z "$SIZE" ] || qemu-img resize -q "$W/image.qcow2" "$SIZE"

# Files the image gets, written here so the virt-customize call below stays readable.
cat >"$W/90-runner-spawner.cfg" <<'CFG'
# runner-spawner: a runner boots, runs one job and is deleted.
datasource_list: [ ConfigDrive, OpenStack, None ]
package_update: false
package_upgrade: false
package_reboot_if_required: false
ssh_pwauth: false
disable_root: true
CFG
cp "$HERE/metadata-guard.nft" "$W/metadata-guard.nft"
cat >"$W/spawner-metadata-guard.service" <<'UNIT'
[Unit]
Description=Keep runner jobs (uid 1001) away from the cloud's metadata service
DefaultDependencies=no
Before=network-pre.target cloud-init.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/runner-spawner/metadata-guard.nft

[Install]
WantedBy=multi-user.target
UNIT
echo "$VERSION" >"$W/runner-version"

args=(-a "$W/image.qcow2" --network
  --install "curl,ca-certificates,tar,gzip,sudo,nftables,${PACKAGES// /,}"
  --run-command 'id runner >/dev/null 2>&1 || useradd --create-home --uid 1001 --shell /bin/bash runner'
  --mkdir /home/runner/actions-runner
  --copy-in "$TARBALL:/var/tmp"
  --run-command "tar -C /home/runner/actions-runner -xzf /var/tmp/$(basename "$TARBALL") && rm -f /var/tmp/$(basename "$TARBALL")"
  --run-command '/home/runner/actions-runner/bin/installdependencies.sh'
  --copy-in "$W/runner-version:/home/runner/actions-runner"
  --run-command 'mv /home/runner/actions-runner/runner-version /home/runner/actions-runner/.spawner-runner-version; chown -R runner:runner /home/runner'
  --copy-in "$W/90-runner-spawner.cfg:/etc/cloud/cloud.cfg.d"
)
if [ "$SUDO" = 1 ]; then
  args+=(--write '/etc/sudoers.d/runner:runner ALL=(ALL) NOPASSWD:ALL' --chmod '0440:/etc/sudoers.d/runner')
fi
if [ "$GUARD" = 1 ]; then
  args+=(--mkdir /etc/runner-spawner
    --copy-in "$W/metadata-guard.nft:/etc/runner-spawner"
    --copy-in "$W/spawner-metadata-guard.service:/etc/systemd/system"
    --run-command 'systemctl enable spawner-metadata-guard.service')
fi
# Leave no trace of the build: a fresh machine-id, cloud-init state, logs and caches.
args+=(--run-command 'apt-get clean 2>/dev/null || dnf clean all 2>/dev/null || true'
  --run-command 'cloud-init clean --logs --seed 2>/dev/null || rm -rf /var/lib/cloud/*'
  --truncate /etc/machine-id)

log "customising (installs packages through the appliance's network: several minutes)"
virt-customize "${args[@]}" >"$W/customize.log" 2>&1 || { tail -40 "$W/customize.log"; die "virt-customize failed"; }
log "sparsifying"
virt-sparsify --quiet --compress "$W/image.qcow2" "$OUT"
log "built $OUT (runner $VERSION) in $(( $(date +%s) - T0 ))s"

if [ "$UPLOAD" = 1 ]; then
  C=(); [ -n "$OSCLOUD" ] && C=(--os-cloud "$OSCLOUD")
  vsize=$(qemu-img info --output=json "$OUT" | sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p')
  min_disk=$(( (vsize + 1073741823) / 1073741824 ))
  log "uploading to Glance as $NAME (min_disk ${min_disk}G)"
  openstack "${C[@]}" image create "$NAME" --disk-format qcow2 --container-format bare \
    --file "$OUT" --min-disk "$min_disk" --"$VISIBILITY" \
    --property runner_version="$VERSION" --property built_by=runner-spawner \
    --property hw_rng_model=virtio -f value -c id
  log "uploaded; the spawner uses it for new servers within 5 minutes (its name cache)"
fi
