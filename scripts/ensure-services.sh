#!/usr/bin/env bash
# Makes sure everything strata's test tiers need is installed and running on a Debian/Ubuntu machine:
# PostgreSQL (postgres role reachable on 127.0.0.1:5432 without a password), Redis on 127.0.0.1:6379,
# python3-cs (the CloudStack `cs` client), QEMU and a libvirtd answering on qemu:///system.
#
# Idempotent: where everything already runs it only checks (a few seconds). Installs missing Debian
# packages (one `apt-get update` first, only when something is missing), starts what is not running, with
# systemd when it is PID 1 and directly otherwise (containers, CI). Meant for test and CI machines: it
# configures libvirt to run QEMU as root without a security driver and allows passwordless loopback
# access for the postgres role. For a real server use deploy/setup-debian.sh.
#
# Environment: STRATA_SKIP_LIBVIRT=1 skips the QEMU/libvirt part (machines that only run unit/int tiers).
# STRATA_PG_PORT (5432) and STRATA_REDIS_PORT (6379) exist to test this script; the tests use the defaults.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

PG_PORT=${STRATA_PG_PORT:-5432}
REDIS_PORT=${STRATA_REDIS_PORT:-6379}

log() { printf '[ensure-services] %s\n' "$*"; }
die() { printf '[ensure-services] ERROR: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through passwordless sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "need root for: $* (run as root or allow passwordless sudo)"
  fi
}

