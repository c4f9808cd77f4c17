#!/usr/bin/env python3
"""Applies the alert thresholds to the dashboards, so that a panel colours where its alert fires.

Run by alerts/generate.sh with the same --thresholds files as the rules (later files override earlier ones key by
key); standalone: dashboards/generate.py [--thresholds FILE]... [--out DIR]. Reads dashboards/*.json and writes them
to DIR (default: in place). What it maintains, and nothing else:
  - the overview's health strip (HEALTH_TILES below): query, thresholds, mappings, links, no-data text;
  - threshold steps, @@key@@ values in queries and runbook links of the panels in PANELS;
  - restart and failover annotations on the dashboards of PostgreSQL servers;
  - pgpulse-fleet.json, entirely: the overview's health tiles repeated per instance (FLEET_TILES below);
  - every stat and gauge panel queries instantly (the value now, not the last one of the range) and has a
    "no data" text, so that an empty tile never passes for a healthy one;
  - the `target` variable of every dashboard and target=~"$target" on every selector of a metric that carries the
    label (TARGET_METRICS): an agent with several targets labels each sample with its target, one with a single
    target has no such label, and the variable's All value ".*" also matches a series without the label.
Standard library only (python3 is in every Debian).
"""

import argparse
import copy
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ALERTS = os.path.join(HERE, "..", "alerts")

DS = {"type": "prometheus", "uid": "${datasource}"}
JI = 'job=~"$job",instance=~"$instance"'
# Per instance (and target): 0 where the server answered and the metric has no series (0 is the truth there), and
# NaN, shown as "unknown", where it did not or the agent is gone. A tile never loses an instance silently.
ZERO_IF_UP = ' or on (instance, target) (0 * (pg_up{' + JI + '} == 1))'
# The same per database, for panels drawn by datname: the databases of a server that answered.
ZERO_PER_DATABASE = ('\nor on (instance, target, datname) (0 * sum by (instance, target, datname) ('
                     'pg_database_size_bytes{' + JI + ',datname=~"$datname"}\n'
                     '  and on (instance, target) (pg_up{' + JI + '} == 1)))')
UNKNOWN_IF_DOWN = ' or on (instance) (NaN * up{' + JI + '})'
UNKNOWN = {"type": "special", "options": {"match": "nan", "result": {"text": "unknown", "color": "red", "index": 9}}}


def steps(*pairs):
    """[("green", None), ("red", "key" or number), ...] -> a Grafana step list; keys are resolved later."""
    return [{"color": c, "value": v} for c, v in pairs]


def value_map(values):
    opts = {str(k): {"text": t, "color": c, "index": i} for i, (k, (t, c)) in enumerate(values.items())}
    return {"type": "value", "options": opts}


def link(title, uid):
    return {"title": title, "url": "/d/" + uid + "?${__url_time_range}&${__all_variables}"}


