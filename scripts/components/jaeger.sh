# shellcheck shell=bash
# Jaeger, the trace store the services export to over OTLP and the tests query
# (/api/traces?service=X&tags={"k":"v"}). Built from the wrapper module in
# scripts/go/jaeger. Module v1.76.0 is the release that also carries Jaeger v2
# (v2.13.0); we run its v2 binary, cmd/jaeger (an OpenTelemetry Collector
# distribution), because v1's all-in-one is end-of-life. In-memory storage:
# traces vanish on restart. No web UI assets in a module build (the UI page is
# a placeholder); the HTTP API is complete.

JAEGER_VERSION=v1.76.0
JAEGER_OTLP_GRPC_PORT=4317
JAEGER_OTLP_HTTP_PORT=4318
JAEGER_QUERY_PORT=16686
JAEGER_QUERY_GRPC_PORT=16685

jaeger_version() { echo "$JAEGER_VERSION"; }
jaeger_installed() { pkg_installed jaeger "$JAEGER_VERSION"; }
jaeger_addr() { echo "http://127.0.0.1:$JAEGER_OTLP_GRPC_PORT"; }
jaeger_env() {
  echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$JAEGER_OTLP_GRPC_PORT"
  echo "JAEGER_QUERY_URL=http://127.0.0.1:$JAEGER_QUERY_PORT"
}

jaeger_install() {
  local dir
  dir=$(pkg_dir jaeger "$JAEGER_VERSION")
  mkdir -p "$dir/bin"
  # Without the stamp `jaeger --version` and the query API's /api/version say "".
  with_progress "building Jaeger $JAEGER_VERSION" "$(logfile install-jaeger)" \
    env -C "$PS_ROOT/scripts/go/jaeger" CGO_ENABLED=0 \
    go build -trimpath -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" \
    -o "$dir/bin/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger || return 1
  mv "$dir/bin/jaeger.tmp" "$dir/bin/jaeger"
  pkg_mark_installed jaeger "$JAEGER_VERSION"
}

# Only what we use, every listener on 127.0.0.1: upstream's built-in config
# also opens Jaeger/Zipkin receivers, sampling, health, expvar and zpages ports.
jaeger_config() {
  cat <<EOF
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    # no self-metrics listener (upstream's default is :8888)
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    # otherwise Jaeger traces its own queries and "jaeger" shows up as a service
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:$JAEGER_QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$JAEGER_QUERY_GRPC_PORT

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$JAEGER_OTLP_GRPC_PORT
      http:
        endpoint: 127.0.0.1:$JAEGER_OTLP_HTTP_PORT

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

jaeger_start() {
  local dir=$PS_DATA/jaeger
  mkdir -p "$dir"
  jaeger_config >"$dir/config.yaml"
  spawn jaeger "$(pkg_dir jaeger "$JAEGER_VERSION")/bin/jaeger" --config "$dir/config.yaml"
}

jaeger_ready() {
  curl -fsS --max-time 2 "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services" >/dev/null 2>&1 &&
    port_open "$JAEGER_OTLP_GRPC_PORT" && port_open "$JAEGER_OTLP_HTTP_PORT"
}
