#!/bin/sh
# Runs one libFuzzer target for SECONDS (default 60):
#   scripts/fuzz.sh TARGET [SECONDS] [extra libFuzzer flags...]
# TARGET: msg ctl pd llm rlnode (see fuzz/meson.build). The first run sets up
# build-fuzz with clang and -Dfuzz=true; the corpus grows in
# build-fuzz/corpus/TARGET, seeded from fuzz/seeds/TARGET (and
# tests/fixtures/pd for pd). A crash leaves crash-* in build-fuzz/ and exits
# non-zero.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/fuzz.sh msg|ctl|pd|llm|rlnode [SECONDS] [libFuzzer flags]" >&2; exit 2; }
target=$1
secs=${2:-60}
[ $# -ge 2 ] && shift 2 || shift 1
case $target in
msg|ctl|pd|llm|rlnode) ;;
*) echo "fuzz.sh: unknown target $target (msg ctl pd llm rlnode)" >&2; exit 2 ;;
esac
command -v clang >/dev/null || { echo "fuzz.sh: needs clang (apt-get install clang)" >&2; exit 1; }
if [ ! -f build-fuzz/build.ninja ]; then
	CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized >/dev/null
fi
nice ninja -C build-fuzz "fuzz/fuzz_$target" >/dev/null
corpus=build-fuzz/corpus/$target
mkdir -p "$corpus"
seeds=""
[ -d "fuzz/seeds/$target" ] && seeds="fuzz/seeds/$target"
[ "$target" = pd ] && seeds="$seeds tests/fixtures/pd"
cd build-fuzz
# shellcheck disable=SC2086
exec "./fuzz/fuzz_$target" -max_total_time="$secs" -print_final_stats=1 "$@" \
	"corpus/$target" $(for s in $seeds; do echo "../$s"; done)
