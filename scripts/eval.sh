#!/usr/bin/env bash
# Scored chaos campaign on real processes, set up as the demos do.
#   ./scripts/eval.sh ratelimiter|tikv [--trials N] [--baseline | --baseline-only] [--backend B]
#                     --out DIR [--campaign FILE] [--soak DURATION]
# Writes DIR/report.json, DIR/report.html, DIR/events.jsonl (the whole event
# stream as `optail --json` prints it) and DIR/logs/. Everything it starts is
# stopped on exit. BUILD=DIR picks the build directory (default: build);
# NO_BUILD=1 uses it as it is. EVAL_FLAP_WINDOW (default 10s) must stay below
# the campaign's cooldown.
# --soak D runs load with no faults for D instead of a campaign (DIR/soak.json).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/deps.sh

usage() {
  echo "usage: $0 ratelimiter|tikv [--trials N] [--baseline] [--backend rules|anthropic|openai] --out DIR [--campaign FILE] [--soak DURATION]" >&2
  exit 2
}
SUBJECT=${1:-}; shift || true
case "$SUBJECT" in ratelimiter|tikv) ;; *) usage ;; esac
TRIALS= BASELINE= BACKEND=rules OUT= CAMPAIGN= SOAK=
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) TRIALS=${2:?}; shift 2 ;;
    --baseline) BASELINE=--baseline; shift ;;
    --baseline-only) BASELINE=--baseline-only; shift ;;
    --backend) BACKEND=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --campaign) CAMPAIGN=${2:?}; shift 2 ;;
    --soak) SOAK=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$OUT" ] || usage
CAMPAIGN=${CAMPAIGN:-$ROOT/campaigns/$SUBJECT.campaign}
case "$BACKEND" in
  rules) DIAG="" ;;
  anthropic) DIAG=$'[diagnoser]\nbackend = anthropic\nmodel = '"${EVAL_MODEL:-claude-sonnet-4-5}"$'\napi_key_env = ANTHROPIC_API_KEY' ;;
  openai) DIAG=$'[diagnoser]\nbackend = openai\nmodel = '"${EVAL_MODEL:?set EVAL_MODEL}"$'\nbase_url = '"${EVAL_BASE_URL:?set EVAL_BASE_URL}"$'\ntimeout = 120s' ;;
  *) usage ;;
esac

op_install_deps
BUILD=${BUILD:-build}
case "$BUILD" in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "== building in $B" >&2
  op_build "$B" >/dev/null
