#!/usr/bin/env bash
# Side-by-side benchmark of pgpulse and postgres_exporter against one throwaway PostgreSQL.
# Run by hand, not by CI; see tests/bench/README.md for what it measures and how to read it.
#
#   tests/bench/compare_postgres_exporter.sh [options]
#
#   --pgpulse PATH          pgpulse binary (default: build-release/pgpulse, else build/pgpulse)
#   --exporter PATH         postgres_exporter binary (default: /usr/bin/prometheus-postgres-exporter)
#   --exporter-queries Q    shipped (default): Debian's example queries.yaml as shipped;
#                           pg13: the same with pg_stat_statements' *_time columns renamed *_exec_time,
#                           so its statements query works on PostgreSQL 13+; or a path to any queries.yaml
#   --tables N              tables in the big database (default 3000)
#   --statements N          distinct pg_stat_statements entries to create (default 3000)
#   --databases N           extra small databases (default 20)
#   --scrapes N             scrapes of each exporter, alternating (default 50; 0 skips the comparison)
#   --overhead-scrapes N    pgpulse scrapes replayed through psql for the overhead (default 11; 0 skips)
#   --soak N                then N scrapes of pgpulse alone, RSS every 100 (default 0: no soak)
#   --cold-starts N         before the comparison, start and stop both exporters N more times and report
#                           the median of their first scrapes, taking turns at going first (default 0)
#   --sql-floor N           before the exporters start, time each per-table collector's SQL (every row)
#                           against the cheapest query that returns the same rows, N runs each (0: skip)
#   --discover              pgpulse databases.discover and postgres_exporter --auto-discover-databases
#                           (default: both point at the big database only)
#   --max-connections N     pgpulse databases.max_connections with --discover (default: pgpulse's, 4)
#   --equal-work            the same rows from both: --discover, and pgpulse's top-N collectors (tables,
#                           indexes, statements, autovacuum thresholds) raised to every row (max_rows 100000)
#   --pgpulse-profile P     pgpulse's metrics_profile: pgpulse (default), postgres_exporter (the same
#                           names as postgres_exporter's default collectors, and its queries file through
#                           --extend.query-path: the drop-in's cost at equal work) or both
#   --interval SECONDS      start a round (one scrape of each) every SECONDS, as Prometheus would
#                           (default 0: back to back); the PostgreSQL CPU per minute needs it
#   --pgpulse-queries DIR   extra pgpulse definitions (collectors.directories; same name overrides a
#                           built-in one), to measure a changed query without rebuilding
#   --no-gzip               do not send Accept-Encoding: gzip (Prometheus sends it)
#   --auth MODE             how both exporters log in: trust (default: no password) or scram (a
#                           superuser role with a SCRAM-SHA-256 password, Debian's default for TCP:
#                           every new connection pays the password exchange)
#   --wait-quiet SECONDS    before measuring, wait up to SECONDS for the 1-minute load average to
#                           stay below 0.8 for 60 s (default 0: do not wait)
#   --perf                  after measuring, record a perf profile of pgpulse over 20 scrapes
#   --keep DIR              keep raw results (per-scrape CSV, logs, scrape bodies, profile) in DIR
#
# Installs nothing; says what is missing. Everything it starts (PostgreSQL, both exporters, perf) is
# stopped and removed on exit, also on Ctrl-C or failure.
set -euo pipefail

SELF=$(realpath -- "$0")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
PGSERVER="$REPO/tests/harness/pgserver.sh"
COMMAND_LINE=$(printf '%q ' "$0" "$@")
COMMAND_LINE=${COMMAND_LINE% }

PGPULSE_BIN=""
EXPORTER_BIN=/usr/bin/prometheus-postgres-exporter
EXPORTER_QUERIES=shipped
SHIPPED_QUERIES=/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml
TABLES=3000
STATEMENTS=3000
DATABASES=20
SCRAPES=50
OVERHEAD_SCRAPES=11
SOAK=0
COLD_STARTS=0
SQL_FLOOR=0
DISCOVER=0
MAX_CONNECTIONS=""
EQUAL_WORK=0
PGPULSE_PROFILE=pgpulse
INTERVAL=0
PGPULSE_QUERIES=""
GZIP=1
AUTH=trust
WAIT_QUIET=0
PERF=0
KEEP=""

usage() {
  sed -n '2,38p' "$SELF" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "bench: $*" >&2
  exit 1
}

log() {
  echo "bench: $(date +%H:%M:%S) $*" >&2
}

number() {
  [[ "$2" =~ ^[0-9]+$ ]] || die "$1 needs a whole number, got '$2'"
  echo "$2"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --pgpulse) PGPULSE_BIN="${2:?}"; shift 2 ;;
    --exporter) EXPORTER_BIN="${2:?}"; shift 2 ;;
    --exporter-queries) EXPORTER_QUERIES="${2:?}"; shift 2 ;;
    --tables) TABLES=$(number "$1" "${2:-}"); shift 2 ;;
    --statements) STATEMENTS=$(number "$1" "${2:-}"); shift 2 ;;
    --databases) DATABASES=$(number "$1" "${2:-}"); shift 2 ;;
    --scrapes) SCRAPES=$(number "$1" "${2:-}"); shift 2 ;;
    --overhead-scrapes) OVERHEAD_SCRAPES=$(number "$1" "${2:-}"); shift 2 ;;
    --soak) SOAK=$(number "$1" "${2:-}"); shift 2 ;;
    --cold-starts) COLD_STARTS=$(number "$1" "${2:-}"); shift 2 ;;
    --sql-floor) SQL_FLOOR=$(number "$1" "${2:-}"); shift 2 ;;
    --discover) DISCOVER=1; shift ;;
    --max-connections) MAX_CONNECTIONS=$(number "$1" "${2:-}"); shift 2 ;;
    --equal-work) EQUAL_WORK=1; DISCOVER=1; shift ;;
    --interval) INTERVAL=$(number "$1" "${2:-}"); shift 2 ;;
    --pgpulse-profile) PGPULSE_PROFILE="${2:?}"; shift 2 ;;
    --pgpulse-queries) PGPULSE_QUERIES=$(realpath -- "${2:?}"); shift 2 ;;
    --no-gzip) GZIP=0; shift ;;
    --auth)
      AUTH="${2:-}"
      [[ "$AUTH" == trust || "$AUTH" == scram ]] || die "--auth takes trust or scram, not '$AUTH'"
      shift 2
      ;;
    --wait-quiet) WAIT_QUIET=$(number "$1" "${2:-}"); shift 2 ;;
    --perf) PERF=1; shift ;;
    --keep) KEEP="${2:?}"; shift 2 ;;
    -h | --help) usage ;;
    *) echo "bench: unknown option $1" >&2; usage ;;
  esac
done
[[ "$TABLES" -ge 1 ]] || die "--tables must be at least 1"
case "$PGPULSE_PROFILE" in pgpulse | postgres_exporter | both) ;; *) die "--pgpulse-profile is pgpulse, postgres_exporter or both, not '$PGPULSE_PROFILE'" ;; esac
[[ -z "$MAX_CONNECTIONS" || "$DISCOVER" -eq 1 ]] || die "--max-connections only applies with --discover"
[[ "$EQUAL_WORK" -eq 0 || "$PGPULSE_PROFILE" == pgpulse ]] ||
  die "--equal-work raises pgpulse's own top-N collectors; the $PGPULSE_PROFILE profile exports every table already: use --discover"

