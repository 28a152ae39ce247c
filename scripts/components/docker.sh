# shellcheck shell=bash
# Docker Engine from Debian's docker.io, run as our own instance: its own
# socket, exec root and pid file under the state dir, and its data root
# (images, build cache) in the per-user cache so a warm machine rebuilds
# only what changed. Started on demand by `./dev image`, stopped by
# `./dev down`. The image's builder base comes from debootstrap, since no
# registry image can be pulled here (see docs/container-image.md).

DOCKER_VERSION=20.10.24

docker_version() { echo "$DOCKER_VERSION"; }
docker_installed() { pkg_installed docker "$DOCKER_VERSION" && [[ -x /usr/sbin/dockerd ]]; }
docker_socket() { printf '%s/docker/docker.sock' "$PS_RUN"; }
docker_addr() { echo "unix://$(docker_socket)"; }
docker_env() { echo "DOCKER_HOST=unix://$(docker_socket)"; }
DOCKER_START_TIMEOUT=60

docker_install() {
  # debootstrap builds the builder stage's Debian base (no image can be pulled).
  apt_ensure docker.io debootstrap || return 1
  pkg_mark_installed docker "$DOCKER_VERSION"
}

docker_start() {
  local run=$PS_RUN/docker
  mkdir -p "$run" "$PS_CACHE/docker"
  # Debian's client, not a newer one that may be first on PATH: it speaks
  # this daemon's API and has the built-in BuildKit front end.
  spawn docker /usr/sbin/dockerd \
    --host "unix://$(docker_socket)" \
    --data-root "$PS_CACHE/docker" \
    --exec-root "$run/exec" \
    --pidfile "$run/dockerd.pid" \
    --storage-driver overlay2 \
    --exec-opt native.cgroupdriver=cgroupfs
}

docker_ready() {
  [[ -S $(docker_socket) ]] && DOCKER_HOST="unix://$(docker_socket)" /usr/bin/docker info >/dev/null 2>&1
}

docker_stop() {
  stop_pid docker
  # dockerd leaves its exec root's netns bind mount behind, which keeps the
  # state dir from being removed; unmount whatever is still under it.
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    awk -v a="$PS_RUN/docker/" 'index($5, a) == 1 { print $5 }' /proc/self/mountinfo | sort -r
  )
}
