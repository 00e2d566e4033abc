#!/bin/bash
# A real single-node OpenStack (Zed, from Debian 12 bookworm packages) for the OpenStack
# backend's integration tests: Keystone + Placement + Glance (file store) + Neutron (ML2,
# no agents) + Nova (api/conductor/scheduler/compute with compute_driver=fake.FakeDriver).
# Servers really go through the Nova API -> scheduler -> placement -> compute -> Neutron
# port binding and reach ACTIVE, but no VM is started: it needs no KVM and about 2 GiB.
#
# Usage:  scripts/openstack-setup.sh [up|stop|status|purge]     (default: up; idempotent)
#   up      install what is missing, start what is not running, create what does not
#           exist. On a bare machine about 6-7 minutes; when every service is already up
#           it only checks the test resources and clouds.yaml, in a few seconds.
#   stop    stop the OpenStack services this script started (by the PIDs it recorded;
#           MariaDB and RabbitMQ are left running)
#   status  print each service and its PID
#   purge   remove everything this script made, leaving the installed packages: stop the
#           services (and the MariaDB and RabbitMQ it started), drop the databases and the
#           MariaDB and RabbitMQ users, put back the packages' config files, and delete the
#           Fernet and credential keys, Glance's image files, Nova's and Neutron's state,
#           /etc/osdev, clouds.yaml, the pid files and the logs. Keystone's users,
#           projects, images, flavors and networks go with their databases. The next "up"
#           starts as on a fresh machine with the packages installed.
#
# Result: /etc/openstack/clouds.yaml with the clouds
#           osdev-admin    password auth, project admin
#           osdev-appcred  application credential of the admin user (OSDEV_APPCRED=1, default)
#           osdev-quota    password auth, project osdev-quota, whose Nova quota allows only
#                          OSDEV_QUOTA_INSTANCES (default 1) instances: the quota tests
#         image "cirros-fake" (public), flavors "m1.tiny" and "m1.novalidhost" (a required
#         trait no host has: boots go to ERROR "No valid host was found"), network "private"
#         (shared; subnet 192.0.2.0/24, TEST-NET-1, nothing routes there), no key pair.
#         An existing application credential in clouds.yaml that still authenticates is
#         kept, so processes that already read the file keep working after a re-run.
# Needs:  root, Debian 12, the apt mirror. No systemd: services are started by hand (PIDs
#         in /run/osdev-*.pid, logs in /var/log/{keystone,placement,glance,neutron,nova}).
# Env:    OSDEV_ADMIN_PASSWORD (admin)  OSDEV_APPCRED (1)  OSDEV_QUOTA_INSTANCES (1)
#         OSDEV_QUOTA_PASSWORD (osdev-quota)  OSDEV_NOVA_API_PROCESSES (4)
set -euo pipefail
. "$(dirname "$0")/lib/root.sh"
become_root "$@"
ACTION=${1:-up}
PY=/usr/bin/python3          # never a pyenv/venv python: the OpenStack libs are Debian's
ADMIN_PW=${OSDEV_ADMIN_PASSWORD:-admin}
QUOTA_PW=${OSDEV_QUOTA_PASSWORD:-osdev-quota}
QUOTA_INSTANCES=${OSDEV_QUOTA_INSTANCES:-1}
CLOUDS=/etc/openstack/clouds.yaml
NOVA_API_PROCESSES=${OSDEV_NOVA_API_PROCESSES:-4}
DB="mysql+pymysql://os:os@127.0.0.1"
RABBIT="rabbit://os:os@127.0.0.1:5672/"
# The neutron ML2 "test" mechanism driver (shipped in python3-neutron) binds ports only for
# this magic host name, so nova-compute must use it as its host.
NOVA_HOST=host-ovs-no_filter
SVCS="keystone placement glance neutron nova-api nova-conductor nova-scheduler nova-compute"
PKGS="mariadb-server rabbitmq-server keystone placement-api glance-api neutron-server \
nova-api nova-conductor nova-scheduler python3-pymysql python3-openstackclient uwsgi-plugin-python3 curl"

