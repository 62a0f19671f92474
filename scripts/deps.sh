#!/usr/bin/env bash
# Sourced by test.sh and the demos: installs the Debian bookworm packages
# operatord needs to build, test and demo when they are missing, builds, and
# holds the small helpers the demos share.
OP_DEB_PACKAGES="meson ninja-build pkg-config gcc libnng-dev libmsgpack-dev
  libcurl4-openssl-dev libevent-dev libjson-c-dev libsqlite3-dev libhiredis-dev
  libinih-dev libsystemd-dev check redis-server jq curl procps wrk
  etcd-server
  libncurses-dev tmux
  prometheus prometheus-alertmanager systemd"

op_install_deps() {
  local missing=()
  for p in $OP_DEB_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages; as root run:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

op_build() {
  local dir=${1:-build}; shift || true
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dwerror=true "$@" >/dev/null
  fi
  ninja -C "$dir"
}

# ---- helpers shared by the demos and eval.sh ----

# op_free_port: a TCP port with no listener, below the kernel's ephemeral
# range (32768-60999): a port there can be taken by any outgoing connection
# between this check and the bind.
op_free_port() {
  local p
  for p in $(shuf -i 20000-32000 -n 50); do
    (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }
  done
  echo "no free port" >&2; exit 1
}

# op_start_rlnodes TAG [RLNODE_ARGS...]: three rlnodes on the Redis at
# $REDIS_PORT, run from $WORK with ids TAG-n1..3, each waited for; appends
# their pids to PIDS and ids to NODE_IDS, sets NODES (URLs) and NODE_LIST.
op_start_rlnodes() {
  local tag=$1 i port; shift
  NODES=()
  for i in 1 2 3; do
    port=$(op_free_port)
    (cd "$WORK" && exec "$RLNODE" --port "$port" --redis "127.0.0.1:$REDIS_PORT" \
        --node-id "$tag-n$i" --window 10s "$@" >>"$WORK/rlnode-$i.log" 2>&1) &
    PIDS+=($!)
    NODE_IDS+=("$tag-n$i")
    NODES+=("http://127.0.0.1:$port")
    op_wait_for 10 "rlnode $i" curl -sf "http://127.0.0.1:$port/health"
  done
  NODE_LIST=$(IFS=,; echo "${NODES[*]}")
}

# op_wait_for SECONDS DESCRIPTION COMMAND...: polls a condition (never a bare sleep).
op_wait_for() {
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && { echo "timed out waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}

op_say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
# op_pause: waits for Enter unless AUTO=1 (no terminal, or --auto).
op_pause() { [ "${AUTO:-1}" -eq 1 ] || read -r -p "   [Enter] to continue " _; }

# op_to_ms RFC3339: epoch milliseconds, or "null".
op_to_ms() {
  local t=$1; [ "$t" = null ] || [ -z "$t" ] && { echo null; return; }
  local f=${t##*.}; f=${f%Z}
  echo $(( $(date -u -d "${t%.*}Z" +%s) * 1000 + 10#$f ))
}

# op_workers_ready OPSEND: true when all five workers report ready.
op_workers_ready() {
  [ "$("$1" --json status | jq '[.workers[] | select(.state=="ready")] | length')" = 5 ]
}

# op_stop_pids PID...: SIGTERM, up to 10 s for a clean stop (operatord undoes
# its faults), then SIGKILL.
op_stop_pids() {
  local p alive
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    alive=0; for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break; sleep 0.1
  done
  for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
}
