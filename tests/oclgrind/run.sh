#!/usr/bin/env bash
# Runs a program under oclgrind's checks and fails on any report.
#   run.sh PROGRAM [ARGS...]
# oclgrind simulates an OpenCL device; with --data-races --uninitialized
# --check-api it reports races in local and global memory, reads of
# uninitialised memory, out-of-bounds accesses, barrier divergence and invalid
# API use.  Every report fails the test, and so does the program's own exit
# status.  Exit status 77 (ctest: skipped) when oclgrind is not installed:
# Debian 13 ships no oclgrind package.
set -uo pipefail

if ! command -v oclgrind >/dev/null 2>&1; then
    echo "oclgrind not installed: skipped (Debian/Ubuntu package 'oclgrind')"
    exit 77
fi
log=$(mktemp "${TMPDIR:-/tmp}/binv-oclgrind.XXXXXX")
trap 'rm -f "$log"' EXIT

# BINV_TEST_DEVICE is the suites' device choice; under oclgrind the only
# device is the simulator.  Two settings work around oclgrind 21.10 itself
# (docs/portability.md): -cl-opt-disable, because its interpreter does not
# know LLVM's `freeze` instruction, which the optimiser emits, and reports
# every use of one as an error; and 128 KiB of local memory, because it
# counts gemm_tiled's local arrays twice (34816 bytes for a 64 x 64 tile,
# where PoCL reports 17408) and would refuse launches that fit.
# One process per library context (PROGRAM --list names them): a report is
# then attributed to one path, and no state of one context's run can reach
# another's (docs/portability.md: oclgrind reports uninitialised reads in
# gemm_reduce when two contexts run gemm_stream in one process, which each
# alone does not and no other implementation shows).
rc=0
while read -r path; do
    echo "== $path"
    env -u BINV_TEST_DEVICE BINV_FAMILIES_PATH="$path" oclgrind --data-races --uninitialized \
        --check-api --build-options -cl-opt-disable --local-mem-size 131072 \
        --num-threads "$(nproc 2>/dev/null || echo 2)" --log "$log.part" "$@" 2>&1 |
        grep -v '^[0-9]* warnings\? generated\.$'
    prc=${PIPESTATUS[0]}
    cat "$log.part" >> "$log"
    [ "$prc" -ne 0 ] && rc=$prc
done < <("$1" --list)
rm -f "$log.part"
if [ -s "$log" ]; then
    echo "oclgrind reported:"
    cat "$log"
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "the program failed under oclgrind (exit status $rc)"
    exit "$rc"
fi
echo "oclgrind: 0 errors"
