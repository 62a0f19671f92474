#!/usr/bin/env bash
# Installs what is missing, builds with -Werror and runs the whole suite.
#   ./scripts/test.sh            normal build (build/)
#   ./scripts/test.sh --asan     ASan+UBSan build (build-asan/)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
op_install_deps
if [ "${1:-}" = "--asan" ]; then
  op_build build-asan -Db_sanitize=address,undefined -Db_lundef=false
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  meson test -C build-asan --print-errorlogs --num-processes 2
else
  op_build build
  meson test -C build --print-errorlogs --num-processes 2
fi
