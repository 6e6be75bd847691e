# Quick GPU check of the attention kernels (test + bench); see device-run.sh for the full run.
source .device/setup.sh
out=${OUT:-/tmp/o}; mkdir -p $out
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release > /tmp/build.log 2>&1 && cmake --build build-gpu -j16 --target test_attention binv-bench >> /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
(cd build-gpu/tests && BINV_TEST_DEVICE=gpu timeout 200 ./test_attention > $out/test-attention-gpu.log 2>&1; echo "test rc=$?"; grep -E "FAIL|PASS" $out/test-attention-gpu.log | head -30)
timeout 300 ./build-gpu/bench/binv-bench --device gpu --op attention --dtype ${DT:-bf16} ${ARGS:-} --attn-csv $out/attn.csv 2>&1 | tail -22
if [ -n "${SWEEP:-}" ]; then
  for sh in $SWEEP; do
    echo "== BINV_ATTN_SHAPE=$sh"
    BINV_ATTN_SHAPE=$sh timeout 120 ./build-gpu/bench/binv-bench --device gpu --op attention --dtype bf16 --schedule invariant \
      --attn-batch 1,64 --attn-ctx 4096,32768 --attn-prefill 4096 --reps 5 --attn-csv /tmp/sw.csv 2>&1 | grep -E "^(decode|prefill)"
  done
fi
