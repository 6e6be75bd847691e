#!/usr/bin/env bash
# Short run of the checkpoint-loader fuzzer (ctest fuzz.checkpoint):
#   bash fuzz/run_checkpoint.sh OUTDIR [SECONDS] [extra libFuzzer options]
# Builds the fuzz targets (fuzz/build.sh; exit 77 = skipped where clang's
# libFuzzer is missing), then fuzzes from a copy of the seed corpus
# fuzz/corpus/checkpoint for SECONDS (default 5).  Any crash, sanitizer report
# or oracle violation fails.  The long run: -runs=1000000 (docs/reliability.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:?usage: run_checkpoint.sh OUTDIR [SECONDS] [libFuzzer options]}"
secs="${2:-5}"
shift $(( $# >= 2 ? 2 : 1 ))
rc=0
bash "$root/fuzz/build.sh" "$out" || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"
corpus="$out/corpus-checkpoint"
rm -rf "$corpus"
mkdir -p "$corpus"
cp "$root"/fuzz/corpus/checkpoint/* "$corpus"/
cd "$out"
exec ./fuzz_checkpoint -max_len=16384 -max_total_time="$secs" -print_final_stats=1 "$@" "$corpus"