if [[ -z "$PGPULSE_BIN" ]]; then
  PGPULSE_BIN="$REPO/build/pgpulse"
  for candidate in "$REPO/build-release/pgpulse" "$REPO/build-g/pgpulse"; do
    if [[ -x "$candidate" ]]; then
      PGPULSE_BIN="$candidate"
      break
    fi
  done
fi

# Everything missing is reported at once.
missing=()
for tool in curl jq gzip awk sort pgrep getconf; do
  command -v "$tool" >/dev/null || missing+=("$tool (apt-get install $(case $tool in pgrep) echo procps ;; getconf) echo libc-bin ;; awk) echo gawk ;; sort) echo coreutils ;; *) echo "$tool" ;; esac))")
done
[[ -x "$PGPULSE_BIN" ]] || missing+=("pgpulse binary $PGPULSE_BIN (build it: cmake -S $REPO -B $REPO/build-release -DCMAKE_BUILD_TYPE=Release && make -C $REPO/build-release pgpulse, or pass --pgpulse)")
[[ -x "$EXPORTER_BIN" ]] || missing+=("postgres_exporter $EXPORTER_BIN (apt-get install prometheus-postgres-exporter, or pass --exporter)")
case "$EXPORTER_QUERIES" in
  shipped | pg13) [[ -f "$SHIPPED_QUERIES" ]] || missing+=("$SHIPPED_QUERIES (from prometheus-postgres-exporter)") ;;
  *) [[ -f "$EXPORTER_QUERIES" ]] || missing+=("queries file $EXPORTER_QUERIES") ;;
esac
[[ -f "$PGSERVER" ]] || missing+=("$PGSERVER")
[[ -z "$PGPULSE_QUERIES" || -d "$PGPULSE_QUERIES" ]] || missing+=("directory $PGPULSE_QUERIES (--pgpulse-queries)")
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v initdb >/dev/null && [[ -z "${PGPULSE_PG_BINDIR:-}" ]]; then
  missing+=("PostgreSQL server binaries (apt-get install postgresql postgresql-contrib, or set PGPULSE_PG_BINDIR)")
fi
[[ "$PERF" -eq 0 ]] || command -v perf >/dev/null || missing+=("perf (apt-get install linux-perf), needed by --perf")
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "bench: missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
fi

TICKS=$(getconf CLK_TCK)

# ---------------------------------------------------------------- cleanup

WORK=$(mktemp -d /tmp/pgpulse-bench.XXXXXX)
chmod 755 "$WORK"  # the server runs as OS user postgres when we are root
PG="$WORK/pg"
PIDS=()
PERF_PID=""

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  if [[ -n "$PERF_PID" ]]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
  fi
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  bash "$PGSERVER" destroy "$PG" >/dev/null 2>&1 || true
  if [[ -n "$KEEP" && -d "$WORK/results" ]]; then
    mkdir -p "$KEEP"
    cp -r "$WORK/results/." "$KEEP/" || true
    echo "bench: raw results kept in $KEEP" >&2
  fi
  rm -rf -- "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RES="$WORK/results"
mkdir -p "$RES"

# ---------------------------------------------------------------- helpers

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

declare -A TAKEN_PORTS=()
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    [[ -z "${TAKEN_PORTS[$p]:-}" ]] || continue
    if ! port_in_use "$p"; then
      TAKEN_PORTS[$p]=1
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

psql_pg() {
  bash "$PGSERVER" psql "$PG" "$@"
}