log() { printf '[osdev %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
# A pid file holds "PID STARTTIME", and a service is ours only while both match: /run outlives
# the processes when a machine's session is torn down, and a bare PID may by then belong to
# another daemon (it did: glance got nova-conductor's old PID, so conductor was never started
# and every boot stayed in BUILD).
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
record() { echo "$2 $(starttime "$2")" > "/run/osdev-$1.pid"; }
pid_of() { awk '{print $1}' "/run/osdev-$1.pid" 2>/dev/null; }
alive() {
  local f=/run/osdev-$1.pid pid st; [ -f "$f" ] || return 1
  read -r pid st <"$f" || true
  [ -n "$pid" ] && [ -n "$st" ] && [ "$(starttime "$pid")" = "$st" ]
}
wait_http() { # url seconds
  local i; for i in $(seq 1 $(( $2 * 2 ))); do
    curl -s -o /dev/null --max-time 5 "$1" && return 0; sleep 0.5; done
  log "timeout waiting for $1"; return 1; }

stop_all() {
  local s pids="" p i
  for s in nova-compute nova-scheduler nova-conductor nova-api neutron glance placement keystone; do
    if alive "$s"; then p=$(pid_of "$s"); log "stopping $s ($p)"; kill "$p" || true; pids="$pids $p"; fi
    rm -f "/run/osdev-$s.pid"
  done
  # wait (up to 15 s) for them to go, so that what comes next finds their ports free
  for i in $(seq 1 30); do
    local left=""; for p in $pids; do kill -0 "$p" 2>/dev/null && left=1; done
    [ -z "$left" ] && return 0; sleep 0.5
  done
  log "still running after 15 s:$pids"
}

status_all() {
  if mysqladmin ping >/dev/null 2>&1; then echo "mariadb running"; else echo "mariadb stopped"; fi
  if rabbitmqctl -q status >/dev/null 2>&1; then echo "rabbitmq running"; else echo "rabbitmq stopped"; fi
  for s in $SVCS; do
    if alive "$s"; then echo "$s running pid $(pid_of $s)"; else echo "$s stopped"; fi
  done
}

# The files bring_up writes over (each kept once as .dist, the package's own).
CONF_FILES="/etc/keystone/keystone.conf /etc/placement/placement.conf /etc/glance/glance-api.conf \
/etc/neutron/neutron.conf /etc/neutron/plugins/ml2/ml2_conf.ini /etc/nova/nova.conf"
DATABASES="keystone placement glance neutron nova_api nova nova_cell0"

purge_all() {
  stop_all
  local s d
  if mysqladmin ping >/dev/null 2>&1; then
    for d in $DATABASES; do mysql -uroot -e "DROP DATABASE IF EXISTS $d"; done
    mysql -uroot -e "DROP USER IF EXISTS 'os'@'localhost'; DROP USER IF EXISTS 'os'@'127.0.0.1'; FLUSH PRIVILEGES"
    log "dropped the databases and the MariaDB user os"
  fi
  if rabbitmqctl -q status >/dev/null 2>&1; then
    rabbitmqctl -q delete_user os >/dev/null 2>&1 || true
    log "deleted the RabbitMQ user os"
  fi
  # A fresh machine with the packages installed has neither running (policy-rc.d keeps
  # the packages from starting them): bring_up started them, so they stop here.
  if [ -x /etc/init.d/rabbitmq-server ] && rabbitmqctl -q status >/dev/null 2>&1; then
    /etc/init.d/rabbitmq-server stop >/dev/null 2>&1 || true
  fi
  # rabbitmq's Erlang port mapper outlives the broker; only a running broker started it.
  if command -v epmd >/dev/null 2>&1 && ! rabbitmqctl -q status >/dev/null 2>&1; then
    epmd -kill >/dev/null 2>&1 || true
  fi
  if [ -x /etc/init.d/mariadb ] && mysqladmin ping >/dev/null 2>&1; then
    /etc/init.d/mariadb stop >/dev/null 2>&1 || true
  fi
  local f; for f in $CONF_FILES; do
    if [ -f "$f.dist" ]; then mv -f "$f.dist" "$f"; fi
  done
  rm -rf /etc/osdev "$CLOUDS" /etc/keystone/fernet-keys /etc/keystone/credential-keys \
    /var/lib/glance/images /var/lib/glance/staging /var/lib/glance/tasks_work_dir /var/lock/glance \
    /var/lib/nova/instances /var/lib/nova/tmp /var/lib/nova/buckets /var/lib/neutron/lock \
    /var/log/osdev-apt.log
  rmdir /etc/openstack 2>/dev/null || true
  for s in keystone placement glance neutron nova; do
    [ -d "/var/log/$s" ] && find "/var/log/$s" -type f -delete
  done
  rm -f /run/osdev-*.pid
  log "purged: services stopped, databases and users dropped, configs restored, state and logs removed (packages kept)"
}

case "$ACTION" in
  stop) stop_all; exit 0 ;;
  status) status_all; exit 0 ;;
  purge) purge_all; exit 0 ;;
  up) ;;
  *) echo "usage: $0 [up|stop|status|purge]" >&2; exit 2 ;;
