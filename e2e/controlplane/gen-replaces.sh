#!/usr/bin/env bash
# Regenerates the `replace` block of go.mod: k8s.io/kubernetes requires each of its staging
# modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and only resolves them through its own
# repository layout, so a consumer must pin every one to the matching published v0.MINOR.PATCH.
# Usage: ./gen-replaces.sh   (reads the k8s.io/kubernetes version from go.mod)
set -euo pipefail
cd "$(dirname "$0")"
kver=$(awk '$1=="k8s.io/kubernetes"{print $2}' go.mod)
staging="v0.${kver#v1.}"
modfile=$(go mod download -json "k8s.io/kubernetes@${kver}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
sed -i '/^replace (/,/^)/d' go.mod
{
  echo 'replace ('
  awk '$1 ~ /^k8s.io\// && $2=="v0.0.0" {print $1}' "$modfile" | sort -u | while read -r m; do
    printf '\t%s => %s %s\n' "$m" "$m" "$staging"
  done
  echo ')'
} >> go.mod
