# shellcheck shell=bash
# The Polystream services themselves, built from this workspace with cargo and
# run against the local servers with the settings `./dev env` prints.

# Local defaults for the bootstrap admin account S1 creates on first start.
POLYSTREAM_ADMIN_EMAIL=${POLYSTREAM_ADMIN_EMAIL:-admin@polystream.local}
POLYSTREAM_ADMIN_PASSWORD=${POLYSTREAM_ADMIN_PASSWORD:-polystream-admin}

services_version() { sed -n 's/^version = "\(.*\)"/\1/p' "$PS_ROOT/Cargo.toml" | head -n1; }

# The cargo profile the services, the operator and the demo tool run with:
# `local` (optimised, see Cargo.toml) unless `./dev up --debug` sets `dev`.
SVC_PROFILE=${SVC_PROFILE:-local}
# svc_bin PACKAGE : where that profile's binary is.
svc_bin() {
  local dir=$SVC_PROFILE
  [[ $dir == dev ]] && dir=debug
  echo "$CARGO_TARGET_DIR/$dir/$1"
}
svc_profile_name() { [[ $SVC_PROFILE == dev ]] && echo "debug profile" || echo "optimised, profile $SVC_PROFILE"; }

# svc_define NAME PACKAGE PORT : the component functions for one service.
svc_define() {
  local name=$1 package=$2 port=$3
  eval "
${name}_version() { services_version; }
${name}_installed() { [[ -x \"\$(svc_bin $package)\" ]]; }
${name}_install() { svc_build $package; }
${name}_start() { svc_start $name $package $port; }
${name}_ready() { curl -fsS -o /dev/null http://127.0.0.1:$port/health; }
${name}_addr() { echo http://127.0.0.1:$port; }
${name}_START_TIMEOUT=120
"
}

# One cargo invocation builds all three (cheap when nothing changed).
svc_build() {
  [[ ${_svc_built:-0} == 1 ]] && return 0
  with_progress "building the Polystream services (cargo, $(svc_profile_name))" "$(logfile install-services)" \
    cargo build --locked --profile "$SVC_PROFILE" --manifest-path "$PS_ROOT/Cargo.toml" \
    -p polystream-s1-gateway -p polystream-s2-processor -p polystream-s3-monitor \
    -p polystream-operator -p polystream-console --bins || return 1
  _svc_built=1
}

# Locally the demo load (`./dev demo load`) and benchmarks come from one
# address, so S1's per-address limits are raised here (the summary says so);
# a cluster keeps the defaults (docs/configuration.md).
S1_LOCAL_LIMITS=(RATE_LIMIT_REGISTRATION=600/min RATE_LIMIT_LOGIN=600/min
  RATE_LIMIT_WRITES=60000/min RATE_LIMIT_READS=60000/min RATE_LIMIT_STATUS=60000/min)
# Locally the seed's own clients (its Postman collection, dashboard) work
# unchanged: they send no token.
S1_LOCAL_SEED_ACCESS=LEGACY_API_ACCESS=open

svc_start() {
  local name=$1 package=$2 port=$3 extra=()
  [[ $name == s1_gateway ]] && extra=("${S1_LOCAL_LIMITS[@]}" "$S1_LOCAL_SEED_ACCESS" "CONSOLE_URL=$(console_addr)")
  # Cheap when nothing changed; picks up edits to the services.
  svc_build || return 1
  [[ -f $PS_STATE/env ]] || { warn "$name needs the local servers' settings: run ./dev up"; return 1; }
  mkdir -p "$PS_DATA/$name"
  # shellcheck disable=SC2016 # expanded by the child shell, after sourcing env
  spawn "$name" env HTTP_ADDR="127.0.0.1:$port" SPOOL_DIR="$PS_DATA/$name/spool" \
    ADMIN_EMAIL="$POLYSTREAM_ADMIN_EMAIL" ADMIN_PASSWORD="$POLYSTREAM_ADMIN_PASSWORD" "${extra[@]}" \
    bash -c 'source "$1" && exec "$2"' _ "$PS_STATE/env" "$(svc_bin "$package")"
}

svc_define s2_processor polystream-s2-processor 8001
svc_define s3_monitor polystream-s3-monitor 8002
svc_define s1_gateway polystream-s1-gateway 8000
# The console (services/console): loopback only, like everything here.
svc_define console polystream-console 8003

# --- the operator ---------------------------------------------------------------
# Runs against the local API server like it would in a cluster, reconciling the
# sample StreamingPlatform in namespace `polystream` (kwok makes its pods Ready),
# so `kubectl get sp` and the operator's metrics show a live platform. It watches
# only that namespace: the tests run their own controllers in theirs.
OPERATOR_NAMESPACE=polystream
OPERATOR_PORT=8080

operator_version() { services_version; }
operator_installed() { [[ -x $(svc_bin polystream-operator) ]]; }
operator_install() { svc_build; }
operator_addr() { echo "http://127.0.0.1:$OPERATOR_PORT"; }
operator_ready() { curl -fsS -o /dev/null "http://127.0.0.1:$OPERATOR_PORT/ready"; }
operator_START_TIMEOUT=120

# crd_established KUBECTL NAME SECONDS: waits for the CRD's Established
# condition. `kubectl wait` cannot be used: on a brand-new CRD it fails at once
# while `.status.conditions` is still absent (seen on every first `./dev up`).
crd_established() {
  local kubectl=$1 crd=$2 deadline=$((SECONDS + $3)) state
  while ((SECONDS < deadline)); do
    state=$("$kubectl" get crd "$crd" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null) || state=''
    [[ $state == True ]] && return 0
    sleep 0.5
  done
  echo "CRD $crd not Established after $3 s" >&2
  return 1
}

# operator_namespace NS [FILE...] : the CRD (once Established), namespace NS
# with the sample's Secrets and each FILE, applied the way a user would
# (idempotent), against the local API server.
operator_namespace() {
  local ns=$1 kubectl files=(-f "$PS_ROOT/k8s/samples/secrets.yaml") f
  shift
  for f in "$@"; do files+=(-f "$f"); done
  kubectl=$(kubectl_addr)
  (
    export KUBECONFIG
    KUBECONFIG=$(kube_kubeconfig)
    "$kubectl" apply --server-side -f "$PS_ROOT/crds/" &&
      crd_established "$kubectl" streamingplatforms.polystream.dev 60 &&
      "$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - &&
      "$kubectl" -n "$ns" apply "${files[@]}"
  )
}

# operator_spawn NAME PORT NS [VAR=VALUE...] : an operator watching NS alone,
# its HTTP endpoints on PORT, without leader election (one replica).
operator_spawn() {
  local name=$1 port=$2 ns=$3
  shift 3
  # shellcheck disable=SC2016 # expanded by the child shell, after sourcing env
  spawn "$name" env OPERATOR_HTTP_ADDR="127.0.0.1:$port" WATCH_NAMESPACE="$ns" LEADER_ELECTION=false "$@" \
    bash -c 'source "$1" && exec "$2" run' _ "$PS_STATE/env" "$(svc_bin polystream-operator)"
}

operator_start() {
  svc_build || return 1
  [[ -f $PS_STATE/env ]] || { warn "operator needs the local servers' settings: run ./dev up"; return 1; }
  local log
  log=$(logfile operator)
  operator_namespace "$OPERATOR_NAMESPACE" "$PS_ROOT/k8s/samples/streamingplatform.yaml" >>"$log" 2>&1 ||
    { warn "cannot apply the CRD and the sample platform; log: $log"; return 1; }
  operator_spawn operator "$OPERATOR_PORT" "$OPERATOR_NAMESPACE"
}

# --- demo data (tools/demo-data) ----------------------------------------------
# Loaded once per state dir, through S1's public API, after `./dev up`.

demo_build() {
  with_progress "building the demo-data tool (cargo, $(svc_profile_name))" "$(logfile install-demo-data)" \
    cargo build --locked --profile "$SVC_PROFILE" --manifest-path "$PS_ROOT/Cargo.toml" -p polystream-demo-data --bin polystream-demo
}

# demo_run ARGS... : the tool against the local API (`./dev demo seed|load ...`).
demo_run() { demo_build && demo_exec "$@"; }
demo_exec() {
  POLYSTREAM_API=$(s1_gateway_addr) ADMIN_EMAIL="$POLYSTREAM_ADMIN_EMAIL" ADMIN_PASSWORD="$POLYSTREAM_ADMIN_PASSWORD" \
    "$(svc_bin polystream-demo)" "$@"
}

# On failure the platform is still up: warn, and leave DEMO_DATA_FAILED set to
# the log for `up` to repeat at the end. The marker is written only on success.
load_demo_data() {
  local marker=$PS_STATE/demo-data.loaded log
  log=$(logfile demo-data)
  [[ -f $marker ]] && return 0
  if demo_build && with_progress "loading demo data through the API (once per state dir)" "$log" \
    demo_exec seed; then
    date -u +%Y-%m-%dT%H:%M:%SZ >"$marker"
  else
    # shellcheck disable=SC2034 # read by cmd_up in ./dev
    DEMO_DATA_FAILED=$log
    warn "demo data could not be loaded (the platform is up anyway); log: $log; retry: ./dev demo seed"
    return 1
  fi
}