esac

T0=$(date +%s)
# ---------------------------------------------------------------- already up?
# Bringing the services up re-syncs every schema (a minute or more): skip it when every
# service this script started is alive and every API answers. The test resources and
# clouds.yaml are checked (and repaired) on every run, which takes a few seconds.
all_alive() { local s; for s in $SVCS; do alive "$s" || return 1; done; }
apis_answer() { local u; for u in http://127.0.0.1:5000/v3 http://127.0.0.1:8778/ http://127.0.0.1:9292/ \
    http://127.0.0.1:9696/ http://127.0.0.1:8774/; do curl -s -o /dev/null --max-time 5 "$u" || return 1; done; }

bring_up() {
# ---------------------------------------------------------------- packages
missing=""
# (no "cmd | grep -q" anywhere: with pipefail, grep -q exiting early makes the pipe fail on SIGPIPE)
for p in $PKGS; do st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true); [ "$st" = "install ok installed" ] || missing="$missing $p"; done
if [ -n "$missing" ]; then
  log "apt-get install:$missing"
  # another apt may hold the lists lock (DPkg::Lock::Timeout covers only the dpkg lock)
  for i in $(seq 1 60); do apt-get update -qq -o DPkg::Lock::Timeout=600 && break; log "apt-get update busy, retrying"; sleep 10; done
  # policy-rc.d (if present) keeps the packages' init scripts from starting services.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends $missing >/var/log/osdev-apt.log 2>&1 || { tail -30 /var/log/osdev-apt.log; exit 1; }
fi
log "packages ready ($(( $(date +%s) - T0 ))s)"

# ---------------------------------------------------------------- mariadb + rabbitmq
if ! mysqladmin ping >/dev/null 2>&1; then
  log "starting mariadb"; /etc/init.d/mariadb start >/dev/null
fi
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  log "starting rabbitmq"; /etc/init.d/rabbitmq-server start >/dev/null
fi
mysql -uroot <<'EOF'
CREATE DATABASE IF NOT EXISTS keystone; CREATE DATABASE IF NOT EXISTS placement;
CREATE DATABASE IF NOT EXISTS glance; CREATE DATABASE IF NOT EXISTS neutron;
CREATE DATABASE IF NOT EXISTS nova_api; CREATE DATABASE IF NOT EXISTS nova; CREATE DATABASE IF NOT EXISTS nova_cell0;
CREATE USER IF NOT EXISTS 'os'@'localhost' IDENTIFIED BY 'os';
CREATE USER IF NOT EXISTS 'os'@'127.0.0.1' IDENTIFIED BY 'os';
GRANT ALL ON *.* TO 'os'@'localhost'; GRANT ALL ON *.* TO 'os'@'127.0.0.1'; FLUSH PRIVILEGES;
EOF
users=$(rabbitmqctl -q list_users 2>/dev/null || true)
grep -qE '^os[[:space:]]' <<<"$users" || rabbitmqctl -q add_user os os >/dev/null
rabbitmqctl -q set_permissions -p / os '.*' '.*' '.*' >/dev/null

# ---------------------------------------------------------------- config files
mkdir -p /etc/osdev
authtoken() { # user
cat <<EOF
www_authenticate_uri = http://127.0.0.1:5000/v3
auth_url = http://127.0.0.1:5000/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
region_name = RegionOne
username = $1
password = $1
EOF
}
for f in /etc/keystone/keystone.conf /etc/placement/placement.conf /etc/glance/glance-api.conf \
         /etc/neutron/neutron.conf /etc/neutron/plugins/ml2/ml2_conf.ini /etc/nova/nova.conf; do
  [ -f "$f.dist" ] || cp "$f" "$f.dist"
done

cat > /etc/keystone/keystone.conf <<EOF
[database]
connection = $DB/keystone
[token]
provider = fernet
expiration = 86400
[fernet_tokens]
key_repository = /etc/keystone/fernet-keys/
[credential]
key_repository = /etc/keystone/credential-keys/
[oslo_policy]
policy_dirs = /etc/keystone/policy.d
EOF

cat > /etc/placement/placement.conf <<EOF
[api]
auth_strategy = keystone
[keystone_authtoken]
$(authtoken placement)
[placement_database]
connection = $DB/placement
EOF

cat > /etc/glance/glance-api.conf <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9292
workers = 1
enabled_backends = fs:file
[database]
connection = $DB/glance
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = /var/lib/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = /var/lib/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = /var/lib/glance/tasks_work_dir/
[keystone_authtoken]
$(authtoken glance)
[paste_deploy]
flavor = keystone
[oslo_concurrency]
lock_path = /var/lock/glance
EOF
mkdir -p /var/lib/glance/images /var/lib/glance/staging /var/lib/glance/tasks_work_dir /var/lock/glance
chown -R glance:glance /var/lib/glance /var/lock/glance

cat > /etc/neutron/neutron.conf <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9696
core_plugin = ml2
service_plugins =
auth_strategy = keystone
# 0 workers = API and RPC in the one process (the test mech driver keeps state in memory)
api_workers = 0
rpc_workers = 0
rpc_state_report_workers = 0
dhcp_agent_notification = false
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
transport_url = $RABBIT
[database]
connection = $DB/neutron
[keystone_authtoken]
$(authtoken neutron)
[oslo_concurrency]
lock_path = /var/lib/neutron/lock
EOF
cat > /etc/neutron/plugins/ml2/ml2_conf.ini <<EOF
[ml2]
type_drivers = flat,local
tenant_network_types = local
# neutron.tests.unit.plugins.ml2.drivers.mechanism_test:TestMechanismDriver: binds any port
# whose binding:host_id is "$NOVA_HOST" (vif_type ovs) without any agent.
mechanism_drivers = test
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1
[securitygroup]
enable_security_group = true
firewall_driver = noop
EOF
mkdir -p /var/lib/neutron/lock; chown -R neutron:neutron /var/lib/neutron

cat > /etc/nova/nova.conf <<EOF
[DEFAULT]
transport_url = $RABBIT
compute_driver = fake.FakeDriver
host = $NOVA_HOST
my_ip = 127.0.0.1
state_path = /var/lib/nova
enabled_apis = osapi_compute
osapi_compute_workers = 1
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
[api]
auth_strategy = keystone
[api_database]
connection = $DB/nova_api
[database]
connection = $DB/nova
[conductor]
workers = 1
[scheduler]
workers = 1
[filter_scheduler]
enabled_filters = ComputeFilter
[keystone_authtoken]
$(authtoken nova)
[placement]
$(authtoken placement)
[neutron]
$(authtoken neutron)
[glance]
region_name = RegionOne
[cinder]
os_region_name = RegionOne
[oslo_concurrency]
lock_path = /var/lib/nova/tmp
[oslo_messaging_notifications]
driver = noop
EOF
mkdir -p /var/lib/nova/tmp; chown -R nova:nova /var/lib/nova
chgrp keystone /etc/keystone/keystone.conf; chgrp placement /etc/placement/placement.conf
chgrp glance /etc/glance/glance-api.conf; chgrp neutron /etc/neutron/neutron.conf; chgrp nova /etc/nova/nova.conf
chmod 640 /etc/keystone/keystone.conf /etc/placement/placement.conf /etc/glance/glance-api.conf /etc/neutron/neutron.conf /etc/nova/nova.conf
log "configs written ($(( $(date +%s) - T0 ))s)"

# ---------------------------------------------------------------- service starters
as() { su -s /bin/sh "$1" -c "$2"; }
start_uwsgi() { # name port wsgi-file user logfile [processes threads]
  alive "$1" && return 0
  cat > /etc/osdev/$1-uwsgi.ini <<EOF
[uwsgi]
plugins = python3
http-socket = 127.0.0.1:$2
wsgi-file = $3
master = true
processes = ${6:-1}
threads = ${7:-4}
enable-threads = true
lazy-apps = true
buffer-size = 65535
die-on-term = true
# without this the python clients reuse the connection and get "connection reset"
add-header = Connection: close
http-auto-chunked = true
http-chunked-input = true
http-raw-body = true
wsgi-manage-chunked-input = true
uid = $4
gid = $4
logto = $5
EOF
  setsid nohup uwsgi_python3 --ini /etc/osdev/$1-uwsgi.ini >/dev/null 2>&1 < /dev/null &
  record "$1" $!
  log "started $1 (uwsgi, pid $!, port $2)"
}
start_daemon() { # name user logfile argv...   (setpriv execs in place: the pid file holds the daemon's pid)
  local name=$1 user=$2 logf=$3; shift 3
  alive "$name" && return 0
  touch "$logf"; chown "$user" "$logf"
  HOME=/var/lib/$user setsid setpriv --reuid="$user" --regid="$user" --init-groups "$@" >>"$logf" 2>&1 < /dev/null &
  record "$name" $!
  log "started $name (pid $!)"
}

# ---------------------------------------------------------------- keystone
as keystone 'keystone-manage db_sync' >/dev/null 2>&1
[ -f /etc/keystone/fernet-keys/0 ] || keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone >/dev/null 2>&1
[ -f /etc/keystone/credential-keys/0 ] || keystone-manage credential_setup --keystone-user keystone --keystone-group keystone >/dev/null 2>&1
keystone-manage bootstrap --bootstrap-password "$ADMIN_PW" \
  --bootstrap-admin-url http://127.0.0.1:5000/v3/ --bootstrap-internal-url http://127.0.0.1:5000/v3/ \
  --bootstrap-public-url http://127.0.0.1:5000/v3/ --bootstrap-region-id RegionOne >/dev/null 2>&1
chown -R keystone:keystone /var/log/keystone
start_uwsgi keystone 5000 /usr/bin/keystone-wsgi-public keystone /var/log/keystone/keystone-uwsgi.log
# db syncs of the other services run while keystone starts
as placement 'placement-manage db sync' >/dev/null 2>&1 &
P1=$!
as glance 'glance-manage db_sync' >/dev/null 2>&1 &
P2=$!
wait_http http://127.0.0.1:5000/v3 60
log "keystone up ($(( $(date +%s) - T0 ))s)"

cat > /etc/osdev/admin-openrc <<EOF
export OS_AUTH_URL=http://127.0.0.1:5000/v3
export OS_USERNAME=admin
export OS_PASSWORD=$ADMIN_PW
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_ID=default
export OS_PROJECT_DOMAIN_ID=default
export OS_IDENTITY_API_VERSION=3
export OS_REGION_NAME=RegionOne
EOF
OSDEV_ADMIN_PASSWORD=$ADMIN_PW $PY - <<'EOF'
import os
from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client
auth = v3.Password(auth_url="http://127.0.0.1:5000/v3", username="admin",
                   password=os.environ["OSDEV_ADMIN_PASSWORD"], project_name="admin",
                   user_domain_id="default", project_domain_id="default")
ks = client.Client(session=session.Session(auth=auth))
one = lambda l: l[0] if l else None
proj = one(ks.projects.list(name="service")) or ks.projects.create("service", "default")
admin_role = one(ks.roles.list(name="admin"))
svcs = {"nova": ("compute", "http://127.0.0.1:8774/v2.1"),
        "placement": ("placement", "http://127.0.0.1:8778"),
        "glance": ("image", "http://127.0.0.1:9292"),
        "neutron": ("network", "http://127.0.0.1:9696")}
for name, (stype, url) in svcs.items():
    u = one(ks.users.list(name=name, domain="default")) or ks.users.create(name, domain="default", password=name)
    ks.roles.grant(admin_role, user=u, project=proj)
    s = one(ks.services.list(type=stype)) or ks.services.create(name, type=stype)
    have = {e.interface for e in ks.endpoints.list(service=s)}
    for iface in ("public", "internal", "admin"):
        if iface not in have:
            ks.endpoints.create(s, url, interface=iface, region="RegionOne")
EOF
log "keystone catalog ready ($(( $(date +%s) - T0 ))s)"

# ---------------------------------------------------------------- placement, glance
wait $P1; wait $P2
start_uwsgi placement 8778 /usr/bin/placement-api placement /var/log/placement/placement-uwsgi.log
start_daemon glance glance /var/log/glance/glance-api.log glance-api --config-file /etc/glance/glance-api.conf

# ---------------------------------------------------------------- neutron
as neutron 'neutron-db-manage --config-file /etc/neutron/neutron.conf --config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade head' >/var/log/neutron/db-manage.log 2>&1
# PYTHONOPTIMIZE strips the test driver's cross-call asserts
start_daemon neutron neutron /var/log/neutron/neutron-server.log \
  env PYTHONOPTIMIZE=1 neutron-server --config-file /etc/neutron/neutron.conf --config-file /etc/neutron/plugins/ml2/ml2_conf.ini

# ---------------------------------------------------------------- nova
as nova 'nova-manage api_db sync' >/dev/null 2>&1
as nova 'nova-manage cell_v2 map_cell0' >/dev/null 2>&1
cells=$(as nova 'nova-manage cell_v2 list_cells' 2>/dev/null || true)
grep -q ' cell1 ' <<<"$cells" || as nova 'nova-manage cell_v2 create_cell --name=cell1' >/dev/null 2>&1
as nova 'nova-manage db sync' >/dev/null 2>&1
log "db schemas ready ($(( $(date +%s) - T0 ))s)"
# nova-api monkey-patches with eventlet: threads in one process hang concurrent creates
# ("greenlet.error: cannot switch to a different thread"), so it gets processes instead.
start_uwsgi nova-api 8774 /usr/bin/nova-api-wsgi nova /var/log/nova/nova-api-uwsgi.log $NOVA_API_PROCESSES 1
start_daemon nova-conductor nova /var/log/nova/nova-conductor.log nova-conductor --config-file /etc/nova/nova.conf
start_daemon nova-scheduler nova /var/log/nova/nova-scheduler.log nova-scheduler --config-file /etc/nova/nova.conf
# nova-compute comes from python3-nova; the nova-compute .deb is skipped because it drags in libvirt/qemu
start_daemon nova-compute nova /var/log/nova/nova-compute.log \
  $PY -c 'import sys; from nova.cmd.compute import main; sys.exit(main())' --config-file /etc/nova/nova.conf

wait_http http://127.0.0.1:8778/ 60
wait_http http://127.0.0.1:9292/ 60
wait_http http://127.0.0.1:9696/ 90
wait_http http://127.0.0.1:8774/ 60
# map the compute host into cell1 once it has registered
for i in $(seq 1 60); do
  as nova 'nova-manage cell_v2 discover_hosts' >/dev/null 2>&1 || true
  hosts=$(as nova 'nova-manage cell_v2 list_hosts' 2>/dev/null || true)
  grep -q "$NOVA_HOST" <<<"$hosts" && break
  sleep 2
done
grep -q "$NOVA_HOST" <<<"$hosts" || { log "nova-compute never registered"; tail -20 /var/log/nova/nova-compute.log; exit 1; }
log "all services up ($(( $(date +%s) - T0 ))s)"

}