systemd_is_init() { [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }

# True when a process whose command name is exactly $1 runs (no procps needed).
process_running() {
  local f
  for f in /proc/[0-9]*/comm; do
    [ "$(cat "$f" 2>/dev/null)" = "$1" ] && return 0
  done
  return 1
}

# Polls "$@" every 0.5 s for up to $1 seconds.
wait_for() {
  local timeout=$1 i
  shift
  for ((i = 0; i < timeout * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}

# Serialize concurrent runs (several engineers or test runs on one machine).
if [ "$(id -u)" -eq 0 ] && command -v flock >/dev/null 2>&1; then
  mkdir -p /run/lock
  exec 9>/run/lock/strata-ensure-services.lock
  if ! flock -n 9; then
    log "waiting for another ensure-services.sh to finish"
    flock -w 600 9 || die "another ensure-services.sh is still running after 10 minutes"
  fi
fi
# Daemons started below must not inherit the lock (fd 9), or they would hold it for ever.
start_daemon() { as_root "$@" 9>&-; }

started_at=$SECONDS

# ---------------------------------------------------------------- packages
packages=(postgresql redis-server redis-tools python3-cs)
if [ "${STRATA_SKIP_LIBVIRT:-0}" != 1 ]; then
  packages+=(qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then missing+=("$p"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get: not a Debian/Ubuntu machine?"
  log "installing: ${missing[*]}"
  t0=$SECONDS
  apt_opts=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null \
    || die "apt-get update failed"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" --no-install-recommends "${missing[@]}" >/tmp/strata-apt-install.log 2>&1 \
    || { tail -n 30 /tmp/strata-apt-install.log >&2; die "apt-get install failed (full log: /tmp/strata-apt-install.log)"; }
  log "installed in $((SECONDS - t0))s"
else
  log "packages present"
fi

# ---------------------------------------------------------------- PostgreSQL
pg_ok() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }
pg_login_ok() { PGCONNECT_TIMEOUT=5 psql -w -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

pg_ctl_cluster() { # version name action
  if systemd_is_init; then
    start_daemon pg_ctlcluster "$1" "$2" "$3"
  else
    start_daemon pg_ctlcluster --skip-systemctl-redirect "$1" "$2" "$3"
  fi
}

# Prints "version name" of the cluster configured for $PG_PORT, if any.
pg_find_cluster() {
  pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }'
}

if pg_ok; then
  log "PostgreSQL accepts connections on 127.0.0.1:$PG_PORT"
else
  read -r pg_ver pg_name <<<"$(pg_find_cluster)" || true
  if [ -z "${pg_ver:-}" ]; then
    if [ -n "$(pg_lsclusters -h 2>/dev/null)" ]; then
      die "PostgreSQL clusters exist but none on port $PG_PORT: $(pg_lsclusters -h | awk '{print $1"/"$2":"$3}' | tr '\n' ' ')"
    fi
    pg_ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)
    [ -n "$pg_ver" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
    pg_name=main
    log "creating PostgreSQL $pg_ver cluster '$pg_name' on port $PG_PORT"
    as_root pg_createcluster "$pg_ver" "$pg_name" -p "$PG_PORT" >/dev/null
  fi
  log "starting PostgreSQL $pg_ver/$pg_name"
  pg_ctl_cluster "$pg_ver" "$pg_name" start || log "pg_ctlcluster start returned non-zero; waiting anyway"
  wait_for 60 pg_ok || die "PostgreSQL did not come up; see /var/log/postgresql/postgresql-$pg_ver-$pg_name.log"
  log "PostgreSQL up"
fi

if pg_login_ok; then
  log "postgres role connects over 127.0.0.1 without a password"
else
  read -r pg_ver pg_name <<<"$(pg_find_cluster)" || true
  [ -n "${pg_ver:-}" ] || die "cannot log in as postgres on 127.0.0.1:$PG_PORT and no Debian cluster found to configure"
  hba=/etc/postgresql/$pg_ver/$pg_name/pg_hba.conf
  [ -f "$hba" ] || die "$hba not found"
  marker='# strata test rig: passwordless loopback for the postgres role (scripts/ensure-services.sh)'
  if ! grep -qF "$marker" "$hba"; then
    log "allowing passwordless loopback logins for postgres in $hba"
    # pg_hba.conf is first-match: the rules go to the top of the file.
    tmp=$(mktemp)
    printf '%s\nhost all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust\n' "$marker" >"$tmp"
    # shellcheck disable=SC2016 # $1/$2 are expanded by the inner sh
    as_root sh -c 'cat "$1" "$2" > "$2.strata-new" && cat "$2.strata-new" > "$2" && rm -f "$2.strata-new"' _ "$tmp" "$hba"
    rm -f "$tmp"
  fi
  pg_ctl_cluster "$pg_ver" "$pg_name" reload
  wait_for 10 pg_login_ok || die "still cannot connect as postgres to 127.0.0.1:$PG_PORT after editing $hba"
  log "postgres role connects over 127.0.0.1 without a password"
fi

# ---------------------------------------------------------------- Redis
redis_ok() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

if redis_ok; then
  log "Redis answers on 127.0.0.1:$REDIS_PORT"
else
  log "starting Redis"
  if systemd_is_init && start_daemon systemctl start redis-server 2>/dev/null && wait_for 20 redis_ok; then
    :
  else
    as_root mkdir -p /var/lib/redis /var/log/redis
    redis_args=(--daemonize yes --port "$REDIS_PORT" --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log)
    # "-::1" (optional IPv6 bind) needs Redis >= 6.2; fall back to IPv4 only.
    start_daemon redis-server "${redis_args[@]}" --bind 127.0.0.1 -::1 >/dev/null 2>&1 \
      || start_daemon redis-server "${redis_args[@]}" --bind 127.0.0.1 >/dev/null
    wait_for 20 redis_ok || die "Redis did not answer; see /var/log/redis/ci.log"
  fi
  log "Redis up"
fi

# ---------------------------------------------------------------- libvirt / QEMU
libvirtd_gone() { ! process_running libvirtd; }
virsh_ok() { timeout 10 virsh -c qemu:///system version; }

if [ "${STRATA_SKIP_LIBVIRT:-0}" = 1 ]; then
  log "libvirt skipped (STRATA_SKIP_LIBVIRT=1)"
else
  as_root mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt
  # libvirt-daemon-system (not installed: it wants systemd) would create these; the QEMU driver refuses
  # to initialise when the libvirt-qemu user or group is unknown, whatever qemu.conf says.
  for g in kvm libvirt libvirt-qemu; do
    getent group "$g" >/dev/null || { log "creating group $g"; as_root groupadd -r "$g"; }
  done
  if ! getent passwd libvirt-qemu >/dev/null; then
    log "creating user libvirt-qemu"
    as_root useradd -r -g kvm -d /var/lib/libvirt -s /usr/sbin/nologin -c 'Libvirt Qemu' libvirt-qemu
  fi

  # QEMU as root without a security driver: containers have no AppArmor/SELinux profile to load and
  # test images live in root-owned temporary directories.
  qemu_conf=/etc/libvirt/qemu.conf
  [ -f "$qemu_conf" ] || { as_root mkdir -p /etc/libvirt; as_root touch "$qemu_conf"; }
  qemu_conf_changed=0
  for kv in 'user="root"' 'group="root"' 'security_driver="none"' 'dynamic_ownership=0'; do
    key=${kv%%=*}
    value=${kv#*=}
    if ! grep -Eq "^[[:space:]]*${key}[[:space:]]*=[[:space:]]*${value}[[:space:]]*$" "$qemu_conf"; then
      as_root sed -i -E "/^[[:space:]]*${key}[[:space:]]*=/d" "$qemu_conf"
      printf '%s = %s\n' "$key" "$value" | as_root tee -a "$qemu_conf" >/dev/null
      qemu_conf_changed=1
    fi
  done
  [ "$qemu_conf_changed" = 1 ] && log "updated $qemu_conf (user/group root, security_driver none, dynamic_ownership 0)"

  if [ "$qemu_conf_changed" = 1 ] && process_running libvirtd; then
    log "restarting libvirtd to apply $qemu_conf"
    if systemd_is_init; then
      start_daemon systemctl restart libvirtd || true
    elif [ -s /var/run/libvirtd.pid ]; then
      as_root kill "$(cat /var/run/libvirtd.pid)" || true
      wait_for 20 libvirtd_gone || die "libvirtd did not stop; stop it and run this script again"
    fi
  fi

  if virsh_ok >/dev/null 2>&1; then
    log "libvirtd answers on qemu:///system"
  else
    if systemd_is_init && start_daemon systemctl start virtlogd libvirtd 2>/dev/null && wait_for 30 virsh_ok; then
      :
    else
      if ! process_running virtlogd; then
        log "starting virtlogd"
        start_daemon virtlogd -d
      fi
      if ! process_running libvirtd; then
        log "starting libvirtd"
        start_daemon libvirtd -d
      fi
      for ((i = 0; ; i++)); do
        virsh_ok >/dev/null 2>&1 && break
        if ((i >= 120)) || { ((i >= 4)) && ! process_running libvirtd; }; then
          tail -n 15 /var/log/libvirt/libvirtd.log >&2 2>/dev/null || true
          die "libvirtd did not answer on qemu:///system (log: /var/log/libvirt/libvirtd.log)"
        fi
        sleep 0.5
      done
    fi
    log "libvirtd answers on qemu:///system"
  fi
  if [ -e /dev/kvm ]; then
    log "/dev/kvm present (domains can use type='kvm')"
  else
    log "no /dev/kvm: domains must use type='qemu' (TCG)"
  fi
fi

log "all services ready ($((SECONDS - started_at))s)"
