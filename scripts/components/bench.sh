# shellcheck shell=bash
# The benchmark, `./dev bench [ARGS...]` (tools/bench): the local platform in
# optimised builds under load, next to the physical limit the benchmark builds
# itself, written to bench/results.md. Not a component: nothing here is
# started by `up`.

# The servers the services need during the runs, and the Kubernetes control
# plane (kwok runs the pods) for the operator run.
BENCH_SERVERS=(postgres redis kafka opensearch ferretdb prometheus jaeger
  etcd kube_apiserver kube_controller_manager kube_scheduler kwok)
BENCH_SERVICES=(s2_processor s3_monitor s1_gateway)
# A second S1 for the ingest runs, publishing to a topic nothing consumes:
# its figures are S1's own, not S1's share of two cores also running S2 and
# S3 on the flood it produces.
BENCH_INGEST_PORT=8010
BENCH_INGEST_TOPIC=polystream-bench-ingest
BENCH_REDIS_DB=1
# The operator run's own operator and namespace (`./dev up`'s watches
# `polystream`).
BENCH_OPERATOR_PORT=8081
BENCH_NAMESPACE=polystream-bench

bench_build() {
  with_progress "building the services and the benchmark (cargo, profile local)" "$(logfile install-bench)" \
    cargo build --locked --profile local --manifest-path "$PS_ROOT/Cargo.toml" -p polystream-s1-gateway \
    -p polystream-s2-processor -p polystream-s3-monitor -p polystream-operator -p polystream-console \
    -p polystream-bench --bins
}

