# shellcheck shell=bash
# tilt-check: evaluates the Tiltfile with Tilt's own Starlark interpreter
# (go.starlark.net) and stubbed Tilt built-ins, for tests/chart/tests/dev_stack.rs
# (Tilt itself is in no registry we reach). A tool: installed, never started.
# Built from the program and pinned module in scripts/go/tilt-check; the
# version names that module's go.starlark.net, so a bump rebuilds it.

TILT_CHECK_VERSION=starlark-v0.0.0-20260908191801-89a6a09411d5

tilt_check_version() { echo "$TILT_CHECK_VERSION"; }
tilt_check_addr() { printf '%s/bin/tilt-check' "$(pkg_dir tilt_check "$TILT_CHECK_VERSION")"; }
tilt_check_env() { echo "TILT_CHECK=$(tilt_check_addr)"; }

# The program is ours and may change without a version bump: installed means
# built from the current main.go and go.sum.
_tilt_check_stamp() { cat "$PS_ROOT"/scripts/go/tilt-check/{main.go,go.mod,go.sum} | sha256sum | cut -c1-16; }
tilt_check_installed() {
  pkg_installed tilt_check "$TILT_CHECK_VERSION" &&
    [[ $(cat "$(pkg_dir tilt_check "$TILT_CHECK_VERSION")/source" 2>/dev/null) == "$(_tilt_check_stamp)" ]]
}

tilt_check_install() {
  local dir
  dir=$(pkg_dir tilt_check "$TILT_CHECK_VERSION")
  mkdir -p "$dir/bin"
  with_progress "building tilt-check (go.starlark.net)" "$(logfile install-tilt_check)" \
    env -C "$PS_ROOT/scripts/go/tilt-check" CGO_ENABLED=0 \
    go build -trimpath -ldflags '-s -w' -o "$dir/bin/tilt-check" . || return 1
  _tilt_check_stamp >"$dir/source"
  pkg_mark_installed tilt_check "$TILT_CHECK_VERSION"
}
