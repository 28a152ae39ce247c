# shellcheck shell=bash
# `cargo deny check licenses bans sources` for `./dev test` (deny.toml). Not a
# component and not a tool `./dev up` installs: only the suite needs it, and
# building it costs a newcomer's first `up` minutes.
#
# Advisories are not checked: the RustSec database is a git repository on
# GitHub, which this machine (and CI) cannot reach, and no package registry
# carries a copy. `./dev deny advisories` runs that check where GitHub is
# reachable.

DENY_VERSION=0.20.2

deny_bin() { printf '%s/bin/cargo-deny' "$(pkg_dir cargo-deny "$DENY_VERSION")"; }

# cargo-deny from crates.io, built once and cached by version; its build
# directory is removed afterwards (only the binary is kept).
deny_install() {
  pkg_installed cargo-deny "$DENY_VERSION" && [[ -x $(deny_bin) ]] && return 0
  local build=$PS_CACHE/build/cargo-deny-$DENY_VERSION
  with_progress "installing cargo-deny $DENY_VERSION (cargo install from crates.io, a few minutes)" \
    "$(logfile install-cargo-deny)" \
    env CARGO_TARGET_DIR="$build" cargo install cargo-deny --version "$DENY_VERSION" --locked \
    --root "$(pkg_dir cargo-deny "$DENY_VERSION")" || return 1
  rm -rf "$build"
  pkg_mark_installed cargo-deny "$DENY_VERSION"
}

# deny_run [CHECK...] : the checks named (default: licenses bans sources).
deny_run() {
  local checks=("$@") level=warn
  # The suite's run shows errors only: the duplicate-version warnings are
  # hundreds of lines about the ecosystem, not about a change.
  ((${#checks[@]})) || { checks=(licenses bans sources); level=error; }
  deny_install || { warn "could not install cargo-deny (log: $(logfile install-cargo-deny))"; return 1; }
  (cd "$PS_ROOT" && "$(deny_bin)" --locked --log-level "$level" check "${checks[@]}")
}
