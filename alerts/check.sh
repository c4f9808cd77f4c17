#!/usr/bin/env bash
# Checks the shipped rules the way a reviewer would, so no reviewer has to:
# generated files current, promtool clean, every alert unit-tested both firing
# and silent, conventions kept, a runbook section for each alert.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
fail=0
problem() { echo "alerts: $*" >&2; fail=1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash generate.sh --out "$tmp" --dashboards "$tmp/dashboards"
for f in pgpulse-rules.yml pgpulse-prometheusrule.yaml; do
  cmp -s "$tmp/$f" "$f" || problem "$f is stale: run alerts/generate.sh"
done
for f in ../dashboards/*.json; do
  cmp -s "$tmp/dashboards/${f##*/}" "$f" || problem "dashboards/${f##*/} is stale: run alerts/generate.sh"
done

promtool check rules pgpulse-rules.yml >/dev/null || problem "promtool check rules failed"
promtool test rules tests/*.test.yml || problem "promtool test rules failed"

mapfile -t alerts < <(sed -n 's/^ *- alert: *\([A-Za-z0-9]*\).*/\1/p' pgpulse-rules.yml)
[[ ${#alerts[@]} -gt 0 ]] || problem "no alerts found"
declare -A seen
for a in "${alerts[@]}"; do
  [[ -z ${seen[$a]+x} ]] || problem "$a is defined twice"
  seen[$a]=1
  [[ $a =~ ^(Pgpulse|PostgreSQL|PgBouncer)[A-Z][A-Za-z0-9]*$ ]] || problem "$a: names are CamelCase with the prefix PostgreSQL, PgBouncer or Pgpulse"
  # The rule's own block, from its '- alert:' line to the next one.
  block=$(awk -v a="$a" '$0 ~ "- alert: "a"$" {on=1; print; next} on && /- alert:/ {on=0} on && /^  - name:/ {on=0} on' pgpulse-rules.yml)
  grep -Eq '^ +severity: (critical|warning|info)$' <<<"$block" || problem "$a: severity must be critical, warning or info"
  summary=$(sed -n 's/^ *summary: *//p' <<<"$block")
  [[ -n $summary ]] || problem "$a: no summary"
  [[ $summary != *'{{'* ]] || problem "$a: summary must be static (templating belongs in description)"
  grep -q 'description:.*{{ *\$labels\.instance *}}' <<<"$block" || problem "$a: description must name the instance"
  grep -q "runbook_url: .*#${a,,}\$" <<<"$block" || problem "$a: runbook_url must point at #${a,,}"
  grep -q "^## $a\$" runbooks.md || problem "$a: no '## $a' section in runbooks.md"
  uid=$(sed -n 's|^ *dashboard_url: .*/d/\([a-z-]*\)?.*instance={{ *\$labels\.instance *}}.*|\1|p' <<<"$block")
  [[ -n $uid && -f ../dashboards/$uid.json ]] ||
    problem "$a: dashboard_url must open one of dashboards/*.json (/d/<uid>?...) at the alert's instance"
  # promtool tests: one case expecting it to fire, one expecting silence.
  grep -A1 -h "alertname: $a\$" tests/*.test.yml | grep -q 'exp_alerts: \[\]' || problem "$a: no test where it must stay silent"
  grep -A2 -h "alertname: $a\$" tests/*.test.yml | grep -q 'exp_labels' || problem "$a: no test where it fires"
done
for section in $(sed -n 's/^## \(.*\)/\1/p' runbooks.md); do
  [[ -n ${seen[$section]+x} ]] || problem "runbooks.md has a section '$section' for no alert"
done
[[ $fail -eq 0 ]] && echo "alerts: ${#alerts[@]} alerts checked"
exit $fail
