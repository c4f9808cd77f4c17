#!/usr/bin/env bash
# Regenerates dashboards/screenshots/*.png: runs the dashboards end-to-end test (a primary and a standby under
# load, PgBouncer, pgBackRest, a real Prometheus) with PGPULSE_RENDER_DASHBOARDS set, so that the test draws every
# dashboard from its own queries (dashboards/render.py) while healthy and the overview again with the standby's
# server stopped. Needs a build (cmake --build build --target pgpulse e2e_tests) and python3-matplotlib.
# Usage: dashboards/render.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
[[ -x $build/tests/e2e_tests ]] || { echo "render.sh: no $build/tests/e2e_tests; build it first" >&2; exit 1; }
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null ||
  { echo "render.sh: python3-matplotlib is not installed (tests/deps.sh)" >&2; exit 1; }
mkdir -p "$here/screenshots"
PGPULSE_RENDER_DASHBOARDS=$here/screenshots "$build/tests/e2e_tests" --gtest_filter='DashboardsE2eTest.*'
ls -l "$here/screenshots"