# utime+stime of one process, in ticks (fields 14 and 15 of /proc/PID/stat; comm may hold spaces).
cpu_ticks() {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# utime+stime of the backends serving one exporter (by application_name): "pid ticks" lines.
backend_ticks() {
  local pid
  for pid in $(psql_pg -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$1'"); do
    [[ -r /proc/$pid/stat ]] && echo "$pid $(cpu_ticks "$pid" 2>/dev/null || echo 0)"
  done
  return 0
}

# Reads every exporter backend's ticks into BACKEND_LAST (the last reading per backend, kept after it
# ends); with "baseline", also into BACKEND_FIRST. A backend first seen later counts from 0.
declare -A BACKEND_FIRST=() BACKEND_LAST=()
sample_backends() {
  local name pid ticks
  for name in pgpulse postgres_exporter; do
    while read -r pid ticks; do
      [[ -n "$pid" ]] || continue
      if [[ "${1:-}" == baseline ]]; then BACKEND_FIRST[$name:$pid]=$ticks; fi
      [[ -n "${BACKEND_FIRST[$name:$pid]:-}" ]] || BACKEND_FIRST[$name:$pid]=0
      BACKEND_LAST[$name:$pid]=$ticks
    done < <(backend_ticks "$name")
  done
}

# Ticks the backends of exporter $1 used since the baseline.
backend_total() {
  local key sum=0
  for key in "${!BACKEND_LAST[@]}"; do
    [[ "$key" == "$1:"* ]] || continue
    sum=$((sum + BACKEND_LAST[$key] - BACKEND_FIRST[$key]))
  done
  echo "$sum"
}

# Every PostgreSQL process: the postmaster with its reaped children (cutime, cstime) plus the live ones.
server_ticks() {
  local pm
  pm=$(head -n 1 "$PG/data/postmaster.pid")
  {
    sed 's/^.*) //' "/proc/$pm/stat"
    for pid in $(pgrep -P "$pm"); do
      sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null || true
    done
  } | awk 'NR == 1 { s += $14 + $15 } { s += $12 + $13 } END { print s }'
}

status_kib() {
  awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

# One scrape like Prometheus makes it; prints "seconds http_code". The body is kept in $3.
CURL_HEADERS=(-H 'X-Prometheus-Scrape-Timeout-Seconds: 10')
[[ "$GZIP" -eq 0 ]] || CURL_HEADERS+=(-H 'Accept-Encoding: gzip')
scrape() {
  curl -sS -o "$2" -w '%{time_total} %{http_code}\n' --max-time 120 "${CURL_HEADERS[@]}" "$1" 2>>"$RES/curl.err" ||
    echo "120 000"
}

samples_in() {
  gzip -cdf "$1" | grep -cv -e '^#' -e '^$' || true
}

# median, p90 and max of one column of numbers on stdin
stats() {
  sort -g | awk 'NF { v[++n] = $1 } END {
    if (n == 0) { print "nan nan nan"; exit }
    m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    i = int(0.9 * n + 0.999999); if (i < 1) i = 1; if (i > n) i = n
    print m, v[i], v[n] }'
}

calc() {
  awk "BEGIN { print $* }"
}

# A collection cut short by the scrape deadline goes on in pgpulse's worker; wait until it is
# done (and psql's own backend is gone), so its work is not counted in the next scrape's window.
wait_pgpulse_idle() {
  local active
  for _ in $(seq 120); do
    active=$(psql_pg -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpulse' AND state <> 'idle' AND pid <> pg_backend_pid()")
    [[ "$active" != 0 ]] || { sleep 0.3; return 0; }
    sleep 0.5
  done
  die "pgpulse's connections stayed busy for a minute"
}

wait_http() {
  local url="$1" pid="$2" name="$3"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || die "$name exited at start; its log: $(tail -n 20 "$RES/$name.log")"
    if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
    sleep 0.1
  done
  die "$name does not answer on $url"
}

wait_quiet() {
  local limit="$1" start quiet_since="" load now
  [[ "$limit" -gt 0 ]] || return 0
  start=$(date +%s)
  log "waiting up to ${limit}s for the load average to stay below 0.8 for 60 s"
  while :; do
    now=$(date +%s)
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" 'BEGIN { exit !(l < 0.8) }'; then
      quiet_since=${quiet_since:-$now}
      if [[ $((now - quiet_since)) -ge 60 ]]; then
        log "quiet (load $load) after $((now - start))s"
        return 0
      fi
    else
      quiet_since=""
    fi
    if [[ $((now - start)) -ge "$limit" ]]; then
      log "machine not quiet after ${limit}s (load $load); measuring anyway, the report says so"
      NOT_QUIET=1
      return 0
    fi
    sleep 5
  done
}
NOT_QUIET=0

# ---------------------------------------------------------------- PostgreSQL and data

PG_PORT=$(free_port)
PGPULSE_PORT=$(free_port)
EXPORTER_PORT=$(free_port)

log "starting PostgreSQL on 127.0.0.1:$PG_PORT in $PG"
# jsonlog (needs the logging collector) gives pgpulse's statements one line each, for the overhead.
PGPULSE_OWNER_PID=$$ bash "$PGSERVER" start "$PG" "$PG_PORT" \
  "pg_stat_statements.max = 10000" \
  "track_io_timing = on" \
  "logging_collector = on" \
  "log_destination = 'stderr,jsonlog'" \
  "log_directory = 'log'" \
  "log_filename = 'postgresql'" \
  "log_rotation_age = 0" \
  "log_rotation_size = 0" 2>"$RES/pgserver.err" || die "cannot start PostgreSQL: $(cat "$RES/pgserver.err")"
JSONLOG="$PG/data/log/postgresql.json"
# --auth scram: both exporters log in as bench_login with a password; psql here stays trusted.
DB_USER=postgres
DB_PASSWORD=""
if [[ "$AUTH" == scram ]]; then
  DB_USER=bench_login
  DB_PASSWORD=bench-Secret-4711
  psql_pg >/dev/null -c "SET password_encryption = 'scram-sha-256'" \
    -c "CREATE ROLE $DB_USER SUPERUSER LOGIN PASSWORD '$DB_PASSWORD'"
  hba="$PG/data/pg_hba.conf"
  { echo "host all $DB_USER 127.0.0.1/32 scram-sha-256"; cat "$hba"; } >"$hba.new" && cat "$hba.new" >"$hba" && rm -f "$hba.new"
  psql_pg >/dev/null -c "SELECT pg_reload_conf()"
fi

setup_start=$(date +%s)
log "creating database bench: $TABLES tables"
# Setup statements stay out of pg_stat_statements (track = none); each \gexec row is its own
# transaction, so no transaction holds thousands of locks.
psql_pg >/dev/null <<EOF
CREATE DATABASE bench;
\c bench
SET pg_stat_statements.track = 'none';
CREATE EXTENSION pg_stat_statements;
SELECT format('CREATE TABLE t%1\$s (id int PRIMARY KEY, a int NOT NULL, b text, c timestamptz DEFAULT now()); '
              'INSERT INTO t%1\$s (id, a, b) SELECT g, g %% 7, md5(g::text) FROM generate_series(1, 5) g; %2\$s',
              lpad(i::text, 5, '0'),
              CASE WHEN i % 3 = 0 THEN format('CREATE INDEX t%1\$s_a ON t%1\$s (a);', lpad(i::text, 5, '0')) END)
FROM generate_series(1, $TABLES) i
\gexec
VACUUM (ANALYZE);
EOF

log "creating $DATABASES more databases (10 tables each)"
for i in $(seq 1 "$DATABASES"); do
  db=$(printf 'db%02d' "$i")
  psql_pg -c "CREATE DATABASE $db" >/dev/null
  psql_pg -d "$db" >/dev/null <<EOF
SELECT format('CREATE TABLE t%1\$s (id int PRIMARY KEY, a int, b text); INSERT INTO t%1\$s SELECT g, g, g::text FROM generate_series(1, 5) g', i)
FROM generate_series(1, 10) i
\gexec
EOF
done

log "creating $STATEMENTS distinct pg_stat_statements entries"
# Constants are normalized away, so each entry differs in its table and, past one per table, in how
# many predicates it has.
psql_pg -d bench >/dev/null <<EOF
SELECT pg_stat_statements_reset();
SELECT format('SELECT count(*) FROM t%s WHERE a >= 0%s',
              lpad(((k % $TABLES) + 1)::text, 5, '0'),
              repeat(' AND id >= 0', k / $TABLES))
FROM generate_series(0, $STATEMENTS - 1) k
\gexec
CHECKPOINT;
EOF
PG_VERSION=$(psql_pg -At -c 'SHOW server_version')
PG_VERSION_FULL=$(psql_pg -At -c 'SELECT version()')
STATEMENT_ENTRIES=$(psql_pg -d bench -At -c 'SELECT count(*) FROM pg_stat_statements')
TABLES_SEEN=$(psql_pg -d bench -At -c 'SELECT count(*) FROM pg_stat_user_tables')
INDEXES_SEEN=$(psql_pg -d bench -At -c 'SELECT count(*) FROM pg_stat_user_indexes')
DATABASES_SEEN=$(psql_pg -At -c 'SELECT count(*) FROM pg_database WHERE datallowconn AND NOT datistemplate')
SETUP_SECONDS=$(($(date +%s) - setup_start))
log "data ready in ${SETUP_SECONDS}s: $TABLES_SEEN tables, $INDEXES_SEEN indexes, $STATEMENT_ENTRIES statement entries, $DATABASES_SEEN databases"

# ---------------------------------------------------------------- raw-SQL floor
# Each per-table collector's SQL as pgpulse runs it (pgpulse sql NAME, $1 = 100000: every row) against
# the cheapest query that returns the same rows from the same views, both timed in one psql session
# (\timing, output discarded), median of --sql-floor runs after one warm-up run. What each floor leaves
# out is what the collector's extra time buys.
floor_sql() {
  case "$1" in
    table_stats) echo "SELECT * FROM pg_stat_user_tables s JOIN pg_statio_user_tables io USING (relid)" ;;
    index_stats) echo "SELECT * FROM pg_stat_user_indexes s JOIN pg_statio_user_indexes io USING (indexrelid)" ;;
    table_size) echo "SELECT c.oid, pg_relation_size(c.oid, 'main'), pg_relation_size(c.oid, 'fsm'), pg_relation_size(c.oid, 'vm'), pg_total_relation_size(nullif(c.reltoastrelid, 0)), pg_indexes_size(c.oid) FROM pg_class c WHERE c.relkind IN ('r', 'm', 'p') AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)" ;;
    index_size) echo "SELECT indexrelid, pg_relation_size(indexrelid) FROM pg_stat_user_indexes" ;;
    table_bloat) echo "SELECT c.oid, c.relpages, c.reltuples, s.attname, s.avg_width, s.null_frac FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')" ;;
    autovacuum_thresholds) echo "SELECT s.relid, s.n_dead_tup, s.n_ins_since_vacuum, s.n_mod_since_analyze, s.last_autovacuum, c.reltuples, c.reloptions FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid" ;;
    statements) echo "SELECT * FROM pg_stat_statements(false)" ;;
    pe_stat_user_tables) echo "SELECT * FROM pg_stat_user_tables" ;;
  esac
}
floor_note() {
  case "$1" in
    table_stats) echo "pgpulse: the top-N ordering from pg_class and a LATERAL scan per table" ;;
    index_stats) echo "pgpulse: the top-N ordering and a LATERAL scan per index" ;;
    table_size) echo "pgpulse: the lock check that skips tables under ACCESS EXCLUSIVE, the order" ;;
    index_size) echo "pgpulse: the lock check and the ordering" ;;
    table_bloat) echo "pgpulse: the estimate itself (widths, headers, alignment per table)" ;;
    autovacuum_thresholds) echo "pgpulse: parsing reloptions and the server's settings into thresholds" ;;
    statements) echo "pgpulse: the database and role names, the ordering" ;;
    pe_stat_user_tables) echo "postgres_exporter 0.20's query (the profile's): pg_table_size and pg_indexes_size of every table" ;;
  esac
}
# Median "Time: X ms" of running $2 (SQL) $SQL_FLOOR times in database $1, after one warm-up run.
time_sql() {
  {
    echo '\o /dev/null'
    printf '%s;\n' "$2"
    echo '\timing on'
    for _ in $(seq 1 "$SQL_FLOOR"); do printf '%s;\n' "$2"; done
  } | psql_pg -d "$1" 2>&1 | awk '/^Time: / { print $2 }' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else printf "%.1f", v[int((NR + 1) / 2)] }'
}
FLOOR_ROWS=()
if [[ "$SQL_FLOOR" -gt 0 ]]; then
  log "raw-SQL floor: $SQL_FLOOR runs of each per-table collector's SQL and its floor"
  server_version_num=$(psql_pg -At -c 'SHOW server_version_num')
  for c in table_stats index_stats table_size index_size table_bloat autovacuum_thresholds statements pe_stat_user_tables; do
    ours=$("$PGPULSE_BIN" sql "$c" --server-version "$server_version_num") || die "pgpulse sql $c failed"
    ours=${ours//\$1/100000}
    ours=$(printf '%s' "$ours" | sed -e 's/;[[:space:]]*$//')
    floor=$(floor_sql "$c")
    rows=$(printf 'SELECT count(*) FROM (%s) q' "$ours" | psql_pg -d bench -At)
    floor_rows=$(printf 'SELECT count(*) FROM (%s) q' "$floor" | psql_pg -d bench -At)
    t_ours=$(time_sql bench "$ours")
    t_floor=$(time_sql bench "$floor")
    FLOOR_ROWS+=("| \`$c\` | $rows | $floor_rows | $t_ours ms | $t_floor ms | $(awk -v a="$t_ours" -v b="$t_floor" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }') | $(floor_note "$c") |")
    log "floor: $c $t_ours ms against $t_floor ms"
  done
fi

# ---------------------------------------------------------------- the two exporters

cat >"$RES/pgpulse.yml" <<EOF
metrics_profile: $PGPULSE_PROFILE
targets:
  - name: bench
    dsn: host=127.0.0.1 port=$PG_PORT user=$DB_USER dbname=bench${DB_PASSWORD:+ password=$DB_PASSWORD}
EOF
if [[ "$DISCOVER" -eq 1 ]]; then
  {
    echo "    databases:"
    echo "      discover: true"
    [[ -z "$MAX_CONNECTIONS" ]] || echo "      max_connections: $MAX_CONNECTIONS"
  } >>"$RES/pgpulse.yml"
fi
if [[ -n "$PGPULSE_QUERIES" || "$EQUAL_WORK" -eq 1 ]]; then echo "collectors:" >>"$RES/pgpulse.yml"; fi
if [[ -n "$PGPULSE_QUERIES" ]]; then
  printf '  directories: [%s]\n' "$PGPULSE_QUERIES" >>"$RES/pgpulse.yml"
  cp -r "$PGPULSE_QUERIES" "$RES/pgpulse-queries"
fi
if [[ "$EQUAL_WORK" -eq 1 ]]; then
  # postgres_exporter exports every table and index of every database: so does pgpulse here.
  echo "  overrides:" >>"$RES/pgpulse.yml"
  for c in table_stats table_size index_stats index_size statements statements_query autovacuum_thresholds; do
    echo "    $c: {max_rows: 100000, max_series: 1000000}" >>"$RES/pgpulse.yml"
  done
fi

EXPORTER_QUERIES_FILE="$RES/postgres_exporter-queries.yaml"
EXPORTER_QUERIES_NOTE=""
case "$EXPORTER_QUERIES" in
  shipped)
    cp "$SHIPPED_QUERIES" "$EXPORTER_QUERIES_FILE"
    EXPORTER_QUERIES_NOTE="Debian's example queries.yaml as shipped"
    ;;
  pg13)
    sed -E 's/\b(total|min|max|mean|stddev)_time \//\1_exec_time \//g' "$SHIPPED_QUERIES" >"$EXPORTER_QUERIES_FILE"
    EXPORTER_QUERIES_NOTE="Debian's example queries.yaml with pg_stat_statements' *_time columns renamed *_exec_time (PostgreSQL 13+)"
    ;;
  *)
    cp "$EXPORTER_QUERIES" "$EXPORTER_QUERIES_FILE"
    EXPORTER_QUERIES_NOTE="$EXPORTER_QUERIES"
    ;;
