#!/usr/bin/env bash
# Many targets behind /probe in one agent: what each target costs in memory and connections, and how
# long probes take when Prometheus scrapes them all at once. Run by hand, not by CI; see
# tests/bench/README.md.
#
#   tests/bench/probe_fanout.sh [options]
#
#   --pgpulse PATH     pgpulse binary (default: build-release/pgpulse, else build/pgpulse)
#   --targets N        targets, one database each on one throwaway PostgreSQL (default 200)
#   --tables N         tables per database (default 10)
#   --rounds N         rounds of N concurrent probes, one round every --interval seconds (default 5)
#   --interval S       seconds from the start of one round to the next (default 15)
#   --keep DIR         keep the per-probe CSV, the config and the agent's log in DIR
#
# Each target is its own entry in the config (scrape.collect_on_metrics_path: false), so a probe is
# /probe?target=NAME, as a Prometheus job with one static target per server would make it. The
# agent runs with --web.max-connections-per-client=0: Prometheus makes every probe from one
# address, and the default per-client cap (8) would turn all but 8 of them away.
# Installs nothing; stops and removes everything it started on exit.
set -euo pipefail

SELF=$(realpath -- "$0")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
PGSERVER="$REPO/tests/harness/pgserver.sh"

PGPULSE_BIN=""
TARGETS=200
TABLES=10
ROUNDS=5
INTERVAL=15
KEEP=""
die() {
  echo "probe_fanout: $*" >&2
  exit 1
}
log() { echo "probe_fanout: $(date +%H:%M:%S) $*" >&2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pgpulse) PGPULSE_BIN="${2:?}"; shift 2 ;;
    --targets) TARGETS="${2:?}"; shift 2 ;;
    --tables) TABLES="${2:?}"; shift 2 ;;
    --rounds) ROUNDS="${2:?}"; shift 2 ;;
    --interval) INTERVAL="${2:?}"; shift 2 ;;
    --keep) KEEP="${2:?}"; shift 2 ;;
    -h | --help) sed -n '2,19p' "$SELF" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (--help lists them)" ;;
  esac
done
for n in "$TARGETS" "$TABLES" "$ROUNDS" "$INTERVAL"; do [[ "$n" =~ ^[0-9]+$ && "$n" -gt 0 ]] || die "'$n' is not a positive number"; done
if [[ -z "$PGPULSE_BIN" ]]; then
  for candidate in "$REPO/build-release/pgpulse" "$REPO/build/pgpulse"; do
    [[ -x "$candidate" ]] && PGPULSE_BIN="$candidate" && break
  done
fi
[[ -x "$PGPULSE_BIN" ]] || die "no pgpulse binary: build one or give --pgpulse PATH"
for tool in curl awk xargs sort; do command -v "$tool" >/dev/null || die "$tool is not installed"; done

