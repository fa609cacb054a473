#!/usr/bin/env bash
# Builds the three DR-Syncer OCI images from the release binaries, without a container
# engine: GNU tar writes each layer, umoci assembles an OCI layout, skopeo tags it with the
# full reference, and GNU tar packs it into an OCI archive (what `skopeo copy oci-archive:`
# writes, with fixed timestamps).  `make images` runs it after `make release-bins`.
#
#   $OUT_DIR/<name>-<version>.oci.tar   index ref name: $REGISTRY/<name>:<version>
#
# Each image has two layers and no distribution:
#   1. base: the ELF interpreter and exactly the shared libraries `ldd` lists for the binary
#      (copied from this host with their symlinks), /etc/passwd + /etc/group (root 0,
#      nonroot 65532), /etc/nsswitch.conf, the host's CA bundle, /tmp (1777);
#   2. the binary at /usr/local/bin/<name> (debug info stripped with objcopy).
#
# Reproducible: every layer is a tar with sorted names, fixed owner and mtimes clamped to
# SOURCE_DATE_EPOCH, and every timestamp in the config comes from SOURCE_DATE_EPOCH, so two
# builds of one commit (same binaries, same host libraries) give the same digests.
#
# Inputs (environment):
#   BIN_DIR            where the binaries are  (default: ${CARGO_TARGET_DIR:-target}/release)
#   OUT_DIR            where archives go        (default: target/images)
#   VERSION            image tag                (default: workspace version in Cargo.toml)
#   REGISTRY           repository prefix        (default: ghcr.io/dr-syncer)
#   REVISION           org.opencontainers.image.revision (default: git rev-parse HEAD)
#   SOURCE_DATE_EPOCH  timestamps               (default: committer time of HEAD)
#   IMAGES             which images             (default: all three)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

die() {
  echo "build-images: $*" >&2
  exit 1
}

for tool in umoci skopeo jq tar gzip ldd objcopy od; do
  command -v "$tool" >/dev/null || die "'$tool' not found: run scripts/install-deps.sh"
done
tar --version 2>/dev/null | head -1 | grep -q 'GNU tar' || die "GNU tar is required: run scripts/install-deps.sh"

# `[workspace.package]` key of the root Cargo.toml.
workspace_key() {
  sed -n '/^\[workspace\.package\]/,/^\[/s/^'"$1"' *= *"\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1
}

BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
OUT_DIR=${OUT_DIR:-target/images}
VERSION=${VERSION:-$(workspace_key version)}
REGISTRY=${REGISTRY:-ghcr.io/dr-syncer}
SOURCE_URL=$(workspace_key repository)
LICENSE=$(workspace_key license)
REVISION=${REVISION:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}
IMAGES=${IMAGES:-dr-syncer-controller dr-syncer-agent dr-syncer-rsync-worker}
[[ -n $VERSION ]] || die "no version in Cargo.toml [workspace.package]; set VERSION"
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since the epoch"
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

chart_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/deploy/helm/dr-syncer/Chart.yaml")
if [[ $chart_version != "$VERSION" ]]; then
  echo "build-images: warning: VERSION $VERSION differs from the chart's appVersion $chart_version" >&2
fi

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
[[ -d $BIN_DIR ]] || die "no binary directory $BIN_DIR: run make release-bins"
BIN_DIR=$(cd "$BIN_DIR" && pwd)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dr-syncer-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Deterministic layer tars: sorted names, owner root, no atime/ctime, mtimes clamped.
TAR_FLAGS=(--format=posix --sort=name --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime
  --owner=0 --group=0 --numeric-owner --no-acls --no-xattrs --no-selinux
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)

# tar_layer DIR OUT.tar: DIR's entries (not DIR itself) in a layer tar.
tar_layer() {
  local dir=$1 out=$2 entries
  mapfile -t entries < <(cd "$dir" && LC_ALL=C ls -A | LC_ALL=C sort)
  LC_ALL=C tar "${TAR_FLAGS[@]}" -C "$dir" -cf "$out" -- "${entries[@]}"
}

