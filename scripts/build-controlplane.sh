#!/usr/bin/env bash
# Builds the e2e test bed's control plane: one multi-call Go binary (e2e/controlplane) holding
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd, plus one symlink
# per component name. Output: .cache/controlplane/bin/ (git-ignored). A no-op when the binary
# was built from the current go.mod/go.sum/main.go/this script (content hash in a stamp file).
# Env: CONTROLPLANE_OUT overrides the output dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/e2e/controlplane"
out=${CONTROLPLANE_OUT:-$root/.cache/controlplane/bin}
k8s_version=v1.35.4
etcd_version=v3.6.5
components=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)

if ! command -v go >/dev/null; then
  echo "build-controlplane: 'go' not found in PATH. Install Go >= 1.25 (https://go.dev/dl/," \
    "e.g. /usr/local/go/bin on PATH); Debian's golang package is too old for Kubernetes 1.35." >&2
  exit 1
fi

hash=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" "$0" | sha256sum | cut -d' ' -f1)
if [[ -x "$out/controlplane" && "$(cat "$out/.stamp" 2>/dev/null)" == "$hash" ]]; then
  echo "build-controlplane: $out is current (Kubernetes $k8s_version, etcd $etcd_version)" >&2
  exit 0
fi

mkdir -p "$out"
minor=${k8s_version#v1.}; minor=${minor%%.*}
ldflags=(
  -s -w
  -X "k8s.io/component-base/version.gitVersion=$k8s_version"
  -X "k8s.io/component-base/version.gitMajor=1"
  -X "k8s.io/component-base/version.gitMinor=$minor"
  -X "k8s.io/component-base/version.gitTreeState=clean"
  -X "k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
  -X "k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
  -X "k8s.io/client-go/pkg/version.gitMajor=1"
  -X "k8s.io/client-go/pkg/version.gitMinor=$minor"
  -X "k8s.io/client-go/pkg/version.gitTreeState=clean"
  -X "go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version"
)
echo "build-controlplane: building Kubernetes $k8s_version + etcd $etcd_version into $out" \
  "(~20 min on 2 cores with an empty Go build cache, a few minutes to re-link when warm)" >&2
start=$SECONDS
(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -buildvcs=false -ldflags "${ldflags[*]}" \
  -o "$out/controlplane.new" .)
mv -f "$out/controlplane.new" "$out/controlplane"
for c in "${components[@]}"; do ln -sfn controlplane "$out/$c"; done
echo "$hash" > "$out/.stamp"
echo "build-controlplane: done in $((SECONDS - start)) s" >&2
