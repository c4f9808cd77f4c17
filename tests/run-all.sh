#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing, builds with warnings as errors, runs every test through CTest.
#   BUILD_DIR   build directory (default: build)
#   JOBS        parallel build and test jobs (default: number of cores)
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/deps.sh

build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGPULSE_WERROR=ON
cmake --build "$build" -j "$jobs"
# Integration tests each start their own PostgreSQL on a free port, so they can run side by side.
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 600
