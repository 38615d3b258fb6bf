#!/usr/bin/env bash
# Prepares a Debian (12+) or Ubuntu (22.04+) server for strata. Run as root; safe to run again.
#
#   deploy/setup-debian.sh [--role management|agent|all]
#
# management (default): PostgreSQL and Redis installed, configured and running; a `strata` PostgreSQL
#   role (password from STRATA_DB_PASSWORD, else generated and stored only in /etc/strata/strata.env)
#   owning a `strata` database; the `strata` system user; /var/lib/strata (0700); /etc/strata/strata.env
#   (0600) written when absent; the systemd units copied to /etc/systemd/system when systemd runs.
# agent: a KVM host: QEMU, libvirt and the NFS/CIFS mount helpers; libvirtd running; an env file without
#   database credentials (the agent only talks to Redis). Set STRATA_REDIS_URL to the management
#   server's Redis when running this.
# all: both on one machine (lab or single-host installation).
#
# Environment (all optional):
#   STRATA_DB_PASSWORD    password of the `strata` PostgreSQL role (never printed). When given and the
#                         env file already exists, its STRATA_DATABASE_URL is updated to match.
#   STRATA_REDIS_BIND     addresses Redis listens on (default "127.0.0.1 -::1", loopback only). Agents on
#                         other hosts need Redis reachable: set e.g. "127.0.0.1 10.0.0.5"; a password is
#                         then required (STRATA_REDIS_PASSWORD, else generated) and written to
#                         /etc/redis/strata.conf and the env file.
#   STRATA_REDIS_URL, STRATA_EVENT_STORE, STRATA_ESDB_URL, STRATA_API_HOST, STRATA_API_PORT,
#   STRATA_MASTER_KEY_FILE, STRATA_QUEUE_PREFIX, STRATA_LOG_LEVEL
#                         written into a new env file instead of the defaults (deploy/strata.env.example).
#   STRATA_CONFIG_DIR (/etc/strata), STRATA_STATE_DIR (/var/lib/strata), STRATA_DB_NAME (strata),
#   STRATA_DB_USER (strata)  where things go, for unusual layouts and for testing this script.
#
# Node.js >= 20.19 is needed to run strata itself; Debian 12 ships 18, so install Node from NodeSource
# or another source of your choice. This script only checks for it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
role=management
while [ $# -gt 0 ]; do
  case $1 in
    --role) role=${2:-}; shift 2 ;;
    --role=*) role=${1#--role=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $role in management | agent | all) ;; *) echo "--role must be management, agent or all" >&2; exit 2 ;; esac
with_management() { [ "$role" != agent ]; }
with_agent() { [ "$role" != management ]; }

CONFIG_DIR=${STRATA_CONFIG_DIR:-/etc/strata}
STATE_DIR=${STRATA_STATE_DIR:-/var/lib/strata}
ENV_FILE=$CONFIG_DIR/strata.env
DB_NAME=${STRATA_DB_NAME:-strata}
DB_USER=${STRATA_DB_USER:-strata}
PG_PORT=5432
REDIS_PORT=6379

log() { printf '[strata-setup] %s\n' "$*"; }
warn() { printf '[strata-setup] WARNING: %s\n' "$*" >&2; }
die() { printf '[strata-setup] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script is for Debian and Ubuntu"
[[ $DB_NAME =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "STRATA_DB_NAME must be a lower-case SQL identifier"
[[ $DB_USER =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "STRATA_DB_USER must be a lower-case SQL identifier"

systemd_is_init() { [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }
process_running() {
  local f
  for f in /proc/[0-9]*/comm; do [ "$(cat "$f" 2>/dev/null)" = "$1" ] && return 0; done
  return 1
}
wait_for() {
  local timeout=$1 i
  shift
  for ((i = 0; i < timeout * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}
# A random secret of 48 hex characters (URL- and SQL-safe).
random_secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
# Percent-encodes $1 for the user-info part of a URL.
urlencode() {
  local s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}
urldecode() { local s=${1//+/ }; printf '%b' "${s//%/\\x}"; }
run_as_postgres() { (cd / && runuser -u postgres -- "$@"); }

# ---------------------------------------------------------------- packages
packages=()
with_management && packages+=(postgresql redis-server redis-tools)
with_agent && packages+=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients nfs-common cifs-utils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null
  apt-get install -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold --no-install-recommends "${missing[@]}"
else
  log "packages present"
fi

node_major=$(node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p')
if [ -z "$node_major" ] || [ "$node_major" -lt 20 ]; then
  warn "Node.js >= 20.19 not found (strata needs it; Debian's nodejs package is too old on bookworm)"
fi

# ---------------------------------------------------------------- user, directories
if with_management && ! getent passwd strata >/dev/null; then
  log "creating system user strata"
  useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin \
    --comment 'strata backup engine' strata
fi
mkdir -p "$CONFIG_DIR" "$STATE_DIR"
chmod 0755 "$CONFIG_DIR"
chmod 0700 "$STATE_DIR"
# The management services run as strata; the agent runs as root and can use the directory anyway.
if getent passwd strata >/dev/null; then chown strata:strata "$STATE_DIR"; fi

# ---------------------------------------------------------------- PostgreSQL
db_url=''
if with_management; then
  pg_ok() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }
  pg_cluster() { pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }'; }
  read -r pg_ver pg_name <<<"$(pg_cluster)" || true
  if [ -z "${pg_ver:-}" ]; then
    [ -z "$(pg_lsclusters -h 2>/dev/null)" ] || die "PostgreSQL clusters exist but none uses port $PG_PORT"
    pg_ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -n | tail -n 1)
    pg_name=main
    log "creating PostgreSQL $pg_ver cluster $pg_name"
    pg_createcluster "$pg_ver" "$pg_name" -p "$PG_PORT" >/dev/null
  fi
  if systemd_is_init; then
    systemctl enable --now -q postgresql "postgresql@$pg_ver-$pg_name" 2>/dev/null || systemctl start "postgresql@$pg_ver-$pg_name"
  elif ! pg_ok; then
    log "starting PostgreSQL $pg_ver/$pg_name (no systemd)"
    pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" start
  fi
  wait_for 60 pg_ok || die "PostgreSQL is not accepting connections on 127.0.0.1:$PG_PORT"
  log "PostgreSQL $pg_ver/$pg_name running"

  # The password: given, else the one already in the env file, else a new one.
  existing_url=$( (sed -n 's/^STRATA_DATABASE_URL=//p' "$ENV_FILE" 2>/dev/null || true) | tail -n 1)
  existing_pw=''
  if [[ $existing_url =~ ^postgres(ql)?://${DB_USER}:([^@]*)@ ]]; then existing_pw=$(urldecode "${BASH_REMATCH[2]}"); fi
  if [ -n "${STRATA_DB_PASSWORD:-}" ]; then
    [[ $STRATA_DB_PASSWORD != *$'\n'* ]] || die "STRATA_DB_PASSWORD must be one line"
    db_pw=$STRATA_DB_PASSWORD
  elif [ -n "$existing_pw" ]; then
    db_pw=$existing_pw
  else
    db_pw=$(random_secret)
  fi
  db_url="postgres://${DB_USER}:$(urlencode "$db_pw")@127.0.0.1:${PG_PORT}/${DB_NAME}"

  # The role always gets the password that the env file will hold. SQL goes through stdin, so the
  # password never appears in a process list, and statement logging is off for this session.
  role_exists=$(run_as_postgres psql -XAtq -p "$PG_PORT" -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")
  if [ "$role_exists" = 1 ]; then
    verb=ALTER
    log "PostgreSQL role $DB_USER exists; setting its password"
  else
    verb=CREATE
    log "creating PostgreSQL role $DB_USER"
  fi
  sql_pw=${db_pw//\'/\'\'}
  run_as_postgres psql -XAtq -v ON_ERROR_STOP=1 -p "$PG_PORT" >/dev/null <<SQL
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
$verb ROLE "$DB_USER" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$sql_pw';
SQL
  unset sql_pw
  if [ "$(run_as_postgres psql -XAtq -p "$PG_PORT" -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
    log "creating database $DB_NAME owned by $DB_USER"
    run_as_postgres createdb -p "$PG_PORT" -O "$DB_USER" -E UTF8 "$DB_NAME"
  fi
  if PGPASSWORD=$db_pw PGCONNECT_TIMEOUT=5 psql -X -w -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" -Atqc 'select 1' >/dev/null 2>&1; then
    log "$DB_USER can log in to $DB_NAME over 127.0.0.1 with its password"
  else
    warn "$DB_USER cannot log in to $DB_NAME on 127.0.0.1:$PG_PORT with its password; check pg_hba.conf (Debian's default allows scram-sha-256 for 127.0.0.1/32)"
  fi
fi

# ---------------------------------------------------------------- Redis
redis_url=''
if with_management; then
  redis_conf=/etc/redis/redis.conf
  strata_redis_conf=/etc/redis/strata.conf
  bind=${STRATA_REDIS_BIND:-127.0.0.1 -::1}
  redis_pw=''
  loopback_only=1
  for a in $bind; do
    case ${a#-} in 127.* | ::1 | localhost) ;; *) loopback_only=0 ;; esac
  done
  if [ "$loopback_only" = 0 ]; then
    redis_pw=${STRATA_REDIS_PASSWORD:-$( (sed -n 's/^requirepass "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$strata_redis_conf" 2>/dev/null || true) | tail -n 1)}
    [[ $redis_pw =~ ^[A-Za-z0-9._~-]*$ ]] || die "STRATA_REDIS_PASSWORD may only contain letters, digits and . _ ~ -"
    [ -n "$redis_pw" ] || redis_pw=$(random_secret)
  fi
  # strata's settings live in their own file, included last so that they win over redis.conf.
  new_conf=$(mktemp)
  {
    echo "# Written by strata's deploy/setup-debian.sh; run it again instead of editing."
    echo "bind $bind"
    echo "# BullMQ needs keys never to be evicted, and jobs should survive a restart."
    echo "maxmemory-policy noeviction"
    echo "appendonly yes"
    [ -z "$redis_pw" ] || echo "requirepass \"$redis_pw\""
  } >"$new_conf"
  redis_conf_changed=0
  if ! cmp -s "$new_conf" "$strata_redis_conf"; then
    install -m 0640 -o redis -g redis "$new_conf" "$strata_redis_conf"
    redis_conf_changed=1
  fi
  rm -f "$new_conf"
  if [ -f "$redis_conf" ] && ! grep -qx "include $strata_redis_conf" "$redis_conf"; then
    printf '\n# strata (deploy/setup-debian.sh)\ninclude %s\n' "$strata_redis_conf" >>"$redis_conf"
    redis_conf_changed=1
  fi
  redis_ok() { REDISCLI_AUTH=$redis_pw redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -qx PONG; }
  if systemd_is_init; then
    systemctl enable -q redis-server
    if [ "$redis_conf_changed" = 1 ]; then systemctl restart redis-server; else systemctl start redis-server; fi
  elif [ "$redis_conf_changed" = 1 ] && process_running redis-server; then
    warn "Redis already runs without systemd: restart it to apply $strata_redis_conf"
  elif ! redis_ok; then
    log "starting Redis (no systemd)"
    install -d -o redis -g redis -m 0755 /run/redis
    runuser -u redis -- redis-server "$redis_conf" --daemonize yes
  fi
  wait_for 30 redis_ok || warn "Redis does not answer PING on 127.0.0.1:$REDIS_PORT with the configured password"
  redis_url="redis://127.0.0.1:$REDIS_PORT"
  [ -z "$redis_pw" ] || redis_url="redis://:$(urlencode "$redis_pw")@127.0.0.1:$REDIS_PORT"
  log "Redis running (listening on: $bind)"
  if [ -n "$redis_pw" ]; then
    log "agents on other hosts: STRATA_REDIS_URL=redis://:<password>@<this host>:$REDIS_PORT, password in $strata_redis_conf"
  fi
fi

# ---------------------------------------------------------------- libvirt (agent)
if with_agent; then
  [ -e /dev/kvm ] || warn "/dev/kvm missing: enable virtualisation (VT-x/AMD-V) or VMs run without KVM"
  virsh_ok() { timeout 10 virsh -c qemu:///system version; }
  if systemd_is_init; then
    systemctl enable --now -q libvirtd 2>/dev/null || systemctl start libvirtd
  elif ! virsh_ok >/dev/null 2>&1; then
    log "starting virtlogd and libvirtd (no systemd)"
    mkdir -p /var/log/libvirt /var/run/libvirt
    process_running virtlogd || virtlogd -d
    process_running libvirtd || libvirtd -d
  fi
  wait_for 60 virsh_ok || die "libvirtd does not answer on qemu:///system (see /var/log/libvirt)"
  log "libvirt running: $(virsh -c qemu:///system version 2>/dev/null | sed -n 's/^Running hypervisor: //p')"
  log "CephFS repositories also need ceph-common (mount.ceph): apt-get install ceph-common"
fi

# ---------------------------------------------------------------- env file
if [ -f "$ENV_FILE" ]; then
  log "$ENV_FILE exists; left as it is"
  if with_management && [ -n "${STRATA_DB_PASSWORD:-}" ] && [ "$existing_pw" != "$db_pw" ]; then
    if [[ $existing_url =~ ^postgres(ql)?://${DB_USER}: ]]; then
      tmp=$(mktemp "$CONFIG_DIR/.strata.env.XXXXXX")
      awk -v url="$db_url" '/^STRATA_DATABASE_URL=/ { print "STRATA_DATABASE_URL=" url; next } { print }' "$ENV_FILE" >"$tmp"
      chmod 0600 "$tmp"
      mv "$tmp" "$ENV_FILE"
      log "updated STRATA_DATABASE_URL in $ENV_FILE to the new password"
    else
      warn "$ENV_FILE does not use the $DB_USER role; set its STRATA_DATABASE_URL yourself"
    fi
  fi
else
  log "writing $ENV_FILE"
  ev() { local v=${!1:-}; printf '%s' "${v:-$2}"; }
  tmp=$(mktemp "$CONFIG_DIR/.strata.env.XXXXXX")
  chmod 0600 "$tmp"
  {
    echo "# strata configuration, written by deploy/setup-debian.sh --role $role on $(date -u +%Y-%m-%d)."
    echo "# Every variable is described in deploy/strata.env.example. Keep this file mode 0600."
    echo
    if with_management; then
      echo "STRATA_DATABASE_URL=$db_url"
    else
      echo "# Agents need no database; only the management plane reads STRATA_DATABASE_URL."
      echo "# STRATA_DATABASE_URL="
    fi
    if with_management; then
      echo "STRATA_REDIS_URL=$(ev STRATA_REDIS_URL "$redis_url")"
    else
      [ -n "${STRATA_REDIS_URL:-}" ] || warn "STRATA_REDIS_URL not given: the agent will look for Redis on 127.0.0.1; edit $ENV_FILE"
      echo "# The management server's Redis."
      echo "STRATA_REDIS_URL=$(ev STRATA_REDIS_URL redis://127.0.0.1:6379)"
    fi
    echo "STRATA_EVENT_STORE=$(ev STRATA_EVENT_STORE postgres)"
    echo "STRATA_ESDB_URL=$(ev STRATA_ESDB_URL '')"
    echo "STRATA_API_HOST=$(ev STRATA_API_HOST 0.0.0.0)"
    echo "STRATA_API_PORT=$(ev STRATA_API_PORT 8080)"
    echo "STRATA_MASTER_KEY_FILE=$(ev STRATA_MASTER_KEY_FILE "$STATE_DIR/master.key")"
    echo "STRATA_QUEUE_PREFIX=$(ev STRATA_QUEUE_PREFIX strata)"
    echo "STRATA_LOG_LEVEL=$(ev STRATA_LOG_LEVEL info)"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
fi
chown root:root "$ENV_FILE"
chmod 0600 "$ENV_FILE"

# ---------------------------------------------------------------- systemd units
if systemd_is_init && [ -d "$here/systemd" ]; then
  units=()
  with_management && units+=(strata-api.service strata-projector.service strata-dispatcher.service)
  with_agent && units+=(strata-agent.service)
  for u in "${units[@]}"; do install -m 0644 "$here/systemd/$u" "/etc/systemd/system/$u"; done
  systemctl daemon-reload
  log "installed ${units[*]} (not enabled)"
fi

log "done. Next:"
log "  1. install strata in /opt/strata (npm ci && npm run build; /opt/strata/bin/strata is the entry point)"
if with_management; then
  log "  2. set -a; . $ENV_FILE; set +a; runuser -u strata -- /opt/strata/bin/strata migrate"
  log "  3. systemctl enable --now strata-api   (or start /opt/strata/bin/strata api with that environment)"
fi
if with_agent; then
  log "  agent: systemctl enable --now strata-agent   (after /opt/strata is installed on this host)"
fi
