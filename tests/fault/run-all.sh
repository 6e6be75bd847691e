#!/usr/bin/env bash
# Faults every fallible OpenCL call of the op-family run once (all dtypes):
# tests/fault/fault_run with stride 1.  ctest's probes.fault runs a stride.
#   bash tests/fault/run-all.sh [BUILD_DIR] [extra fault_run arguments]
# BUILD_DIR defaults to build; it must hold tests/fault_run (cmake --build).
# Prints the totals and the faulted-call table; exit status of fault_run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"
shift || true
exe="$build/tests/fault_run"
if [ ! -x "$exe" ]; then
  echo "run-all.sh: $exe not built (cmake --build $build --target fault_run)" >&2
  exit 2
fi
start=$(date +%s)
set +e
"$exe" --dtypes 3 --stride 1 "$@"
rc=$?
set -e
echo "run-all.sh: $(( $(date +%s) - start )) s, exit $rc"
exit $rc
