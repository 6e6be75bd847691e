#!/usr/bin/env bash
# The run on the lent NVIDIA GPU (../shared/device/README.md): builds, runs the
# test suite on the GPU (golden hashes = portable bits), the benchmark, and
# optionally a tile sweep.  Results go to $OUT.
#   usage (on the device machine, from the repo root, .device carried):
#     bash experiments/device-run.sh [tune] [ptx] [probe] [full] [study]
set -uo pipefail
source .device/setup.sh
out=${OUT:-/tmp/binv-out}
mkdir -p "$out"
export BINV_SKIP_DEPS=1
{
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv 2>&1
  clinfo -l 2>&1
} > "$out/device.txt"
# The real model of test_llm_engine: BINV_TEST_MODEL (a path on this machine), else
# CMake's own look-up beside the source tree.
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release \
  ${BINV_TEST_MODEL:+-DBINV_TEST_MODEL=$BINV_TEST_MODEL} > /tmp/build.log 2>&1 &&
  cmake --build build-gpu -j16 >> /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
bench=./build-gpu/bench/binv-bench

# 1. Tests on the GPU: invariance, determinism, accuracy, golden hashes
#    (skip with NOTEST=1 when a later step of the same session runs).
if [ -z "${NOTEST:-}" ]; then
  BINV_TEST_DEVICE=gpu ctest --test-dir build-gpu -E 'consumer|cbs' --output-on-failure \
    > "$out/ctest-gpu.log" 2>&1
  echo "ctest on GPU: rc=$?"; grep -E "tests passed|Failed|golden|Test +#" "$out/ctest-gpu.log" | head -30
fi

