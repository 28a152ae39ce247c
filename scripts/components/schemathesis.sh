# shellcheck shell=bash
# schemathesis (PyPI), the property-based API tester, for the OpenAPI tests of
# S1 and S3 (tests/e2e/tests/openapi_fuzz.rs). A tool: installed into its own
# virtualenv under the cache, never started.

SCHEMATHESIS_VERSION=4.32.5

schemathesis_version() { echo "$SCHEMATHESIS_VERSION"; }
schemathesis_installed() { pkg_installed schemathesis "$SCHEMATHESIS_VERSION" && [[ -x $(schemathesis_addr) ]]; }
schemathesis_addr() { printf '%s/venv/bin/st' "$(pkg_dir schemathesis "$SCHEMATHESIS_VERSION")"; }
schemathesis_env() { echo "SCHEMATHESIS=$(schemathesis_addr)"; }

schemathesis_install() {
  local dir
  dir=$(pkg_dir schemathesis "$SCHEMATHESIS_VERSION")
  rm -rf "$dir/venv"
  mkdir -p "$dir"
  with_progress "installing schemathesis $SCHEMATHESIS_VERSION (PyPI, into a virtualenv)" \
    "$(logfile install-schemathesis)" \
    sh -c 'python3 -m venv "$1" && "$1/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$2"' \
    _ "$dir/venv" "$SCHEMATHESIS_VERSION" || return 1
  "$dir/venv/bin/st" --version >/dev/null || return 1
  pkg_mark_installed schemathesis "$SCHEMATHESIS_VERSION"
}
