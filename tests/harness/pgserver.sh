#!/usr/bin/env bash
# Throwaway PostgreSQL servers for tests and demos; the C++ harness (postgres_server.h) wraps this script.
#
#   pgserver.sh start DIR PORT [conf-line ...]  create DIR, initdb, start on 127.0.0.1:PORT
#   pgserver.sh standby PRIMARY_DIR DIR PORT [conf-line ...]
#                                               create DIR, base-backup the server in PRIMARY_DIR, start it
#                                               on 127.0.0.1:PORT as a streaming standby of that server
#   pgserver.sh stop DIR                        fast shutdown, immediate if that hangs; idempotent
#   pgserver.sh restart DIR                     stop (if running) and start again, data kept
#   pgserver.sh destroy DIR                     stop and remove DIR
#   pgserver.sh psql DIR [psql args ...]        psql as superuser postgres over TCP
#
# Layout: DIR/data is PGDATA, DIR/postgres.log the server log, the Unix socket sits in DIR.
# As root the server runs as OS user postgres (PostgreSQL refuses root).
# PGPULSE_OWNER_PID=N in the environment of `start` destroys the server once process N is gone,
# so a crashed test leaves nothing running. PGPULSE_PG_BINDIR overrides where initdb/pg_ctl are found;
# PGPULSE_PG_MAJOR=N (12 to 18) takes them from tests/pg-majors.sh's cache (15: Debian's postgresql).
# Where the server's bin dir has no psql or pg_basebackup (npm's builds), Debian's psql is used and a
# standby is made from a cold copy of the primary (stopped for the copy, started again).
set -euo pipefail

# Inherited PGHOST, PGOPTIONS, PGSERVICE, ... would redirect or alter our own connections.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^PG' | grep -v '^PGPULSE_' || true)

die() {
  echo "pgserver: $*" >&2
  exit 1
}

usage() {
  sed -n '2,11p' "$SELF" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

find_bindir() {
  local dir
  if [[ -n "${PGPULSE_PG_MAJOR:-}" ]]; then
    dir=$(bash "$(dirname "$SELF")/../pg-majors.sh" bindir "$PGPULSE_PG_MAJOR") ||
      die "PostgreSQL $PGPULSE_PG_MAJOR (PGPULSE_PG_MAJOR) is not installed: run bash tests/pg-majors.sh install"
    echo "$dir"
    return
  fi
  if [[ -n "${PGPULSE_PG_BINDIR:-}" ]]; then
    [[ -x "$PGPULSE_PG_BINDIR/initdb" ]] || die "PGPULSE_PG_BINDIR=$PGPULSE_PG_BINDIR has no initdb"
    echo "$PGPULSE_PG_BINDIR"
    return
  fi
  # Debian's pg_config belongs to libpq-dev and may name a version whose server is not installed.
  if dir=$(pg_config --bindir 2>/dev/null) && [[ -x "$dir/initdb" ]]; then
    echo "$dir"
    return
  fi
  dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -V | tail -n 1)
  if [[ -n "$dir" && -x "$dir/initdb" ]]; then
    echo "$dir"
    return
  fi
  if dir=$(command -v initdb 2>/dev/null); then
    dirname "$dir"
    return
  fi
  die "cannot find initdb: install postgresql or set PGPULSE_PG_BINDIR"
}

SELF=$(realpath -- "$0")
BINDIR=$(find_bindir)

# psql of the server's version when it has one, else the newest installed (psql talks to older and newer servers).
find_psql() {
  if [[ -x "$BINDIR/psql" ]]; then
    echo "$BINDIR/psql"
    return
  fi
  local dir
  dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -V | tail -n 1)
  if [[ -n "$dir" && -x "$dir/psql" ]]; then
    echo "$dir/psql"
    return
  fi
  command -v psql 2>/dev/null || die "no psql in $BINDIR nor installed: apt-get install postgresql-client"
}

# Runs a command as the OS user that owns the server, from a directory that user can read.
as_owner() {
  if [[ $EUID -ne 0 ]]; then
    (cd /tmp && "$@")
  elif command -v runuser >/dev/null; then
    (cd /tmp && runuser -u postgres -- "$@")
  else
    (cd /tmp && setpriv --reuid=postgres --regid=postgres --init-groups -- "$@")
  fi
}

absolute() {
  realpath -m -- "$1"
}

