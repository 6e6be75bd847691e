#!/usr/bin/env bash
# Install the dependencies, build libbinv-cl (Release, in build/) and run the
# main job on the default OpenCL device (first GPU, else the CPU through PoCL):
# binv-study --quick, which prints a table and writes binv-study-report/.
# Extra arguments go to binv-study (e.g. --device cpu).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash ci/build.sh
exec build/tools/binv-study --quick "$@"
