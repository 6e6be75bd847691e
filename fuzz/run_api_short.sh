#!/usr/bin/env bash
# The short fuzz_api probe for ctest (label "probes"): builds the fuzz targets
# (fuzz/build.sh), replays the seed corpus (fuzz/corpus/api) and runs a fixed
# number of mutations from a fixed libFuzzer seed.  The long run:
#   bash fuzz/build.sh build-fuzz && build-fuzz/fuzz_api -runs=1000000 CORPUS_DIR
# Exit 77 (skipped) where clang-15 / libFuzzer is not installed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/build-fuzz}"
runs="${FUZZ_API_RUNS:-400}"
bash "$root/fuzz/build.sh" "$out"
rc=$?
if [ "$rc" = 77 ]; then exit 77; fi
if [ "$rc" != 0 ]; then echo "run_api_short: fuzz/build.sh failed ($rc)"; exit 1; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$root"/fuzz/corpus/api/* "$work/"
export LSAN_OPTIONS="suppressions=$root/fuzz/lsan-opencl.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export FUZZ_API_STATS=1
"$out/fuzz_api" -seed=1 -runs="$runs" -timeout=120 -print_final_stats=1 "$work" 2>&1 |
  grep -av '^#[0-9].*\(NEW\|REDUCE\|pulse\)' | grep -av '^ *NEW_FUNC'
exit "${PIPESTATUS[0]}"