conf_port() {
  local conf="$1/data/postgresql.conf"
  [[ -f "$conf" ]] || die "$1 holds no server (no $conf)"
  local port
  port=$(sed -n 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$conf" | tail -n 1)
  [[ -n "$port" ]] || die "no port in $conf"
  echo "$port"
}

log_tail() {
  local dir="$1"
  if [[ -f "$dir/postgres.log" ]]; then
    echo "pgserver: last lines of $dir/postgres.log:" >&2
    tail -n 40 "$dir/postgres.log" >&2
  fi
}

running() {
  as_owner "$BINDIR/pg_ctl" status -D "$1/data" >/dev/null 2>&1
}

# Stays in the caller's directory so relative paths (psql -f) work, unless psql could not return to it.
run_psql() (
  local dir="$1" port
  shift
  port=$(conf_port "$dir")
  [[ -x "$PWD" ]] || cd /tmp
  "$(find_psql)" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
)

start_server() {
  local dir="$1"
  if ! as_owner "$BINDIR/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/postgres.log" >/dev/null 2>"$dir/pg_ctl.err"; then
    cat "$dir/pg_ctl.err" >&2
    log_tail "$dir"
    stop_server "$dir" >/dev/null 2>&1 || true
    die "server in $dir did not start"
  fi
}

stop_server() {
  local dir="$1"
  [[ -f "$dir/data/postmaster.pid" ]] || return 0
  running "$dir" || return 0
  as_owner "$BINDIR/pg_ctl" stop -w -t 20 -m fast -D "$dir/data" >/dev/null 2>&1 && return 0
  as_owner "$BINDIR/pg_ctl" stop -w -t 10 -m immediate -D "$dir/data" >/dev/null 2>&1 && return 0
  local pid
  pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null; then
    local _
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || return 0
      sleep 0.1
    done
  fi
  running "$dir" && die "cannot stop the server in $dir"
  return 0
}

# Runs detached (own session, no inherited output) so it outlives its caller and never holds a pipe open.
start_watchdog() {
  local dir="$1" owner="$2"
  [[ "$owner" =~ ^[0-9]+$ ]] || die "PGPULSE_OWNER_PID=$owner is not a pid"
  if [[ -f "$dir/watchdog.pid" ]] && kill -0 "$(cat "$dir/watchdog.pid")" 2>/dev/null; then
    return 0
  fi
  setsid bash "$SELF" __watch "$dir" "$owner" </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/watchdog.pid"
}

cmd_watch() {
  local dir="$1" owner="$2"
  cd /
  while [[ -d "$dir" ]]; do
    if ! kill -0 "$owner" 2>/dev/null; then
      rm -f "$dir/watchdog.pid"
      cmd_destroy "$dir"
      return 0
    fi
    sleep 1
  done
}

# An empty (or new) directory the server's owner can enter, marked as ours.
prepare_dir() {
  local dir=$1
  if [[ -e "$dir" ]]; then
    [[ -d "$dir" ]] || die "$dir exists and is not a directory"
    [[ -z "$(ls -A "$dir")" ]] || die "$dir is not empty"
  fi
  mkdir -p "$dir"
  touch "$dir/.pgserver"
  if [[ $EUID -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 || die "running as root needs an OS user 'postgres' to own the server"
    chown postgres: "$dir"
    as_owner test -x "$dir" || die "user postgres cannot enter $dir; use a directory under /tmp"
  fi
}

cmd_start() {
  [[ $# -ge 2 ]] || usage
  local dir port
  dir=$(absolute "$1")
  port="$2"
  shift 2
  [[ "$port" =~ ^[0-9]+$ ]] || die "port '$port' is not a number"
  prepare_dir "$dir"

  if ! as_owner "$BINDIR/initdb" -D "$dir/data" --auth=trust -U postgres --no-sync -E UTF8 --locale=C \
      >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    die "initdb failed in $dir"
  fi

  local conf="$dir/data/postgresql.conf"
  {
    echo
    echo "# pgserver.sh"
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "shared_preload_libraries = 'pg_stat_statements'"
    echo "fsync = off"
    echo "synchronous_commit = off"
    echo "full_page_writes = off"
    echo "max_connections = 50"
    echo "logging_collector = off"
    local line
    for line in "$@"; do
      echo "$line"
    done
  } >>"$conf"
  cat >"$dir/data/pg_hba.conf" <<'EOF'
# pgserver.sh: trust everyone on this throwaway server; replication lines allow making a standby.
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
EOF

  if [[ -n "${PGPULSE_OWNER_PID:-}" ]]; then
    start_watchdog "$dir" "$PGPULSE_OWNER_PID"
  fi
  start_server "$dir"
  if ! run_psql "$dir" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >/dev/null; then
    log_tail "$dir"
    stop_server "$dir" >/dev/null 2>&1 || true
    die "cannot create extension pg_stat_statements in $dir"
  fi
  echo "pgserver: started dir=$dir port=$port pid=$(head -n 1 "$dir/data/postmaster.pid")" >&2
}

# A standby is a base backup of a running primary with -R (standby.signal and primary_conninfo over
# 127.0.0.1, which the primary's pg_hba.conf trusts); its copied postgresql.conf is then pointed at
# its own port, socket dir and log like a server from `start` (later lines win).
cmd_standby() {
  [[ $# -ge 3 ]] || usage
  local primary dir port primary_port
  primary=$(absolute "$1")
  dir=$(absolute "$2")
  port="$3"
  shift 3
  [[ "$port" =~ ^[0-9]+$ ]] || die "port '$port' is not a number"
  primary_port=$(conf_port "$primary")
  running "$primary" || die "the primary in $primary is not running"
  prepare_dir "$dir"

  if [[ -x "$BINDIR/pg_basebackup" ]]; then
    if ! as_owner "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir/data" \
        -R -X stream --checkpoint=fast --no-sync >"$dir/basebackup.log" 2>&1; then
      cat "$dir/basebackup.log" >&2
      die "pg_basebackup from $primary failed"
    fi
  else
    cold_copy "$primary" "$dir" "$primary_port"
  fi

  local conf="$dir/data/postgresql.conf"
  {
    echo
    echo "# pgserver.sh standby of $primary"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    local line
    for line in "$@"; do
      echo "$line"
    done
  } >>"$conf"

  if [[ -n "${PGPULSE_OWNER_PID:-}" ]]; then
    start_watchdog "$dir" "$PGPULSE_OWNER_PID"
  fi
  start_server "$dir"
  echo "pgserver: started standby dir=$dir port=$port primary=$primary pid=$(head -n 1 "$dir/data/postmaster.pid")" >&2
}

# Without pg_basebackup: a clean shutdown leaves a consistent data dir whose copy starts as a standby at the
# primary's shutdown checkpoint and streams from there (standby.signal and primary_conninfo, as -R writes).
cold_copy() {
  local primary=$1 dir=$2 primary_port=$3
  stop_server "$primary"
  local copied=0
  as_owner cp -a "$primary/data" "$dir/data" || copied=1
  start_server "$primary"
  [[ $copied -eq 0 ]] || die "cannot copy $primary/data"
  rm -f "$dir/data/postmaster.pid" "$dir/data/postmaster.opts"
  as_owner touch "$dir/data/standby.signal"
  echo "primary_conninfo = 'host=127.0.0.1 port=$primary_port user=postgres'" |
    as_owner tee -a "$dir/data/postgresql.auto.conf" >/dev/null
}

cmd_stop() {
  [[ $# -eq 1 ]] || usage
  local dir
  dir=$(absolute "$1")
  [[ -d "$dir" ]] || return 0
  stop_server "$dir"
}

cmd_restart() {
  [[ $# -eq 1 ]] || usage
  local dir
  dir=$(absolute "$1")
  [[ -f "$dir/data/PG_VERSION" ]] || die "$dir holds no server"
  stop_server "$dir"
  if [[ -n "${PGPULSE_OWNER_PID:-}" ]]; then
    start_watchdog "$dir" "$PGPULSE_OWNER_PID"
  fi
  start_server "$dir"
}

cmd_destroy() {
  [[ $# -eq 1 ]] || usage
  local dir
  dir=$(absolute "$1")
  [[ -e "$dir" ]] || return 0
  # Refuse to rm -rf anything this script did not create.
  if [[ ! -f "$dir/.pgserver" && -n "$(ls -A "$dir")" ]]; then
    die "$dir was not created by pgserver.sh; not removing it"
  fi
  stop_server "$dir"
  if [[ -f "$dir/watchdog.pid" ]]; then
    kill "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
  fi
  rm -rf -- "$dir"
}

cmd_psql() {
  [[ $# -ge 1 ]] || usage
  local dir
  dir=$(absolute "$1")
  shift
  run_psql "$dir" "$@"
}

[[ $# -ge 1 ]] || usage
command="$1"
shift
case "$command" in
  start) cmd_start "$@" ;;
  standby) cmd_standby "$@" ;;
  stop) cmd_stop "$@" ;;
  restart) cmd_restart "$@" ;;
  destroy) cmd_destroy "$@" ;;
  psql) cmd_psql "$@" ;;
  __watch) cmd_watch "$@" ;;
  *) usage ;;
esac