esac
EXPORTER_ARGS=(--web.listen-address="127.0.0.1:$EXPORTER_PORT" --extend.query-path="$EXPORTER_QUERIES_FILE" --log.level=info)
if [[ "$DISCOVER" -eq 1 ]]; then
  EXPORTER_ARGS+=(--auto-discover-databases)
  # pg_process_idle has no datname label, so running it in every database yields duplicate series and
  # every scrape fails with HTTP 500; run it once, as pgpulse's server-scoped collectors do.
  if grep -q '^pg_process_idle:' "$EXPORTER_QUERIES_FILE"; then
    sed -i '/^pg_process_idle:/a\  master: true' "$EXPORTER_QUERIES_FILE"
    EXPORTER_QUERIES_NOTE="$EXPORTER_QUERIES_NOTE; pg_process_idle marked master: true (else duplicate series, HTTP 500, with discovery)"
  fi
fi

PGPULSE_URL="http://127.0.0.1:$PGPULSE_PORT/metrics"
EXPORTER_URL="http://127.0.0.1:$EXPORTER_PORT/metrics"

# With postgres_exporter's names pgpulse loads the same custom queries file, so both do the same work.
PGPULSE_EXTRA=()
[[ "$PGPULSE_PROFILE" == pgpulse ]] || PGPULSE_EXTRA+=(--extend.query-path="$EXPORTER_QUERIES_FILE")
start_pgpulse() {
  "$PGPULSE_BIN" --config.file="$RES/pgpulse.yml" --web.listen-address="127.0.0.1:$PGPULSE_PORT" --log.level=info \
    "${PGPULSE_EXTRA[@]}" </dev/null >>"$RES/pgpulse.log" 2>&1 &
  PGPULSE_PID=$!
  PIDS+=("$PGPULSE_PID")
}
start_exporter() {
  DATA_SOURCE_NAME="postgresql://$DB_USER${DB_PASSWORD:+:$DB_PASSWORD}@127.0.0.1:$PG_PORT/bench?sslmode=disable&application_name=postgres_exporter" \
    "$EXPORTER_BIN" "${EXPORTER_ARGS[@]}" </dev/null >>"$RES/postgres_exporter.log" 2>&1 &
  EXPORTER_PID=$!
  PIDS+=("$EXPORTER_PID")
}
wait_both() {
  wait_http "http://127.0.0.1:$PGPULSE_PORT/healthz" "$PGPULSE_PID" pgpulse
  wait_http "http://127.0.0.1:$EXPORTER_PORT/" "$EXPORTER_PID" postgres_exporter
}
stop_pid() {
  local keep=() pid
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do [[ "$pid" == "$1" ]] || keep+=("$pid"); done
  PIDS=("${keep[@]}")
}