# bench_versions : `name=version;...` of what the figures depend on.
bench_versions() {
  local c out=""
  for c in postgres redis kafka opensearch ferretdb; do out+="$c $("${c}_version"), "; done
  printf 'commit=%s%s;servers=%s;rust=%s;build=cargo profile local (Cargo.toml), services started by ./dev bench;traces=sampled 10 %% (parentbased_traceidratio 0.1, as k8s/samples/streamingplatform.yaml), exported to a fresh Jaeger' \
    "$(git -C "$PS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(git -C "$PS_ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')" \
    "${out%, }" "$(rustc --version 2>/dev/null | cut -d' ' -f2)"
}

# bench_run ARGS... : `./dev bench`. The services run with the optimised
# build and without S1's per-address rate limits (all load comes from one
# address); afterwards they run again as `./dev up` starts them.
bench_run() {
  local a c rc=0 pids="" limits=("${S1_LOCAL_LIMITS[@]}")
  for a in "$@"; do
    if [[ $a == --help || $a == -h ]]; then
      bench_build && "$CARGO_TARGET_DIR/local/polystream-bench" --help
      return
    fi
  done
  # Jaeger keeps traces in memory (up to 100 000): a store filled by earlier
  # runs took ~40 % of a core evicting while the services exported, so the
  # runs start with an empty one.
  stop_one jaeger
  start_components "${BENCH_SERVERS[@]}"
  bench_build || return 1
  # Traces sampled as the sample StreamingPlatform keeps them in a cluster
  # (k8s/samples/streamingplatform.yaml: samplingRatio 0.1); `./dev up`
  # keeps every one.
  export OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1
  # That build holds the services too: svc_start need not build them again.
  _svc_built=1
  SVC_PROFILE=local
  # shellcheck disable=SC2034 # read by svc_start
  S1_LOCAL_LIMITS=(RATE_LIMIT_REGISTRATION=100000000/min RATE_LIMIT_LOGIN=100000000/min
    RATE_LIMIT_WRITES=100000000/min RATE_LIMIT_READS=100000000/min RATE_LIMIT_STATUS=100000000/min)
  for c in "${BENCH_SERVICES[@]}"; do stop_one "$c"; done
  start_components "${BENCH_SERVICES[@]}"
  ferretdb_index_lookups || return 1
  for c in "${BENCH_SERVICES[@]}"; do pids+="$c=$(cat "$(pidfile "$c")"),"; done
  bench_ingest_start s1_ingest "$BENCH_INGEST_PORT" || return 1
  pids+="s1_ingest=$(cat "$(pidfile s1_ingest)"),"
  bench_operator_start || return 1
  log "benchmark (tools/bench): about 10 minutes; results in bench/results.md"
  # shellcheck source=/dev/null
  (source "$PS_STATE/env" && cd "$PS_ROOT" &&
    POLYSTREAM_API=$(s1_gateway_addr) POLYSTREAM_MONITOR=$(s3_monitor_addr) \
      BENCH_INGEST_API="http://127.0.0.1:$BENCH_INGEST_PORT" \
      ADMIN_EMAIL="$POLYSTREAM_ADMIN_EMAIL" ADMIN_PASSWORD="$POLYSTREAM_ADMIN_PASSWORD" \
      BENCH_PIDS="${pids%,}" BENCH_INFO="$(bench_versions)" \
      KUBECONFIG="$(kube_kubeconfig)" BENCH_KUBE_NAMESPACE="$BENCH_NAMESPACE" \
      BENCH_OPERATOR_URL="http://127.0.0.1:$BENCH_OPERATOR_PORT" \
      BENCH_PLATFORM_JSON="$PS_STATE/bench-platform.json" \
      "$CARGO_TARGET_DIR/local/polystream-bench" "$@") || rc=$?
  stop_pid s1_ingest
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "$BENCH_REDIS_DB" flushdb >/dev/null ||
    warn "could not empty the ingest S1's Redis database $BENCH_REDIS_DB"
  stop_pid operator_bench
  unset OTEL_TRACES_SAMPLER OTEL_TRACES_SAMPLER_ARG
  log "restarting the services as ./dev up runs them"
  for c in "${BENCH_SERVICES[@]}"; do stop_one "$c"; done
  S1_LOCAL_LIMITS=("${limits[@]}")
  start_components "${BENCH_SERVICES[@]}" || true
  return "$rc"
}

# bench_ingest_start NAME PORT [VAR=VALUE...] : an ingest S1 (see
# BENCH_INGEST_PORT), started like s1_gateway otherwise, but on a Redis
# database of its own: each of its commands leaves a pending status no one
# completes (kept 7 days), hundreds of thousands a run, emptied afterwards.
bench_ingest_start() {
  local name=$1 port=$2
  shift 2
  # shellcheck disable=SC2016 # expanded by the child shell, after sourcing env
  spawn "$name" env HTTP_ADDR="127.0.0.1:$port" KAFKA_TOPIC_USER_EVENTS="$BENCH_INGEST_TOPIC" \
    OTEL_SERVICE_NAME="polystream-s1-bench-$name" "${S1_LOCAL_LIMITS[@]}" "$S1_LOCAL_SEED_ACCESS" "$@" \
    bash -c 'source "$1" && export REDIS_URL="$REDIS_URL/$3" && exec "$2"' _ "$PS_STATE/env" \
    "$(svc_bin polystream-s1-gateway)" "$BENCH_REDIS_DB"
  wait_until "$name" 60 curl -fsS -o /dev/null "http://127.0.0.1:$port/health" ||
    { warn "the benchmark's S1 $name did not start; log: $(logfile "$name")"; return 1; }
}

# bench_operator_start : the CRD, the namespace with the sample's Secrets, the
# sample platform as JSON for the benchmark to copy, and an operator (the
# optimised build) watching that namespace alone.
bench_operator_start() {
  local log
  log=$(logfile operator_bench)
  {
    operator_namespace "$BENCH_NAMESPACE" &&
      # Only YAML to JSON: no validation, so no API server lookup either.
      kube_kubectl create --dry-run=client --validate=false -o json \
        -f "$PS_ROOT/k8s/samples/streamingplatform.yaml" >"$PS_STATE/bench-platform.json"
  } >>"$log" 2>&1 || { warn "cannot prepare the operator run; log: $log"; return 1; }
  operator_spawn operator_bench "$BENCH_OPERATOR_PORT" "$BENCH_NAMESPACE" OTEL_SERVICE_NAME=polystream-operator-bench
  wait_until operator_bench 120 curl -fsS -o /dev/null "http://127.0.0.1:$BENCH_OPERATOR_PORT/ready" ||
    { warn "the benchmark's operator did not start; log: $log"; return 1; }
}