# The overview's health strip: each tile mirrors one alert (or a few), coloured at its thresholds, with the
# dashboard that shows the evidence. Row 2 and 3 of the overview, under the status row's six tiles.
HEALTH_TILES = [
    {"id": 40, "title": "Firing alerts", "unit": "none", "x": 0, "y": 5, "w": 4,
     "description": "Alerts firing now for the server (Prometheus's ALERTS series with its instance). 0 is green.",
     "expr": 'sum by (instance) (ALERTS{alertstate="firing",' + JI + '})\nor on (instance) (0 * up{' + JI + '})',
     "steps": steps(("green", None), ("red", 1)), "alerts": [], "links": []},
    {"id": 41, "title": "Worst replay lag", "unit": "s", "x": 4, "y": 5, "w": 4,
     "description": "Replay lag measured on each standby (pg_replication_replica_replay_lag_seconds); 0 on a "
                    "primary.",
     "expr": 'max by (instance, target) (pg_replication_replica_replay_lag_seconds{' + JI + '})' + ZERO_IF_UP
             + UNKNOWN_IF_DOWN,
     "steps": steps(("green", None), ("red", "replication_lag_seconds")),
     "alerts": ["PostgreSQLReplicationLagSeconds"], "links": [link("Replication", "pgpulse-replication")]},
    {"id": 42, "title": "WAL receiver", "unit": "none", "x": 8, "y": 5, "w": 4,
     "description": "On a standby, whether its WAL receiver streams from the upstream server "
                    "(pg_replication_wal_receiver_connected); a primary shows primary.",
     "expr": 'max by (instance, target) (pg_replication_wal_receiver_connected{' + JI + '})\n'
             'and on (instance, target) (pg_replication_is_replica{' + JI + '} == 1)\n'
             'or on (instance, target) (2 + 0 * (pg_replication_is_replica{' + JI + '} == 0))' + UNKNOWN_IF_DOWN,
     "steps": steps(("red", None), ("green", 1)),
     "mappings": [value_map({0: ("not streaming", "red"), 1: ("streaming", "green"), 2: ("primary", "blue")})],
     "alerts": ["PostgreSQLStandbyNotStreaming"], "links": [link("Replication", "pgpulse-replication")]},
    {"id": 43, "title": "Longest transaction", "unit": "s", "x": 12, "y": 5, "w": 4,
     "description": "Age of the oldest open transaction (pg_activity_oldest_transaction_age_seconds).",
     "expr": 'max by (instance, target) (pg_activity_oldest_transaction_age_seconds{' + JI
             + ',datname=~"$datname"})' + ZERO_IF_UP + UNKNOWN_IF_DOWN,
     "steps": steps(("green", None), ("red", "long_transaction_seconds")),
     "alerts": ["PostgreSQLLongRunningTransaction"], "links": [link("Locks and sessions", "pgpulse-locks")]},
    {"id": 44, "title": "Longest lock wait", "unit": "s", "x": 16, "y": 5, "w": 4,
     "description": "Longest time a session has been waiting for a lock (pg_locks_oldest_wait_age_seconds).",
     "expr": 'max by (instance, target) (pg_locks_oldest_wait_age_seconds{' + JI + ',datname=~"$datname|"})'
             + ZERO_IF_UP + UNKNOWN_IF_DOWN,
     "steps": steps(("green", None), ("red", "lock_wait_seconds")),
     "alerts": ["PostgreSQLSessionsBlocked"], "links": [link("Locks and sessions", "pgpulse-locks")]},
    {"id": 45, "title": "Wraparound", "unit": "percentunit", "x": 20, "y": 5, "w": 4,
     "description": "Transaction ID or multixact age, whichever is nearer, as a share of 2^31 "
                    "(pg_database_xid_wraparound_ratio, pg_database_mxid_wraparound_ratio).",
     "expr": 'max by (instance, target) (\n'
             '  label_replace(pg_database_xid_wraparound_ratio{' + JI + ',datname=~"$datname"},\n'
             '                "id", "xid", "", "")\n'
             '  or label_replace(pg_database_mxid_wraparound_ratio{' + JI + ',datname=~"$datname"},\n'
             '                   "id", "mxid", "", "")\n'
             ')' + UNKNOWN_IF_DOWN,
     "steps": steps(("green", None), ("orange", "wraparound_warning_ratio"), ("red", "wraparound_critical_ratio")),
     "alerts": ["PostgreSQLTransactionIDWraparoundNear", "PostgreSQLTransactionIDWraparoundImminent"],
     "links": [link("Tables", "pgpulse-tables")]},
    {"id": 46, "title": "Filesystem free", "unit": "percentunit", "x": 0, "y": 9, "w": 6,
     "description": "Space left on the fullest filesystem of the data directory, pg_wal and the tablespaces "
                    "(pg_filesystem_avail_bytes / pg_filesystem_size_bytes); unknown where the agent cannot see "
                    "the server's files.",
     "expr": 'min by (instance, target) (pg_filesystem_avail_bytes{' + JI + '}\n'
             '  / (pg_filesystem_size_bytes{' + JI + '} > 0))' + UNKNOWN_IF_DOWN,
     "steps": steps(("red", None), ("orange", "filesystem_free_critical_ratio"),
                    ("green", "filesystem_free_warning_ratio")),
     "alerts": ["PostgreSQLFilesystemSpaceLow", "PostgreSQLFilesystemSpaceCritical"],
     "links": [link("Disk", "pgpulse-disk")]},
    {"id": 47, "title": "Archiving", "unit": "none", "x": 6, "y": 9, "w": 6,
     "description": "WAL archiving: failing (the last attempt failed), stale (files waiting and none archived "
                    "for @@archive_stale_seconds@@ s), ok, or off (archive_mode off).",
     "expr": 'max by (instance, target) (\n'
             '  2 + 0 * (pg_archiver_last_attempt_failed{' + JI + '} == 1)\n'
             '  or 1 + 0 * ((pg_archiver_last_archived_age_seconds{' + JI + '} > @@archive_stale_seconds@@)\n'
             '              and pg_archiver_pending_wal_files{' + JI + '} > 0)\n'
             '  or 0 * (pg_archiver_enabled{' + JI + '} == 1)\n'
             '  or 3 + 0 * pg_archiver_enabled{' + JI + '}\n)' + UNKNOWN_IF_DOWN,
     "steps": steps(("green", None)),
     "mappings": [value_map({0: ("ok", "green"), 1: ("stale", "red"), 2: ("failing", "red"), 3: ("off", "text")})],
     "alerts": ["PostgreSQLArchivingFailing", "PostgreSQLArchivingStale"], "links": [link("Disk", "pgpulse-disk")]},
    {"id": 48, "title": "Failing collectors", "unit": "none", "x": 12, "y": 9, "w": 6,
     "description": "Collectors whose last run failed (pgpulse_collector_success == 0); the Agent dashboard "
                    "says which.",
     "expr": 'count by (instance) (pgpulse_collector_success{' + JI + '} == 0)\n'
             'or on (instance) (0 * (up{' + JI + '} == 1))' + UNKNOWN_IF_DOWN,
     "steps": steps(("green", None), ("red", 1)),
     "alerts": ["PgpulseCollectorFailing"], "links": [link("Agent", "pgpulse-agent")]},
    {"id": 49, "title": "Standbys not streaming", "unit": "none", "x": 18, "y": 9, "w": 6,
     "description": "On a primary, standbys expected minus standbys streaming now (pg_replication_standby_info "
                    "with state streaming). Expected is the larger of its physical replication slots and the most "
                    "standbys seen at once over the time range, so a standby that disconnects (and so leaves "
                    "pg_stat_replication and its lag graphs) shows here as 1 instead of vanishing. 0 on a standby "
                    "or a primary without standbys.",
     "expr": 'clamp_min(\n  max by (instance, target) (\n'
             '    label_replace(count by (instance, target) (pg_replication_slot_active{' + JI
             + ',datname=~"$datname|",slot_type="physical"}),\n                  "from", "slots", "", "")\n'
             '    or label_replace(max_over_time(count by (instance, target) (pg_replication_standby_info{' + JI
             + '})[$__range:]),\n                     "from", "seen", "", "")\n  )\n'
             '  - on (instance, target) (\n    count by (instance, target) (pg_replication_standby_info{' + JI
             + ',state="streaming"})\n    or on (instance, target) (0 * (pg_up{' + JI + '} == 1))\n  ),\n  0\n)'
             + ZERO_IF_UP + UNKNOWN_IF_DOWN,
     "steps": steps(("green", None), ("red", 1)),
     "alerts": [], "links": [link("Replication", "pgpulse-replication")]},
]

