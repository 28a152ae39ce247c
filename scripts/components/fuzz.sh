# shellcheck shell=bash
# `./dev fuzz [SECONDS]`: the cargo-fuzz target on the event contract
# (fuzz/, its own workspace). Not a component: nothing here is started by `up`.

FUZZ_CARGO_FUZZ_VERSION=0.13.2
FUZZ_TARGET=decode_validate

fuzz_bin_dir() { printf '%s/bin' "$(pkg_dir cargo-fuzz "$FUZZ_CARGO_FUZZ_VERSION")"; }

# cargo-fuzz from crates.io, cached by version.
fuzz_install() {
  pkg_installed cargo-fuzz "$FUZZ_CARGO_FUZZ_VERSION" && return 0
  with_progress "installing cargo-fuzz $FUZZ_CARGO_FUZZ_VERSION (cargo install)" "$(logfile install-cargo-fuzz)" \
    cargo install cargo-fuzz --version "$FUZZ_CARGO_FUZZ_VERSION" --locked \
    --root "$(pkg_dir cargo-fuzz "$FUZZ_CARGO_FUZZ_VERSION")" || return 1
  pkg_mark_installed cargo-fuzz "$FUZZ_CARGO_FUZZ_VERSION"
}

# fuzz_run [SECONDS] : builds the target and fuzzes for SECONDS (default 60)
# from a corpus in the state dir seeded with a valid envelope of every
# command type; a crash leaves its input in $PS_STATE/fuzz/artifacts.
fuzz_run() {
  local secs=${1:-60}
  [[ $secs =~ ^[0-9]+$ ]] || die "usage: ./dev fuzz [SECONDS]"
  fuzz_install || die "could not install cargo-fuzz (log: $(logfile install-cargo-fuzz))"
  local corpus=$PS_STATE/fuzz/corpus/$FUZZ_TARGET artifacts=$PS_STATE/fuzz/artifacts/$FUZZ_TARGET/
  mkdir -p "$corpus" "$artifacts"
  # libFuzzer's instrumentation needs unstable rustc flags; RUSTC_BOOTSTRAP
  # lets the stable toolchain accept them, so no nightly is needed.
  export RUSTC_BOOTSTRAP=1
  local fuzz=("$(fuzz_bin_dir)/cargo-fuzz" fuzz)
  with_progress "building the fuzz target (release, address sanitizer)" "$(logfile fuzz-build)" \
    "${fuzz[@]}" build --fuzz-dir "$PS_ROOT/fuzz" --target-dir "$PS_CACHE/fuzz-target" "$FUZZ_TARGET" ||
    die "the fuzz target did not build (log: $(logfile fuzz-build))"
  log "fuzzing $FUZZ_TARGET for ${secs}s (corpus: $corpus)"
  POLYSTREAM_FUZZ_SEEDS=$corpus "${fuzz[@]}" run --fuzz-dir "$PS_ROOT/fuzz" \
    --target-dir "$PS_CACHE/fuzz-target" "$FUZZ_TARGET" "$corpus" -- \
    -max_total_time="$secs" -dict="$PS_ROOT/fuzz/$FUZZ_TARGET.dict" \
    -artifact_prefix="$artifacts" -print_final_stats=1
}
