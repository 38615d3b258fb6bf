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

say "1/6 services: PostgreSQL, Redis, libvirt/QEMU, python3-cs"
bash scripts/ensure-services.sh

say "2/6 dependencies and build"
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.strata-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  npm ci --no-audit --no-fund
  echo "$lock_hash" >node_modules/.strata-lock-hash
fi
npm run build --silent

say "3/6 database and schema"
db=${STRATA_DATABASE_URL##*/}
if ! psql -h 127.0.0.1 -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$db\""
fi
./bin/strata migrate

endpoint="http://$STRATA_API_HOST:$STRATA_API_PORT/client/api"
say "4/6 management plane on $endpoint"
if [ -f "$state/api.pid" ] && kill -0 "$(cat "$state/api.pid")" 2>/dev/null; then
  echo "already running (pid $(cat "$state/api.pid"))"
else
  nohup ./bin/strata api >"$state/api.log" 2>&1 &
  echo $! >"$state/api.pid"
  for _ in $(seq 1 100); do grep -q "listening on" "$state/api.log" && break; sleep 0.2; done
  grep -q "listening on" "$state/api.log" || { cat "$state/api.log"; exit 1; }
  echo "started (pid $(cat "$state/api.pid")), log $state/api.log"
fi

say "5/6 an Admin API key"
if [ ! -s "$state/admin.json" ]; then
  (umask 077 && ./bin/strata keys create --role Admin --name quickstart-admin --json >"$state/admin.json")
fi
CLOUDSTACK_KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apikey"])' "$state/admin.json")
CLOUDSTACK_SECRET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secretkey"])' "$state/admin.json")
export CLOUDSTACK_ENDPOINT=$endpoint CLOUDSTACK_KEY CLOUDSTACK_SECRET
echo "keys in $state/admin.json (mode 0600)"

cs() { /usr/bin/python3 -m cs --quiet "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); ks=sys.argv[1].split("."); [d:=d[int(k)] if k.isdigit() else d[k] for k in ks]; print(d)' "$1"; }

say "6/6 a zone, a local backup repository, a native offering imported into the zone (through python3-cs)"
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
cat <<EOT

strata's management plane is running. Try:
  export CLOUDSTACK_ENDPOINT=$endpoint
  export CLOUDSTACK_KEY=\$(python3 -c 'import json; print(json.load(open("$state/admin.json"))["apikey"])')
  export CLOUDSTACK_SECRET=\$(python3 -c 'import json; print(json.load(open("$state/admin.json"))["secretkey"])')
  /usr/bin/python3 -m cs listBackupOfferings
Stop it with: kill \$(cat $state/api.pid)
EOT
