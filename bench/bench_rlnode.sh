#!/usr/bin/env bash
# bench_rlnode: rlnode POST /check under wrk, side by side with the physical
# ceiling of one check: Redis itself running the same Lua script (EVALSHA)
# under redis-benchmark, in the same run, on the same machine.
#   RLNODE_BIN=... RLLOAD_BIN=... bench/bench_rlnode.sh
# Prints "BENCH|" rows for scripts/bench.sh. A benchmark, not a test.
set -u
DUR=${BENCH_RLNODE_SECONDS:-8}          # seconds per measurement
CONNS=${BENCH_RLNODE_CONNS:-64}         # wrk connections
KEYS=${BENCH_RLNODE_KEYS:-1000}         # distinct keys the load spreads over
LIMIT=1000000000                        # every check allowed: the same work on both sides
N_REF=${BENCH_RLNODE_REF_N:-$((DUR * 8000))} # redis-benchmark requests (it has no duration)
: "${RLNODE_BIN:?set RLNODE_BIN}" "${RLLOAD_BIN:?set RLLOAD_BIN}"
for t in redis-server redis-cli redis-benchmark wrk curl jq; do
  command -v $t >/dev/null || { echo "bench_rlnode: $t is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
W=$(mktemp -d /tmp/bench_rlnode.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { local i; for i in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" >"$W/redis.log" 2>&1 &
PIDS+=($!)
wait_for redis-cli -p "$RP" ping || { echo "bench_rlnode: redis did not start" >&2; exit 1; }
NP=$(free_port)
"$RLNODE_BIN" --port "$NP" --redis "127.0.0.1:$RP" --node-id bench1 --default-limit "$LIMIT" >"$W/rlnode.log" 2>&1 &
PIDS+=($!)
wait_for curl -sf "http://127.0.0.1:$NP/health" || { echo "bench_rlnode: rlnode did not start" >&2; exit 1; }
# one check loads the script; its SHA is what /check sends
curl -sf -XPOST -d '{"key":"warm"}' "http://127.0.0.1:$NP/check" >/dev/null
SHA=$(curl -sf "http://127.0.0.1:$NP/health" | jq -r .check_script_sha)
[ ${#SHA} = 40 ] || { echo "bench_rlnode: rlnode reports no script SHA" >&2; exit 1; }

# reference: Redis running the same script with the arguments /check sends
# (the same limit and 10 s window, cost 1, a unique-ish member, $KEYS keys)
redis-benchmark -p "$RP" -c "$CONNS" -n "$N_REF" -r "$KEYS" --csv \
  EVALSHA "$SHA" 3 rl:bench:__rand_int__ rl:keys rl:reset:bench:__rand_int__ "$LIMIT" 10000 \
  bench:__rand_int__ 1 >"$W/rb.csv" 2>/dev/null
# "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
REF_RPS=$(tail -1 "$W/rb.csv" | tr -d '"' | cut -d, -f2)
REF_P99=$(tail -1 "$W/rb.csv" | tr -d '"' | cut -d, -f7)
redis-cli -p "$RP" flushall >/dev/null

cat >"$W/check.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, nil, nil, '{"key":"bench:' .. math.random(0, $KEYS - 1) .. '"}')
end
LUA
wrk -t2 -c "$CONNS" -d "${DUR}s" --latency -s "$W/check.lua" "http://127.0.0.1:$NP/check" >"$W/wrk.txt" 2>&1
RPS=$(awk '/Requests\/sec/ {print $2}' "$W/wrk.txt")
P99=$(awk '$1 == "99%" {print $2}' "$W/wrk.txt")
to_ms() { case "$1" in *ms) echo "${1%ms}";; *us) awk -v v="${1%us}" 'BEGIN{print v/1000}';; *s) awk -v v="${1%s}" 'BEGIN{print v*1000}';; *) echo "$1";; esac; }
P99=$(to_ms "$P99")
redis-cli -p "$RP" flushall >/dev/null

# half of the saturation rate, paced by rlload (wrk cannot pace)
HALF=$(awk -v r="$RPS" 'BEGIN{printf "%d", r / 2}')
"$RLLOAD_BIN" --targets "http://127.0.0.1:$NP" --rps "$HALF" --duration "$DUR" --concurrency 256 \
  --keys "$(seq -s, -f 'bench:%g' 0 199)" --quiet >"$W/half.json" 2>"$W/half.log"
HALF_P99=$(jq -r '.p99_ms' "$W/half.json" 2>/dev/null)
HALF_P50=$(jq -r '.p50_ms' "$W/half.json" 2>/dev/null)
HALF_RATE=$(jq -r '(.sent // .requests // 0) / '"$DUR" "$W/half.json" 2>/dev/null)

ratio=$(awk -v a="$RPS" -v b="$REF_RPS" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "?" }')
printf 'BENCH|rlnode /check at saturation (wrk -c%s)|%.0f checks/s, p99 %s ms|redis-benchmark, same script|%.0f/s, p99 %s ms|%s|>= 0.7\n' \
  "$CONNS" "$RPS" "$P99" "$REF_RPS" "$REF_P99" "$ratio"
printf 'BENCH|rlnode /check at half load (rlload paced at %s/s)|p50 %s ms, p99 %s ms (%.0f sent/s)|-|-|-|p99 <= 2 ms\n' \
  "$HALF" "$HALF_P50" "$HALF_P99" "$HALF_RATE"
