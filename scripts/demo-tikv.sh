#!/usr/bin/env bash
# operatord TiKV demonstration: pdsim (a PD-compatible simulator with one
# real process per TiKV store), operatord in execute mode, a real SIGKILL of
# the store with the most leaders, and the whole loop: detection, diagnosis,
# transfer-leader operators accepted by PD, verification. When the store comes
# back (the fault's TTL) it rejoins with no leaders, and a second loop moves
# leaders back onto it.
#   ./scripts/demo-tikv.sh [--auto]     (also: ./scripts/demo.sh tikv)
# On a terminal it runs opdash, the live dashboard, with
# scripts/demo/tikv.chapters (SPACE advances, the chapters inject the fault,
# q quits), then prints the measured times of the loops that ran.
# Without a terminal, or with --auto, it runs unattended and exits non-zero
# if a loop did not close. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/deps.sh

AUTO=0
for a in "$@"; do
  case "$a" in
    --auto) AUTO=1 ;;
    tikv) ;;
    *) echo "usage: $0 [--auto]" >&2; exit 2 ;;
  esac
done
[ -t 0 ] && [ -t 1 ] || AUTO=1
LOOP_TIMEOUT_S=${LOOP_TIMEOUT_S:-120}
STORES=${STORES:-4}
REGIONS=${REGIONS:-300}
KILL_TTL=${KILL_TTL:-25s}

op_install_deps
echo "== building" >&2
op_build build >/dev/null
B=$ROOT/build
OPERATORD=$B/supervisor/operatord OPSEND=$B/clients/opsend OPTAIL=$B/clients/optail
OPDASH=$B/clients/opdash
PDSIM=$B/subjects/tikv/pdsim/pdsim