for arg in "$@"; do
  case "$arg" in
  pocl)
    # The same suite on the machine's CPU platform (PoCL 5.0, Ubuntu 24.04's
    # build: what GitHub Actions' ubuntu-latest installs).
    BINV_TEST_DEVICE=cpu ctest --test-dir build-gpu -j8 --output-on-failure \
      > "$out/ctest-pocl5.log" 2>&1
    echo "ctest on PoCL 5.0: rc=$?"; grep -E "tests passed|Failed|\*\*\*" "$out/ctest-pocl5.log" | head -30
    ;;
  decode)
    # The decode-step figures of docs/performance.md: attention, rows, mid-batch GEMM, cuBLAS.
    d=$out/decode; mkdir -p $d
    for dt in bf16 f32; do
      timeout 150 $bench --device gpu --op attention --dtype $dt --attn-batch 1,8,64 \
        --attn-ctx 4096,32768 --attn-prefill 0 --attn-csv $d/attention-$dt.csv \
        > $d/attention-$dt.txt 2>&1
      echo "attention $dt rc=$?"
    done
    timeout 150 $bench --device gpu --op rows --dtype f32 --rows-ops rmsnorm,softmax \
      --rows 1,64,4096 --cols 4096,152064 --rows-csv $d/rows-f32.csv > $d/rows-f32.txt 2>&1
    echo "rows rc=$?"
    for dt in bf16 f16; do
      timeout 120 $bench --device gpu --dtype $dt --m 1,16,32,64,128,256 \
        --nk 4096x4096,4096x14336 --schedule invariant --csv $d/gemm-$dt.csv > $d/gemm-$dt.txt 2>&1
      echo "gemm $dt rc=$?"
    done
    timeout 150 python3 experiments/cublas_reference.py --dtype bf16,f16 --m 1,16,32,64,128,256 \
      --nk 4096x4096,4096x14336 --csv $d/cublas.csv > $d/cublas.txt 2>&1
    echo "cublas rc=$?"
    ;;
  parity)
    # Trainer/sampler parity of binv-llm on the real model (docs/llm.md), f32 and bf16.
    d=$out/parity; mkdir -p $d
    for dt in f32 bf16; do
      timeout 200 ./build-gpu/tools/binv-llm --device gpu --model "${LLM_MODEL:=../shared/models/stories260K.bin}" \
        --dtype $dt --requests 1000 --temperature 0.9 --top-k 40 --per-request-seed --parity \
        --report $d/llm-parity-$dt.md > $d/llm-parity-$dt.txt 2>&1
      echo "parity $dt rc=$?"; grep -E "^parity|error" $d/llm-parity-$dt.txt
    done
    ;;
  e2e)
    # Decode steps end to end on the Llama-3.2-1B shape, and PyTorch on the same GPU.
    d=$out/decode; mkdir -p $d
    timeout ${E2E_LIMIT:-200} $bench --device gpu --op decode --dtype bf16 ${DECODE_ARGS:-} \
      --decode-csv $d/decode-binv.csv > $d/decode-binv.txt 2>&1
    echo "decode binv rc=$?"; grep -E "^binv|skipped" $d/decode-binv.txt
    timeout ${TORCH_LIMIT:-150} python3 bench/torch_reference.py ${TORCH_ARGS:-} --csv $d/decode-torch.csv \
      > $d/decode-torch.txt 2>&1
    echo "decode torch rc=$?"; cat $d/decode-torch.txt | tail -16
    ;;
  tune)
    # Tile shapes for large m and skinny shapes for small m (bits never change).
    for t in 128,128,16,8,8 128,64,16,8,4 64,128,16,4,8 128,128,8,8,8 64,64,16,4,4 64,64,32,4,4; do
      echo "== BINV_GEMM_TILE=$t"
      BINV_GEMM_TILE=$t $bench --device gpu --m 512,4096 --nk 4096x4096 --schedule invariant \
        --reps 5 --csv /tmp/tune.csv 2>&1 | grep -E "^binv-inv.*ok|^clblast.*ok"
    done
    ;;
  probe)
    # Variants side by side (bits never change): each line of the file
    # PROBE (default experiments/probes/probe.txt) is "VAR=VALUE ...|binv-bench args".
    p=$out/probe.txt; : > $p
    while IFS='|' read -r envs args; do
      [ -z "$envs$args" ] && continue
      echo "== $envs | $args" >> $p
      env $envs timeout 90 $bench --device gpu --reps ${REPS:-10} --schedule invariant $args \
        --csv /tmp/probe.csv 2>&1 | grep -E "^binv-(invariant|native) .*ok|rror|FAIL" >> $p
    done < <(grep -v '^#' "${PROBE:-experiments/probes/probe.txt}")
    cat $p
    ;;
  ptx)
    # The compiled program (NVIDIA: PTX text) through the library's binary cache.
    cat > /tmp/ptx.c <<'C'
#include <binv/binv.h>
#include <stdio.h>
int main(void) {
  cl_platform_id p[4]; cl_uint np; clGetPlatformIDs(4, p, &np);
  cl_device_id d = NULL;
  for (cl_uint i = 0; i < np && !d; i++) clGetDeviceIDs(p[i], CL_DEVICE_TYPE_GPU, 1, &d, NULL);
  cl_int e; cl_context c = clCreateContext(NULL, 1, &d, NULL, NULL, &e);
  cl_command_queue q = clCreateCommandQueue(c, d, 0, &e);
  binv_options o = {sizeof o, BINV_SCHEDULE_INVARIANT, "/tmp/ptxcache"};
  binv_context *b; binv_context_create(c, d, &o, &b);
  cl_mem m = clCreateBuffer(c, CL_MEM_READ_WRITE, 1 << 20, NULL, &e);
  cl_mem m2 = clCreateBuffer(c, CL_MEM_READ_WRITE, 1 << 20, NULL, &e);
  int st = binv_gemm(b, q, BINV_DTYPE_F32, 0, 1, 256, 256, 256, 1, m, 0, 256, m, 0, 256, 0, m2, 0, 256, 0, NULL, NULL);
  /* bf16 at m = 1 (stream program) and the native path. */
  st |= binv_gemm(b, q, BINV_DTYPE_BF16, 0, 1, 1, 256, 256, 1, m, 0, 256, m, 0, 256, 0, m2, 0, 256, 0, NULL, NULL);
  binv_options on = {sizeof on, BINV_SCHEDULE_INVARIANT, "/tmp/ptxcache", BINV_PATH_NATIVE};
  binv_context *nb; binv_context_create(c, d, &on, &nb);
  st |= binv_gemm(nb, q, BINV_DTYPE_BF16, 0, 1, 256, 256, 256, 1, m, 0, 256, m, 0, 256, 0, m2, 0, 256, 0, NULL, NULL);
  clFinish(q); printf("gemm %d\n", st); binv_context_destroy(nb); binv_context_destroy(b); return 0; }
