# dr-syncer-rsync-worker image: the short-lived Job in the target cluster that pulls PVC data
# from a source agent over SSH and writes it into the destination PVC. Build from the root:
#   docker build -f deploy/docker/rsync-worker.Dockerfile -t dr-syncer-rsync-worker:dev .
#
# Runs as root by default because it must recreate files with their source owners, modes
# and xattrs (CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE on the destination volume). When
# ownership need not be preserved, the Job can run it as the volume's fsGroup instead.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dr-syncer-rsync-worker \
 && install -D target/release/dr-syncer-rsync-worker /out/dr-syncer-rsync-worker

FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/dr-syncer-rsync-worker /usr/local/bin/dr-syncer-rsync-worker
ENTRYPOINT ["/usr/local/bin/dr-syncer-rsync-worker"]
