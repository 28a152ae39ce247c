# shellcheck shell=bash
# The fault suite, `./dev faults [SCENARIO...]` (tools/faults, docs/faults.md):
# its own S1, S2 and S3 under load while it kills them and stops the shared
# servers below one at a time. Not a component: nothing here is started by `up`.

# The servers the suite needs, and stops and starts again.
FAULTS_SERVERS=(postgres redis kafka opensearch ferretdb)

faults_build() {
  with_progress "building the services and the fault suite (cargo, debug profile)" "$(logfile install-faults)" \
    cargo build --locked --manifest-path "$PS_ROOT/Cargo.toml" -p polystream-s1-gateway \
    -p polystream-s2-processor -p polystream-s3-monitor -p polystream-faults --bins
}

# faults_run ARGS... : `./dev faults`: starts the servers it needs, builds, runs.
faults_run() {
  local a
  for a in "$@"; do
    if [[ $a == --list || $a == --help || $a == -h ]]; then
      faults_build && "$CARGO_TARGET_DIR/debug/polystream-faults" "$@"
      return
    fi
  done
  start_components "${FAULTS_SERVERS[@]}"
  # shellcheck source=/dev/null
  source "$PS_STATE/env"
  faults_build || return 1
  faults_exec "$@"
}

# faults_exec ARGS... : the built suite; afterwards every server it may have
# stopped runs again, even when it failed or was interrupted (Ctrl-C).
faults_exec() {
  local rc=0 c
  # A handler, not an ignore: the suite still gets Ctrl-C, and this goes on.
  trap 'warn "fault suite interrupted"' INT
  POLYSTREAM_DEV="$PS_ROOT/dev" POLYSTREAM_BIN_DIR="$CARGO_TARGET_DIR/debug" \
    "$CARGO_TARGET_DIR/debug/polystream-faults" "$@" || rc=$?
  trap - INT
  for c in "${FAULTS_SERVERS[@]}"; do
    is_running "$c" || "${c}_ready" >/dev/null 2>&1 || "$PS_ROOT/dev" up "$c" || warn "could not restart $c: ./dev up $c"
  done
  return "$rc"
}
