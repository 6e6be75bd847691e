#!/usr/bin/env bash
# Install the dependencies, build libbinv-cl (Release, in build/) and run the
# main job on the default OpenCL device: build/tools/binv-study --quick if it
# was built, otherwise build/tools/binv-demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash ci/install-deps.sh

jobs=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build --parallel "$jobs"

if [ -x build/tools/binv-study ]; then
    exec build/tools/binv-study --quick "$@"
elif [ -x build/tools/binv-demo ]; then
    exec build/tools/binv-demo "$@"
else
    echo "demo: neither build/tools/binv-study nor build/tools/binv-demo was built" >&2
    exit 1
fi
