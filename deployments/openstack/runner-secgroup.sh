#!/bin/bash
# runner-secgroup.sh: create or update the security group for runner-spawner's servers.
#
# Usage:  runner-secgroup.sh --bootstrap HOST:PORT [options]
#   --bootstrap HOST:PORT  the spawner's bootstrap endpoint as the runners reach it (an IPv4
#                          address, or a name resolved here); required
#   --name NAME            the group's name (default: gha-runners)
#   --web CIDR             where jobs may open HTTP(S): GitHub, registries, mirrors
#                          (default: 0.0.0.0/0; repeat to allow several ranges)
#   --dns CIDR             where jobs may resolve names (default: 0.0.0.0/0; repeat)
#   --ssh-from CIDR        allow SSH in from this range (a bastion), for debugging only
#   --os-cloud NAME        clouds.yaml entry (default: OS_CLOUD)
#   --dry-run              print the rules that would be added or removed
#
# The group allows nothing in (unless --ssh-from) and, out: DNS, HTTP and HTTPS to the
# given ranges, the metadata service (cloud-init reads the user-data from it at boot),
# and the bootstrap endpoint. Neutron's default "allow all egress" rules are removed.
# Rules are compared and only the difference is applied, so a re-run never opens a gap
# for runners that are already up. Neutron groups are allow-lists: to keep runners away
# from the cloud's admin and storage networks, give the runners a network whose router
# has no route to those (see docs/openstack.md); a group cannot subtract a range.
#
# Needs: the openstack CLI (python3-openstackclient) and python3.
set -euo pipefail
BOOTSTRAP="" NAME=gha-runners WEB=() DNS=() SSH="" OSCLOUD=${OS_CLOUD:-} DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bootstrap) BOOTSTRAP=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --web) WEB+=("$2"); shift 2 ;;
    --dns) DNS+=("$2"); shift 2 ;;
    --ssh-from) SSH=$2; shift 2 ;;
    --os-cloud) OSCLOUD=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "$0: $*" >&2; exit 1; }
[ -n "$BOOTSTRAP" ] || die "--bootstrap HOST:PORT is required (the spawner's bootstrap endpoint)"
BHOST=${BOOTSTRAP%:*} BPORT=${BOOTSTRAP##*:}
[ "$BHOST" != "$BOOTSTRAP" ] && [[ "$BPORT" =~ ^[0-9]+$ ]] || die "--bootstrap must be HOST:PORT (got $BOOTSTRAP)"
if [[ ! "$BHOST" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  BIP=$(getent ahostsv4 "$BHOST" | awk 'NR==1{print $1}')
  [ -n "$BIP" ] || die "cannot resolve $BHOST"
  BHOST=$BIP
fi
[ ${#WEB[@]} -gt 0 ] || WEB=(0.0.0.0/0)
[ ${#DNS[@]} -gt 0 ] || DNS=(0.0.0.0/0)
command -v openstack >/dev/null || die "the openstack CLI is not installed (python3-openstackclient)"
OS=(openstack); [ -n "$OSCLOUD" ] && OS+=(--os-cloud "$OSCLOUD")

# The wanted rules, one a line: direction ethertype protocol port_min port_max remote_cidr
want=$(
  for c in "${DNS[@]}"; do echo "egress IPv4 udp 53 53 $c"; echo "egress IPv4 tcp 53 53 $c"; done
  for c in "${WEB[@]}"; do echo "egress IPv4 tcp 80 80 $c"; echo "egress IPv4 tcp 443 443 $c"; done
  echo "egress IPv4 tcp 80 80 169.254.169.254/32"
  echo "egress IPv4 tcp $BPORT $BPORT $BHOST/32"
  [ -z "$SSH" ] || echo "ingress IPv4 tcp 22 22 $SSH"
)
want=$(sort -u <<<"$want")

if ! "${OS[@]}" security group show "$NAME" -f value -c id >/dev/null 2>&1; then
  if [ "$DRY" = 1 ]; then echo "would create security group $NAME"; else
    "${OS[@]}" security group create "$NAME" --description "runner-spawner runners: no ingress, egress to DNS, web, metadata and the bootstrap endpoint" -f value -c id >/dev/null
    echo "created security group $NAME"
  fi
fi
# Existing rules as the same lines, each followed by its id.
have=$("${OS[@]}" security group rule list "$NAME" --long -f json 2>/dev/null | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    d, e, p = r.get("Direction"), r.get("Ethertype"), r.get("IP Protocol") or "any"
    rng = r.get("Port Range") or ""
    lo, hi = (rng.split(":") + [""])[:2] if rng else ("any", "any")
    cidr = r.get("IP Range") or ("0.0.0.0/0" if e == "IPv4" else "::/0")
    if r.get("Remote Security Group"):
        cidr = "group:" + r["Remote Security Group"]
    print(d, e, p, lo or "any", hi or lo or "any", cidr, r["ID"])
' 2>/dev/null || true)

changes=0
while read -r dir eth proto lo hi cidr; do
  [ -n "$dir" ] || continue
  if ! grep -qxF "$dir $eth $proto $lo $hi $cidr" <<<"$(cut -d' ' -f1-6 <<<"$have")"; then
    changes=$((changes + 1))
    if [ "$DRY" = 1 ]; then echo "would add: $dir $eth $proto $lo-$hi $cidr"; continue; fi
    "${OS[@]}" security group rule create "$NAME" --"$dir" --ethertype "$eth" --protocol "$proto" \
      --dst-port "$lo:$hi" --remote-ip "$cidr" -f value -c id >/dev/null
    echo "added: $dir $eth $proto $lo-$hi $cidr"
  fi
done <<<"$want"
while read -r dir eth proto lo hi cidr id; do
  [ -n "$dir" ] || continue
  if ! grep -qxF "$dir $eth $proto $lo $hi $cidr" <<<"$want"; then
    changes=$((changes + 1))
    if [ "$DRY" = 1 ]; then echo "would remove: $dir $eth $proto $lo-$hi $cidr ($id)"; continue; fi
    "${OS[@]}" security group rule delete "$id"
    echo "removed: $dir $eth $proto $lo-$hi $cidr"
  fi
done <<<"$have"
echo "security group $NAME: $changes change(s)"
