#!/usr/bin/env bash
# bench_footprint: proportional set size (PSS) of operatord and all its
# workers, idle (watching a 1k-region pdsim) and after watching a 100k-region
# pdsim for a minute. Reference: the size of one GET /regions body of that
# cluster. Prints "BENCH|" rows for scripts/bench.sh. A benchmark, not a test.
#   OPERATORD_BIN=... PDSIM_BIN=... OPSEND_BIN=... bench/bench_footprint.sh
set -u
WATCH=${BENCH_FOOTPRINT_SECONDS:-60}   # seconds of watching the large cluster
IDLE=${BENCH_FOOTPRINT_IDLE_SECONDS:-10}
: "${OPERATORD_BIN:?set OPERATORD_BIN}" "${PDSIM_BIN:?set PDSIM_BIN}" "${OPSEND_BIN:?set OPSEND_BIN}"
W=$(mktemp -d /tmp/bench_footprint.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

# PSS in kB of a process and every descendant
pss_tree() {
  local all=("$1") i=0 kids
  while [ $i -lt ${#all[@]} ]; do
    kids=$(pgrep -P "${all[$i]}" 2>/dev/null)
    for k in $kids; do all+=("$k"); done
    i=$((i + 1))
  done
  local sum=0 p v
  for p in "${all[@]}"; do
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum ${#all[@]}"
}

# starts pdsim with $1 regions and operatord watching it; sets PD and OD
start() {
  local regions=$1 tag=$2
  "$PDSIM_BIN" --port 0 --port-file "$W/pd.$tag" --stores 3 --regions "$regions" 2>"$W/pdsim.$tag.log" &
  PIDS+=($!)
  local i
  for i in $(seq 1 300); do [ -s "$W/pd.$tag" ] && break; sleep 0.1; done
  PD=$(cat "$W/pd.$tag")
  mkdir -p "$W/run.$tag" "$W/state.$tag"
  cat >"$W/od.$tag.conf" <<CONF
[operatord]
runtime_dir = $W/run.$tag
state_dir = $W/state.$tag
mode = observe
[subject.tikv]
pd = http://127.0.0.1:$PD
timeout = 30s
CONF
  "$OPERATORD_BIN" --config "$W/od.$tag.conf" 2>"$W/od.$tag.log" &
  OD=$!
  PIDS+=($OD)
}

start 1000 idle
sleep "$IDLE"
read -r IDLE_KB IDLE_N < <(pss_tree "$OD")
kill "$OD"; wait "$OD" 2>/dev/null

start 100000 watch
BODY=$(curl -sf "http://127.0.0.1:$PD/pd/api/v1/regions" | wc -c)
sleep "$WATCH"
read -r WATCH_KB WATCH_N < <(pss_tree "$OD")
# the figure means something only if the observer really watches 100k regions
SEEN=$("$OPSEND_BIN" --runtime-dir "$W/run.watch" --json observe tikv 2>/dev/null | jq -r '.regions.count // 0')
kill "$OD"; wait "$OD" 2>/dev/null

mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }
printf 'BENCH|footprint idle: PSS of operatord + %s workers|%s MB|-|-|-|<= 30 MB\n' \
  "$((IDLE_N - 1))" "$(mb "$IDLE_KB")"
printf 'BENCH|footprint watching 100k regions %ss (observed: %s regions): PSS of operatord + %s workers|%s MB|one /regions body|%s MB|%s|<= 60 MB\n' \
  "$WATCH" "$SEEN" "$((WATCH_N - 1))" "$(mb "$WATCH_KB")" "$(awk -v b="$BODY" 'BEGIN{printf "%.1f", b / 1048576}')" \
  "$(awk -v a="$WATCH_KB" -v b="$BODY" 'BEGIN{ if (b > 0) printf "%.2f", a * 1024 / b; else print "?" }')"