# place HOSTPATH ROOTFS: makes HOSTPATH resolve in ROOTFS the way it does on this host.
# Every symlink met on the way (in any component, e.g. merged-/usr's /lib -> usr/lib, or
# /lib64/ld-linux-x86-64.so.2 -> ...) is recreated at its canonical place, and the final
# regular file is copied to its canonical path, so nothing is ever written through a symlink
# inside ROOTFS (an absolute link there would point at this host).  Prints the canonical path.
place() {
  local path=$1 root=$2 canon="" comp target
  local -a comps
  IFS=/ read -ra comps <<<"${path#/}"
  for comp in "${comps[@]}"; do
    [[ -z $comp || $comp == . ]] && continue
    if [[ $comp == .. ]]; then
      canon=${canon%/*}
      continue
    fi
    if [[ -L $canon/$comp ]]; then
      target=$(readlink "$canon/$comp")
      if [[ ! -L $root$canon/$comp ]]; then
        mkdir -p "$root$canon"
        ln -s "$target" "$root$canon/$comp"
      fi
      [[ $target == /* ]] || target=$canon/$target
      canon=$(place "$target" "$root")
    else
      canon=$canon/$comp
    fi
  done
  if [[ -f $canon && ! -e $root$canon ]]; then
    mkdir -p "$root${canon%/*}"
    cp --preserve=mode "$canon" "$root$canon"
  fi
  printf '%s\n' "$canon"
}

# OCI architecture of an ELF binary (e_machine at offset 18, little endian).
elf_arch() {
  local machine
  machine=$(od -An -t u2 -j 18 -N 2 "$1" | tr -d ' ')
  case $machine in
    62) echo amd64 ;;
    183) echo arm64 ;;
    *) die "$1: unsupported ELF machine $machine" ;;
  esac
}

# base_rootfs BINARY DIR: layer 1.
base_rootfs() {
  local bin=$1 root=$2 line lib
  mkdir -p "$root/etc/ssl/certs" "$root/tmp"
  chmod 1777 "$root/tmp"
  # ldd prints "name => /path (addr)" per library, "/path/ld-linux... (addr)" for the
  # interpreter, and "linux-vdso.so.1 (addr)" for the kernel's vDSO (not a file).
  local out
  out=$(ldd "$bin" 2>&1) || {
    [[ $out == *"not a dynamic executable"* ]] || die "ldd $bin failed: $out"
    out=""
  }
  while read -r line; do
    case $line in
      *"=> not found"*) die "ldd $bin: $line" ;;
      *" => /"*) lib=${line#* => }; lib=${lib%% (*} ;;
      /*) lib=${line%% (*} ;;
      *) continue ;;
    esac
    place "$lib" "$root" >/dev/null
  done <<<"$out"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
  # glibc's files and dns backends are built into libc.so.6 (glibc >= 2.34), so this needs
  # no libnss_* files; "dns" lets the controller resolve API server and agent host names.
  cat >"$root/etc/nsswitch.conf" <<'EOF'
passwd:    files
group:     files
shadow:    files
hosts:     files dns
networks:  files
protocols: files
services:  files
EOF
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] ||
    die "/etc/ssl/certs/ca-certificates.crt missing: run scripts/install-deps.sh"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf" \
    "$root/etc/ssl/certs/ca-certificates.crt"
  find "$root" -type d ! -path "$root/tmp" -exec chmod 0755 {} +
}

# Per image: user and description.
#  - The controller only talks HTTPS to API servers: it runs as nonroot (65532), matching
#    the chart's securityContext (runAsNonRoot, restricted Pod Security Standard).
#  - The agent runs as root: it serves any PVC on its node read-only, and volume files belong
#    to arbitrary uids with arbitrary modes; only root can read them all.
#  - The rsync-worker runs as root: it preserves file ownership (chown to the source's
#    uid/gid) and modes in the target volume, which needs CAP_CHOWN/CAP_FOWNER.
image_user() {
  case $1 in
    dr-syncer-controller) echo 65532:65532 ;;
    dr-syncer-agent | dr-syncer-rsync-worker) echo 0:0 ;;
    *) die "unknown image $1" ;;
  esac
}
image_description() {
  case $1 in
    dr-syncer-controller) echo "DR-Syncer controller: replicates Kubernetes namespaces to a DR cluster" ;;
    dr-syncer-agent) echo "DR-Syncer agent: SSH server serving volume data read-only to rsync-workers" ;;
    dr-syncer-rsync-worker) echo "DR-Syncer rsync-worker: pulls a volume from a dr-syncer-agent over SSH" ;;
  esac
}

blob() { echo "$1/blobs/sha256/${2#sha256:}"; }

for name in $IMAGES; do
  bin=$BIN_DIR/$name
  [[ -x $bin ]] || die "binary $bin missing: run make release-bins"
  user=$(image_user "$name")
  arch=$(elf_arch "$bin")
  dir=$WORK/$name
  mkdir -p "$dir/base" "$dir/app/usr/local/bin"

  base_rootfs "$bin" "$dir/base"
  tar_layer "$dir/base" "$dir/base.tar"
  install -m 0755 "$bin" "$dir/app/usr/local/bin/$name"
  # The release profile keeps line-table debug info (for profiling); the image keeps
  # the symbol table (readable backtraces) but not the DWARF sections: 4-5x smaller.
  objcopy --strip-debug "$dir/app/usr/local/bin/$name"
  chmod 0755 "$dir/app/usr" "$dir/app/usr/local" "$dir/app/usr/local/bin"
  tar_layer "$dir/app" "$dir/app.tar"

  layout=$dir/layout
  umoci init --layout "$layout"
  umoci new --image "$layout:$VERSION"
  umoci raw add-layer --image "$layout:$VERSION" --history.created "$CREATED" \
    --history.created_by "base: ld.so, shared libraries, /etc (scripts/build-images.sh)" \
    "$dir/base.tar"
  umoci raw add-layer --image "$layout:$VERSION" --history.created "$CREATED" \
    --history.created_by "binary: /usr/local/bin/$name (scripts/build-images.sh)" \
    "$dir/app.tar"
  umoci config --image "$layout:$VERSION" \
    --created "$CREATED" --architecture "$arch" --os linux \
    --history.created "$CREATED" --history.created_by "config (scripts/build-images.sh)" \
    --config.entrypoint "/usr/local/bin/$name" \
    --config.env "PATH=/usr/local/bin:/usr/bin:/bin" \
    --config.workingdir / \
    --config.user "$user" \
    --config.label "org.opencontainers.image.source=$SOURCE_URL" \
    --config.label "org.opencontainers.image.version=$VERSION" \
    --config.label "org.opencontainers.image.revision=$REVISION" \
    --config.label "org.opencontainers.image.title=$name" \
    --config.label "org.opencontainers.image.description=$(image_description "$name")" \
    --config.label "org.opencontainers.image.licenses=$LICENSE" \
    --config.label "org.opencontainers.image.created=$CREATED"
  umoci gc --layout "$layout"

  # skopeo writes the final layout, tagged with the chart's full reference (index.json:
  # org.opencontainers.image.ref.name = $REGISTRY/$name:$VERSION); GNU tar packs it the way
  # `skopeo copy ... oci-archive:` would, but with fixed mtimes and owners, so the archive
  # file itself is reproducible too (skopeo's own archive stamps the current time).
  archive=$OUT_DIR/$name-$VERSION.oci.tar
  skopeo copy --quiet "oci:$layout:$VERSION" "oci:$dir/final:$REGISTRY/$name:$VERSION"
  chmod 0755 "$dir/final" "$dir/final/blobs" "$dir/final/blobs/sha256"
  chmod 0644 "$dir/final/index.json" "$dir/final/oci-layout" "$dir/final/blobs/sha256/"*
  tar_layer "$dir/final" "$archive.tmp"
  mv -f "$archive.tmp" "$archive"

  # Report what is in the archive (its own index.json, not the layout's).
  mkdir -p "$dir/check"
  tar -C "$dir/check" -xf "$archive" index.json
  manifest=$(jq -r '.manifests[0].digest' "$dir/check/index.json")
  ref=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$dir/check/index.json")
  tar -C "$dir/check" -xf "$archive" "blobs/sha256/${manifest#sha256:}"
  mapfile -t layers < <(jq -r '.layers[].digest' "$(blob "$dir/check" "$manifest")")
  config=$(jq -r '.config.digest' "$(blob "$dir/check" "$manifest")")
  echo "$name: $archive ($(stat -c %s "$archive") bytes, $arch, user $user)"
  echo "  ref.name  $ref"
  echo "  manifest  $manifest"
  echo "  config    $config"
  echo "  layer     ${layers[0]} (base)"
  echo "  layer     ${layers[1]} (binary)"
done
