#!/usr/bin/env bash
# Install the dependencies, build libbinv-cl (Release, in build/) and run the
# whole test suite.  Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash ci/build.sh
ctest --test-dir build --output-on-failure
