#!/usr/bin/env bash
# Runs every test tier and ends with exactly one summary line:
#   N passed, N failed[, N skipped]
# Tiers: unit (vitest, no root) -> netns (tap, root, real kernel) -> vm (IPVS in a UML guest).
# Exit status is non-zero when any test failed (or a tier could not run).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=$(mktemp -d "${TMPDIR:-/tmp}/podnet-test.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
export NO_COLOR=1 FORCE_COLOR=0

echo "== build"
npx --no-install tsc -p tsconfig.json
build_rc=$?

echo "== unit tests (vitest)"
npx --no-install vitest run --dir src --reporter=default --reporter=json --outputFile.json="$OUT/unit.json"
unit_rc=$?

echo "== netns tests (tap: root, real kernel, real packets)"
rm -rf .tap/test-results
if [ "$(id -u)" = 0 ]; then
  node dist/netns-tests/lib/sweep.js
  node dist/netns-tests/lib/snapshot-root.js > "$OUT/root.json"
  export PODNET_ROOT_SNAPSHOT="$OUT/root.json"
else
  echo "!!! not running as root: every netns test is reported as SKIPPED !!!"
fi
npx --no-install tap
netns_rc=$?

echo "== vm tests (tap in a user-mode-linux guest: IPVS)"
# The guest boots a kernel with IPVS, sees this checkout read-only and writes TAP to $OUT/vm.
# A guest that cannot start exits 125 and the summary counts it as a failure.
mkdir -p "$OUT/vm"
PODNET_VM_RW_DIRS="$OUT/vm" scripts/uml/run-in-vm.sh scripts/uml/vm-tests.sh "$OUT/vm"
vm_rc=$?

node scripts/test-summary.mjs \
  --build-rc "$build_rc" \
  --unit "$OUT/unit.json" --unit-rc "$unit_rc" \
  --tap .tap/test-results --tap-rc "$netns_rc" \
  --vm "$OUT/vm" --vm-rc "$vm_rc"
