# shellcheck shell=bash
# Debian's Chromium, driven by npm's playwright-core, for the console's browser
# test (tests/observability/browser/console.cjs, run by the observability
# proof). A tool: installed, never started. playwright-core comes from the npm
# registry as pinned by tests/observability/browser/package-lock.json, into
# the cache; it never downloads a browser of its own.

CHROMIUM_PLAYWRIGHT_VERSION=1.65.2

chromium_version() { echo "playwright-core-$CHROMIUM_PLAYWRIGHT_VERSION"; }
chromium_modules() { printf '%s/node_modules' "$(pkg_dir chromium "$(chromium_version)")"; }
chromium_installed() {
  pkg_installed chromium "$(chromium_version)" && [[ -x /usr/bin/chromium ]] &&
    [[ -d $(chromium_modules)/playwright-core ]]
}
chromium_addr() { echo /usr/bin/chromium; }
chromium_env() {
  echo "CHROMIUM=/usr/bin/chromium"
  echo "PLAYWRIGHT_NODE_PATH=$(chromium_modules)"
}

chromium_install() {
  local dir
  dir=$(pkg_dir chromium "$(chromium_version)")
  apt_ensure chromium || return 1
  mkdir -p "$dir"
  cp "$PS_ROOT/tests/observability/browser/package.json" \
    "$PS_ROOT/tests/observability/browser/package-lock.json" "$dir/"
  with_progress "installing playwright-core $CHROMIUM_PLAYWRIGHT_VERSION (npm ci, no browser download)" \
    "$(logfile install-chromium)" \
    env PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$dir" --no-audit --no-fund || return 1
  pkg_mark_installed chromium "$(chromium_version)"
}
