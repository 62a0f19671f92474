#!/usr/bin/env bash
# Installs the Debian bookworm packages operatord needs to build, test and
# demo, when they are missing. Sourced by test.sh and demo.sh.
OP_DEB_PACKAGES="meson ninja-build pkg-config gcc libnng-dev libmsgpack-dev
  libcurl4-openssl-dev libevent-dev libjson-c-dev libsqlite3-dev libhiredis-dev
  libinih-dev libsystemd-dev check redis-server jq curl procps"

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
