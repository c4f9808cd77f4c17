#!/usr/bin/env bash
# Runs pgpulse against a throwaway local PostgreSQL with a little pgbench load.
# Installs what is missing, builds, and cleans the server up on exit (Ctrl-C).
#   PGPULSE_LISTEN   address for the agent (default 127.0.0.1:9679)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash tests/deps.sh --no-majors
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target pgpulse

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=55432
while ! port_free "$port"; do port=$((port + 1)); done

dir=$(mktemp -d /tmp/pgpulse-demo-XXXXXX)
rmdir "$dir"
load_pid=""
cleanup() {
  [[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null || true
  bash "$root/tests/harness/pgserver.sh" destroy "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash tests/harness/pgserver.sh start "$dir" "$port"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres
"$pgbin/pgbench" -i -q -s 2 >/dev/null
# A gentle, rate-limited load so counters move; runs until the demo ends.
"$pgbin/pgbench" -c 2 -R 20 -T 86400 -n >/dev/null 2>&1 &
load_pid=$!

listen=${PGPULSE_LISTEN:-127.0.0.1:9679}
echo
echo "PostgreSQL on 127.0.0.1:$port (data in $dir), pgbench running."
echo "pgpulse: open http://$listen/ (metrics at http://$listen/metrics). Ctrl-C stops everything."
echo
DATA_SOURCE_NAME="postgresql://postgres@127.0.0.1:$port/postgres" "$root/build/pgpulse" --web.listen-address="$listen"
