#!/usr/bin/env bash
# Runs every benchmark (meson test --benchmark) in a release build and prints
# one table: each figure, its reference measured side by side in the same
# run, their ratio and the goal. Machines are shared and noisy: only the
# ratios mean anything, never an absolute figure on its own.
#   ./scripts/bench.sh [BENCHMARK...]    e.g. ./scripts/bench.sh tikv_observe
# BUILD=DIR picks the build directory (default build-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
op_install_deps
dir=${BUILD:-build-bench}
blog=$(mktemp)
op_build "$dir" --buildtype=release >"$blog" 2>&1 || { tail -30 "$blog" >&2; rm -f "$blog"; exit 1; }
rm -f "$blog"
rc=0
meson test -C "$dir" --benchmark --num-processes 1 --print-errorlogs "$@" >&2 || rc=$?
log="$dir/meson-logs/testlog.txt"
echo
echo "$(uname -n): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo)," \
  "load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
grep -h '^BENCH|' "$log" | cut -d'|' -f2- | awk -F'|' '
  BEGIN { printf "| %s | %s | %s | %s | %s | %s |\n| --- | --- | --- | --- | --- | --- |\n",
          "benchmark", "figure", "reference", "reference figure", "ratio", "goal" }
  { printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }'
exit $rc
