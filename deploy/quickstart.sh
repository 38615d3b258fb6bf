#!/usr/bin/env bash
# The README's first Quick start command: on a fresh Debian/Ubuntu machine (as root), installs and starts
# what strata needs, builds it, starts the management plane (API, projector, dispatcher, workers) in the
# background, and drives it with Debian's CloudStack client (python3-cs) the way an operator would.
# Re-running it is safe: it reuses the database, the keys and a running API.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

state=${STRATA_QUICKSTART_DIR:-$PWD/.strata}
mkdir -p "$state"
chmod 700 "$state"
export STRATA_DATABASE_URL=${STRATA_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/strata_quickstart}
export STRATA_MASTER_KEY_FILE=${STRATA_MASTER_KEY_FILE:-$state/master.key}
export STRATA_API_PORT=${STRATA_API_PORT:-8080}
export STRATA_API_HOST=${STRATA_API_HOST:-127.0.0.1}
export STRATA_QUEUE_PREFIX=${STRATA_QUEUE_PREFIX:-strataqs}
say() { printf '\n[strata] %s\n' "$*"; }

say "1/10 services: PostgreSQL, Redis, libvirt/QEMU, python3-cs"
bash scripts/ensure-services.sh

say "2/10 dependencies and build"
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.strata-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  npm ci --no-audit --no-fund
  echo "$lock_hash" >node_modules/.strata-lock-hash
fi
npm run build --silent