WORK=$(mktemp -d /tmp/pgpulse-fanout.XXXXXX)
chmod 755 "$WORK"
PG_DIR="$WORK/pg"
AGENT_PID=""
cleanup() {
  [[ -n "$AGENT_PID" ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  bash "$PGSERVER" destroy "$PG_DIR" >/dev/null 2>&1 || true
  if [[ -n "$KEEP" ]]; then
    mkdir -p "$KEEP"
    cp "$WORK"/*.csv "$WORK"/*.yml "$WORK"/*.log "$KEEP"/ 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

PG_PORT=$(free_port)
log "starting PostgreSQL on 127.0.0.1:$PG_PORT (max_connections $((TARGETS + 50)))"
bash "$PGSERVER" start "$PG_DIR" "$PG_PORT" "max_connections = $((TARGETS + 50))" >/dev/null
psql_pg() { bash "$PGSERVER" psql "$PG_DIR" -X -q -v ON_ERROR_STOP=1 "$@"; }

log "creating $TARGETS databases of $TABLES tables"
for i in $(seq 1 "$TARGETS"); do echo "CREATE DATABASE fan_$i;"; done | psql_pg >/dev/null
for i in $(seq 1 "$TARGETS"); do
  {
    for t in $(seq 1 "$TABLES"); do
      echo "CREATE TABLE t_$t (id int PRIMARY KEY, v text); INSERT INTO t_$t SELECT g, 'x' FROM generate_series(1, 100) g;"
    done
    echo "ANALYZE;"
  } | psql_pg -d "fan_$i" >/dev/null
done

CONFIG="$WORK/pgpulse.yml"
{
  echo "scrape:"
  echo "  collect_on_metrics_path: false"
  echo "targets:"
  for i in $(seq 1 "$TARGETS"); do
    echo "  - name: fan_$i"
    echo "    dsn: host=127.0.0.1 port=$PG_PORT user=postgres dbname=fan_$i"
  done
} >"$CONFIG"

AGENT_PORT=$(free_port)
log "starting pgpulse ($PGPULSE_BIN) on 127.0.0.1:$AGENT_PORT with $TARGETS targets"
"$PGPULSE_BIN" --config.file="$CONFIG" --web.listen-address="127.0.0.1:$AGENT_PORT" \
  --web.max-connections-per-client=0 </dev/null >"$WORK/pgpulse.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$AGENT_PORT/healthz" 2>/dev/null && break
  kill -0 "$AGENT_PID" 2>/dev/null || die "pgpulse exited: $(tail -5 "$WORK/pgpulse.log")"
  sleep 0.1
done

status_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$AGENT_PID/status"; }
# The agent's sessions, by the databases only targets use (it names its sessions itself).
backends() { psql_pg -At -c "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'fan\\_%'"; }
RSS_IDLE=$(status_kib VmRSS)
log "idle: RSS $((RSS_IDLE / 1024)) MiB, $(backends) connections"

CSV="$WORK/probes.csv"
echo "round,target,http_code,seconds" >"$CSV"
# One curl process makes all of a round's probes at once (--parallel): one process per probe would
# spend the round starting processes, not waiting for the agent.
probe_round() {
  local round=$1 urls="$WORK/urls.txt"
  : >"$urls"
  for i in $(seq 1 "$TARGETS"); do
    printf 'url = "http://127.0.0.1:%s/probe?target=fan_%s"\noutput = "/dev/null"\n' "$AGENT_PORT" "$i" >>"$urls"
  done
  curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max "$TARGETS" --max-time 30 \
    -H 'Accept-Encoding: gzip' -H 'X-Prometheus-Scrape-Timeout-Seconds: 10' \
    -w "$round,%{url_effective},%{http_code},%{time_total}\n" -K "$urls" |
    sed -E 's/,[^,]*target=([^,]*),/,\1,/' >>"$CSV" || true
}

echo "round,wall_seconds,rss_mib,hwm_mib,connections" >"$WORK/rounds.csv"
for round in $(seq 1 "$ROUNDS"); do
  start=$(date +%s.%N)
  probe_round "$round"
  end=$(date +%s.%N)
  line="$round,$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'),$(($(status_kib VmRSS) / 1024)),$(($(status_kib VmHWM) / 1024)),$(backends)"
  echo "$line" >>"$WORK/rounds.csv"
  log "round $round: $line (wall s, RSS MiB, peak MiB, connections)"
  rest=$(awk -v s="$start" -v e="$(date +%s.%N)" -v i="$INTERVAL" 'BEGIN { r = i - (e - s); print (r > 0 ? r : 0) }')
  [[ "$round" -eq "$ROUNDS" ]] || sleep "$rest"
done

RSS_END=$(status_kib VmRSS)
HWM=$(status_kib VmHWM)
CONNECTIONS=$(backends)
stats() { # median p90 max of the seconds column for rounds matching $1 (awk regex)
  awk -F, -v r="$1" 'NR > 1 && $1 ~ r { print $4 }' "$CSV" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "- - -"; exit } m = v[int((NR + 1) / 2)]; p = v[int(NR * 0.9 + 0.999)]; printf "%.3f %.3f %.3f\n", m, p, v[NR] }'
}
read -r first_med first_p90 first_max < <(stats '^1$')
read -r later_med later_p90 later_max < <(stats '^([2-9]|[1-9][0-9]+)$')
FAILED=$(awk -F, 'NR > 1 && $3 != 200' "$CSV" | wc -l)
# One more probe of each target, reading its body: is the server up as the agent sees it?
UP=$(seq 1 "$TARGETS" | xargs -P 50 -I{} sh -c \
  "curl -s --max-time 30 'http://127.0.0.1:$AGENT_PORT/probe?target=fan_{}' | grep -cE '^pg_up(\\{[^}]*\\})? 1\$' || true" |
  awk '{ s += $1 } END { print s + 0 }')
echo
echo "## $TARGETS targets behind /probe, $ROUNDS rounds of $TARGETS concurrent probes every ${INTERVAL}s"
echo
echo "PostgreSQL $(psql_pg -At -c 'SHOW server_version'), one server, one database of $TABLES tables per target; $(nproc) cores; $(date -u +%F)."
echo
echo "| | value |"
echo "| --- | ---: |"
echo "| probe latency, first round (connect and first collection): median / p90 / max | ${first_med} / ${first_p90} / ${first_max} s |"
echo "| probe latency, later rounds: median / p90 / max | ${later_med} / ${later_p90} / ${later_max} s |"
echo "| probes not answered 200 | $FAILED of $((TARGETS * ROUNDS)) |"
echo "| targets with pg_up 1 in a probe after the rounds | $UP of $TARGETS |"
echo "| RSS idle (no target connected) | $((RSS_IDLE / 1024)) MiB |"
echo "| RSS after the last round / peak | $((RSS_END / 1024)) / $((HWM / 1024)) MiB |"
echo "| RSS per target ((after - idle) / targets) | $(awk -v a="$RSS_END" -v b="$RSS_IDLE" -v n="$TARGETS" 'BEGIN { printf "%.1f", (a - b) / n }') KiB |"
echo "| PostgreSQL connections held per target | $(awk -v c="$CONNECTIONS" -v n="$TARGETS" 'BEGIN { printf "%.2f", c / n }') |"
echo
echo "Rounds (wall seconds for all $TARGETS probes, RSS, peak RSS, connections):"
echo
sed 's/^/    /' "$WORK/rounds.csv"
