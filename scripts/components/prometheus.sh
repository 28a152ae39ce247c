# shellcheck shell=bash
# Prometheus (and promtool, same package) from Debian, run as our own
# instance: it scrapes itself and the Polystream services at their fixed local
# ports (targets that are not running just show as down), and loads alert and
# recording rules from the chart when there are any. --web.enable-lifecycle
# allows `curl -X POST $PROMETHEUS_URL/-/reload` after editing the config.
# Besides the fixed ports, it scrapes whatever target files (file_sd JSON)
# appear in PROMETHEUS_FILE_SD_DIR: tests that start their own services on
# free ports register them there, so they never clash with `./dev up`'s.

PROMETHEUS_VERSION=2.42.0
PROMETHEUS_PORT=9090

prometheus_version() { echo "$PROMETHEUS_VERSION"; }
prometheus_installed() { pkg_installed prometheus "$PROMETHEUS_VERSION" && [[ -x /usr/bin/prometheus && -x /usr/bin/promtool ]]; }
prometheus_addr() { echo "http://127.0.0.1:$PROMETHEUS_PORT"; }
prometheus_file_sd_dir() { echo "$PS_STATE/prometheus/targets"; }
prometheus_env() {
  echo "PROMETHEUS_URL=$(prometheus_addr)"
  echo "PROMETHEUS_FILE_SD_DIR=$(prometheus_file_sd_dir)"
  # promtool comes in the same Debian package (rules checks and unit tests).
  echo "PROMTOOL=/usr/bin/promtool"
}

prometheus_install() {
  # The package's postinst tries to start a system daemon on :9090; the
  # image's /usr/sbin/policy-rc.d (exit 101) denies it, so nothing starts
  # and nothing hangs.
  apt_ensure prometheus || return 1
  pkg_mark_installed prometheus "$PROMETHEUS_VERSION"
}

prometheus_config() {
  local job port
  cat <<EOF
# Written by ./dev on every start of prometheus; edit scripts/components/prometheus.sh.
global:
  scrape_interval: 5s
  evaluation_interval: 5s

rule_files:
  - $PS_ROOT/charts/polystream/rules/*.yml

scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:$PROMETHEUS_PORT']
EOF
  for job in s1-gateway:8000 s2-processor:8001 s3-monitor:8002 operator:8080; do
    port=${job#*:}
    cat <<EOF
  - job_name: ${job%:*}
    static_configs:
      - targets: ['127.0.0.1:$port']
EOF
  done
  # Each file lists targets with their labels, `job` included (a target's own
  # `job` label wins over job_name, which is only the default); files are
  # re-read on change and at least every 5s.
  cat <<EOF
  - job_name: file-sd
    file_sd_configs:
      - files: ['$(prometheus_file_sd_dir)/*.json']
        refresh_interval: 5s
EOF
}

prometheus_start() {
  local dir=$PS_DATA/prometheus
  mkdir -p "$dir/data" "$(prometheus_file_sd_dir)"
  prometheus_config >"$dir/prometheus.yml"
  # Exemplars (trace IDs on metric samples) are stored only with this feature.
  spawn prometheus /usr/bin/prometheus \
    --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
    --web.enable-lifecycle \
    --enable-feature=exemplar-storage
}

prometheus_ready() {
  curl -fsS --max-time 2 "$(prometheus_addr)/-/ready" >/dev/null 2>&1
}
