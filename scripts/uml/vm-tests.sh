#!/usr/bin/env bash
# vm-tests.sh -- the vm tier's runner, run INSIDE the UML guest by scripts/test.sh:
#   PODNET_VM_RW_DIRS=OUTDIR scripts/uml/run-in-vm.sh scripts/uml/vm-tests.sh OUTDIR [FILE.test.js...]
# Runs each compiled tap test file (default: dist/vm-tests/*.test.js) with node, one after
# another, streaming its TAP to stdout and saving it as OUTDIR/<name>.tap for
# scripts/test-summary.mjs. A file that exits non-zero without a failing test (a crash, a
# timeout) gets a `not ok` line appended, so it cannot pass unseen. Exit: 0 when every file
# passed, 1 otherwise.
set -uo pipefail
OUT=${1:?usage: vm-tests.sh OUTDIR [FILE.test.js...]}
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  shopt -s nullglob
  files=(dist/vm-tests/*.test.js)
fi
mkdir -p "$OUT"
if [ ${#files[@]} -eq 0 ]; then
  echo "not ok 1 - no vm test files found (dist/vm-tests/*.test.js: was the build run?)" | tee "$OUT/none.tap"
  exit 1
fi
# 600 s: the proxy suite (proxy-ipvs.test.js: 3 agents, 13 endpoint servers, and the trace
# checked against real packets for each feature) takes 390-420 s in the guest; the other files
# take under 30 s each.
PER_FILE_TIMEOUT=${PODNET_VM_TEST_TIMEOUT:-600}
# tap's own timeout for a file run directly with node is 30 s: the guest is slow (every
# syscall traps into UML), so give each file the same budget as the outer timeout.
export TAP_TIMEOUT=$PER_FILE_TIMEOUT
rc=0
for f in "${files[@]}"; do
  name=$(basename "$f" .js)
  tap="$OUT/$name.tap"
  echo "# ---- $f"
  start=$(date +%s)
  timeout -k 5 "$PER_FILE_TIMEOUT" node --enable-source-maps "$f" 2>&1 | tee "$tap"
  frc=${PIPESTATUS[0]}
  echo "# ---- $f: exit $frc in $(( $(date +%s) - start )) s"
  if [ "$frc" -ne 0 ]; then
    rc=1
    if ! grep -q '^not ok ' "$tap"; then
      why="exited with status $frc"; [ "$frc" = 124 ] && why="timed out after ${PER_FILE_TIMEOUT}s"
      echo "not ok 999 - $f $why outside any test" | tee -a "$tap"
    fi
  fi
done
exit $rc
