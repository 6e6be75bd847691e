# GPU check of the native tensor-core GEMM: test (invariance, determinism,
# accuracy; golden hashes recorded with BINV_GOLDEN_UPDATE=1) and bench.
source .device/setup.sh
out=${OUT:-/tmp/o}; mkdir -p $out
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release > /tmp/build.log 2>&1 && cmake --build build-gpu -j16 --target test_gemm binv-bench >> /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
(cd build-gpu/tests && BINV_TEST_DEVICE=gpu timeout 300 ./test_gemm > $out/test-gemm-gpu.log 2>&1; echo "test rc=$?"; grep -E "native|FAIL|PASS|ERROR|differ" $out/test-gemm-gpu.log | head -30)
(cd build-gpu/tests && BINV_GOLDEN_UPDATE=1 BINV_TEST_DEVICE=gpu timeout 300 ./test_gemm > /tmp/upd.log 2>&1; cp ../../tests/golden/gemm_native.txt $out/)
timeout 300 ./build-gpu/bench/binv-bench --device gpu --dtype bf16 --m ${MS:-1,16,512,4096} --nk 4096x4096 --csv $out/native.csv 2>&1 | grep -E "^binv|^clblast|native" | head -30
