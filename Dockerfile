# One image for the four Polystream binaries: the operator and the S1, S2 and
# S3 services (the operator's Deployments name the binary to run, so one image
# per release is all a cluster pulls). Build it with `./dev image`, which also
# makes the builder base this file starts from (see docs/container-image.md).
#
# BuildKit is required (RUN --mount); Docker 20.10's built-in front end has it,
# so no front-end image is pulled.

# A Debian bookworm root with a C toolchain (librdkafka is compiled from
# source) and the Rust toolchain. No registry image can be used here, so
# `./dev image` builds it with debootstrap and imports it under this name.
ARG BUILDER_IMAGE=polystream-builder:bookworm-rust-1.95.0

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
ENV CARGO_HOME=/usr/local/cargo \
    CARGO_TERM_PROGRESS_WHEN=never
COPY . .
# The compiled dependencies live in a cache mount, not a layer: with fifteen
# workspace crates, stub-manifest layers break whenever a crate gains a target,
# while the cache keeps every dependency built across source changes.
# `./dev image` lends the build machine's CA bundle as the secret `build-ca`
# (networks that inspect TLS to crates.io need it); it never enters a layer,
# and the runtime image trusts Debian's CA certificates only.
RUN --mount=type=cache,id=polystream-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=polystream-target,target=/src/target \
    --mount=type=secret,id=build-ca \
    if [ -s /run/secrets/build-ca ]; then export CARGO_HTTP_CAINFO=/run/secrets/build-ca; fi \
 && cargo build --release --locked \
      -p polystream-s1-gateway -p polystream-s2-processor \
      -p polystream-s3-monitor -p polystream-operator \
 && mkdir -p /out/usr/local/bin \
 && cp target/release/polystream-s1-gateway target/release/polystream-s2-processor \
       target/release/polystream-s3-monitor target/release/polystream-operator \
       /out/usr/local/bin/

# The runtime root: the binaries (symbols stripped), exactly the shared libraries they load
# (glibc, libgcc), CA certificates and a passwd entry for the non-root user.
# No shell, no package manager.
FROM build AS rootfs
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN set -eu; \
    mkdir -p /out/etc/ssl/certs /out/tmp; \
    chmod 1777 /out/tmp; \
    cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/; \
    printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > /out/etc/passwd; \
    printf 'nonroot:x:65532:\n' > /out/etc/group; \
    strip --strip-unneeded /out/usr/local/bin/*; \
    for bin in /out/usr/local/bin/*; do \
      ldd "$bin" | awk '/=> \//{print $3} /^\t\/lib64/{print $1}'; \
    done | sort -u | while read -r lib; do \
      mkdir -p "/out$(dirname "$lib")"; \
      cp -L "$lib" "/out$lib"; \
    done

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://example.invalid/polystream
LABEL org.opencontainers.image.title="polystream" \
      org.opencontainers.image.description="Polystream operator and S1/S2/S3 services" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=rootfs /out/ /
ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
# Each Deployment names its binary (`polystream-operator run`,
# `polystream-s1-gateway`, ...); without one the image shows the operator's help.
ENTRYPOINT ["polystream-operator"]
CMD ["--help"]