# An older run of this script served nova-api from threads, which hangs concurrent creates:
# restart it (it is ours: its PID file is this script's) so bring_up starts it anew.
if alive nova-api && ! grep -qx 'threads = 1' /etc/osdev/nova-api-uwsgi.ini 2>/dev/null; then
  log "restarting nova-api with processes instead of threads"
  kill "$(pid_of nova-api)" || true
  for i in $(seq 1 20); do alive nova-api || break; sleep 0.5; done
  rm -f /run/osdev-nova-api.pid
fi
# The APIs open connections even when their database is gone (Keystone then answers
# 500 to everything): the fast path also needs MariaDB and RabbitMQ alive.
backing_alive() { mysqladmin ping >/dev/null 2>&1 && rabbitmqctl -q status >/dev/null 2>&1; }
if all_alive && apis_answer && backing_alive; then
  log "services already up ($(( $(date +%s) - T0 ))s)"
else
  bring_up
fi

# ---------------------------------------------------------------- test resources + clouds.yaml
mkdir -p /etc/openstack
OSDEV_ADMIN_PASSWORD=$ADMIN_PW OSDEV_APPCRED=${OSDEV_APPCRED:-1} OSDEV_QUOTA_PASSWORD=$QUOTA_PW \
OSDEV_QUOTA_INSTANCES=$QUOTA_INSTANCES $PY - "$CLOUDS" <<'EOF'
import os, sys, yaml
from keystoneauth1 import session
from keystoneauth1.identity import v3
path = sys.argv[1]
AUTH_URL = "http://127.0.0.1:5000/v3"
auth = v3.Password(auth_url=AUTH_URL, username="admin",
                   password=os.environ["OSDEV_ADMIN_PASSWORD"], project_name="admin",
                   user_domain_id="default", project_domain_id="default")
