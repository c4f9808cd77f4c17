#!/usr/bin/env bash
# The Kubernetes manifests build with kustomize (kubectl kustomize, offline): each pattern
# renders its objects and the PrometheusRule generated in alerts/, with the image set.
#   usage: kustomize_test.sh      exit 77 (CTest SKIP_RETURN_CODE): no kubectl
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v kubectl >/dev/null || { echo "SKIP: kubectl not installed"; exit 77; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

check() {
  local dir=$1
  shift
  kubectl kustomize "$dir" >"$out" 2>&1 || { cat "$out"; echo "FAIL: kubectl kustomize $dir"; exit 1; }
  local kinds
  kinds=$(sed -n 's/^kind: //p' "$out" | sort | paste -sd ' ')
  [[ $kinds == "$*" ]] || { echo "FAIL: $dir renders kinds: $kinds; expected: $*"; exit 1; }
  if [[ $dir == packaging/* ]] && ! grep -q 'image: pgpulse:' "$out"; then echo "FAIL: $dir: no pgpulse image"; exit 1; fi
  echo "ok: $dir: $kinds"
}
check packaging/kubernetes/sidecar ConfigMap PodMonitor PrometheusRule Secret Service StatefulSet
check packaging/kubernetes/central ConfigMap Deployment PrometheusRule Secret Service ServiceMonitor
check alerts PrometheusRule
echo "3 passed, 0 failed"