C
    gcc -O1 /tmp/ptx.c -Iinclude -Lbuild-gpu -lbinv-cl -lOpenCL -o /tmp/ptx && \
      LD_LIBRARY_PATH=build-gpu:$LD_LIBRARY_PATH BINV_DEBUG=1 /tmp/ptx 2>&1 | tail -5 &&
      mkdir -p "$out/ptx" && cp /tmp/ptxcache/* "$out/ptx/"
    ls -la "$out"
    ;;
  full)
    # Benchmarks (one archive comes back: bench.tar.gz).
    d=/tmp/bench; mkdir -p $d/plots
    $bench --device gpu --dtype all --csv $d/bench-gemm.csv --plot $d/plots > $d/bench-gemm.txt 2>&1
    echo "bench gemm rc=$?"
    for dt in f32 bf16; do
      $bench --device gpu --op rows --dtype $dt --rows-ops rmsnorm,softmax,log_softmax \
        --rows-csv $d/bench-rows-$dt.csv > $d/bench-rows-$dt.txt 2>&1
      echo "bench rows $dt rc=$?"
      $bench --device gpu --op attention --dtype $dt --attn-csv $d/bench-attention-$dt.csv \
        > $d/bench-attention-$dt.txt 2>&1
      echo "bench attention $dt rc=$?"
    done
    timeout 300 python3 experiments/cublas_reference.py --csv $d/cublas.csv > $d/cublas.txt 2>&1
    echo "cublas rc=$?"
    tar czf "$out/bench.tar.gz" -C $d .
    grep -E "binv-(invariant|native).* (1|16|4096) +4096 +(4096|14336) " $d/bench-gemm.txt | head -40
    ;;
  study)
    # binv-study on the GPU and the binv-llm experiment (study.tar.gz).
    d=/tmp/study-out; mkdir -p $d
    timeout ${STUDY_TIMEOUT:-300} ./build-gpu/tools/binv-study --device gpu ${STUDY_ARGS:-} \
      --out $d/study > $d/study.txt 2>&1
    echo "study rc=$?"; tail -5 $d/study.txt
    if [ -x ./build-gpu/tools/binv-llm ] && [ -f "${LLM_MODEL:=../shared/models/stories260K.bin}" ]; then
      ./build-gpu/tools/binv-llm --device gpu --model "$LLM_MODEL" \
        --check 64 --report $d/llm-stories.md > $d/llm-stories.txt 2>&1
      echo "llm stories rc=$?"; tail -12 $d/llm-stories.txt
      ./build-gpu/tools/binv-llm --device gpu --dtype bf16 --model "$LLM_MODEL" \
        --report $d/llm-stories-bf16.md > $d/llm-stories-bf16.txt 2>&1
      echo "llm stories bf16 rc=$?"; tail -6 $d/llm-stories-bf16.txt
    fi
    if [ -x ./build-gpu/tools/binv-llm ]; then
      timeout ${LLM_TIMEOUT:-240} ./build-gpu/tools/binv-llm --device gpu --dtype bf16 \
        --synthetic /tmp/syn.bin ${LLM_SYN:-} --report $d/llm-synthetic.md > $d/llm-synthetic.txt 2>&1
      echo "llm synthetic rc=$?"; tail -12 $d/llm-synthetic.txt
    fi
    tar czf "$out/study.tar.gz" -C $d .
    ;;
  esac
done
