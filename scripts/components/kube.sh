# shellcheck shell=bash
# The Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler) and kubectl, built from the wrapper module in
# scripts/go/kubernetes. One install holds every binary: kubelet and kube-proxy
# too, for the real node (scripts/components/node.sh). Most pods are "run" by
# kwok's fake node (scripts/components/kwok.sh).

KUBE_VERSION=v1.34.4
# Release tag time of k8s.io/kubernetes v1.34.4 (the module proxy's .info).
KUBE_BUILD_DATE=2026-02-10T12:53:36Z
KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
# Built only when the real node is first started (scripts/components/node.sh).
KUBE_NODE_BINARIES=(kubelet kube-proxy)

KUBE_APISERVER_PORT=6443
KUBE_CONTROLLER_MANAGER_PORT=10257
KUBE_SCHEDULER_PORT=10259
KUBE_SERVICE_CIDR=10.0.0.0/24

kube_bin() { printf '%s/bin/%s' "$(pkg_dir kubernetes "$KUBE_VERSION")" "$1"; }
kube_dir() { printf '%s/kube' "$PS_DATA"; }
kube_kubeconfig() { printf '%s/admin.kubeconfig' "$(kube_dir)"; }

# go build would otherwise stamp v0.0.0-master: `--version`, discovery and
# kubectl's version skew check read these (both copies of the version package).
kube_ldflags() {
  local minor=${KUBE_VERSION#v1.} p flags='-s -w'
  minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    flags+=" -X $p.gitTreeState=clean -X $p.buildDate=$KUBE_BUILD_DATE -X $p.gitCommit="
  done
  printf '%s' "$flags"
}

# kube_build [BINARY...]: the control plane and kubectl by default.
kube_build() {
  local dir log i=0 b bins=("$@")
  ((${#bins[@]})) || bins=("${KUBE_BINARIES[@]}")
  dir=$(pkg_dir kubernetes "$KUBE_VERSION")
  log=$(logfile install-kubernetes)
  mkdir -p "$dir/bin"
  for b in "${bins[@]}"; do
    i=$((i + 1))
    [[ -x $dir/bin/$b ]] && continue
    # Build to a temp name so an interrupted build never looks installed.
    with_progress "building $b $KUBE_VERSION ($i/${#bins[@]})" "$log" \
      env -C "$PS_ROOT/scripts/go/kubernetes" CGO_ENABLED=0 \
      go build -trimpath -ldflags "$(kube_ldflags)" -o "$dir/bin/$b.tmp" "k8s.io/kubernetes/cmd/$b" || return 1
    mv "$dir/bin/$b.tmp" "$dir/bin/$b"
  done
  pkg_mark_installed kubernetes "$KUBE_VERSION"
}

# --- certificates and kubeconfigs --------------------------------------------

# kube_ca PKI NAME CN: a self-signed CA.
kube_ca() {
  openssl req -x509 -new -nodes -newkey rsa:2048 -days 3650 -sha256 -subj "/CN=$3" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature \
    -keyout "$1/$2.key" -out "$1/$2.crt" 2>/dev/null
}

# kube_sign PKI CA NAME SUBJECT EXTENSIONS: a key and a certificate signed by CA.
kube_sign() {
  local pki=$1 ca=$2 name=$3 subj=$4 ext=$5
  openssl req -new -nodes -newkey rsa:2048 -subj "$subj" \
    -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null &&
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
      -extfile <(printf '%s\n' "$ext") -out "$pki/$name.crt" 2>/dev/null &&
    rm -f "$pki/$name.csr"
}

# kube_write_kubeconfig FILE USER CERTNAME: credentials embedded, so the file
# works for any client (kubectl, kube-rs) from anywhere. Replaced atomically:
# a running test may be reading it.
kube_write_kubeconfig() {
  local file=$1 user=$2 pki
  pki=$(kube_dir)/pki
  (umask 077 && cat >"$file.tmp") <<YAML
apiVersion: v1
kind: Config
clusters:
- name: polystream
  cluster:
    server: $(kube_apiserver_addr)
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$3.crt")
    client-key-data: $(base64 -w0 "$pki/$3.key")
contexts:
- name: polystream
  context:
    cluster: polystream
    user: $user
current-context: polystream
YAML
  mv "$file.tmp" "$file"
}

# Creates (once) the CA, serving and client certificates, the service-account
# key pair, the kubeconfigs and the audit policy. Generated into a temporary
# directory and renamed, so an interrupted run never leaves half a PKI.
kube_pki() {
  local dir pki tmp client='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'
  dir=$(kube_dir)
  pki=$dir/pki
  mkdir -p "$dir"
  if ! [[ -f $pki/.complete ]]; then
    rm -rf "$pki" "$pki.tmp"
    tmp=$pki.tmp
    mkdir -m 700 "$tmp"
    kube_ca "$tmp" ca polystream-kubernetes-ca || return 1
    # 10.0.0.1 is the `kubernetes` Service's ClusterIP (first address of the range).
    kube_sign "$tmp" ca apiserver /CN=kube-apiserver "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" || return 1
    # The user names are the ones the bootstrap RBAC policy grants roles to.
    kube_sign "$tmp" ca admin "/O=system:masters/CN=polystream-admin" "$client" || return 1
    kube_sign "$tmp" ca controller-manager /CN=system:kube-controller-manager "$client" || return 1
    kube_sign "$tmp" ca scheduler /CN=system:kube-scheduler "$client" || return 1
    # kwok gets its own identity so its requests are told apart in the audit log.
    kube_sign "$tmp" ca kwok "/O=system:masters/CN=kwok-controller" "$client" || return 1
    # Front proxy (request-header authentication), as kubeadm sets it up: the
    # controller-manager and scheduler read its CA from the API server, and
    # aggregated API servers need it.
    kube_ca "$tmp" front-proxy-ca polystream-front-proxy-ca || return 1
    kube_sign "$tmp" front-proxy-ca front-proxy-client /CN=front-proxy-client "$client" || return 1
    openssl genrsa -out "$tmp/sa.key" 2048 2>/dev/null &&
      openssl rsa -in "$tmp/sa.key" -pubout -out "$tmp/sa.pub" 2>/dev/null || return 1
    chmod 600 "$tmp"/*.key
    touch "$tmp/.complete"
    mv "$tmp" "$pki"
  fi
  kube_node_pki "$pki" || return 1
  # Rewritten every start: cheap, and picks up changes to this script.
  kube_write_kubeconfig "$dir/admin.kubeconfig" polystream-admin admin
  kube_write_kubeconfig "$dir/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  kube_write_kubeconfig "$dir/scheduler.kubeconfig" system:kube-scheduler scheduler
  kube_write_kubeconfig "$dir/kwok.kubeconfig" kwok-controller kwok
  kube_write_kubeconfig "$dir/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet
  kube_write_kubeconfig "$dir/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  kube_write_kubeconfig "$dir/coredns.kubeconfig" polystream:coredns coredns
  kube_audit_policy >"$dir/audit-policy.yaml"
}

# The real node's identities (scripts/components/node.sh), added to an existing
# PKI when missing: the kubelet's client certificate (the Node authorizer knows
# it by O=system:nodes, CN=system:node:NAME) and serving certificate, the API
# server's client certificate for the kubelet (logs, exec, port-forward), and
# kube-proxy's (bound to system:node-proxier by the bootstrap policy), and
# CoreDNS's (its ClusterRole is in node.sh).
kube_node_pki() {
  local pki=$1 client='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'
  [[ -f $pki/kubelet.crt ]] ||
    kube_sign "$pki" ca kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$client" || return 1
  [[ -f $pki/kubelet-serving.crt ]] ||
    kube_sign "$pki" ca kubelet-serving "/CN=$NODE_NAME" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME" || return 1
  [[ -f $pki/apiserver-kubelet-client.crt ]] ||
    kube_sign "$pki" ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client" || return 1
  [[ -f $pki/kube-proxy.crt ]] ||
    kube_sign "$pki" ca kube-proxy /CN=system:kube-proxy "$client" || return 1
  [[ -f $pki/coredns.crt ]] ||
    kube_sign "$pki" ca coredns /CN=polystream:coredns "$client" || return 1
  chmod 600 "$pki"/*.key
}

# Every write at Metadata level (who, verb, object, response code): tests count
# the operator's writes in steady state. Reads are logged too, except the
# control plane's own, which would drown the rest; health probes are skipped.
kube_audit_policy() {
  cat <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version"]
- level: None
  verbs: [get, list, watch]
  users: [system:apiserver, system:kube-controller-manager, system:kube-scheduler, kwok-controller]
- level: None
  verbs: [get, list, watch]
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
YAML
}

# curl with the admin client certificate against the API server.
kube_curl() {
  local pki
  pki=$(kube_dir)/pki
  curl -fsS --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "$(kube_apiserver_addr)$1"
}

# --- kube-apiserver ------------------------------------------------------------

# First start creates the bootstrap RBAC policy and priority levels.
# shellcheck disable=SC2034 # read indirectly by timeout_of in ./dev
kube_apiserver_START_TIMEOUT=120

kube_apiserver_version() { echo "$KUBE_VERSION"; }
kube_apiserver_installed() { pkg_installed kubernetes "$KUBE_VERSION"; }
kube_apiserver_install() { kube_build; }
kube_apiserver_addr() { echo "https://127.0.0.1:$KUBE_APISERVER_PORT"; }
kube_apiserver_env() {
  echo "KUBECONFIG=$(kube_kubeconfig)"
  # Every write request, for the tests that count the operator's writes.
  echo "KUBE_AUDIT_LOG=$PS_LOGS/kube-audit.log"
}

kube_apiserver_start() {
  local dir pki
  kube_pki || return 1
  dir=$(kube_dir)
  pki=$dir/pki
  # The advertised address is the `kubernetes` Service's endpoint: the real
  # node's bridge address, where a relay leads to this 127.0.0.1 listener
  # (scripts/components/node.sh). Host clients keep using 127.0.0.1.
  spawn kube_apiserver "$(kube_bin kube-apiserver)" \
    --bind-address=127.0.0.1 \
    --advertise-address="$NODE_IP" \
    --secure-port="$KUBE_APISERVER_PORT" \
    --etcd-servers="$(etcd_addr)" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-cluster-ip-range="$KUBE_SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --allow-privileged=true \
    --audit-policy-file="$dir/audit-policy.yaml" \
    --audit-log-path="$PS_LOGS/kube-audit.log" \
    --audit-log-maxsize=100 \
    --audit-log-maxbackup=3
}

kube_apiserver_ready() { kube_curl /readyz >/dev/null 2>&1; }

# --- kube-controller-manager -----------------------------------------------------

kube_controller_manager_version() { echo "$KUBE_VERSION"; }
kube_controller_manager_installed() { pkg_installed kubernetes "$KUBE_VERSION"; }
kube_controller_manager_install() { kube_build; }
kube_controller_manager_addr() { echo "https://127.0.0.1:$KUBE_CONTROLLER_MANAGER_PORT"; }

# One instance only: leader election would just add lease writes every few
# seconds and, after a restart, wait out the previous holder's lease.
kube_controller_manager_start() {
  local dir pki kc
  kube_pki || return 1
  dir=$(kube_dir)
  pki=$dir/pki
  kc=$dir/controller-manager.kubeconfig
  spawn kube_controller_manager "$(kube_bin kube-controller-manager)" \
    --bind-address=127.0.0.1 \
    --secure-port="$KUBE_CONTROLLER_MANAGER_PORT" \
    --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --root-ca-file="$pki/ca.crt" \
    --service-account-private-key-file="$pki/sa.key" \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --kube-api-qps=100 \
    --kube-api-burst=200
}

# /healthz is on the always-allowed paths, so no credentials are needed.
kube_controller_manager_ready() {
  curl -fsSk --max-time 2 "$(kube_controller_manager_addr)/healthz" >/dev/null 2>&1
}

# --- kube-scheduler ----------------------------------------------------------------

kube_scheduler_version() { echo "$KUBE_VERSION"; }
kube_scheduler_installed() { pkg_installed kubernetes "$KUBE_VERSION"; }
kube_scheduler_install() { kube_build; }
kube_scheduler_addr() { echo "https://127.0.0.1:$KUBE_SCHEDULER_PORT"; }

kube_scheduler_start() {
  local kc
  kube_pki || return 1
  kc=$(kube_dir)/scheduler.kubeconfig
  spawn kube_scheduler "$(kube_bin kube-scheduler)" \
    --bind-address=127.0.0.1 \
    --secure-port="$KUBE_SCHEDULER_PORT" \
    --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" \
    --leader-elect=false
}

kube_scheduler_ready() {
  curl -fsSk --max-time 2 "$(kube_scheduler_addr)/healthz" >/dev/null 2>&1
}

# --- kubectl (tool) ----------------------------------------------------------------

kubectl_version() { echo "$KUBE_VERSION"; }
kubectl_installed() { pkg_installed kubernetes "$KUBE_VERSION"; }
kubectl_install() { kube_build; }
kubectl_addr() { kube_bin kubectl; }
kubectl_env() { echo "KUBECTL=$(kube_bin kubectl)"; }

# kube_kubectl ARGS...: kubectl as the admin, for the other component scripts.
kube_kubectl() { "$(kube_bin kubectl)" --kubeconfig="$(kube_kubeconfig)" "$@"; }
