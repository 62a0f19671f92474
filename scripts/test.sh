#!/usr/bin/env bash
# Installs what is missing, builds with -Werror and runs the whole suite.
#   ./scripts/test.sh            normal build (build/)
#   ./scripts/test.sh --asan     ASan+UBSan build (build-asan/)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
op_install_deps
dir=build
if [ "${1:-}" = "--asan" ]; then
  dir=build-asan
  op_build "$dir" -Db_sanitize=address,undefined -Db_lundef=false
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  op_build "$dir"
fi
rc=0
# The integration suites mostly wait on real processes, so four run side by
# side on two cores (OP_TEST_JOBS overrides); sanitizers slow each one down.
mult=1
[ "$dir" = build-asan ] && mult=2
meson test -C "$dir" --print-errorlogs --num-processes "${OP_TEST_JOBS:-4}" \
  --timeout-multiplier "$mult" || rc=$?
# One plain closing line, whatever reads this output.
log="$dir/meson-logs/testlog.json"
if [ -f "$log" ]; then
  passed=$(grep -c '"result": "OK"' "$log" || true)
  failed=$(grep -vc '"result": "OK"' "$log" || true)
  echo "$dir: $passed passed, $failed failed"
fi
exit $rc
