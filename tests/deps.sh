#!/usr/bin/env bash
# Installs what building and testing pgpulse needs on Debian 12; does nothing when all of it is present.
# Tests never use the system PostgreSQL: each starts its own server (tests/harness/pgserver.sh).
# Then the PostgreSQL majors other than Debian's 15 for the version matrix, from npm (tests/pg-majors.sh),
# unless called with --no-majors (the demo needs only 15).
set -euo pipefail
majors=1
[[ ${1:-} == --no-majors ]] && majors=0

packages=(
  build-essential cmake pkg-config git
  libpqxx-dev libpq-dev prometheus-cpp-dev libcivetweb-dev libyaml-cpp-dev libspdlog-dev libcli11-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev zlib1g-dev libdeflate-dev libcurl4-openssl-dev libssl-dev libcrypt-dev
  ca-certificates openssl curl wrk clang clang-14 libclang-rt-14-dev clang-format dpkg-dev file systemd
  postgresql postgresql-contrib pgbouncer pgbackrest haproxy nlohmann-json3-dev
  prometheus prometheus-alertmanager prometheus-postgres-exporter
  mount util-linux
  python3-matplotlib
)
# Debian's npm (with its nodejs) only when no npm is on PATH: a machine with NodeSource's nodejs has npm
# bundled, and Debian's npm package would conflict with it.
command -v npm >/dev/null || packages+=(npm)

missing=()
for package in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)" != "install ok installed" ]]; then
    missing+=("$package")
  fi
done
install_majors() {
  [[ $majors -eq 1 ]] || return 0
  bash "$(dirname "$0")/pg-majors.sh" install
}
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#packages[@]} packages installed"
  install_majors
  exit 0
fi

sudo=()
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

# Packages must not start their daemons (postgresql on 5432, prometheus, alertmanager, exporter):
# tests start their own. invoke-rc.d and deb-systemd-invoke skip starts while policy-rc.d exits 101.
# An existing policy-rc.d (Docker images ship one) is left alone.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
  trap '"${sudo[@]}" rm -f "$policy"' EXIT
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 0755 "$policy"
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
install_majors
