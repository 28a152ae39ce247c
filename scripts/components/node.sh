# shellcheck shell=bash
# A real Kubernetes node beside kwok's simulated one: containerd (Debian's,
# run as our own instance) with runc and the CNI plugins, the kubelet and
# kube-proxy from the same Kubernetes build as the control plane, and relays
# that make the host's stores reachable from pods. Started on demand
# (`./dev up node`, and by `./dev test`), stopped and cleaned up by `./dev down`.
#
# Networking: pods live on our own bridge NODE_BRIDGE (NODE_POD_CIDR). Its
# gateway address NODE_IP is the node's InternalIP, the API server's advertised
# address (so the `kubernetes` Service leads there) and where the relays
# listen; every server itself stays on 127.0.0.1. The node is tainted, so only
# pods that tolerate it (the real-node tests) land on it; kwok's node stays
# the default for everything else.

NODE_NAME=polystream-node-0
NODE_BRIDGE=psnode0
NODE_POD_CIDR=10.88.0.0/24
NODE_IP=10.88.0.1
NODE_TAINT_KEY=polystream.dev/real-node
# Kafka's listener for pods: bound on 127.0.0.1, advertised as NODE_IP (kafka.sh).
NODE_KAFKA_PORT=19092
KUBELET_HEALTHZ_PORT=10248
KUBE_PROXY_HEALTHZ_PORT=10256
# The pause image is built here (a static C program), not pulled.
NODE_PAUSE_IMAGE=polystream.local/pause:1.0

node_dir() { printf '%s/node' "$PS_DATA"; }
node_run_dir() { printf '%s/node' "$PS_RUN"; }
containerd_socket() { printf '%s/containerd.sock' "$(node_run_dir)"; }
node_ctr() { ctr --address "$(containerd_socket)" --namespace k8s.io "$@"; }

# What pods use to reach the host's servers (see node_relay_ports).
node_env() {
  echo "POLYSTREAM_NODE_NAME=$NODE_NAME"
  echo "POLYSTREAM_NODE_IP=$NODE_IP"
  echo "POLYSTREAM_NODE_TAINT=$NODE_TAINT_KEY"
  echo "POLYSTREAM_NODE_KAFKA=$NODE_IP:$NODE_KAFKA_PORT"
  echo "POLYSTREAM_NODE_CONTAINERD=$(containerd_socket)"
}

# node_needs NAME WHAT: fails NAME's start (with the reason `./dev status`
# shows) unless WHAT (kube_apiserver, or the pod bridge containerd makes) is up.
node_needs() {
  case $2 in
    kube_apiserver)
      kube_apiserver_ready && return 0
      echo "needs kube_apiserver, which does not answer at $(kube_apiserver_addr)" >"$(failfile "$1")"
      ;;
    bridge)
      has_line "inet $NODE_IP/" -- ip addr show dev "$NODE_BRIDGE" && return 0
      echo "needs containerd (it creates the pod bridge with $NODE_IP)" >"$(failfile "$1")"
      ;;
  esac
  return 1
}

# --- containerd (with the bridge, CNI config and pause image) ---------------------

CONTAINERD_VERSION=1.6.20

containerd_version() { echo "$CONTAINERD_VERSION"; }
containerd_installed() {
  pkg_installed node-runtime "$CONTAINERD_VERSION" && [[ -x /usr/bin/containerd && -x /usr/lib/cni/bridge ]]
}
containerd_addr() { echo "unix://$(containerd_socket)"; }
containerd_env() { node_env; }

containerd_install() {
  local dir log
  apt_ensure containerd runc containernetworking-plugins iptables socat gcc libc6-dev || return 1
  dir=$(pkg_dir node-runtime "$CONTAINERD_VERSION")
  log=$(logfile install-node-runtime)
  mkdir -p "$dir"
  with_progress "building the pause image" "$log" node_build_pause_image "$dir" || return 1
  pkg_mark_installed node-runtime "$CONTAINERD_VERSION"
}

# The pod sandbox's process: sleeps until told to stop and reaps orphans
# (it is PID 1 of every pod).
node_pause_source() {
  cat <<'C'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, stop);
  signal(SIGTERM, stop);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
C
}