WORK=$(mktemp -d /tmp/operatord-tikv-demo.XXXXXX)
PIDS=()
PDSIM_PID=
cleanup() {
  local rc=$?
  # operatord first: on SIGTERM it undoes its faults (restarts a killed store)
  op_stop_pids "${PIDS[@]}"
  # pdsim stops its store processes itself (they also die with it: PDEATHSIG)
  if [ -n "$PDSIM_PID" ]; then
    kill -CONT "$PDSIM_PID" 2>/dev/null || true
    op_stop_pids "$PDSIM_PID"
  fi
  if [ $rc -ne 0 ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

op_say "Starting pdsim ($STORES TiKV store processes, $REGIONS regions, 3 replicas) and operatord in $WORK"
# Fast timings so the demo runs in seconds: raft elects after 1 s without a
# heartbeat, PD calls a store Disconnected after 3 s (real PD: 20 s) and Down
# after 60 s; PD's own balance-leader moves one leader per second.
"$PDSIM" --port 0 --port-file "$WORK/pd.port" --state-file "$WORK/pdsim-stores.json" \
  --stores "$STORES" --regions "$REGIONS" --election-ms 1000 --disconnect-ms 3000 \
  --down-ms 60000 --balance-interval-ms 1000 2>"$WORK/pdsim.log" &
PDSIM_PID=$!
op_wait_for 20 "pdsim" test -s "$WORK/pd.port"
PD="http://127.0.0.1:$(cat "$WORK/pd.port")"
all_up() { [ "$(curl -sf "$PD/pdsim/stores" | jq '[.stores[] | select(.running and .state_name=="Up")] | length')" = "$STORES" ]; }
op_wait_for 30 "every store up" all_up
echo "   PD at $PD"

cat >"$WORK/operatord.conf" <<CONF
[operatord]
runtime_dir = $WORK/run
state_dir = $WORK/state
mode = execute
verify_delay = 2s
poll_interval = 500ms
[subject.tikv]
pd = $PD
[safety]
; pdsim has 4 stores: the rejoin loop touches the fourth within the blast
; window, which the default share (34%) refuses. A demo cluster allows it.
blast_radius = 100%
[chaos]
enabled = true
CONF
"$OPERATORD" --config "$WORK/operatord.conf" 2>"$WORK/operatord.log" &
PIDS+=($!)
export OPERATORD_RUNTIME_DIR=$WORK/run
op_wait_for 20 "operatord workers" op_workers_ready "$OPSEND"
"$OPSEND" status

show_cluster() {
  "$OPSEND" --json observe tikv | jq -r '
    "   PD ok=\(.pd.ok)  regions=\(.regions.count // "?")  leaderless=\(.regions.leaderless // "?")  led-from-dead=\(.regions.leader_on_dead_store // "?")  under-replicated=\(.regions.under_replicated // "?")",
    (.stores[] | "   store \(.id)  \(.state_name | .[0:12])\t probe=\(if .probe_ok then "ok" else .probe_error end)\t leaders=\(.leaders)")'
}
healthy() { "$OPSEND" --json observe tikv |
  jq -e '.pd.ok and ([.stores[] | select(.live)] | length) == '"$STORES"' and .regions.leaderless == 0'; }
op_wait_for 30 "a healthy cluster" healthy
if [ "$AUTO" -eq 1 ]; then
  op_say "The cluster as operatord observes it (PD plus a direct probe of every store's status address)"
  show_cluster
fi

# wait_ticket INVARIANT ENTITY AFTER_SEQ: waits for the ticket to close;
# prints its final status.
wait_ticket() {
  local inv=$1 ent=$2 after=$3 status="" end=$((SECONDS + LOOP_TIMEOUT_S))
  while [ $SECONDS -lt $end ]; do
    status=$("$OPTAIL" --json | jq -rs --arg i "$inv" --arg e "$ent" --argjson a "$after" '
      [.[] | select(.seq > $a and .invariant == $i and .entity == $e and
        (.type | test("^ticket_(resolved|escalated|cleared|rejected)$")))][0].type // ""')
    [ -n "$status" ] && { echo "${status#ticket_}"; return; }
    sleep 0.5
  done
  echo "open"
}

RESULTS=()
FAILED=0
# report LABEL INVARIANT ENTITY T0_MS AFTER_SEQ STATUS
report() {
  local label=$1 inv=$2 ent=$3 t0=$4 after=$5 status=$6 ev open_ms done_ms
  ev=$("$OPTAIL" --json)
  open_ms=$(op_to_ms "$(jq -rs --arg i "$inv" --arg e "$ent" --argjson a "$after" \
    '[.[] | select(.seq > $a and (.type=="ticket_opened" or .type=="ticket_reopened") and .invariant==$i and .entity==$e)] | first | .ts' <<<"$ev")")
  done_ms=$(op_to_ms "$(jq -rs --arg i "$inv" --arg e "$ent" --argjson a "$after" \
    '[.[] | select(.seq > $a and .type=="ticket_resolved" and .invariant==$i and .entity==$e)] | first | .ts' <<<"$ev")")
  if [ "$status" = resolved ] && [ "$open_ms" != null ] && [ "$done_ms" != null ]; then
    RESULTS+=("$(awk -v l="$label" -v d=$((open_ms - t0)) -v x=$((done_ms - t0)) \
      'BEGIN { printf "%-34s detected in %5.1f s   verified fix in %5.1f s", l, d / 1000, x / 1000 }')")
  else
    RESULTS+=("$(printf '%-34s did not close: ticket %s' "$label" "${status:-never opened}")")
    FAILED=1
  fi
  echo "${RESULTS[-1]}"
}

last_seq() { "$OPTAIL" --json | jq -s 'map(.seq) | max // 0'; }

if [ "$AUTO" -eq 0 ]; then
  # The dashboard tells the story; its chapters inject the fault.
  "$OPDASH" --chapters "$ROOT/scripts/demo/tikv.chapters"
  op_say "Results"
  EV=$("$OPTAIL" --json)
  INJ=$(jq -cs '[.[] | select(.type=="fault_injected" and .data.fault=="node_kill")] | last // empty' <<<"$EV")
  if [ -z "$INJ" ]; then
    echo "   no fault was injected"
  else
    SEQ0=$(jq '.seq - 1' <<<"$INJ")
    VICTIM=$(jq -r '.data.target' <<<"$INJ")
    T_KILL=$(jq -r '.data.started_at' <<<"$INJ")
    ST=$(jq -rs --arg e "$VICTIM" --argjson a "$SEQ0" '[.[] | select(.seq > $a and .invariant=="store_down" and .entity==$e and (.type | test("^ticket_(resolved|escalated|cleared|rejected)$")))][0].type // "open" | sub("ticket_"; "")' <<<"$EV")
    report "node_kill -> store_down" store_down "$VICTIM" "$T_KILL" "$SEQ0" "$ST" >/dev/null
    # the store returned when the fault was undone (its TTL)
    CLR=$(jq -cs --argjson a "$SEQ0" '[.[] | select(.seq > $a and .type=="fault_cleared" and .data.fault=="node_kill")] | first // empty' <<<"$EV")
    if [ -n "$CLR" ]; then
      SEQ1=$(jq '.seq' <<<"$CLR")
      T_BACK=$(jq -r '.data.ended_at' <<<"$CLR")
      ST2=$(jq -rs --argjson a "$SEQ1" '[.[] | select(.seq > $a and .invariant=="leader_imbalance" and (.type | test("^ticket_(resolved|escalated|cleared|rejected)$")))][0].type // "open" | sub("ticket_"; "")' <<<"$EV")
      report "rejoin -> leader_imbalance" leader_imbalance cluster "$T_BACK" "$SEQ1" "$ST2" >/dev/null
    fi
    printf '   %s\n' "${RESULTS[@]}"
  fi
  "$OPSEND" tickets
  exit $FAILED
fi

# Show the loop as it happens: the event stream, without the worker chatter.
"$OPTAIL" --follow 2>/dev/null | grep --line-buffered -vE 'worker_started|daemon_started' \
  | sed -u 's/^/   | /' &
PIDS+=($!)

op_say "Chapter 1: node loss. SIGKILL the TiKV store with the most leaders (pdsim restarts it after $KILL_TTL)."
SEQ0=$(last_seq)
INJ=$("$OPSEND" --json chaos inject node_kill "ttl=$KILL_TTL")
VICTIM=$(jq -r '.target' <<<"$INJ")
T_KILL=$(jq -r '.started_at' <<<"$INJ")
echo "   killed store $VICTIM"
ST=$(wait_ticket store_down "$VICTIM" "$SEQ0")
sleep 1
op_say "What operatord did (diagnosis, operators, verification figures)"
"$OPTAIL" --json | jq -r --argjson a "$SEQ0" '
  select(.seq > $a) |
  if .type == "diagnosis" then "   diagnosis: \(.data.diagnosis.primary_diagnosis // .data.primary_diagnosis // "" | .[0:300])"
  elif .type == "action_executed" then "   action \(.data.action): planned \(.data.result.planned // "-"), accepted by PD \(.data.result.accepted // "-"), rejected \(.data.result.rejected // "-"); leaders before \(.data.result.leaders_before // {} | tostring)"
  elif .type == "verification" then "   verification \(.data.result): \(.data.figures.message // "")"
  else empty end' 2>/dev/null || true
show_cluster
report "node_kill -> store_down" store_down "$VICTIM" "$T_KILL" "$SEQ0" "$ST"
op_pause

op_say "Chapter 2: rejoin. The store comes back with no leaders; PD would take minutes to move them back."
SEQ1=$(last_seq)
back() { "$OPSEND" --json observe tikv | jq -e --arg v "$VICTIM" '.stores[] | select((.id|tostring)==$v) | .live'; }
op_wait_for 90 "store $VICTIM to return" back
T_BACK=$(date +%s%3N)
show_cluster
ST2=$(wait_ticket leader_imbalance cluster "$SEQ1")
show_cluster
report "rejoin -> leader_imbalance" leader_imbalance cluster "$T_BACK" "$SEQ1" "$ST2"

op_say "Results"
printf '   %s\n' "${RESULTS[@]}"
"$OPSEND" tickets
exit $FAILED