CONNECTIONS = ('sum by (instance, target) (pg_connections{' + JI + ',datname=~"$datname"})\n'
               '/\nmax by (instance, target) (\n'
               '  pg_connections_max{' + JI + '} - pg_connections_reserved_superuser{' + JI + '}\n'
               '  - (pg_connections_reserved_privileged{' + JI + '} or pg_connections_max{' + JI + '} * 0)\n)')

# Panels the dashboards ship, by dashboard uid and title: threshold steps, queries with @@key@@, alerts they show.
PANELS = {
    "pgpulse-overview": {
        "Up": {"expr": {"A": 'pg_up{' + JI + '}\nor on (instance) (0 * up{' + JI + '})'},
               "steps": steps(("red", None), ("green", 1)), "alerts": ["PostgreSQLDown", "PgpulseExporterDown"]},
        "Role": {"expr": {"A": 'pg_replication_is_replica{' + JI + '}' + UNKNOWN_IF_DOWN}},
        "Version": {"expr": {"A": 'max by (instance, target, server_version) (pg_info{' + JI + '})'
                                  + UNKNOWN_IF_DOWN}},
        "Uptime": {"expr": {"A": 'time() - pg_postmaster_start_time_seconds{' + JI + '}' + UNKNOWN_IF_DOWN},
                   "steps": steps(("orange", None), ("green", "restarted_within_seconds")),
                   "alerts": ["PostgreSQLRestarted"]},
        "Connections used": {"expr": {"A": CONNECTIONS + UNKNOWN_IF_DOWN},
                             "steps": steps(("green", None), ("orange", "connections_warning_ratio"),
                                            ("red", "connections_critical_ratio")),
                             "alerts": ["PostgreSQLConnectionsNearLimit", "PostgreSQLConnectionsExhausted"]},
        "Blocked sessions": {"expr": {"A": 'sum by (instance, target) (pg_locks_blocked_sessions{' + JI
                                           + ',datname=~"$datname"})' + ZERO_IF_UP + UNKNOWN_IF_DOWN}},
        "Temporary files written": {"steps": steps(("green", None), ("red", "temp_bytes_per_second")),
                                    "alerts": ["PostgreSQLTempFileSpill"]},
        "Checkpoints per hour": {"alerts": ["PostgreSQLCheckpointsRequested"]},
        "Checksum failures": {"expr": {"A": 'sum by (instance, target) (pg_database_checksum_failures_total{' + JI
                                            + ',datname=~"$datname"})' + ZERO_IF_UP + UNKNOWN_IF_DOWN},
                              "steps": steps(("green", None), ("red", 1)), "alerts": ["PostgreSQLChecksumFailures"]},
        "Settings pending restart": {"expr": {"A": 'max by (instance, target) (pg_settings_pending_restart{' + JI
                                                   + '})' + ZERO_IF_UP + UNKNOWN_IF_DOWN},
                                     "steps": steps(("green", None), ("orange", 1)),
                                     "alerts": ["PostgreSQLSettingsPendingRestart"]},
        "Sequence nearest exhaustion": {"expr": {"A": 'max by (instance, target) (pg_sequence_used_ratio{' + JI
                                                      + ',datname=~"$datname"})' + ZERO_IF_UP + UNKNOWN_IF_DOWN},
                                        "steps": steps(("green", None), ("red", "sequence_used_ratio")),
                                        "alerts": ["PostgreSQLSequenceNearExhaustion"]},
        "Cache hit ratio": {"steps": steps(("red", None), ("green", "cache_hit_ratio")),
                            "alerts": ["PostgreSQLLowCacheHitRatio"]},
        "Oldest transaction": {"steps": steps(("green", None), ("red", "long_transaction_seconds")),
                               "alerts": ["PostgreSQLLongRunningTransaction"]},
        "Replay lag (seconds, on the standby)": {"steps": steps(("green", None), ("red", "replication_lag_seconds")),
                                                 "alerts": ["PostgreSQLReplicationLagSeconds"]},
        "Authentication failures per alert window (server log)": {
            "expr": {"A": '@@log_errors_window_seconds@@ * sum by (instance, target) '
                          '(rate(pg_log_authentication_failures_total{' + JI + '}[$__rate_interval]))'},
            "steps": steps(("green", None), ("red", "log_authentication_failures")),
            "alerts": ["PostgreSQLAuthenticationFailuresSpike"]},
        "Statement timeouts per alert window (server log)": {
            "expr": {"A": '@@log_errors_window_seconds@@ * sum by (instance, target) '
                          '(rate(pg_log_statement_timeouts_total{' + JI + '}[$__rate_interval]))'},
            "steps": steps(("green", None), ("red", "log_statement_timeouts")),
            "alerts": ["PostgreSQLStatementTimeoutsSpike"]},
        "Transaction ID wraparound": {"steps": steps(("green", None), ("orange", "wraparound_warning_ratio"),
                                                     ("red", "wraparound_critical_ratio")),
                                      "alerts": ["PostgreSQLTransactionIDWraparoundNear",
                                                 "PostgreSQLTransactionIDWraparoundImminent"]},
    },
    "pgpulse-replication": {
        "Replay lag on the standby (seconds)": {"steps": steps(("green", None), ("red", "replication_lag_seconds")),
                                                "alerts": ["PostgreSQLReplicationLagSeconds"]},
        "Received but not replayed (bytes)": {"steps": steps(("green", None), ("red", "replication_lag_bytes")),
                                              "alerts": ["PostgreSQLReplicationLagBytes"]},
        "WAL retained by slots": {"steps": steps(("green", None), ("red", "slot_retained_bytes")),
                                  "alerts": ["PostgreSQLReplicationSlotRetainingWAL"]},
        # Old on every quiet server, which is fine: the alert (and the overview's Archiving tile) also needs files
        # waiting, so the age alone is not coloured.
        "Since last archived": {"steps": steps(("text", None))},
        "WAL receiver": {"alerts": ["PostgreSQLStandbyNotStreaming"]},
        "Last archive attempt": {"alerts": ["PostgreSQLArchivingFailing"]},
    },
    "pgpulse-locks": {
        # No series when the truth is 0 (no session waits, none idle in transaction): 0 per instance (and
        # database) where the server answered, nothing where it did not, so a down server is never a flat 0.
        "Blocked sessions": {"expr": {"A": 'sum by (instance, target, datname) (pg_locks_blocked_sessions{' + JI
                                           + ',datname=~"$datname"})' + ZERO_PER_DATABASE}},
        "Locks awaited": {"expr": {"A": 'sum by (instance, target, locktype, mode) (pg_locks{' + JI
                                        + ',datname=~"$datname|",granted="false"})' + ZERO_IF_UP}},
        "Sessions idle in transaction": {"expr": {"A": 'sum by (instance, target, datname, state) (pg_connections{'
                                                       + JI + ',datname=~"$datname",state=~"idle in transaction.*"})'
                                                       + ZERO_PER_DATABASE}},
        "Longest lock wait": {"steps": steps(("green", None), ("red", "lock_wait_seconds")),
                              "alerts": ["PostgreSQLSessionsBlocked"]},
        "Oldest transaction": {"steps": steps(("green", None), ("red", "long_transaction_seconds")),
                               "alerts": ["PostgreSQLLongRunningTransaction"]},
        "Longest running query": {"steps": steps(("green", None), ("red", "long_query_seconds")),
                                  "alerts": ["PostgreSQLLongRunningQuery"]},
        "Longest idle in transaction": {"steps": steps(("green", None), ("red", "idle_in_transaction_seconds")),
                                        "alerts": ["PostgreSQLIdleInTransaction"]},
    },
    "pgpulse-disk": {
        "Space left": {"steps": steps(("red", None), ("orange", "filesystem_free_critical_ratio"),
                                      ("green", "filesystem_free_warning_ratio")),
                       "alerts": ["PostgreSQLFilesystemSpaceLow", "PostgreSQLFilesystemSpaceCritical"]},
    },
    "pgpulse-backups": {
        "Since last full backup": {"steps": steps(("green", None), ("red", "backup_full_max_age_seconds")),
                                   "alerts": ["PostgreSQLBackupFullTooOld"]},
        "Backups with errors": {"alerts": ["PostgreSQLBackupErrors"]},
        "Since last backup": {"steps": steps(("green", None), ("red", "backup_full_max_age_seconds")),
                              "alerts": ["PostgreSQLBackupFullTooOld"]},
        "Dump directory": {"alerts": ["PostgreSQLDumpSetNotVisible"]},
        "Since newest dump": {"steps": steps(("green", None), ("red", "dump_max_age_seconds")),
                              "alerts": ["PostgreSQLDumpTooOld"]},
        "Newest dump against the one before": {"steps": steps(("red", None), ("green", "dump_truncated_ratio")),
                                               "alerts": ["PostgreSQLDumpTruncated"]},
        "Dump files": {"alerts": ["PostgreSQLDumpSetEmpty"]},
        "Since newest dump over time": {"steps": steps(("green", None), ("red", "dump_max_age_seconds")),
                                        "alerts": ["PostgreSQLDumpTooOld"]},
    },
    "pgpulse-pgbouncer": {
        "Client connections used": {"steps": steps(("green", None),
                                                   ("red", "pgbouncer_client_connections_ratio")),
                                    "alerts": ["PgBouncerClientConnectionsNearLimit"]},
        "Longest client wait": {"steps": steps(("green", None), ("red", "pgbouncer_pool_max_wait_seconds")),
                                "alerts": ["PgBouncerPoolExhausted"]},
    },
}


