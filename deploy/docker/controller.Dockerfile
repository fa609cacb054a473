# dr-syncer-controller image. Build from the repository root (no engine runs on the project's
# CI machines, so this file is reviewed, not built, there; see docs/install.md "Images"):
#   docker build -f deploy/docker/controller.Dockerfile -t dr-syncer-controller:dev .
#
# Stage 1: build the one binary with the workspace's pinned dependencies (Cargo.lock).
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dr-syncer-controller \
 && install -D target/release/dr-syncer-controller /out/dr-syncer-controller

# Stage 2: distroless/cc has glibc, libgcc and CA certificates and nothing else (no shell,
# no package manager). The controller only talks HTTPS to API servers.
# :nonroot runs as uid/gid 65532, matching the chart's securityContext.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/dr-syncer-controller /usr/local/bin/dr-syncer-controller
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dr-syncer-controller"]
