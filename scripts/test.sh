#!/usr/bin/env bash
# Runs every test tier and ends with exactly one summary line:
#   N passed, N failed[, N skipped]
# Tiers: unit (vitest, no root) -> netns (tap, root, real kernel) -> vm (IPVS in a UML guest).
# Exit status is non-zero when any test failed (or a tier could not run).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=$(mktemp -d "${TMPDIR:-/tmp}/podnet-test.XXXXXX")
vm_pid=
stop_vm() { if [ -n "$vm_pid" ] && kill -0 "$vm_pid" 2>/dev/null; then kill -TERM "$vm_pid" 2>/dev/null; wait "$vm_pid" 2>/dev/null; fi; }
trap 'stop_vm; rm -rf "$OUT"' EXIT
trap 'exit 130' INT TERM
export NO_COLOR=1 FORCE_COLOR=0
started=$(date +%s)
took() { echo "   ($1: $(( $(date +%s) - $2 )) s)"; }

echo "== build"
npx --no-install tsc -p tsconfig.json
build_rc=$?

# The vm tier (IPVS in a user-mode-linux guest) starts now and runs beside the unit and netns
# tiers: a UML guest is one CPU and spends ~8 minutes mostly in its own kernel, so on a 2-core
# machine running it alone would leave a core idle for as long. Its output is kept and
# printed after the netns tier. The guest boots a kernel with IPVS, sees this checkout
# read-only and writes TAP to $OUT/vm; a guest that cannot start exits 125 and the summary
# counts it as a failure. Its limits allow for the shared CPU (per file 900 s, guest 1800 s).
echo "== vm tests (tap in a user-mode-linux guest: IPVS): started in the background"
mkdir -p "$OUT/vm"
vm_started=$(date +%s)
PODNET_VM_TIMEOUT=${PODNET_VM_TIMEOUT:-1800} PODNET_VM_TEST_TIMEOUT=${PODNET_VM_TEST_TIMEOUT:-900} PODNET_VM_RW_DIRS="$OUT/vm" \
  scripts/uml/run-in-vm.sh scripts/uml/vm-tests.sh "$OUT/vm" > "$OUT/vm.log" 2>&1 &
vm_pid=$!

echo "== unit tests (vitest)"
t0=$(date +%s)
npx --no-install vitest run --dir src --reporter=default --reporter=json --outputFile.json="$OUT/unit.json"
unit_rc=$?
took unit "$t0"

echo "== netns tests (tap: root, real kernel, real packets)"
rm -rf .tap/test-results
if [ "$(id -u)" = 0 ]; then
  node dist/netns-tests/lib/sweep.js
  node dist/netns-tests/lib/snapshot-root.js > "$OUT/root.json"
  export PODNET_ROOT_SNAPSHOT="$OUT/root.json"
else
  echo "!!! not running as root: every netns test is reported as SKIPPED !!!"
fi
t0=$(date +%s)
npx --no-install tap
netns_rc=$?
took netns "$t0"

echo "== vm tests: waiting for the guest (started $(( $(date +%s) - vm_started )) s ago)"
wait "$vm_pid"
vm_rc=$?
vm_pid=
cat "$OUT/vm.log"
echo "   (vm: $(( $(stat -c %Y "$OUT/vm.log") - vm_started )) s, beside the other tiers)"
took total "$started"

node scripts/test-summary.mjs \
  --build-rc "$build_rc" \
  --unit "$OUT/unit.json" --unit-rc "$unit_rc" \
  --tap .tap/test-results --tap-rc "$netns_rc" \
  --vm "$OUT/vm" --vm-rc "$vm_rc"