s = session.Session(auth=auth)
def call(method, service, path, **kw):
    kw.setdefault("raise_exc", True)
    return s.request(path, method, endpoint_filter={"service_type": service, "interface": "public"}, **kw)
# image
imgs = call("GET", "image", "/v2/images?name=cirros-fake").json()["images"]
if not imgs or imgs[0]["status"] != "active":
    for i in imgs:
        call("DELETE", "image", "/v2/images/" + i["id"])
    img = call("POST", "image", "/v2/images", json={"name": "cirros-fake", "disk_format": "raw",
               "container_format": "bare", "visibility": "public"}).json()
    call("PUT", "image", "/v2/images/%s/file" % img["id"], data=b"\0" * 1024 * 1024,
         headers={"Content-Type": "application/octet-stream"})
# flavors
fl = call("GET", "compute", "/flavors").json()["flavors"]
if not any(f["name"] == "m1.tiny" for f in fl):
    call("POST", "compute", "/flavors", json={"flavor": {"name": "m1.tiny", "id": "1", "ram": 512, "vcpus": 1, "disk": 1}})
# a flavor no host can satisfy: servers booted with it go to ERROR ("No valid host was found")
if not any(f["name"] == "m1.novalidhost" for f in fl):
    call("POST", "compute", "/flavors", json={"flavor": {"name": "m1.novalidhost", "id": "98", "ram": 512, "vcpus": 1, "disk": 1}})
    call("POST", "compute", "/flavors/98/os-extra_specs", json={"extra_specs": {"trait:CUSTOM_NO_SUCH_HOST": "required"}})
