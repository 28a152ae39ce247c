# shellcheck shell=bash
# Helm, for rendering, linting and installing the Polystream chart. A tool:
# installed, never started. Upstream has no replace lines, so a plain
# `go install` works.

HELM_VERSION=v3.22.0
# Kubernetes minor of the client-go that helm v3.22.0 builds with (v0.37.0):
# upstream's Makefile stamps it, and `helm template`/`helm lint` use it as the
# cluster version when there is no cluster (default otherwise: 1.20).
HELM_KUBE_MINOR=37

helm_version() { echo "$HELM_VERSION"; }
helm_installed() { pkg_installed helm "$HELM_VERSION"; }
helm_addr() { printf '%s/bin/helm' "$(pkg_dir helm "$HELM_VERSION")"; }
# The chart tests and scripts/gen-manifests.sh run this helm.
helm_env() { echo "HELM=$(helm_addr)"; }

helm_install() {
  local dir log flags='-s -w' p
  dir=$(pkg_dir helm "$HELM_VERSION")
  log=$(logfile install-helm)
  # Unstamped, `helm version` says "v3.22" (the source's placeholder).
  flags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    flags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$HELM_KUBE_MINOR"
  done
  mkdir -p "$dir/bin"
  with_progress "building helm $HELM_VERSION" "$log" \
    env -C "$dir" GOBIN="$dir/bin" CGO_ENABLED=0 \
    go install -trimpath -ldflags "$flags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || return 1
  local got
  got=$("$dir/bin/helm" version --template '{{.Version}}') || return 1
  if [[ $got != "$HELM_VERSION" ]]; then
    warn "the helm just built says it is '$got', not $HELM_VERSION"
    return 1
  fi
  pkg_mark_installed helm "$HELM_VERSION"
}
