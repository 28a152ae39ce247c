# shellcheck shell=bash
# kwok: one simulated node, so Deployments get scheduled, "Running" and Ready
# pods without a kubelet or container runtime. The kwok controller runs
# directly against our API server (kwokctl would download binaries).

KWOK_VERSION=v0.8.0
KWOK_PORT=10247 # kwok's own server (healthz, metrics); the kubelet port it reports
KWOK_NODE=kwok-node-0
# Fake pod IPs; kwok's default 10.0.0.0/24 overlaps the service range.
KWOK_POD_CIDR=10.244.0.0/16

kwok_version() { echo "$KWOK_VERSION"; }
kwok_installed() { pkg_installed kwok "$KWOK_VERSION"; }
kwok_addr() { echo "http://127.0.0.1:$KWOK_PORT"; }

kwok_install() {
  local dir log src f
  dir=$(pkg_dir kwok "$KWOK_VERSION")
  log=$(logfile install-kwok)
  mkdir -p "$dir/bin"
  with_progress "building kwok $KWOK_VERSION" "$log" \
    env -C "$PS_ROOT/scripts/go/kwok" CGO_ENABLED=0 \
    go build -trimpath -ldflags '-s -w' -o "$dir/bin/kwok" sigs.k8s.io/kwok/cmd/kwok || return 1
  # Without stages kwok refuses to start ("no stages found"). These are the
  # defaults kwokctl configures, taken from the module kwok was built from:
  # nodes become Ready (liveness then comes from the node lease, see
  # --node-lease-duration-seconds), pods become Ready, and finish or go away
  # on deletion.
  src=$(env -C "$PS_ROOT/scripts/go/kwok" go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) || return 1
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    printf -- '---\n'
    cat "$src/kustomize/stage/$f.yaml" || return 1
  done >"$dir/stages.yaml"
  pkg_mark_installed kwok "$KWOK_VERSION"
}

# The fake node kwok manages (selected by the annotation). No taint: workloads
# under test must land on it without tolerations. Applied on every start, so
# it is recreated if someone deleted it.
kwok_node_manifest() {
  cat <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $KWOK_NODE
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $KWOK_NODE
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
status:
  allocatable: {cpu: "1000", memory: 1Ti, pods: "1000"}
  capacity: {cpu: "1000", memory: 1Ti, pods: "1000"}
YAML
}

# kwok's own default lease duration is 0, which means no node lease: the
# controller-manager would then mark the node NotReady after its grace period
# (the heartbeat stage configured here only refreshes status every ~10 min).
kwok_start() {
  if ! kube_apiserver_ready; then
    echo "needs kube_apiserver, which does not answer at $(kube_apiserver_addr)" >"$(failfile kwok)"
    return 1
  fi
  kube_pki || return 1 # for kwok.kubeconfig
  kwok_node_manifest | kube_kubectl apply -f - >>"$(logfile kwok)" 2>&1 || return 1
  spawn kwok "$(pkg_dir kwok "$KWOK_VERSION")/bin/kwok" \
    --kubeconfig="$(kube_dir)/kwok.kubeconfig" \
    --config="$(pkg_dir kwok "$KWOK_VERSION")/stages.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr="$KWOK_POD_CIDR" \
    --node-ip=127.0.0.1 \
    --node-port="$KWOK_PORT" \
    --server-address="127.0.0.1:$KWOK_PORT" \
    --node-lease-duration-seconds=40
}

# kwok answers (so a stale Ready status left in etcd by an earlier run does
# not count) and the node is Ready.
kwok_ready() {
  curl -fsS --max-time 2 "$(kwok_addr)/healthz" >/dev/null 2>&1 &&
    [[ $(kube_kubectl get node "$KWOK_NODE" \
      -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
