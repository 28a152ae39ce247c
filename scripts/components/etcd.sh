# shellcheck shell=bash
# etcd, the Kubernetes API server's store, built from the wrapper module in
# scripts/go/etcd (Debian's 3.4 is too old for Kubernetes >= 1.31).

ETCD_VERSION=v3.6.16
ETCD_PORT=2379
ETCD_PEER_PORT=2380

etcd_version() { echo "$ETCD_VERSION"; }
etcd_installed() { pkg_installed etcd "$ETCD_VERSION"; }
etcd_addr() { echo "http://127.0.0.1:$ETCD_PORT"; }
etcd_env() { echo "ETCD_ENDPOINTS=$(etcd_addr)"; }

etcd_install() {
  local dir log
  dir=$(pkg_dir etcd "$ETCD_VERSION")
  log=$(logfile install-etcd)
  mkdir -p "$dir/bin"
  # The wrapper's main package is etcd itself; etcdctl is its `tool`.
  with_progress "building etcd $ETCD_VERSION (1/2)" "$log" \
    env -C "$PS_ROOT/scripts/go/etcd" CGO_ENABLED=0 \
    go build -trimpath -ldflags '-s -w' -o "$dir/bin/etcd" . || return 1
  with_progress "building etcdctl $ETCD_VERSION (2/2)" "$log" \
    env -C "$PS_ROOT/scripts/go/etcd" CGO_ENABLED=0 \
    go build -trimpath -ldflags '-s -w' -o "$dir/bin/etcdctl" go.etcd.io/etcd/etcdctl/v3 || return 1
  pkg_mark_installed etcd "$ETCD_VERSION"
}

etcd_start() {
  local url=http://127.0.0.1
  mkdir -p "$PS_DATA/etcd"
  chmod 700 "$PS_DATA/etcd" # etcd warns (and 3.7 refuses) otherwise
  # A one-member cluster; the data dir is reused across restarts, so the
  # initial-cluster flags only matter on first start.
  # No fsync: a local development store, where a slow disk under a busy test
  # run made writes time out ("etcdserver: request timed out"); a killed etcd
  # still loses nothing (the page cache survives it), only a machine crash would.
  spawn etcd "$(pkg_dir etcd "$ETCD_VERSION")/bin/etcd" \
    --name polystream \
    --data-dir "$PS_DATA/etcd" \
    --listen-client-urls "$url:$ETCD_PORT" \
    --advertise-client-urls "$url:$ETCD_PORT" \
    --listen-peer-urls "$url:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "$url:$ETCD_PEER_PORT" \
    --initial-cluster "polystream=$url:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --quota-backend-bytes $((2 * 1024 * 1024 * 1024)) \
    --unsafe-no-fsync \
    --log-level warn
}

etcd_ready() {
  has_line '"health":"true"' -- curl -fsS --max-time 2 "$(etcd_addr)/health"
}