# network + subnet (shared, so the quota project can use it too)
nets = call("GET", "network", "/v2.0/networks?name=private").json()["networks"]
net = nets[0] if nets else call("POST", "network", "/v2.0/networks", json={"network": {"name": "private", "shared": True}}).json()["network"]
if not net["subnets"]:
    call("POST", "network", "/v2.0/subnets", json={"subnet": {"name": "private-subnet", "network_id": net["id"],
         "ip_version": 4, "cidr": "192.0.2.0/24", "enable_dhcp": False}})

# the quota project: a user with the member role and a Nova quota of a few instances
def one(service, path, key):
    l = call("GET", service, path).json()[key]
    return l[0] if l else None
proj = one("identity", "/projects?name=osdev-quota", "projects") or \
    call("POST", "identity", "/projects", json={"project": {"name": "osdev-quota", "domain_id": "default"}}).json()["project"]
user = one("identity", "/users?name=osdev-quota&domain_id=default", "users")
if user:
    call("PATCH", "identity", "/users/" + user["id"], json={"user": {"password": os.environ["OSDEV_QUOTA_PASSWORD"]}})
else:
    user = call("POST", "identity", "/users", json={"user": {"name": "osdev-quota", "domain_id": "default",
                "password": os.environ["OSDEV_QUOTA_PASSWORD"]}}).json()["user"]
