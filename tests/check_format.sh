#!/usr/bin/env bash
# Every C/C++ source of the tree is formatted as .clang-format says. Exit 77 (skipped) without clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
  echo "skipped: clang-format is not installed (tests/deps.sh installs it)"
  exit 77
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cc' '*.h' '*.c')
else
  mapfile -t files < <(find agent collectors tests -name '*.cc' -o -name '*.h' -o -name '*.c' | sort)
fi
if ! clang-format --dry-run -Werror "${files[@]}"; then
  echo "not formatted as .clang-format says; fix with: clang-format -i FILE (see the lines above)" >&2
  exit 1
fi
echo "format: ${#files[@]} files as .clang-format says"