fi
OPERATORD=$B/supervisor/operatord OPSEND=$B/clients/opsend OPTAIL=$B/clients/optail
OPEVAL=$B/clients/opeval
RLNODE=$B/subjects/ratelimiter/rlnode/rlnode RLLOAD=$B/subjects/ratelimiter/rlnode/rlload
PDSIM=$B/subjects/tikv/pdsim/pdsim

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/operatord-eval.XXXXXX)
PIDS=() NODE_IDS=() REDIS_PID= PDSIM_PID=
TAG="eval$$"
cleanup() {
  local rc=$?
  set +e
  if [ -S "$WORK/run/ctl.sock" ]; then
    OPERATORD_RUNTIME_DIR=$WORK/run "$OPTAIL" --json >"$OUT/events.jsonl" 2>/dev/null
  fi
  # operatord first: on SIGTERM it undoes its faults (restarts what it killed)
  op_stop_pids "${PIDS[@]}"
  # a node respawned by a node_kill undo is not our child: find it by its node id
  for id in "${NODE_IDS[@]}"; do
    for p in $(pgrep -f -- "--node-id $id( |$)" 2>/dev/null); do op_stop_pids "$p"; done
  done
  if [ -n "$PDSIM_PID" ]; then kill -CONT "$PDSIM_PID" 2>/dev/null; op_stop_pids "$PDSIM_PID"; fi
  if [ -n "$REDIS_PID" ]; then kill -CONT "$REDIS_PID" 2>/dev/null; op_stop_pids "$REDIS_PID"; fi
  mkdir -p "$OUT/logs" && cp "$WORK"/*.log "$WORK"/*.conf "$OUT/logs/" 2>/dev/null
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM


# The campaign measures the loop, so the safety budgets that would refuse the
# 6th reset of an hour are off, and the flap window is shorter than the
# campaign's cooldown: no trial inherits a flap count from the one before.
SAFETY=$'[safety]\nbudget_action = off\nbudget_subject = off\ndestructive_per_day = off\nblast_radius = off\nflap_window = '"${EVAL_FLAP_WINDOW:-10s}"

start_ratelimiter() {
  local try
  for try in 1 2 3 4 5; do  # a port free a moment ago may be taken by now
    REDIS_PORT=$(op_free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
      --logfile "$WORK/redis.log" --daemonize yes --pidfile "$WORK/redis.pid"
    op_wait_for 5 "redis" test -s "$WORK/redis.pid" && break
  done
  test -s "$WORK/redis.pid" || { echo "redis did not start (see $WORK/redis.log)" >&2; exit 1; }
  REDIS_PID=$(cat "$WORK/redis.pid")
  # --limit-refresh 24h: the nodes' periodic limits reload (60 s by default)
  # ends a ghost_allowing fault at a random moment of the trial. Every 10
  # minutes it still ended one baseline trial of 20 in a 90-minute campaign
  # (2026-11-29); a day is longer than any campaign.
  op_start_rlnodes "$TAG" --limit-refresh 24h
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
$SAFETY
$DIAG
CONF
  "$OPERATORD" --config "$WORK/operatord.conf" 2>"$WORK/operatord.log" &
  PIDS+=($!)
  op_wait_for 20 "operatord workers" op_workers_ready "$OPSEND"
  "$RLLOAD" --targets "$NODE_LIST" --rps 60 --duration 0 --keys drift,ghost --quiet \
    >"$WORK/rlload.out" 2>"$WORK/rlload.log" &
  PIDS+=($!)
  covered() { "$OPSEND" --json observe ratelimiter |
    jq -e '[.keys[] | select(.key=="drift" or .key=="ghost") | .covers_window] | length == 2 and all'; }
  op_wait_for 60 "a full window of traffic" covered
}

start_tikv() {
  local stores=${STORES:-4} regions=${REGIONS:-300}
  "$PDSIM" --port 0 --port-file "$WORK/pd.port" --state-file "$WORK/pdsim-stores.json" \
    --stores "$stores" --regions "$regions" --election-ms 1000 --disconnect-ms 3000 \
    --down-ms 60000 --balance-interval-ms 1000 2>"$WORK/pdsim.log" &
  PDSIM_PID=$!
  op_wait_for 20 "pdsim" test -s "$WORK/pd.port"
  PD="http://127.0.0.1:$(cat "$WORK/pd.port")"
  all_up() { [ "$(curl -sf "$PD/pdsim/stores" | jq '[.stores[] | select(.running and .state_name=="Up")] | length')" = "$stores" ]; }
  op_wait_for 30 "every store up" all_up
  cat >"$WORK/operatord.conf" <<CONF
[operatord]
runtime_dir = $WORK/run
state_dir = $WORK/state
mode = execute
verify_delay = 2s
poll_interval = 500ms
[subject.tikv]
pd = $PD
[chaos]
enabled = true
$SAFETY
$DIAG
CONF
  "$OPERATORD" --config "$WORK/operatord.conf" 2>"$WORK/operatord.log" &
  PIDS+=($!)
  op_wait_for 20 "operatord workers" op_workers_ready "$OPSEND"
  healthy() { "$OPSEND" --json observe tikv |
    jq -e '.pd.ok and ([.stores[] | select(.live)] | length) == '"$stores"' and .regions.leaderless == 0'; }
  op_wait_for 30 "a healthy cluster" healthy
}

export OPERATORD_RUNTIME_DIR=$WORK/run
echo "== starting $SUBJECT in $WORK" >&2
"start_$SUBJECT"

NOTE="$(date -u +%FT%TZ) on $(uname -srm), $(nproc) CPUs; command: scripts/eval.sh $SUBJECT${TRIALS:+ --trials $TRIALS}${BASELINE:+ $BASELINE} --backend $BACKEND; flap_window ${EVAL_FLAP_WINDOW:-10s}, budgets off"
if [ -n "$SOAK" ]; then
  echo "== soak: load, no faults, for $SOAK" >&2
  "$OPEVAL" soak --subject "$SUBJECT" --duration "$SOAK" --note "$NOTE" --json "$OUT/soak.json"
else
  echo "== campaign $CAMPAIGN" >&2
  "$OPEVAL" run "$CAMPAIGN" ${TRIALS:+--trials "$TRIALS"} $BASELINE --backend "$BACKEND" \
    --note "$NOTE" --json "$OUT/report.json" --html "$OUT/report.html"
fi
