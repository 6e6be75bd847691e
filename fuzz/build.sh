#!/usr/bin/env bash
# Builds the libFuzzer targets of libbinv-cl with clang-15 (Debian's clang
# ships libFuzzer): -fsanitize=fuzzer,address,undefined.  The library's
# sources are compiled into each target (with coverage instrumentation), so no
# CMake build is needed.
#   bash fuzz/build.sh [OUTDIR]        (default build-fuzz)
# Exit 77 when clang-15 or its libFuzzer is missing (ctest: skipped).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/build-fuzz}"
CC="${FUZZ_CC:-clang-15}"
command -v "$CC" >/dev/null 2>&1 || ! command -v clang >/dev/null 2>&1 || [ -n "${FUZZ_CC:-}" ] || CC=clang
if ! command -v "$CC" >/dev/null 2>&1; then
  echo "fuzz/build.sh: $CC not found: fuzz targets not built (skipped)" >&2
  exit 77
fi
mkdir -p "$out"
probe="$out/probe.c"
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' > "$probe"
if ! "$CC" -fsanitize=fuzzer "$probe" -o "$out/probe" >/dev/null 2>&1; then
  echo "fuzz/build.sh: $CC has no libFuzzer (-fsanitize=fuzzer): skipped" >&2
  exit 77
fi

# The embedded kernels, as the CMake build generates them.
cl_files=""
for f in common gemm rows rows_backward attention activation gemm_native gemm_native_mma \
    gemm_native_stream gemm_native_wg activation_backward; do
  cl_files="$cl_files;$root/cl/$f.cl"
done
cmake -DOUT="$out/binv_kernels.c" "-DFILES=${cl_files#;}" -P "$root/cmake/embed_cl.cmake"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=c11 -g -O1 -fno-omit-frame-pointer $SAN -DCL_TARGET_OPENCL_VERSION=120 -D_POSIX_C_SOURCE=200809L -I$root/include -I$root/src"
LIBSRC="$out/binv_kernels.c"
for f in context program program_cache sha256 tuning util gemm gemm_native rows rows_backward \
    attention kv activation activation_backward; do
  LIBSRC="$LIBSRC $root/src/$f.c"
done

# fuzz_api: the public API's arguments (fuzz/fuzz_api.c); harness/host.c gives it
# the tests' f16/bf16 conversions.
# shellcheck disable=SC2086
"$CC" $CFLAGS -I"$root/harness" -fsanitize=fuzzer -o "$out/fuzz_api" "$root/fuzz/fuzz_api.c" \
  "$root/harness/host.c" $LIBSRC -lOpenCL -lpthread -lm
echo "fuzz/build.sh: built $out/fuzz_api"

# fuzz_checkpoint: the llama2.c checkpoint loader and the CPU reference pass
# over what it loads (fuzz/fuzz_checkpoint.c); plain C, no OpenCL calls.
# shellcheck disable=SC2086
"$CC" $CFLAGS -I"$root/harness" -I"$root/tools/llm" -fsanitize=fuzzer -o "$out/fuzz_checkpoint" \
  "$root/fuzz/fuzz_checkpoint.c" "$root/tools/llm/checkpoint.c" "$root/tools/llm/reference.c" \
  "$root/harness/host.c" -lm
echo "fuzz/build.sh: built $out/fuzz_checkpoint"
