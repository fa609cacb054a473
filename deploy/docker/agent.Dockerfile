# dr-syncer-agent image: the SSH server (DaemonSet, one per source node) that serves PVC data
# read-only to rsync-workers in the target cluster. Build from the repository root:
#   docker build -f deploy/docker/agent.Dockerfile -t dr-syncer-agent:dev .
#
# Why this image runs as ROOT (unlike the controller): the agent reads volume data of every
# pod on its node through the kubelet's volume directories (a hostPath mount of
# /var/lib/kubelet/pods). Those files belong to arbitrary uids/gids with arbitrary modes
# (0600 files of a database running as uid 999, ...); to read all of them and report their
# true owners, modes and xattrs it needs uid 0 (or CAP_DAC_READ_SEARCH). It never writes, so
# the agent DaemonSet (it arrives with PVC data sync, issue 6) is to mount the host path
# read-only, drop every capability but DAC_READ_SEARCH, and use a read-only root filesystem
# with no privilege escalation. It serves only the data-plane SSH subsystem:
# no shell, no exec, no forwarding, public-key auth with keys the controller manages.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dr-syncer-agent \
 && install -D target/release/dr-syncer-agent /out/dr-syncer-agent

# distroless/cc (root variant): glibc and libgcc, no shell.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/dr-syncer-agent /usr/local/bin/dr-syncer-agent
USER 0:0
EXPOSE 2222
ENTRYPOINT ["/usr/local/bin/dr-syncer-agent"]
