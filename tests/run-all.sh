#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing, then three passes:
#   1. build with warnings as errors, run every test (CTest), the PostgreSQL 12-18 matrix included;
#   2. the same suite built with AddressSanitizer and UndefinedBehaviorSanitizer;
#   3. the libFuzzer targets (clang), each replaying its corpus and fuzzing FUZZ_SECONDS.
#   BUILD_DIR      build directory prefix (default: build; also build-asan, build-fuzz)
#   JOBS           parallel build and test jobs (default: number of cores)
#   FUZZ_SECONDS   seconds per fuzz target (default 30)
#   PGPULSE_QUICK  set to 1 to run pass 1 only
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/deps.sh

build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
step() { printf '\n== %s\n' "$*"; }

step "pass 1: build with -Werror, run every test"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGPULSE_WERROR=ON
cmake --build "$build" -j "$jobs"
# Integration tests each start their own PostgreSQL on a free port, so they can run side by side.
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 600
[[ ${PGPULSE_QUICK:-0} == 1 ]] && exit 0

step "pass 2: the same suite under AddressSanitizer and UndefinedBehaviorSanitizer"
cmake -S . -B "$build-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGPULSE_WERROR=ON -DPGPULSE_SANITIZE=ON
cmake --build "$build-asan" -j "$jobs"
# Not the version matrix (label matrix): it runs the same agent code as pass 1 and only the SQL sent to
# each major differs, which sanitizers do not look at; the majors' servers are not instrumented either.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$build-asan" --output-on-failure -j "$jobs" --timeout 900 -LE matrix

step "pass 3: fuzz the config, definition, exposition and pgBackRest info code"
CC=clang CXX=clang++ cmake -S . -B "$build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGPULSE_FUZZ=ON \
  -DFUZZ_SECONDS="${FUZZ_SECONDS:-30}"
cmake --build "$build-fuzz" -j "$jobs"
ctest --test-dir "$build-fuzz" --output-on-failure --timeout 600
