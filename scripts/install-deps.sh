#!/usr/bin/env bash
# Installs what a fresh Debian machine with Rust and Go lacks. Idempotent.
set -euo pipefail
need_apt=()
# Debian packages the tests and benchmarks use: OpenSSH (the bench's reference transport and
# the interop tests), rsync (the bench's reference), librsync's rdiff (delta interop tests),
# attr (xattr round trips).
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v rdiff >/dev/null || need_apt+=(rdiff)
command -v getfattr >/dev/null || need_apt+=(attr)
# Image builds without a Docker daemon (`make images`): umoci writes OCI layouts, skopeo
# copies them to archives and registries, jq reads their JSON, objcopy (binutils) strips
# the debug info from the binaries it packs.
command -v umoci >/dev/null || need_apt+=(umoci)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v jq >/dev/null || need_apt+=(jq)
command -v objcopy >/dev/null || need_apt+=(binutils)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
command -v rustfmt >/dev/null || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