member = one("identity", "/roles?name=member", "roles")
call("PUT", "identity", "/projects/%s/users/%s/roles/%s" % (proj["id"], user["id"], member["id"]))
call("PUT", "compute", "/os-quota-sets/" + proj["id"],
     json={"quota_set": {"instances": int(os.environ["OSDEV_QUOTA_INSTANCES"])}})

# the admin project runs the contract suite, the benchmarks and the end-to-end tests,
# which boot 20 and more servers at once (Nova's default quota is 10 instances, 20 cores)
admin_proj = one("identity", "/projects?name=admin", "projects")
call("PUT", "compute", "/os-quota-sets/" + admin_proj["id"],
     json={"quota_set": {"instances": 200, "cores": 400, "ram": 409600}})
# the quota user must be able to log in (its password may have been changed above)
session.Session(auth=v3.Password(auth_url=AUTH_URL, username="osdev-quota", password=os.environ["OSDEV_QUOTA_PASSWORD"],
    project_name="osdev-quota", user_domain_id="default", project_domain_id="default")).get_token()

def password_cloud(user, pw, project):
    return {"auth": {"auth_url": AUTH_URL, "username": user, "password": pw, "project_name": project,
                     "user_domain_name": "Default", "project_domain_name": "Default"},
            "region_name": "RegionOne", "interface": "public", "identity_api_version": 3}
