# shellcheck shell=bash
# Shared plumbing for ./dev: where things live, logging with progress, and
# process supervision by recorded PIDs. Sourced, never executed.

PS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Installs and build caches are keyed by version and survive `down`; state
# (data, logs, PIDs) is what a running platform owns.
PS_CACHE=${POLYSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/polystream}
PS_STATE=${POLYSTREAM_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/polystream}
PS_DATA=$PS_STATE/data
PS_LOGS=$PS_STATE/logs
PS_RUN=$PS_STATE/run
mkdir -p "$PS_CACHE" "$PS_DATA" "$PS_LOGS" "$PS_RUN"

# Go and Maven caches live in the per-user cache so a warm machine rebuilds nothing.
export GOPATH=$PS_CACHE/go
export GOMODCACHE=$PS_CACHE/go/pkg/mod
export GOCACHE=$PS_CACHE/go/build-cache
export GOFLAGS="${GOFLAGS:-} -modcacherw"
export GOTOOLCHAIN=local
PS_M2=$PS_CACHE/m2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PS_CACHE/target}

if [[ -t 1 ]]; then
  _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_green=$'\e[32m' _c_yellow=$'\e[33m' _c_dim=$'\e[2m' _c_off=$'\e[0m'
else
  _c_bold='' _c_red='' _c_green='' _c_yellow='' _c_dim='' _c_off=''
fi

# has_line GREP_ARGS... -- CMD...: whether CMD's output matches. Never
# `CMD | grep -q`: under pipefail, grep exiting at its first match can kill CMD
# with SIGPIPE and fail the test at random.
has_line() {
  local args=() out
  while (($#)) && [[ $1 != -- ]]; do args+=("$1"); shift; done
  shift
  out=$("$@" 2>/dev/null) || return 1
  grep -q "${args[@]}" <<<"$out"
}

log() { printf '%s==>%s %s\n' "$_c_bold" "$_c_off" "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$_c_yellow" "$_c_off" "$*" >&2; }
die() {
  printf '%serror:%s %s\n' "$_c_red" "$_c_off" "$*" >&2
  exit 1
}

# Elapsed seconds as "1m05s".
fmt_secs() {
  local s=$1
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# Run a long command with its output in LOGFILE and a heartbeat on stderr, so a
# cold install shows what it is doing and for how long.
#   with_progress "building kube-apiserver (2/5)" LOGFILE cmd args...
with_progress() {
  local what=$1 logfile=$2
  shift 2
  mkdir -p "$(dirname "$logfile")"
  local start=$SECONDS
  info "$what ... (log: $logfile)"
  "$@" >>"$logfile" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    local i
    for ((i = 0; i < 30; i++)); do
      sleep 1
      kill -0 "$pid" 2>/dev/null || break
    done
    if kill -0 "$pid" 2>/dev/null; then
      info "  ... still $what, $(fmt_secs $((SECONDS - start))) so far"
    fi
  done
  if wait "$pid"; then
    info "  done: $what in $(fmt_secs $((SECONDS - start)))"
  else
    printf '%serror:%s %s failed; last lines of %s:\n' "$_c_red" "$_c_off" "$what" "$logfile" >&2
    tail -n 25 "$logfile" >&2
    return 1
  fi
}

# --- versioned install directories -------------------------------------------

# pkg_dir NAME VERSION -> directory holding that install
pkg_dir() { printf '%s/pkg/%s/%s' "$PS_CACHE" "$1" "$2"; }
pkg_installed() { [[ -f "$(pkg_dir "$1" "$2")/.installed" ]]; }
pkg_mark_installed() {
  mkdir -p "$(pkg_dir "$1" "$2")"
  date -u +%FT%TZ >"$(pkg_dir "$1" "$2")/.installed"
}

# apt_ensure PKG... installs Debian packages that are missing. `apt-get update`
# runs at most once per invocation of ./dev.
_apt_updated=0
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    has_line 'install ok installed' -- dpkg-query -W -f='${Status}' "$p" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  local log=$PS_LOGS/install-apt.log
  if ((!_apt_updated)); then
    with_progress "refreshing Debian package lists" "$log" "${sudo[@]}" apt-get update -o DPkg::Lock::Timeout=300 || return 1
    _apt_updated=1
  fi
  # Packages such as redis-server and postgresql start a system-wide daemon on
  # our ports when an init system runs; a temporary policy-rc.d forbids that
  # (the standard Debian switch), unless the machine already has one.
  local policy=/usr/sbin/policy-rc.d own_policy=0 rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null && "${sudo[@]}" chmod 755 "$policy" && own_policy=1
  fi
  with_progress "installing Debian packages: ${missing[*]}" "$log" \
    env DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" || rc=$?
  ((own_policy)) && "${sudo[@]}" rm -f "$policy"
  return "$rc"
}

# --- processes -----------------------------------------------------------------

pidfile() { printf '%s/%s.pid' "$PS_RUN" "$1"; }
failfile() { printf '%s/%s.failed' "$PS_RUN" "$1"; }
logfile() { printf '%s/%s.log' "$PS_LOGS" "$1"; }

# True when PID is alive. A zombie counts as dead: where PID 1 reaps slowly,
# `kill -0` alone would keep a stopped server "running" for seconds.
pid_alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $state && $state != Z* ]]
}

# True when NAME was started by us and its process is alive.
is_running() {
  local pf
  pf=$(pidfile "$1")
  [[ -f $pf ]] && pid_alive "$(cat "$pf")"
}

# spawn NAME cmd args... : start in its own session (so `down` can stop the
# whole process group), output appended to the component's log, PID recorded.
spawn() {
  local name=$1
  shift
  local log
  log=$(logfile "$name")
  printf '\n--- %s starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
  setsid "$@" >>"$log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# stop_pid NAME : TERM the recorded process group, KILL after a grace period.
stop_pid() {
  local name=$1 pf pid i
  pf=$(pidfile "$name")
  [[ -f $pf ]] || return 0
  pid=$(cat "$pf")
  if pid_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
      pid_alive "$pid" || break
      sleep 0.2
    done
    if pid_alive "$pid"; then
      warn "$name did not stop within 30s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$pf"
}

port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# wait_until NAME TIMEOUT_SECS cmd args... : poll until cmd succeeds; fails
# early when the component's process has died.
wait_until() {
  local name=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    "$@" >/dev/null 2>&1 && return 0
    if [[ -f $(pidfile "$name") ]] && ! is_running "$name"; then
      echo "process exited during start-up" >"$(failfile "$name")"
      return 1
    fi
    sleep 0.5
  done
  echo "not ready after ${timeout}s" >"$(failfile "$name")"
  return 1
}
