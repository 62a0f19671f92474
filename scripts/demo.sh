#!/usr/bin/env bash
# operatord demonstration: real processes, real faults, measured loops.
#   ./scripts/demo.sh ratelimiter [--auto]
#   ./scripts/demo.sh tikv [--auto]        (pdsim, node kill -> transfer-leader)
# On a terminal it runs opdash, the live dashboard, with the demo's chapters
# (scripts/demo/*.chapters): SPACE advances, each fault is injected by its
# chapter, q quits; then it prints the measured times of the loops that ran.
# Without a terminal, or with --auto, it runs unattended and exits non-zero
# if a loop did not close. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/deps.sh

SUBJECT=${1:-}
AUTO=0
for a in "$@"; do [ "$a" = "--auto" ] && AUTO=1; done
[ -t 0 ] && [ -t 1 ] || AUTO=1
LOOP_TIMEOUT_S=${LOOP_TIMEOUT_S:-120}

usage() { echo "usage: $0 ratelimiter|tikv [--auto]" >&2; exit 2; }
case "$SUBJECT" in
  ratelimiter) ;;
  tikv) shift; exec "$ROOT/scripts/demo-tikv.sh" "$@" ;;
  *) usage ;;
esac

op_install_deps
echo "== building" >&2
op_build build >/dev/null
B=$ROOT/build
OPERATORD=$B/supervisor/operatord OPSEND=$B/clients/opsend OPTAIL=$B/clients/optail
OPDASH=$B/clients/opdash
RLNODE=$B/subjects/ratelimiter/rlnode/rlnode RLLOAD=$B/subjects/ratelimiter/rlnode/rlload

