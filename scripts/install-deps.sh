#!/usr/bin/env bash
# Installs what a fresh Debian machine with Rust and Go lacks. Idempotent.
set -euo pipefail
need_apt=()
command -v rustfmt >/dev/null || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
