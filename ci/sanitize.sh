#!/usr/bin/env bash
# Sanitizer job (CI: .github/workflows/ci.yml "sanitize"; docs/reliability.md):
#  1. ASan + UBSan build of the library, tools and test suite in build-asan,
#     then ctest on a subset (SAN_CTEST_ARGS overrides it; SAN_FULL=1 runs
#     everything but the consumer and oclgrind tests);
#  2. TSan build of tests/test_threads in build-tsan, run once.
# The compiler: $SAN_CC, else clang-15, clang or gcc (TSan then needs
# libtsan).  Leaks inside the OpenCL implementation are suppressed
# (fuzz/lsan-opencl.supp), never the library's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

bash ci/install-deps.sh   # idempotent; BINV_SKIP_DEPS=1 skips it

cc="${SAN_CC:-}"
if [ -z "$cc" ]; then
  for c in clang-15 clang gcc; do
    if command -v "$c" >/dev/null 2>&1; then cc="$c"; break; fi
  done
fi
jobs=$(nproc 2>/dev/null || echo 2)
echo "ci/sanitize.sh: compiler $cc, $jobs jobs"

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
t0=$(date +%s)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san" \
  -DBINV_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan --parallel "$jobs"
t1=$(date +%s)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$root/fuzz/lsan-opencl.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
if [ -n "${SAN_CTEST_ARGS:-}" ]; then
  # shellcheck disable=SC2086
  ctest --test-dir build-asan --output-on-failure $SAN_CTEST_ARGS
elif [ "${SAN_FULL:-0}" = 1 ]; then
  ctest --test-dir build-asan --output-on-failure -E '^(consumer|oclgrind\.)'
else
  # Every op family, validation, the cache, the probes (one PoCL work-group
  # method each: the kernels run in PoCL, which is not instrumented anyway).
  ctest --test-dir build-asan --output-on-failure \
    -R '^(test_(runtime|tuning|rows|attention|activation|fused|reliability_args|reliability_faults|cache|threads)\.loopvec|probes\.fault)$'
fi
t2=$(date +%s)

# TSan: the thread stress test only (the library's shared state).
tsan="-fsanitize=thread -fno-omit-frame-pointer"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="$tsan" -DCMAKE_EXE_LINKER_FLAGS="$tsan" -DCMAKE_SHARED_LINKER_FLAGS="$tsan" \
  -DBINV_BUILD_BENCH=OFF -DBINV_BUILD_TOOLS=OFF >/dev/null
cmake --build build-tsan --parallel "$jobs" --target test_threads
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/fault/tsan-opencl.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
# Older TSan runtimes cannot map their shadow under a high-entropy ASLR
# layout (newer kernels): run without address randomisation where possible.
norand=""
if setarch "$(uname -m)" -R true 2>/dev/null; then norand="setarch $(uname -m) -R"; fi
(cd build-tsan/tests && CMOCKA_MESSAGE_OUTPUT=stdout $norand ./test_threads)
t3=$(date +%s)
echo "ci/sanitize.sh: ASan+UBSan build $((t1 - t0)) s, ctest $((t2 - t1)) s; TSan build + test_threads $((t3 - t2)) s"