# Marks on every PostgreSQL dashboard's graphs where a server restarted or changed role (failover, promotion).
ANNOTATIONS = [
    {"name": "Restarts", "iconColor": "orange",
     "expr": 'changes(pg_postmaster_start_time_seconds{' + JI + '}[$__interval]) > 0',
     "titleFormat": "PostgreSQL restarted", "textFormat": "{{instance}} {{target}}"},
    {"name": "Failovers", "iconColor": "red",
     "expr": 'changes(pg_replication_is_replica{' + JI + '}[$__interval]) > 0',
     "titleFormat": "Role changed (failover or promotion)", "textFormat": "{{instance}} {{target}}"},
]


# Metrics with a `target` label when the agent has several targets (the agent's own per-target metrics always).
TARGET_METRICS = re.compile(r"\b((?:pg|pgbouncer|pgbackrest)_[a-zA-Z0-9_]+|pgpulse_(?:collector|scrape)[a-zA-Z0-9_]*)"
                            r"\{([^{}]*)\}")
TARGET = 'target=~"$target"'


def filter_target(expr):
    """Adds target=~"$target" to each selector of TARGET_METRICS that lacks a target matcher; idempotent."""
    def one(m):
        body = m.group(2)
        if re.search(r"\btarget\s*[=!]", body):
            return m.group(0)
        return m.group(1) + "{" + (body + "," if body.strip() else "") + TARGET + "}"
    return TARGET_METRICS.sub(one, expr)


