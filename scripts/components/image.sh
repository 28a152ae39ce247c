# shellcheck shell=bash
# `./dev image`: builds the container image polystream:VERSION from the root
# Dockerfile with the local Docker Engine (scripts/components/docker.sh).
#
# The Dockerfile's build stage starts from a builder base made here, because no
# registry image can be pulled: a Debian bookworm root from debootstrap (the
# same Debian mirror apt uses) with the C toolchain librdkafka needs, plus the
# Rust toolchain that builds everything else on this machine. It is imported
# once per Rust version and kept in Docker's data root (in the per-user cache).

IMAGE_NAME=polystream
BUILDER_PACKAGES=ca-certificates,gcc,g++,libc6-dev,make,pkg-config,libssl-dev,zlib1g-dev

image_version() {
  sed -n 's/^version = "\(.*\)"/\1/p' "$PS_ROOT/Cargo.toml" | head -n1
}

image_rust_version() { rustc --version | awk '{print $2}'; }

image_builder_tag() { echo "polystream-builder:bookworm-rust-$(image_rust_version)"; }

# Debian's client, which speaks the daemon's API and builds with BuildKit.
dockercli() { DOCKER_HOST="unix://$(docker_socket)" /usr/bin/docker "$@"; }

# The Debian mirror apt uses here (debootstrap must not reach anywhere else).
image_debian_mirror() {
  local uri
  uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "${uri:-http://deb.debian.org/debian}"
}

image_builder() {
  local tag sysroot root log
  tag=$(image_builder_tag)
  if dockercli image inspect "$tag" >/dev/null 2>&1; then
    info "builder base $tag is cached"
    return 0
  fi
  sysroot=$(rustc --print sysroot) || die "rustc is not on PATH (the builder base copies its toolchain)"
  root=$PS_CACHE/image/rootfs.$$
  log=$PS_LOGS/image-builder.log
  rm -rf "$root"
  mkdir -p "$root"
  with_progress "debootstrap of Debian bookworm (minbase + C toolchain) for the builder base" "$log" \
    debootstrap --variant=minbase --include="$BUILDER_PACKAGES" bookworm "$root" "$(image_debian_mirror)" || {
    rm -rf "$root"
    return 1
  }
  # rustc and cargo with their shared libraries and the host's standard library:
  # docs, sources and other targets are not needed to build.
  mkdir -p "$root/usr/local/rust/lib/rustlib/x86_64-unknown-linux-gnu"
  cp -a "$sysroot/bin" "$root/usr/local/rust/"
  cp -a "$sysroot"/lib/*.so* "$root/usr/local/rust/lib/"
  cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/lib" "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin" \
    "$root/usr/local/rust/lib/rustlib/x86_64-unknown-linux-gnu/" 2>/dev/null ||
    cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/lib" "$root/usr/local/rust/lib/rustlib/x86_64-unknown-linux-gnu/"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  with_progress "importing the builder base as $tag" "$log" \
    bash -c 'tar -C "$1" -c . | DOCKER_HOST="$2" /usr/bin/docker import \
      --change "ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV LANG=C.UTF-8" \
      - "$3"' _ "$root" "unix://$(docker_socket)" "$tag"
  local rc=$?
  rm -rf "$root"
  return "$rc"
}

# The engine, started if needed; `./dev test` stops it again afterwards.
image_docker_up() {
  install_one docker || return 1
  if ! is_running docker; then
    start_one docker || return 1
    STARTED_BY_US+=(docker)
  fi
  write_env
}

# image_run [--tag NAME:TAG]: the whole `./dev image`. Returns non-zero (never
# exits) on failure, so `./dev test` goes on to report its other steps.
image_run() {
  local tag
  tag="$IMAGE_NAME:$(image_version)"
  while (($#)); do
    case $1 in
      --tag)
        [[ -n ${2:-} ]] || { warn "--tag needs NAME:TAG"; return 2; }
        tag=$2
        shift 2
        ;;
      -h | --help)
        echo "usage: ./dev image [--tag NAME:TAG]   (default $IMAGE_NAME:$(image_version))"
        return 0
        ;;
      *) warn "unknown argument '$1' (usage: ./dev image [--tag NAME:TAG])"; return 2 ;;
    esac
  done
  command -v rustc >/dev/null || { warn "rustc is not on PATH: the builder base copies the local Rust toolchain"; return 1; }
  image_docker_up || { warn "the Docker Engine could not be started (./dev status; ./dev logs docker)"; return 1; }
  image_builder || { warn "could not make the builder base (log: $PS_LOGS/image-builder.log)"; return 1; }
  local revision log=$PS_LOGS/image-build.log
  revision=$(git -C "$PS_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
  git -C "$PS_ROOT" diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"
  # The machine's CA bundle, lent to the build for crates.io (see Dockerfile).
  local ca=()
  [[ -s /etc/ssl/certs/ca-certificates.crt ]] && ca=(--secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt)
  : >"$log"
  with_progress "building $tag (release profile; cold: ~20 min on 2 cores, then minutes)" "$log" \
    env DOCKER_BUILDKIT=1 DOCKER_HOST="unix://$(docker_socket)" /usr/bin/docker build \
    --progress=plain "${ca[@]}" \
    --build-arg "BUILDER_IMAGE=$(image_builder_tag)" \
    --build-arg "VERSION=$(image_version)" \
    --build-arg "REVISION=$revision" \
    --build-arg "CREATED=$(date -u +%FT%TZ)" \
    --tag "$tag" "$PS_ROOT" || return 1
  local bytes
  bytes=$(dockercli image inspect --format '{{.Size}}' "$tag") || return 1
  log "built $tag: $((bytes / 1024 / 1024)) MiB"
}