say "3/10 database and schema"
db=${STRATA_DATABASE_URL##*/}
if ! psql -h 127.0.0.1 -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$db\""
fi
./bin/strata migrate

endpoint="http://$STRATA_API_HOST:$STRATA_API_PORT/client/api"
say "4/10 management plane on $endpoint"
if [ -f "$state/api.pid" ] && kill -0 "$(cat "$state/api.pid")" 2>/dev/null; then
  echo "already running (pid $(cat "$state/api.pid"))"
else
  nohup ./bin/strata api >"$state/api.log" 2>&1 &
  echo $! >"$state/api.pid"
  for _ in $(seq 1 100); do grep -q "listening on" "$state/api.log" && break; sleep 0.2; done
  grep -q "listening on" "$state/api.log" || { cat "$state/api.log"; exit 1; }
  echo "started (pid $(cat "$state/api.pid")), log $state/api.log"
fi

say "5/10 an Admin API key"
if [ ! -s "$state/admin.json" ]; then
  (umask 077 && ./bin/strata keys create --role Admin --name quickstart-admin --json >"$state/admin.json")
fi
CLOUDSTACK_KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apikey"])' "$state/admin.json")
CLOUDSTACK_SECRET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secretkey"])' "$state/admin.json")
export CLOUDSTACK_ENDPOINT=$endpoint CLOUDSTACK_KEY CLOUDSTACK_SECRET
echo "keys in $state/admin.json (mode 0600)"

cs() { /usr/bin/python3 -m cs --quiet "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); ks=sys.argv[1].split("."); [d:=d[int(k)] if k.isdigit() else d[k] for k in ks]; print(d)' "$1"; }

say "6/10 a zone, a local backup repository, a native offering imported into the zone (through python3-cs)"
zone=$(cs listZones name=quickstart | field zone.0.id 2>/dev/null || cs createZone name=quickstart | field zone.id)
mkdir -p /var/lib/strata/quickstart-repository
repo=$(cs listBackupRepositories zoneid="$zone" | field backuprepository.0.id 2>/dev/null ||
  cs addBackupRepository zoneid="$zone" name=local type=local address=/var/lib/strata/quickstart-repository | field backuprepository.id)
native=$(cs listNativeBackupOfferings name=quickstart-gold | field nativebackupoffering.0.id 2>/dev/null ||
  cs createNativeBackupOffering name=quickstart-gold compress=true allowquickrestore=true backupchainsize=8 | field nativebackupoffering.id)
offering=$(cs listBackupOfferings zoneid="$zone" | field backupoffering.0.id 2>/dev/null ||
  cs importBackupOffering name=gold description="gold: compressed, quick restore" zoneid="$zone" externalid="$native" allowuserdrivenbackups=true | field backupoffering.id)
cs updateConfiguration name=backup.chain.size value=8 zoneid="$zone" >/dev/null
echo "zone $zone"
echo "repository $repo"
echo "native offering $native"
echo "imported offering $offering"
events=$(psql "$STRATA_DATABASE_URL" -Atc 'SELECT count(*) FROM events')
echo "the event store holds $events events; the read models are rebuilt from them by: ./bin/strata projector --rebuild --exit-when-caught-up"

say "7/10 a host agent and a demo VM (64 MiB qcow2 disk, no OS needed)"
if [ -f "$state/agent.pid" ] && kill -0 "$(cat "$state/agent.pid")" 2>/dev/null; then
  echo "agent already running (pid $(cat "$state/agent.pid"))"
else
  STRATA_AGENT_ZONE=quickstart STRATA_AGENT_HOST_NAME=$(hostname) STRATA_AGENT_HEARTBEAT_SECONDS=2 \
    nohup env -u STRATA_DATABASE_URL ./bin/strata agent >"$state/agent.log" 2>&1 &
  echo $! >"$state/agent.pid"
  echo "agent started (pid $(cat "$state/agent.pid")), log $state/agent.log"
fi
vmdir=/var/lib/strata/quickstart-vm
disk=$vmdir/demo-disk.qcow2
mkdir -p "$vmdir"
if ! virsh -q -c qemu:///system dominfo strata-demo >/dev/null 2>&1; then
  qemu-img create -q -f qcow2 "$disk" 64M
  domtype=qemu; [ -e /dev/kvm ] && domtype=kvm
  cat >"$vmdir/demo.xml" <<XML
<domain type='$domtype'>
  <name>strata-demo</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$disk'/><target dev='vda' bus='virtio'/></disk>
  </devices>
</domain>
XML
  virsh -q -c qemu:///system define "$vmdir/demo.xml" >/dev/null
fi
virsh -q -c qemu:///system destroy strata-demo >/dev/null 2>&1 || true
vm=$(virsh -q -c qemu:///system domuuid strata-demo)
for _ in $(seq 1 60); do cs listVirtualMachines id="$vm" | grep -q '"id"' && break; sleep 0.5; done
cs listVirtualMachines id="$vm" | grep -q '"id"' || { echo "the agent did not report the demo VM; see $state/agent.log"; exit 1; }
echo "demo VM $vm (stopped; data is written into its disk between backups)"
cs listVirtualMachines id="$vm" | field virtualmachine.0.backupofferingid >/dev/null 2>&1 ||
  cs assignVirtualMachineToBackupOffering virtualmachineid="$vm" backupofferingid="$offering" >/dev/null

host_up() { cs listHosts | python3 -c 'import json,sys; print(any(h["state"] == "Up" for h in json.load(sys.stdin).get("host", [])))' 2>/dev/null; }
for _ in $(seq 1 60); do [ "$(host_up)" = True ] && break; sleep 0.5; done

say "8/10 a full and an incremental backup"
cs finishBackupChain virtualmachineid="$vm" >/dev/null # the demo's first backup is a full, also on a re-run
write() { qemu-io -f qcow2 -c "write -P $1 $2 $3" "$disk" >/dev/null; }
backup_once() {
  local t0 out id
  t0=$(date +%s.%N)
  out=$(cs createBackup virtualmachineid="$vm" name="$1")
  id=$(echo "$out" | field backup.id)
  printf '%s %s\n' "$id" "$(python3 -c 'import sys; print(float(sys.argv[1]) - float(sys.argv[2]))' "$(date +%s.%N)" "$t0")"
}
write 0x5a 0 16M
read -r full full_s < <(backup_once quickstart-full)
write 0xa5 8M 1M
write 0x3c 40M 512k
read -r inc inc_s < <(backup_once quickstart-incremental)

say "9/10 checks"
repo_dir=/var/lib/strata/quickstart-repository
describe() {
  python3 - "$(cs listBackups id="$1")" <<'PY'
import json, sys
b = json.loads(sys.argv[1])["backup"][0]
reason = f"  ({b['fullreason']})" if b.get("fullreason") else ""
print(f"{b['name']:<24} {b['type']:<12} {b['status']:<9} stored {b['size'] / 1048576:8.2f} MiB of {b['virtualsize'] / 1048576:.0f} MiB"
      f"  chain {b['chainid'][:8]} position {b['chainposition']}{reason}")
print(b["chainid"], b["volumes"][0]["id"], file=sys.stderr)
PY
}
describe "$full" 2>/dev/null
describe "$inc" 2>/dev/null
read -r chain volume < <(describe "$inc" 2>&1 >/dev/null)
top=$repo_dir/$vm/$chain/$inc/$volume.qcow2
printf 'full backup took %.1f s, incremental %.1f s (from createBackup to BackedUp, polled by cs)\n' "$full_s" "$inc_s"
if qemu-img compare -q "$disk" "$top"; then
  echo "check: the incremental's chain ($top -> its full) equals the VM's disk: qemu-img compare says identical"
else
  echo "check FAILED: the backup differs from the disk"; exit 1
fi

say "10/10 restores: the VM back to its incremental, then a quick restore to its full"
write 0xff 0 16M # the VM's disk moves on after the backups
seconds_since() { python3 -c 'import sys; print(float(sys.argv[1]) - float(sys.argv[2]))' "$(date +%s.%N)" "$1"; }
t0=$(date +%s.%N)
cs restoreBackup id="$inc" >/dev/null
restore_s=$(seconds_since "$t0")
if qemu-img compare -q "$disk" "$top"; then
  printf 'check: restoreBackup took %.1f s; the VM'"'"'s disk equals the incremental backup again\n' "$restore_s"
else
  echo "check FAILED: the restored disk differs from the backup"; exit 1
fi
read -r full_chain full_volume < <(describe "$full" 2>&1 >/dev/null)
full_top=$repo_dir/$vm/$full_chain/$full/$full_volume.qcow2
t0=$(date +%s.%N)
consolidation=$(cs restoreBackup id="$full" quickrestore=true | field consolidationjobid)
quick_s=$(seconds_since "$t0")
state_now=$(virsh -q -c qemu:///system domstate strata-demo)
for _ in $(seq 1 240); do [ "$(cs queryAsyncJobResult jobid="$consolidation" | field jobstatus)" != 0 ] && break; sleep 0.5; done
[ "$(cs queryAsyncJobResult jobid="$consolidation" | field jobstatus)" = 1 ] || { echo "check FAILED: consolidation did not finish; see $state/agent.log"; exit 1; }
consolidated_s=$(seconds_since "$t0")
virsh -q -c qemu:///system destroy strata-demo >/dev/null
if qemu-img compare -q "$disk" "$full_top" && ! qemu-img info "$disk" | grep -q '^backing file'; then
  printf 'check: quick restore had the VM %s after %.1f s, consolidated off the repository after %.1f s; its disk equals the full backup\n' "$state_now" "$quick_s" "$consolidated_s"
else
  echo "check FAILED: the quick-restored disk differs from the backup or still depends on the repository"; exit 1
fi

cat <<EOT

strata's management plane is running. Try:
  export CLOUDSTACK_ENDPOINT=$endpoint
  export CLOUDSTACK_KEY=\$(python3 -c 'import json; print(json.load(open("$state/admin.json"))["apikey"])')
  export CLOUDSTACK_SECRET=\$(python3 -c 'import json; print(json.load(open("$state/admin.json"))["secretkey"])')
  /usr/bin/python3 -m cs listBackupOfferings
Stop it with: kill \$(cat $state/api.pid) \$(cat $state/agent.pid)
EOT