def target_variable(dashboard):
    """The `target` variable after `instance`, from the metric the instance variable lists (the agent's own
    per-target metric on the Agent dashboard, where pgpulse_build_info has no target label)."""
    variables = dashboard["templating"]["list"]
    variables[:] = [v for v in variables if v.get("name") != "target"]
    at = next(i for i, v in enumerate(variables) if v["name"] == "instance")
    instance = variables[at]
    query = instance["query"]["query"] if isinstance(instance["query"], dict) else instance["query"]
    metric = re.match(r"label_values\(([a-zA-Z0-9_]+)", query).group(1)
    if metric == "pgpulse_build_info":
        metric = "pgpulse_scrapes_total"
    query = "label_values(" + metric + "{" + JI + "}, target)"
    variables.insert(at + 1, {
        "name": "target", "label": "Target", "type": "query", "datasource": DS, "definition": query,
        "query": {"query": query, "refId": "StandardVariableQuery"}, "refresh": 2, "regex": "", "sort": 1,
        "multi": True, "includeAll": True, "current": {}, "options": [], "hide": 0, "allValue": ".*",
        "description": "Targets of an agent with several (each sample labelled target); with one target there is "
                       "no such label and All (.*) shows it."})
    for v in variables[at + 2:]:
        if v.get("type") == "query":
            q = filter_target(v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
            if isinstance(v["query"], dict):
                v["query"]["query"] = q
            else:
                v["query"] = q
            if "definition" in v:
                v["definition"] = q


def finish(dashboard):
    """What every dashboard gets: the target variable and filter, instant stat queries with a no-data text."""
    target_variable(dashboard)
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("expr"):
            a["expr"] = filter_target(a["expr"])
    for p in dashboard["panels"] + [i for p in dashboard["panels"] for i in p.get("panels", [])]:
        for t in p.get("targets", []):
            t["expr"] = filter_target(t["expr"])
        if p.get("type") in ("stat", "gauge"):
            for t in p.get("targets", []):
                t["range"], t["instant"] = False, True
            p["fieldConfig"]["defaults"].setdefault("noValue", "no data")
            maps = p["fieldConfig"]["defaults"].setdefault("mappings", [])
            if UNKNOWN not in maps:
                maps.append(copy.deepcopy(UNKNOWN))
    return dashboard


def annotations(dashboard):
    """Replaces this script's annotations, keeps any other; only on dashboards whose servers come from pg_up."""
    ours = {a["name"] for a in ANNOTATIONS}
    kept = [a for a in dashboard.get("annotations", {}).get("list", []) if a.get("name") not in ours]
    instance = next((v for v in dashboard["templating"]["list"] if v["name"] == "instance"), None)
    query = instance and (instance["query"]["query"] if isinstance(instance["query"], dict) else instance["query"])
    if not query or "pg_up" not in query:
        return {"list": kept}
    return {"list": kept + [dict(a, datasource=DS, enable=True, hide=False, step="60s", useValueForTime=False)
                            for a in ANNOTATIONS]}


def read_thresholds(paths):
    """key -> value text, as alerts/generate.sh reads them: later files override, unknown keys are errors."""
    values = {}
    for i, path in enumerate(paths):
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError as e:
            sys.exit("generate.py: cannot read thresholds file %s: %s" % (path, e.strerror))
        for n, line in enumerate(lines, 1):
            if re.match(r"^\s*(#.*)?$", line):
                continue
            m = re.match(r"^([a-z0-9_]+):\s*(.*\S)\s*$", line)
            if not m:
                sys.exit("%s:%d: expected 'key: value'" % (path, n))
            if i > 0 and m.group(1) not in values:
                sys.exit("%s:%d: unknown threshold '%s' (see alerts/thresholds.yaml)" % (path, n, m.group(1)))
            values[m.group(1)] = re.sub(r"\s+#.*$", "", m.group(2))
    return values


def number(text, key, where):
    try:
        v = float(text)
    except ValueError:
        sys.exit("generate.py: %s: threshold %s is '%s', not a number" % (where, key, text))
    return int(v) if v == int(v) else v


def substitute(text, values, where):
    def one(m):
        if m.group(1) not in values:
            sys.exit("generate.py: %s: no threshold %s" % (where, m.group(1)))
        return values[m.group(1)]
    return re.sub(r"@@([a-z0-9_]+)@@", one, text)


def resolve_steps(spec, values, where):
    out = []
    for s in spec:
        v = s["value"]
        out.append({"color": s["color"], "value": number(values[v], v, where) if isinstance(v, str) else v})
    return out


def runbook_links(alerts, values):
    return [{"title": "Runbook: " + a, "url": values["runbook_url"] + "#" + a.lower(), "targetBlank": True}
            for a in alerts]


def health_tile(spec, values):
    where = "pgpulse-overview tile " + spec["title"]
    return {
        "type": "stat", "title": spec["title"], "description": substitute(spec["description"], values, where),
        "id": spec["id"], "gridPos": {"h": 4, "w": spec["w"], "x": spec["x"], "y": spec["y"]},
        "datasource": DS,
        "targets": [{"datasource": DS, "refId": "A", "expr": substitute(spec["expr"], values, where),
                     "legendFormat": "{{instance}} {{target}}", "range": False, "instant": True,
                     "editorMode": "code"}],
        "fieldConfig": {"defaults": {
            "unit": spec["unit"], "noValue": "no data",
            "thresholds": {"mode": "absolute", "steps": resolve_steps(spec["steps"], values, where)},
            "color": {"mode": "thresholds"}, "mappings": spec.get("mappings", []) + [UNKNOWN]}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "orientation": "auto", "textMode": "auto", "colorMode": "background", "graphMode": "none",
                    "justifyMode": "auto"},
        "links": spec["links"] + runbook_links(spec["alerts"], values),
    }


def apply(dashboard, values):
    uid = dashboard["uid"]
    panels = dashboard["panels"]
    by_title = {}
    for p in panels:
        by_title.setdefault(p.get("title"), p)
        for inner in p.get("panels", []):
            by_title.setdefault(inner.get("title"), inner)
    for title, spec in PANELS.get(uid, {}).items():
        p = by_title.get(title)
        if p is None:
            sys.exit("generate.py: %s has no panel '%s' (PANELS in dashboards/generate.py)" % (uid, title))
        where = "%s panel %s" % (uid, title)
        for t in p["targets"]:
            if t["refId"] in spec.get("expr", {}):
                t["expr"] = substitute(spec["expr"][t["refId"]], values, where)
        defaults = p["fieldConfig"]["defaults"]
        if "steps" in spec:
            defaults["thresholds"] = {"mode": "absolute", "steps": resolve_steps(spec["steps"], values, where)}
            if p["type"] == "timeseries":
                defaults.setdefault("custom", {})["thresholdsStyle"] = {"mode": "line"}
        if spec.get("alerts"):
            p["links"] = [l for l in p.get("links", []) if not l.get("title", "").startswith("Runbook: ")]
            p["links"] += runbook_links(spec["alerts"], values)
    dashboard["annotations"] = annotations(dashboard)
    if uid == "pgpulse-overview":
        owned = {t["id"] for t in HEALTH_TILES}
        tiles = [health_tile(t, values) for t in HEALTH_TILES]
        kept = [p for p in panels if p.get("id") not in owned]
        at = next(i for i, p in enumerate(kept) if p["type"] == "row" and i > 0)  # before the second row
        dashboard["panels"] = kept[:at] + tiles + kept[at:]
    return finish(dashboard)


# The fleet view: the overview's status tiles that say "healthy or not" (Up, Connections used) and its health
# strip, copied from the generated overview (same queries, thresholds, mappings, links), as one line of coloured
# tiles per server: a row repeated per value of $instance. An on-call engineer scans one column of row titles and
# the red cells, every server laid out the same way; a table per tile would need a lookup across tables.
FLEET = "pgpulse-fleet"
FLEET_TILES = ["Up", "Firing alerts", "Connections used", "Worst replay lag", "WAL receiver", "Standbys not streaming",
               "Longest transaction", "Longest lock wait", "Wraparound", "Filesystem free", "Archiving",
               "Failing collectors"]


def fleet(overview):
    by_title = {p.get("title"): p for p in overview["panels"]}
    missing = [t for t in FLEET_TILES if t not in by_title]
    if missing:
        sys.exit("generate.py: the overview has no tile %s (FLEET_TILES in dashboards/generate.py)" % missing)
    width = 24 // len(FLEET_TILES)
    row = {"type": "row", "title": "$instance", "id": 1, "collapsed": False, "repeat": "instance",
           "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}, "panels": []}
    tiles = []
    for i, title in enumerate(FLEET_TILES):
        tile = copy.deepcopy(by_title[title])
        tile["gridPos"] = {"h": 4, "w": width, "x": i * width, "y": 1}
        if tile["type"] != "stat":  # the gauge of Connections used, read as the other cells are
            tile["type"] = "stat"
        tile["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "orientation": "auto", "textMode": "value", "colorMode": "background",
                           "graphMode": "none", "justifyMode": "center"}
        tiles.append(tile)
    dashboard = {k: copy.deepcopy(v) for k, v in overview.items() if k not in ("panels", "annotations")}
    dashboard.update({
        "uid": FLEET, "title": "PostgreSQL / Fleet",
        "description": "Every server on one line each: the overview's health strip (up, firing alerts, connections "
                       "against the alert's limit, replication, transactions and locks, wraparound, disk, "
                       "archiving, collectors) repeated per instance, coloured at the alerts' thresholds.",
        "panels": [row] + tiles})
    dashboard["annotations"] = annotations(dashboard)
    return finish(dashboard)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", action="append", default=[], help="a site file overriding some keys")
    parser.add_argument("--out", default=HERE, help="where to write the dashboards (default: in place)")
    args = parser.parse_args()
    values = read_thresholds([os.path.join(ALERTS, "thresholds.yaml")] + args.thresholds)
    os.makedirs(args.out, exist_ok=True)
    generated = {}
    for name in sorted(os.listdir(HERE)):
        if not name.endswith(".json") or name == FLEET + ".json":
            continue
        with open(os.path.join(HERE, name), encoding="utf-8") as f:
            generated[name] = apply(json.load(f), values)
    generated[FLEET + ".json"] = fleet(generated["pgpulse-overview.json"])
    for name, dashboard in generated.items():
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