WORK=$(mktemp -d /tmp/operatord-demo.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  # operatord undoes its faults on SIGTERM; op_stop_pids gives it the time to.
  op_stop_pids "${PIDS[@]}"
  # A node restarted by chaos (node_kill undo) is not our child: find it by its
  # command line, which names this demo's own Redis port (other demos are left alone).
  [ -n "${REDIS_PORT:-}" ] && pkill -f -- "--redis 127.0.0.1:$REDIS_PORT --node-id demo-" 2>/dev/null || true
  [ -n "${REDIS_PID:-}" ] && kill "$REDIS_PID" 2>/dev/null || true
  if [ $rc -ne 0 ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

REDIS_PORT=$(op_free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
  --logfile "$WORK/redis.log" --daemonize yes --pidfile "$WORK/redis.pid"
op_wait_for 10 "redis" test -s "$WORK/redis.pid"
REDIS_PID=$(cat "$WORK/redis.pid")
op_start_rlnodes demo
# The load keys: "drift" gets a high limit, "ghost" a modest one.
curl -sf -X PUT -d '{"limit":100000}' "${NODES[0]}/api/limits/drift" >/dev/null
curl -sf -X PUT -d '{"limit":1000}' "${NODES[0]}/api/limits/ghost" >/dev/null

cat >"$WORK/operatord.conf" <<CONF
[operatord]
runtime_dir = $WORK/run
state_dir = $WORK/state
mode = execute
verify_delay = 5s
poll_interval = 500ms
[subject.ratelimiter]
redis = 127.0.0.1:$REDIS_PORT
nodes = $NODE_LIST
[chaos]
enabled = true
CONF
"$OPERATORD" --config "$WORK/operatord.conf" 2>"$WORK/operatord.log" &
PIDS+=($!)
export OPERATORD_RUNTIME_DIR=$WORK/run
op_wait_for 20 "operatord workers" op_workers_ready "$OPSEND"
"$OPSEND" status

"$RLLOAD" --targets "$NODE_LIST" --rps 60 --duration 0 --keys drift,ghost --quiet \
  >"$WORK/rlload.out" 2>"$WORK/rlload.log" &
PIDS+=($!)

# Drift is only judged once every node has a full window of history.
covered() { "$OPSEND" --json observe ratelimiter |
  jq -e '[.keys[] | select(.key=="drift" or .key=="ghost") | .covers_window] | length == 2 and all'; }
op_wait_for 60 "a full window of traffic" covered

# measure FAULT INVARIANT KEY: time to detect and to verified fix of the last
# injection of FAULT, from the events; returns 1 if that loop did not close.
RESULTS=()
FAILED=0
measure() {
  local fault=$1 inv=$2 key=$3 ev fseq t_fault open_ms done_ms status
  ev=$("$OPTAIL" --json)
  fseq=$(jq -s --arg f "$fault" '[.[] | select(.type=="fault_injected" and .data.fault==$f)] | last | .seq // 0' <<<"$ev")
  t_fault=$(jq -s --arg f "$fault" '[.[] | select(.type=="fault_injected" and .data.fault==$f)] | last | .data.started_at' <<<"$ev")
  open_ms=$(op_to_ms "$(jq -rs --arg i "$inv" --arg k "$key" --argjson a "$fseq" '[.[] | select(.seq > $a and (.type=="ticket_opened" or .type=="ticket_reopened") and .invariant==$i and .entity==$k)] | first | .ts' <<<"$ev")")
  done_ms=$(op_to_ms "$(jq -rs --arg i "$inv" --arg k "$key" --argjson a "$fseq" '[.[] | select(.seq > $a and .type=="ticket_resolved" and .invariant==$i and .entity==$k)] | first | .ts' <<<"$ev")")
  status=$(jq -rs --arg i "$inv" --arg k "$key" --argjson a "$fseq" '[.[] | select(.seq > $a and .invariant==$i and .entity==$k and (.type | test("^ticket_(resolved|escalated|cleared|rejected)$")))] | first | .type // "" | sub("ticket_"; "")' <<<"$ev")
  if [ "$status" = resolved ] && [ "$open_ms" != null ] && [ "$done_ms" != null ]; then
    RESULTS+=("$(awk -v f="$fault" -v d=$((open_ms - t_fault)) -v x=$((done_ms - t_fault)) \
      'BEGIN { printf "%-16s detected in %5.1f s   verified fix in %5.1f s", f, d / 1000, x / 1000 }')")
  else
    RESULTS+=("$(printf '%-16s did not close: ticket %s' "$fault" "${status:-never opened}")")
    FAILED=1
  fi
  echo "${RESULTS[-1]}"
}

if [ "$AUTO" -eq 0 ]; then
  # The dashboard tells the story; its chapters inject the faults.
  "$OPDASH" --chapters "$ROOT/scripts/demo/ratelimiter.chapters"
  op_say "Results"
  ran=0
  for loop in "counter_drift counter_drift drift" "ghost_allowing ghost_allowing ghost"; do
    set -- $loop
    if "$OPTAIL" --json --type fault_injected | jq -se --arg f "$1" 'any(.[]; .data.fault==$f)' >/dev/null; then
      measure "$@" >/dev/null
      ran=1
    fi
  done
  [ $ran -eq 1 ] && printf '   %s\n' "${RESULTS[@]}" || echo "   no fault was injected"
  "$OPSEND" tickets
  exit $FAILED
fi

# Show the loop as it happens: the event stream, without the worker chatter.
"$OPTAIL" --follow 2>/dev/null | grep --line-buffered -vE 'worker_started|daemon_started' \
  | sed -u 's/^/   | /' &
PIDS+=($!)

# run_loop TITLE FAULT INVARIANT KEY [PARAMS...]: inject, wait for the
# ticket to close, print time to detect and time to verified fix.
run_loop() {
  local title=$1 fault=$2 inv=$3 key=$4; shift 4
  op_say "$title"
  "$OPSEND" chaos inject "$fault" "key=$key" "$@" >/dev/null
  local status="" end=$((SECONDS + LOOP_TIMEOUT_S))
  while [ $SECONDS -lt $end ]; do
    status=$("$OPSEND" --json tickets | jq -r --arg i "$inv" --arg k "$key" \
      '[.[] | select(.invariant==$i and .entity==$k)][0].status // ""')
    case "$status" in resolved|escalated|rejected|cleared) break ;; esac
    sleep 0.5
  done
  measure "$fault" "$inv" "$key"
  op_pause
}

run_loop "Chapter 1: counter drift. A Redis write stall during traffic makes the nodes' timed-out increments retry and double count." \
  counter_drift counter_drift drift ttl=30s
run_loop "Chapter 2: ghost allowing. A node misses a limit change (its subscription is cut) and keeps allowing a key whose limit is now 0." \
  ghost_allowing ghost_allowing ghost ttl=60s

op_say "Results"
printf '   %s\n' "${RESULTS[@]}"
"$OPSEND" tickets
exit $FAILED
