#!/usr/bin/env bash
# Builds the Helm CLI from its Go module into .cache/helm/bin/helm (git-ignored), so the chart
# tests (`helm lint`, `helm template`) run on a machine with only Go and a module proxy.
# A no-op when the binary was built by this version of the script (sha256 in a stamp file).
# Env: HELM_OUT overrides the output dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${HELM_OUT:-$root/.cache/helm/bin}
helm_version=v3.19.0
# The Kubernetes version `helm template`/`helm lint` assume (Capabilities.KubeVersion), as
# helm's own Makefile stamps it: client-go v0.34 -> 1.34. Without it a `go install`ed helm
# says v1.20.0 and charts with a kubeVersion constraint fail to render.
k8s_major=1
k8s_minor=34
hash=$(sha256sum "$0" | cut -d' ' -f1)

if [[ -x "$out/helm" && "$(cat "$out/.stamp" 2>/dev/null)" == "$hash" ]]; then
  echo "build-helm: $out/helm is current ($helm_version)" >&2
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "build-helm: 'go' not found in PATH (install Go >= 1.24, e.g. /usr/local/go/bin)." >&2
  exit 1
fi
mkdir -p "$out"
echo "build-helm: building helm $helm_version into $out (a few minutes on 2 cores)" >&2
start=$SECONDS
GOBIN="$out" CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$k8s_major
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$k8s_major
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor" \
  "helm.sh/helm/v3/cmd/helm@$helm_version"
echo "$hash" > "$out/.stamp"
echo "build-helm: done in $((SECONDS - start)) s" >&2
