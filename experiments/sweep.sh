# Tuning sweep on the GPU: runs binv-bench once per value of an environment
# variable (bits never depend on these knobs).  usage:
#   VAR=BINV_GEMM_SKINNY VALUES="128,4,32 64,4,64" ARGS="--m 1 --nk 4096x4096" bash experiments/sweep.sh
source .device/setup.sh
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release > /tmp/build.log 2>&1 && cmake --build build-gpu -j16 --target binv-bench >> /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
for v in $VALUES; do
  echo "== $VAR=$v"
  env $VAR=$v timeout 120 ./build-gpu/bench/binv-bench --device gpu --reps 5 --schedule invariant $ARGS --csv /tmp/sw.csv 2>&1 | grep -E "^binv-(invariant|native) .*ok|^(decode|prefill)"
done