# An OCI image archive holding only /pause, written by hand: no Docker needed
# to start the node, and byte-for-byte reproducible.
node_build_pause_image() {
  local out=$1 work blobs layer config manifest
  work=$(mktemp -d)
  blobs=$work/oci/blobs/sha256
  mkdir -p "$work/rootfs" "$blobs"
  node_pause_source >"$work/pause.c"
  gcc -static -Os -s -o "$work/rootfs/pause" "$work/pause.c" || return 1
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" pause || return 1
  layer=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  mv "$work/layer.tar" "$blobs/$layer"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$layer" >"$work/config.json"
  config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
    "$config" "$(stat -c %s "$work/config.json")" "$layer" "$(stat -c %s "$blobs/$layer")" >"$work/manifest.json"
  manifest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  mv "$work/config.json" "$blobs/$config"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$(stat -c %s "$work/manifest.json")" "$NODE_PAUSE_IMAGE" "${NODE_PAUSE_IMAGE##*:}" >"$work/oci/index.json"
  mv "$work/manifest.json" "$blobs/$manifest"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/oci" -cf "$out/pause.tar" oci-layout index.json blobs || return 1
  rm -rf "$work"
}

node_cni_config() {
  cat <<JSON
{
  "cniVersion": "1.0.0",
  "name": "polystream",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$(node_dir)/cni-ipam",
        "ranges": [[{ "subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
}

# Our own root, state and socket, so it never meets Docker's containerd.
# restrict_oom_score_adj: negative OOM scores need CAP_SYS_RESOURCE, which this
# machine lacks. cgroupfs, not systemd (there is no systemd here).
node_containerd_config() {
  cat <<TOML
version = 2
root = "$(node_dir)/containerd"
state = "$(node_run_dir)/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "$(containerd_socket)"

[plugins."io.containerd.internal.v1.opt"]
  path = "$(node_dir)/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$(node_dir)/cni"
TOML
}

# The bridge exists before any pod, so NODE_IP can be the node's address and the
# relays' from the start. Docker's FORWARD policy is DROP: let pod traffic through.
node_network_up() {
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge || return 1
  fi
  has_line "inet $NODE_IP/" -- ip addr show dev "$NODE_BRIDGE" ||
    ip addr add "$NODE_IP/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE" || return 1
  ip link set "$NODE_BRIDGE" up || return 1
  local dir
  for dir in -i -o; do
    iptables -C FORWARD "$dir" "$NODE_BRIDGE" -m comment --comment polystream-node -j ACCEPT 2>/dev/null ||
      iptables -I FORWARD "$dir" "$NODE_BRIDGE" -m comment --comment polystream-node -j ACCEPT || return 1
  done
  sysctl -qw net.ipv4.ip_forward=1 >/dev/null 2>&1 || true
}

node_network_down() {
  local dir
  for dir in -i -o; do
    while iptables -D FORWARD "$dir" "$NODE_BRIDGE" -m comment --comment polystream-node -j ACCEPT 2>/dev/null; do :; done
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
}

containerd_start() {
  local dir
  dir=$(node_dir)
  mkdir -p "$dir/cni" "$dir/cni-ipam" "$(node_run_dir)"
  node_network_up >>"$(logfile containerd)" 2>&1 || {
    echo "cannot create the pod bridge $NODE_BRIDGE ($NODE_IP) or its FORWARD rules (needs CAP_NET_ADMIN)" >"$(failfile containerd)"
    return 1
  }
  node_cni_config >"$dir/cni/10-polystream.conflist"
  node_containerd_config >"$dir/containerd.toml"
  spawn containerd /usr/bin/containerd --config "$dir/containerd.toml"
}

# Ready once it answers and holds the pause image (imported on first readiness
# check; import is idempotent and content-addressed).
containerd_ready() {
  [[ -S $(containerd_socket) ]] && node_ctr version >/dev/null 2>&1 || return 1
  has_line -x "$NODE_PAUSE_IMAGE" -- node_ctr images ls -q && return 0
  node_ctr images import "$(pkg_dir node-runtime "$CONTAINERD_VERSION")/pause.tar" >>"$(logfile containerd)" 2>&1 &&
    node_ctr images label "$NODE_PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null 2>&1
  has_line -x "$NODE_PAUSE_IMAGE" -- node_ctr images ls -q
}

# Whatever the kubelet could not stop cleanly: tasks killed, containerd
# stopped, then every mount under the node's directories and every pod
# network namespace it created undone, and the bridge removed.
containerd_stop() {
  local t m
  if [[ -S $(containerd_socket) ]]; then
    for t in $(node_ctr tasks ls -q 2>/dev/null); do node_ctr tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    sleep 1
    for t in $(node_ctr tasks ls -q 2>/dev/null); do node_ctr tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop_pid containerd
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $(containerd_socket)" 2>/dev/null || true
  # Mount points under our directories, deepest first.
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    awk -v a="$(node_dir)/" -v b="$(node_run_dir)/" 'index($5, a) == 1 || index($5, b) == 1 { print $5 }' /proc/self/mountinfo | sort -r
  )
  # Pod network namespaces are named cni-<uuid> by containerd's CRI plugin;
  # only ours exist on this machine (nothing else here runs a CRI runtime).
  for m in /var/run/netns/cni-*; do
    [[ -e $m ]] || continue
    umount "$m" 2>/dev/null
    rm -f "$m"
  done
  node_network_down
}

# --- relays: the host's servers at NODE_IP, for pods ----------------------------

node_relay_ports() {
  printf '%s\n' "$KUBE_APISERVER_PORT" "$POSTGRES_PORT" "$REDIS_PORT" "$FERRETDB_PORT" \
    "$OPENSEARCH_PORT" "$JAEGER_OTLP_GRPC_PORT" "$JAEGER_OTLP_HTTP_PORT" "$NODE_KAFKA_PORT"
}

store_relay_version() { socat -V 2>/dev/null | awk '/socat version/ { print $3; exit }' || echo unknown; }
store_relay_installed() { command -v socat >/dev/null; }
store_relay_install() { apt_ensure socat; }
store_relay_addr() { echo "$NODE_IP:{$(node_relay_ports | paste -sd, -)}"; }

store_relay_start() {
  node_needs store_relay bridge || return 1
  local cmd='' p
  for p in $(node_relay_ports); do
    cmd+="socat TCP-LISTEN:$p,bind=$NODE_IP,fork,reuseaddr TCP:127.0.0.1:$p & "
  done
  spawn store_relay bash -c "${cmd}wait"
}

store_relay_ready() {
  local p
  for p in $(node_relay_ports); do
    (exec 3<>"/dev/tcp/$NODE_IP/$p") 2>/dev/null || return 1
  done
}

# --- cluster DNS (CoreDNS, a host process answering on NODE_IP:53) ---------------

COREDNS_VERSION=v1.12.4
COREDNS_METRICS_PORT=9153
COREDNS_HEALTH_PORT=8181

coredns_version() { echo "$COREDNS_VERSION"; }
coredns_installed() { pkg_installed coredns "$COREDNS_VERSION"; }
coredns_addr() { echo "$NODE_IP:53"; }

coredns_install() {
  local dir log
  dir=$(pkg_dir coredns "$COREDNS_VERSION")
  log=$(logfile install-coredns)
  mkdir -p "$dir/bin"
  with_progress "building coredns $COREDNS_VERSION" "$log" \
    env -C "$PS_ROOT/scripts/go/coredns" CGO_ENABLED=0 \
    go build -trimpath -ldflags '-s -w' -o "$dir/bin/coredns.tmp" github.com/coredns/coredns || return 1
  mv "$dir/bin/coredns.tmp" "$dir/bin/coredns"
  pkg_mark_installed coredns "$COREDNS_VERSION"
}

# Read-only access to what the kubernetes plugin serves, for CoreDNS's own identity.
coredns_rbac() {
  cat <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: polystream:coredns
rules:
- apiGroups: [""]
  resources: [services, namespaces, pods]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: polystream:coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "polystream:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "polystream:coredns"}
YAML
}

# cluster.local from the API server; anything else goes to the host's resolvers.
coredns_corefile() {
  cat <<COREFILE
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
  bind $NODE_IP
  errors
  health 127.0.0.1:$COREDNS_HEALTH_PORT
  ready 127.0.0.1:$((COREDNS_HEALTH_PORT + 1))
  prometheus 127.0.0.1:$COREDNS_METRICS_PORT
  kubernetes cluster.local in-addr.arpa ip6.arpa {
    kubeconfig $(kube_dir)/coredns.kubeconfig polystream
    pods insecure
    fallthrough in-addr.arpa ip6.arpa
  }
  cache 30
}
.:53 {
  bind $NODE_IP
  errors
  forward . /etc/resolv.conf
  cache 30
}
COREFILE
}

coredns_start() {
  node_needs coredns kube_apiserver || return 1
  node_needs coredns bridge || return 1
  kube_pki || return 1
  coredns_rbac | kube_kubectl apply -f - >>"$(logfile coredns)" 2>&1 || return 1
  coredns_corefile >"$(node_dir)/Corefile"
  spawn coredns "$(pkg_dir coredns "$COREDNS_VERSION")/bin/coredns" -conf "$(node_dir)/Corefile"
}

# /ready turns 200 once the kubernetes plugin has synced with the API server.
coredns_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$((COREDNS_HEALTH_PORT + 1))/ready" >/dev/null 2>&1; }

# --- kubelet --------------------------------------------------------------------

# shellcheck disable=SC2034 # read indirectly by timeout_of in ./dev
kubelet_START_TIMEOUT=120

kubelet_version() { echo "$KUBE_VERSION"; }
kubelet_installed() { pkg_installed kubernetes "$KUBE_VERSION" && [[ -x $(kube_bin kubelet) ]]; }
kubelet_install() { kube_build "${KUBE_NODE_BINARIES[@]}"; }
kubelet_addr() { echo "https://$NODE_IP:10250"; }

kubelet_config() {
  local pki
  pki=$(kube_dir)/pki
  cat <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$(containerd_socket)
cgroupDriver: cgroupfs
# This machine has cgroup v1 and swap; the kubelet still supports both when told.
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: /etc/resolv.conf
registerWithTaints:
- {key: $NODE_TAINT_KEY, value: "true", effect: NoSchedule}
# A shared development machine: never evict or garbage-collect images because
# the disk is fuller than a dedicated node's would be.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 60
serializeImagePulls: false
YAML
}

kubelet_start() {
  node_needs kubelet kube_apiserver || return 1
  if ! containerd_ready; then
    echo "needs containerd, which does not answer at $(containerd_addr)" >"$(failfile kubelet)"
    return 1
  fi
  kube_pki || return 1
  local dir
  dir=$(node_dir)
  mkdir -p "$dir/kubelet"
  kubelet_config >"$dir/kubelet.yaml"
  # A node left cordoned by the last stop is schedulable again.
  kube_kubectl uncordon "$NODE_NAME" >/dev/null 2>&1 || true
  spawn kubelet "$(kube_bin kubelet)" \
    --config="$dir/kubelet.yaml" \
    --kubeconfig="$(kube_dir)/kubelet.kubeconfig" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --node-labels=polystream.dev/node=real \
    --root-dir="$dir/kubelet" \
    --cert-dir="$dir/kubelet/pki"
}

kubelet_ready() {
  curl -fsS --max-time 2 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" >/dev/null 2>&1 &&
    [[ $(kube_kubectl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# Pods are stopped by the kubelet itself (so their networks and volumes are torn
# down properly): cordon, delete what runs here, wait, then stop the kubelet and
# remove the Node. containerd_stop cleans up whatever is left.
kubelet_stop() {
  if kube_apiserver_ready && kube_kubectl get node "$NODE_NAME" >/dev/null 2>&1; then
    kube_kubectl cordon "$NODE_NAME" >/dev/null 2>&1 || true
    kube_kubectl delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
      --grace-period=5 --timeout=60s >/dev/null 2>&1 || true
  fi
  stop_pid kubelet
  if kube_apiserver_ready; then kube_kubectl delete node "$NODE_NAME" --wait=false >/dev/null 2>&1 || true; fi
  kubelet_iptables_cleanup
}

# The chains the kubelet creates (its canaries, and KUBE-FIREWALL hooked into
# INPUT and OUTPUT), in both families: nothing of the node stays in the host's
# firewall after `./dev down`.
kubelet_iptables_cleanup() {
  local ipt table chain
  for ipt in iptables ip6tables; do
    for chain in INPUT OUTPUT; do
      while "$ipt" -D "$chain" -j KUBE-FIREWALL 2>/dev/null; do :; done
    done
    for table in filter nat mangle; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null && "$ipt" -t "$table" -X "$chain" 2>/dev/null
      done
    done
  done
  return 0
}

# --- kube-proxy -----------------------------------------------------------------

kube_proxy_version() { echo "$KUBE_VERSION"; }
kube_proxy_installed() { pkg_installed kubernetes "$KUBE_VERSION" && [[ -x $(kube_bin kube-proxy) ]]; }
kube_proxy_install() { kube_build "${KUBE_NODE_BINARIES[@]}"; }
kube_proxy_addr() { echo "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT"; }

# iptables mode. masqueradeAll: without it a pod reaching a Service whose
# endpoint is on the same bridge would get the answer straight from the other
# pod, bypassing the DNAT's reverse translation. NodePorts only on NODE_IP, so
# kube-proxy never has to enable route_localnet on the host. Conntrack sysctls
# are left as the host has them.
kube_proxy_config() {
  cat <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $(kube_dir)/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_POD_CIDR
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
YAML
}

kube_proxy_start() {
  node_needs kube_proxy kube_apiserver || return 1
  kube_pki || return 1
  kube_proxy_config >"$(node_dir)/kube-proxy.yaml"
  spawn kube_proxy "$(kube_bin kube-proxy)" --config="$(node_dir)/kube-proxy.yaml"
}

kube_proxy_ready() { curl -fsS --max-time 2 "$(kube_proxy_addr)/healthz" >/dev/null 2>&1; }

# Its iptables chains go with it.
kube_proxy_stop() {
  stop_pid kube_proxy
  "$(kube_bin kube-proxy)" --cleanup >>"$(logfile kube_proxy)" 2>&1 || true
}