clouds = {"osdev-admin": password_cloud("admin", os.environ["OSDEV_ADMIN_PASSWORD"], "admin"),
          "osdev-quota": password_cloud("osdev-quota", os.environ["OSDEV_QUOTA_PASSWORD"], "osdev-quota")}

if os.environ.get("OSDEV_APPCRED") == "1":
    # keep a working application credential: processes that read clouds.yaml keep theirs
    old = None
    try:
        old = yaml.safe_load(open(path))["clouds"]["osdev-appcred"]
        a = old["auth"]
        session.Session(auth=v3.ApplicationCredential(auth_url=AUTH_URL,
            application_credential_id=a["application_credential_id"],
            application_credential_secret=a["application_credential_secret"])).get_token()
    except Exception:
        old = None
    if old is None:
        uid = s.get_user_id()
        p = "/users/%s/application_credentials" % uid
        ep = {"service_type": "identity", "interface": "public"}
        for ac in s.get(p + "?name=osdev-ci", endpoint_filter=ep).json()["application_credentials"]:
            s.delete(p + "/" + ac["id"], endpoint_filter=ep)
        ac = s.post(p, endpoint_filter=ep, json={"application_credential": {"name": "osdev-ci"}}).json()["application_credential"]
        old = {"auth_type": "v3applicationcredential",
               "auth": {"auth_url": AUTH_URL, "application_credential_id": ac["id"],
                        "application_credential_secret": ac["secret"]},
               "region_name": "RegionOne", "interface": "public", "identity_api_version": 3}
    clouds["osdev-appcred"] = old
tmp = path + ".tmp"
with open(tmp, "w") as f:
    yaml.safe_dump({"clouds": clouds}, f, default_flow_style=False, sort_keys=True)
os.chmod(tmp, 0o644)
os.replace(tmp, path)
EOF
# Every API answering is not enough: a boot needs conductor, scheduler and compute reporting
# in over RabbitMQ. Without this check a missing conductor shows up only as tests whose
# servers stay in BUILD for minutes.
nova_ok=""
for i in $(seq 1 45); do
  svc=$(OS_CLOUD=osdev-admin openstack compute service list -f value -c Binary -c State 2>/dev/null || true)
  nova_ok=1
  for b in nova-conductor nova-scheduler nova-compute; do
    grep -qx "$b up" <<<"$svc" || { nova_ok=""; break; }
  done
  [ -n "$nova_ok" ] && break
  sleep 2
done
if [ -z "$nova_ok" ]; then
  log "FAIL: nova services not all up after 90 s:"; echo "$svc" >&2
  log "see /var/log/nova/nova-{conductor,scheduler,compute}.log"; exit 1
fi
log "ready in $(( $(date +%s) - T0 ))s: $CLOUDS (clouds osdev-admin, osdev-appcred, osdev-quota)"
status_all