# --cold-starts: a first scrape is one sample, and whichever exporter goes first warms the server for
# the other; so both are started N times more, the first scrape of each taken in turns (pgpulse first in
# odd starts, postgres_exporter in even ones), and both stopped again. Their backends end with them.
COLD_PGPULSE=()
COLD_EXPORTER=()
if [[ "$COLD_STARTS" -gt 0 ]]; then
  log "first scrapes after $COLD_STARTS starts of both, taking turns at going first"
  for start in $(seq 1 "$COLD_STARTS"); do
    start_pgpulse
    start_exporter
    wait_both
    if ((start % 2 == 1)); then
      read -r p _ < <(scrape "$PGPULSE_URL" /dev/null)
      read -r e _ < <(scrape "$EXPORTER_URL" /dev/null)
    else
      read -r e _ < <(scrape "$EXPORTER_URL" /dev/null)
      read -r p _ < <(scrape "$PGPULSE_URL" /dev/null)
    fi
    COLD_PGPULSE+=("$p")
    COLD_EXPORTER+=("$e")
    echo "$start,$p,$e" >>"$RES/cold-starts.csv"
    stop_pid "$PGPULSE_PID"
    stop_pid "$EXPORTER_PID"
    # The backends of both have ended before the next start.
    for _ in $(seq 100); do
      [[ "$(psql_pg -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('pgpulse', 'postgres_exporter')")" == 0 ]] && break
      sleep 0.1
    done
  done
fi

log "starting pgpulse ($PGPULSE_BIN) on 127.0.0.1:$PGPULSE_PORT and postgres_exporter ($EXPORTER_BIN) on 127.0.0.1:$EXPORTER_PORT"
start_pgpulse
start_exporter
wait_both
PGPULSE_VERSION=$("$PGPULSE_BIN" --version 2>&1 | head -n 1)
EXPORTER_VERSION=$("$EXPORTER_BIN" --version 2>&1 | head -n 1)
PGPULSE_BUILD=unknown
if [[ -f "$(dirname "$PGPULSE_BIN")/CMakeCache.txt" ]]; then
  PGPULSE_BUILD=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$(dirname "$PGPULSE_BIN")/CMakeCache.txt")
  PGPULSE_BUILD=${PGPULSE_BUILD:-none}
fi

# First scrapes connect, discover and fill pgpulse's ttl caches; they are reported, not measured.
read -r PGPULSE_COLD _ < <(scrape "$PGPULSE_URL" "$RES/pgpulse-cold.body")
read -r EXPORTER_COLD _ < <(scrape "$EXPORTER_URL" "$RES/postgres_exporter-cold.body")
scrape "$PGPULSE_URL" /dev/null >/dev/null
scrape "$EXPORTER_URL" /dev/null >/dev/null

wait_quiet "$WAIT_QUIET"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- alternating comparison

declare -A CPU_TOTAL=() DB_TICKS=() HWM=() SAMPLES=() LAT=() FAILED=() DOWN=() LOG_FROM=() LOG_TO=()
NAMES=(pgpulse postgres_exporter)
declare -A URL=([pgpulse]="$PGPULSE_URL" [postgres_exporter]="$EXPORTER_URL")
declare -A PID=([pgpulse]="$PGPULSE_PID" [postgres_exporter]="$EXPORTER_PID")

if [[ "$SCRAPES" -gt 0 ]]; then
  log "alternating $SCRAPES scrapes of each"
  echo "round,exporter,seconds,http_code,server_ticks" >"$RES/scrapes.csv"
  declare -A cpu0=()
  for name in "${NAMES[@]}"; do
    cpu0[$name]=$(cpu_ticks "${PID[$name]}")
    DB_TICKS[$name]=0
    FAILED[$name]=0
    DOWN[$name]=0
  done
  for name in "${NAMES[@]}"; do LOG_FROM[$name]=$(wc -l <"$RES/$name.log"); done
  compare_start=$(date +%s.%N)
  BACKEND_FIRST=()
  BACKEND_LAST=()
  sample_backends baseline
  for round in $(seq 1 "$SCRAPES"); do
    round_start=$(date +%s.%N)
    for name in "${NAMES[@]}"; do
      db0=$(server_ticks)
      read -r seconds code < <(scrape "${URL[$name]}" "$RES/$name.body")
      db1=$(server_ticks)
      DB_TICKS[$name]=$((DB_TICKS[$name] + db1 - db0))
      [[ "$code" == 200 ]] || FAILED[$name]=$((FAILED[$name] + 1))
      # pg_up 0: answered without the server's data (pgpulse: the scrape deadline passed)
      if [[ "$code" == 200 ]] && gzip -cdf "$RES/$name.body" | grep -q '^pg_up 0'; then
        DOWN[$name]=$((DOWN[$name] + 1))
        if [[ "$name" == pgpulse ]]; then wait_pgpulse_idle; fi
      fi
      echo "$round,$name,$seconds,$code,$((db1 - db0))" >>"$RES/scrapes.csv"
    done
    sample_backends
    if [[ "$INTERVAL" -gt 0 && "$round" -lt "$SCRAPES" ]]; then
      # pgpulse refreshes expired results in the background between scrapes: the next round
      # starts INTERVAL after this one did.
      left=$(calc "$INTERVAL - ($(date +%s.%N) - $round_start)")
      if awk -v l="$left" 'BEGIN { exit !(l > 0) }'; then sleep "$left"; fi
    fi
    if ((round % 10 == 0)); then log "round $round/$SCRAPES"; fi
  done
  # A background refresh started by the last scrape is part of the work: wait for it.
  wait_pgpulse_idle
  sample_backends
  COMPARE_SECONDS=$(calc "$(date +%s.%N) - $compare_start")
  declare -A BACKEND_TICKS=()
  for name in "${NAMES[@]}"; do BACKEND_TICKS[$name]=$(backend_total "$name"); done
  for name in "${NAMES[@]}"; do LOG_TO[$name]=$(wc -l <"$RES/$name.log"); done
  for name in "${NAMES[@]}"; do
    CPU_TOTAL[$name]=$(($(cpu_ticks "${PID[$name]}") - cpu0[$name]))
    HWM[$name]=$(status_kib "${PID[$name]}" VmHWM)
    SAMPLES[$name]=$(samples_in "$RES/$name.body")
    LAT[$name]=$(awk -F, -v n="$name" '$2 == n { print $3 }' "$RES/scrapes.csv" | stats)
  done
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# Collector problems during the comparison, from each exporter's log, counted by collector and error.
log_window() {
  awk -v a="${LOG_FROM[$1]}" -v b="${LOG_TO[$1]}" 'NR > a && NR <= b' "$RES/$1.log"
}
count_list() {
  sort | uniq -c | sort -rn | awk '{ n = $1; sub(/^ *[0-9]+ /, ""); printf "%s%s (x%d)", sep, $0, n; sep = "; " }'
}
PGPULSE_PROBLEMS=""
EXPORTER_ERRORS=""
if [[ "$SCRAPES" -gt 0 ]]; then
  PGPULSE_PROBLEMS=$(log_window pgpulse | { grep 'level=warn' || true; } |
    sed -E -n -e 's/.*msg="collector failed".* collector=([a-z_0-9]+).* error="([^:(]*[^:( ]).*/\1: \2/p' \
               -e 's/.*msg="scrape deadline exceeded".*/scrape deadline exceeded (pg_up 0)/p' |
    sed -E 's/timed out after [0-9a-z.]+/timed out/' | count_list)
  EXPORTER_ERRORS=$(log_window postgres_exporter |
    sed -n 's/.*err="Error running query on database \\"[^\\]*\\": \([a-z_]*\) \(.*\)"$/\1: \2/p' |
    sed 's/\\"/"/g' | count_list)
fi

# ---------------------------------------------------------------- overhead over raw SQL

# Each scrape of pgpulse is matched with the statements the server logged for it
# (application_name=pgpulse), which are then run again through one psql session with \timing:
# a first pass warms that session's caches, the second is the raw SQL time. Transaction control
# (BEGIN READ ONLY; SET LOCAL ..., COMMIT) is pgpulse's own and counts as overhead.
# log_statement = 'all' logs one line per statement on both sides (log_min_duration_statement
# would log parse, bind and execute of pgpulse's extended-protocol queries as three lines but
# psql's simple queries as one, slowing pgpulse's scrape more than the replay).
OVERHEADS=()
if [[ "$OVERHEAD_SCRAPES" -gt 0 ]]; then
  log "overhead: $OVERHEAD_SCRAPES pgpulse scrapes with every statement logged, replayed through psql"
  psql_pg -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 1
  scrape "$PGPULSE_URL" /dev/null >/dev/null  # every pgpulse backend has read the new setting
  echo "scrape,latency_s,raw_sql_s,statements,overhead" >"$RES/overhead.csv"
  OVERHEAD_SKIPPED=0
  for j in $(seq 1 "$OVERHEAD_SCRAPES"); do
    wait_pgpulse_idle
    offset=$(stat -c %s "$JSONLOG")
    read -r seconds code < <(scrape "$PGPULSE_URL" "$RES/overhead.body")
    [[ "$code" == 200 ]] || die "pgpulse answered HTTP $code during the overhead measurement"
    if gzip -cdf "$RES/overhead.body" | grep -q '^pg_up 0'; then
      # The deadline passed: the statements logged now are not this scrape's.
      OVERHEAD_SKIPPED=$((OVERHEAD_SKIPPED + 1))
      echo "$j,$seconds,,,deadline exceeded" >>"$RES/overhead.csv"
      continue
    fi
    sleep 1  # the logging collector writes asynchronously
    tail -c +"$((offset + 1))" "$JSONLOG" | jq -c 'select(.application_name == "pgpulse")' >"$RES/overhead-$j.jsonl"
    if jq -r 'select(.error_severity == "ERROR") | "failed"' "$RES/overhead-$j.jsonl" | grep -q failed; then
      # A statement failed (a collector's timeout cancelled it): its time is SQL time the replay cannot repeat.
      OVERHEAD_SKIPPED=$((OVERHEAD_SKIPPED + 1))
      echo "$j,$seconds,,,statement failed: $(jq -r 'select(.error_severity == "ERROR") | .message' "$RES/overhead-$j.jsonl" | head -n 1)" >>"$RES/overhead.csv"
      continue
    fi
    session_db=bench
    last_db=$(jq -r 'select(.message | test("^execute [^:]*: ")) | .dbname' "$RES/overhead-$j.jsonl" | tail -n 1)
    last_db=${last_db:-bench}
    {
      echo '\set ON_ERROR_STOP 1'
      echo '\o /dev/null'
      for pass in 1 2; do
        echo "\\echo PASS $pass"
        echo '\timing on'
        # \c only where the database changes, so pass 2 runs in the session pass 1 warmed.
        jq -rn --arg db "$session_db" '
          foreach (inputs | select(.message | test("^execute [^:]*: "))) as $e
            ({db: $db, out: ""};
             .out = (if .db != $e.dbname then "\\timing off\n\\c \($e.dbname)\n\\timing on\n" else "" end)
                    + (reduce (($e.detail // "") | scan("\\$([0-9]+) = \u0027([^\u0027]*)\u0027")) as $p
                         ($e.message | sub("^execute [^:]*: "; "");
                          gsub("\\$\($p[0])(?![0-9])"; $p[1]))) + ";"
             | .db = $e.dbname;
             .out)' "$RES/overhead-$j.jsonl"
        echo '\timing off'
        session_db=$last_db
      done
    } >"$RES/overhead-$j.sql"
    statements=$(jq -r 'select(.message | test("^execute [^:]*: ")) | 1' "$RES/overhead-$j.jsonl" | wc -l)
    raw_ms=$(psql_pg -d bench -f "$RES/overhead-$j.sql" 2>"$RES/overhead-$j.err" |
      awk '/^PASS 2/ { on = 1 } on && /^Time: / { s += $2 } END { printf "%.3f", s }')
    [[ -s "$RES/overhead-$j.err" ]] && die "replaying pgpulse's SQL failed: $(head -n 5 "$RES/overhead-$j.err")"
    overhead=$(calc "($seconds - $raw_ms / 1000) / ($raw_ms / 1000)")
    OVERHEADS+=("$overhead")
    echo "$j,$seconds,$(calc "$raw_ms / 1000"),$statements,$overhead" >>"$RES/overhead.csv"
  done
  psql_pg -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null
  OVERHEAD_STATS=$(printf '%s\n' "${OVERHEADS[@]}" | stats)
  RAW_STATS=$(awk -F, 'NR > 1 && $3 != "" { print $3 }' "$RES/overhead.csv" | stats)
  OVERHEAD_LAT_STATS=$(awk -F, 'NR > 1 && $3 != "" { print $2 }' "$RES/overhead.csv" | stats)
  OVERHEAD_STATEMENTS=$(awk -F, 'NR > 1 && $3 != "" { print $4 }' "$RES/overhead.csv" | stats)
fi

# ---------------------------------------------------------------- profile

if [[ "$PERF" -eq 1 ]]; then
  log "perf: recording pgpulse over 20 scrapes"
  perf record -F 999 -g -p "$PGPULSE_PID" -o "$RES/perf.data" >"$RES/perf-record.log" 2>&1 &
  PERF_PID=$!
  sleep 1
  for _ in $(seq 20); do scrape "$PGPULSE_URL" /dev/null >/dev/null; done
  kill -INT "$PERF_PID"
  wait "$PERF_PID" || true
  PERF_PID=""
  perf report -i "$RES/perf.data" --stdio --no-children --percent-limit 1 >"$RES/perf-report.txt" 2>/dev/null || true
  perf report -i "$RES/perf.data" --stdio --no-children --sort dso --percent-limit 0.5 -g none >"$RES/perf-dso.txt" 2>/dev/null || true
fi

# ---------------------------------------------------------------- soak

SOAK_RSS=()
if [[ "$SOAK" -gt 0 ]]; then
  log "soak: $SOAK scrapes of pgpulse, RSS every 100"
  echo "scrape,rss_kib,hwm_kib,seconds" >"$RES/soak.csv"
  SOAK_FAILED=0
  soak_start=$(date +%s)
  for i in $(seq 1 "$SOAK"); do
    read -r seconds code < <(scrape "$PGPULSE_URL" /dev/null)
    [[ "$code" == 200 ]] || SOAK_FAILED=$((SOAK_FAILED + 1))
    if ((i % 100 == 0 || i == SOAK)); then
      # curl returns once the body is in; pgpulse frees the body and trims right after sending it.
      # Read RSS once that is done, not while this scrape's megabyte of text may still be held.
      sleep 0.3
      rss=$(status_kib "$PGPULSE_PID" VmRSS)
      echo "$i,$rss,$(status_kib "$PGPULSE_PID" VmHWM),$seconds" >>"$RES/soak.csv"
      SOAK_RSS+=("$i:$rss")
      if ((i % 500 == 0)); then log "soak $i/$SOAK rss=${rss}KiB"; fi
    fi
  done
  SOAK_SECONDS=$(($(date +%s) - soak_start))
fi

# pgpulse's own view of where a scrape's time goes (one more collection, after the measurements).
"$PGPULSE_BIN" check --connect --config.file="$RES/pgpulse.yml" >"$RES/pgpulse-check.txt" 2>&1 || true

# ---------------------------------------------------------------- report

ms() { awk -v v="$1" 'BEGIN { printf "%.1f ms", v * 1000 }'; }
mib() { awk -v v="$1" 'BEGIN { printf "%.1f MiB", v / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
verdict() { awk -v a="$1" -v b="$2" -v g="$3" 'BEGIN { if (b == 0) print "n/a"; else print (a / b <= g) ? "met" : "missed" }'; }

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
  echo "## pgpulse vs postgres_exporter"
  echo
  echo "Machine: $(nproc) CPUs ($CPU_MODEL), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r); PostgreSQL $PG_VERSION."
  echo "pgpulse: $PGPULSE_VERSION ($PGPULSE_BIN, CMake build type $PGPULSE_BUILD). postgres_exporter: $EXPORTER_VERSION."
  echo "Data: database bench with $TABLES_SEEN tables, $INDEXES_SEEN indexes, $STATEMENT_ENTRIES pg_stat_statements entries; $DATABASES_SEEN databases in all."
  if [[ "$DISCOVER" -eq 1 ]]; then
    echo "Both exporters discover every database (pgpulse databases.discover with max_connections ${MAX_CONNECTIONS:-4 (default)}; postgres_exporter --auto-discover-databases)."
  else
    echo "Both exporters connect to bench only (no discovery): per-table collectors see the big database, the others appear in the server-wide views."
  fi
  echo "pgpulse: metrics_profile $PGPULSE_PROFILE$([[ $EQUAL_WORK -eq 1 ]] && echo "; every row of its per-table, per-index, statement and autovacuum-threshold collectors (max_rows 100000)")."
  echo "postgres_exporter: default collectors and --extend.query-path with $EXPORTER_QUERIES_NOTE."
  [[ "$AUTH" == scram ]] && echo "Both log in as a superuser role with a SCRAM-SHA-256 password (--auth scram): every new connection pays the password exchange."
  echo "Scrapes as Prometheus makes them (X-Prometheus-Scrape-Timeout-Seconds: 10$([[ $GZIP -eq 1 ]] && echo ', Accept-Encoding: gzip')), one at a time, alternating."
  echo
  if [[ "$SCRAPES" -gt 0 ]]; then
    read -r pl_med pl_p90 pl_max <<<"${LAT[pgpulse]}"
    read -r el_med el_p90 el_max <<<"${LAT[postgres_exporter]}"
    p_cpu=$(calc "${CPU_TOTAL[pgpulse]} / $TICKS / $SCRAPES")
    e_cpu=$(calc "${CPU_TOTAL[postgres_exporter]} / $TICKS / $SCRAPES")
    p_db=$(calc "${DB_TICKS[pgpulse]} / $TICKS / $SCRAPES")
    e_db=$(calc "${DB_TICKS[postgres_exporter]} / $TICKS / $SCRAPES")
    echo "$SCRAPES scrapes of each, alternating$([[ $INTERVAL -gt 0 ]] && echo ", a round every $INTERVAL s"), after 2 warm-up scrapes each (took ${COMPARE_SECONDS%.*} s; load average before $LOAD_BEFORE, after $LOAD_AFTER)."
    echo
    echo "| per scrape | pgpulse | postgres_exporter | pgpulse / postgres_exporter | goal | |"
    echo "| --- | ---: | ---: | ---: | --- | --- |"
    echo "| latency, median | $(ms "$pl_med") | $(ms "$el_med") | $(ratio "$pl_med" "$el_med") | <= 0.25x | $(verdict "$pl_med" "$el_med" 0.25) |"
    echo "| latency, p90 / max | $(ms "$pl_p90") / $(ms "$pl_max") | $(ms "$el_p90") / $(ms "$el_max") | $(ratio "$pl_p90" "$el_p90") / $(ratio "$pl_max" "$el_max") | <= 0.5x | $(verdict "$pl_p90" "$el_p90" 0.5) / $(verdict "$pl_max" "$el_max" 0.5) |"
    echo "| latency, first scrape (cold) | $(ms "$PGPULSE_COLD") | $(ms "$EXPORTER_COLD") | $(ratio "$PGPULSE_COLD" "$EXPORTER_COLD") | <= 1.0x | $(verdict "$PGPULSE_COLD" "$EXPORTER_COLD" 1.0) |"
    if [[ "$COLD_STARTS" -gt 0 ]]; then
      read -r pc_med _ pc_max < <(printf '%s\n' "${COLD_PGPULSE[@]}" | stats)
      read -r ec_med _ ec_max < <(printf '%s\n' "${COLD_EXPORTER[@]}" | stats)
      echo "| latency, first scrape, median of $COLD_STARTS more starts (max) | $(ms "$pc_med") ($(ms "$pc_max")) | $(ms "$ec_med") ($(ms "$ec_max")) | $(ratio "$pc_med" "$ec_med") ($(ratio "$pc_max" "$ec_max")) | <= 1.0x | $(verdict "$pc_med" "$ec_med" 1.0) |"
    fi
    echo "| CPU of the exporter process (user+sys) | $(ms "$p_cpu") | $(ms "$e_cpu") | $(ratio "$p_cpu" "$e_cpu") | <= 0.25x | $(verdict "$p_cpu" "$e_cpu" 0.25) |"
    echo "| CPU of PostgreSQL (all its processes, in the scrape's window) | $(ms "$p_db") | $(ms "$e_db") | $(ratio "$p_db" "$e_db") | | |"
    p_bm=$(calc "${BACKEND_TICKS[pgpulse]} / $TICKS / ($COMPARE_SECONDS / 60)")
    e_bm=$(calc "${BACKEND_TICKS[postgres_exporter]} / $TICKS / ($COMPARE_SECONDS / 60)")
    echo "| CPU of the exporter's PostgreSQL backends, per minute of scraping | $(ms "$p_bm") | $(ms "$e_bm") | $(ratio "$p_bm" "$e_bm") | <= 0.5x | $(verdict "$p_bm" "$e_bm" 0.5) |"
    echo "| peak RSS (VmHWM) | $(mib "${HWM[pgpulse]}") | $(mib "${HWM[postgres_exporter]}") | $(ratio "${HWM[pgpulse]}" "${HWM[postgres_exporter]}") | <= 0.33x | $(verdict "${HWM[pgpulse]}" "${HWM[postgres_exporter]}" 0.33) |"
    echo "| samples served | ${SAMPLES[pgpulse]} | ${SAMPLES[postgres_exporter]} | $(ratio "${SAMPLES[pgpulse]}" "${SAMPLES[postgres_exporter]}") | | |"
    echo "| failed scrapes (HTTP != 200) | ${FAILED[pgpulse]} | ${FAILED[postgres_exporter]} | | | |"
    echo "| scrapes with pg_up 0 | ${DOWN[pgpulse]} | ${DOWN[postgres_exporter]} | | | |"
    if [[ "$OVERHEAD_SCRAPES" -gt 0 && ${#OVERHEADS[@]} -eq 0 ]]; then
      echo "| overhead over raw SQL | n/a: no scrape without a deadline or a failed statement | | | <= 15% | missed |"
    elif [[ "$OVERHEAD_SCRAPES" -gt 0 ]]; then
      read -r o_med _ o_max <<<"$OVERHEAD_STATS"
      read -r r_med _ _ <<<"$RAW_STATS"
      read -r ol_med _ _ <<<"$OVERHEAD_LAT_STATS"
      echo "| overhead over raw SQL, median of $((OVERHEAD_SCRAPES - OVERHEAD_SKIPPED)) | $(awk -v o="$o_med" 'BEGIN { printf "%.1f%%", o * 100 }') | | | <= 15% | $(awk -v o="$o_med" 'BEGIN { print (o <= 0.15) ? "met" : "missed" }') |"
    fi
    if [[ "$SOAK" -gt 0 && ${#SOAK_RSS[@]} -ge 2 ]]; then
      first=${SOAK_RSS[0]#*:}
      last=${SOAK_RSS[-1]#*:}
      growth=$(calc "($last - $first) * 100 / $first")
      echo "| RSS growth, scrape 100 to $SOAK (soak) | $(awk -v g="$growth" 'BEGIN { printf "%+.1f%%", g }') | | | < 5% | $(awk -v g="$growth" 'BEGIN { print (g < 5) ? "met" : "missed" }') |"
    fi
    echo
    if [[ "${DOWN[pgpulse]}" -gt 0 ]]; then
      echo "${DOWN[pgpulse]} pgpulse scrapes passed the scrape deadline (10 s - 0.5 s offset) and answered pg_up 0:"
      echo "their latency is the deadline, not the time the collection needed; the script waited for that"
      echo "collection to end before the next scrape."
      echo
    fi
    echo "CPU per scrape is the process's utime+stime over the whole alternating run divided by $SCRAPES"
    echo "(ticks of 1/$TICKS s); PostgreSQL's is summed over each scrape's window, postmaster and every backend."
  fi
  if [[ "$OVERHEAD_SCRAPES" -gt 0 && ${#OVERHEADS[@]} -gt 0 ]]; then
    read -r o_med _ o_max <<<"$OVERHEAD_STATS"
    read -r r_med _ _ <<<"$RAW_STATS"
    read -r ol_med _ _ <<<"$OVERHEAD_LAT_STATS"
    read -r st_med _ _ <<<"$OVERHEAD_STATEMENTS"
    echo
    echo "Overhead: $OVERHEAD_SCRAPES scrapes of pgpulse with log_statement = 'all'; median scrape"
    echo "$(ms "$ol_med"), the same $st_med statements (pgpulse's transaction control left out) through one psql"
    echo "session $(ms "$r_med"); overhead"
    echo "= (scrape - raw) / raw, median $(awk -v o="$o_med" 'BEGIN { printf "%.1f%%", o * 100 }'), worst $(awk -v o="$o_max" 'BEGIN { printf "%.1f%%", o * 100 }')."
    if [[ "$OVERHEAD_SKIPPED" -gt 0 ]]; then
      echo "$OVERHEAD_SKIPPED of the $OVERHEAD_SCRAPES scrapes are left out: they passed the scrape deadline (pg_up 0) or"
      echo "one of their statements failed (see overhead.csv)."
    fi
  fi
  if [[ "$SOAK" -gt 0 ]]; then
    echo
    echo "Soak: $SOAK scrapes of pgpulse in ${SOAK_SECONDS}s ($SOAK_FAILED failed); VmRSS in KiB at scrape:"
    echo "$(printf '%s ' "${SOAK_RSS[@]}")"
  fi
  echo
  if [[ "$SCRAPES" -gt 0 ]]; then
    echo "pgpulse problems during the comparison (its log): ${PGPULSE_PROBLEMS:-none}."
    echo
    echo "postgres_exporter query errors during the comparison (its log): ${EXPORTER_ERRORS:-none}."
  fi
  echo
  echo "Slowest pgpulse collectors (pgpulse check --connect, after the run):"
  echo
  echo '```'
  awk '/^COLLECTOR/ { on = 1; next }
       on { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9.]+(us|ms|s)$/) {
              v = $i + 0; if ($i ~ /ms$/) v /= 1e3; else if ($i ~ /us$/) v /= 1e6
              print v "\t" $0; break } }' "$RES/pgpulse-check.txt" |
    sort -gr | awk 'NR <= 10' | cut -f2-
  echo '```'
  echo
  if [[ ${#FLOOR_ROWS[@]} -gt 0 ]]; then
    echo "Raw-SQL floor: each per-table collector's SQL with every row (\$1 = 100000) against the cheapest query"
    echo "returning the same rows from the same views, median of $SQL_FLOOR runs in one psql session (database bench):"
    echo
    echo "| collector | rows | floor rows | pgpulse's SQL | floor | ratio | what the difference buys |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${FLOOR_ROWS[@]}"
    echo
  fi
  echo "Command: \`$COMMAND_LINE\` (setup ${SETUP_SECONDS}s)."
} | tee "$RES/report.md"
if [[ "$NOT_QUIET" -eq 1 ]]; then
  echo >&2
  echo "bench: WARNING: the machine was not quiet when measuring (load average $LOAD_BEFORE); numbers are noisy" >&2
fi
