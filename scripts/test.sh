#!/usr/bin/env bash
# The test command (README): makes sure PostgreSQL, Redis and libvirt run, installs the npm dependencies
# when package-lock.json changed since the last install, then builds and runs every Jest tier
# (unit, int, e2e) in one process. Extra arguments go to jest, e.g.
#   bash scripts/test.sh --selectProjects unit
#   bash scripts/test.sh libs/domain
# Exit status: the tests' (or the first failing preparation step's).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/ensure-services.sh

stamp=node_modules/.strata-lock-hash
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_hash" ]; then
  echo "[test] node_modules matches package-lock.json; skipping npm ci"
else
  echo "[test] npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_hash" >"$stamp"
fi

echo "[test] npm test $*"
# Jest's own summary is not one CI reads, so the run ends with the plain "N passed, N failed" line.
results=$(mktemp)
rc=0
npm test -- --json --outputFile="$results" "$@" || rc=$?
STRATA_JEST_RESULTS=$results node -e '
  const r = JSON.parse(require("fs").readFileSync(process.env.STRATA_JEST_RESULTS, "utf8"));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || echo "tests: no results (the run stopped before Jest reported; exit code $rc)"
rm -f "$results"
exit "$rc"
