#!/usr/bin/env bash
# `make image`: builds the operator's image from the Dockerfile with buildah and writes it as an
# OCI archive that a container runtime imports (`ctr images import`, `podman load`,
# `skopeo copy oci-archive:...`).
#
# No container registry is reachable on the machines this project is tested on, so the two base
# images come from Debian packages: mmdebstrap builds a root file system per stage (Debian 13,
# whose nodejs is 20.19, the engine this package needs; Debian 12's is 18) and buildah imports
# each as a local image, which the Dockerfile's BUILD_BASE / RUNTIME_BASE build arguments
# select. Elsewhere the same Dockerfile builds from the public node images, its defaults:
#   buildah build -t REGISTRY/ipsec-operator:TAG .      (or docker build / podman build)
#
# Output: ${IPSEC_OPERATOR_CACHE:-$HOME/.cache/ipsec-operator}/image/<key>/
#   ipsec-operator.oci.tar   the image, reference localhost/ipsec-operator:<key>
#   image.json               {"key","reference","digest","seconds"}
# <key> hashes every input of the build (what the Dockerfile copies, the Dockerfile, this script),
# and image/current points at the newest; a rerun with nothing changed only hashes.
#
# Environment: IPSEC_OPERATOR_IMAGE_TAG overrides the tag (default: the key).
# Needs root and the Debian packages buildah, mmdebstrap (and network access to deb.debian.org
# and the npm registry, which the Dockerfile's build stage uses).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${IPSEC_OPERATOR_CACHE:-$HOME/.cache/ipsec-operator}"
cache_root="$cache_dir/image"

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || die "$tool is not installed: apt-get install buildah mmdebstrap"
done
[[ "$(id -u)" -eq 0 ]] || die "building the image needs root (buildah and mmdebstrap run rootful here)"

# The base images: Debian suite and packages per stage. Part of the key of the bases.
suite=trixie
mirror=http://deb.debian.org/debian
build_packages=ca-certificates,nodejs,npm,libnode-dev,python3,make,g++
runtime_packages=ca-certificates,nodejs,iproute2

# What the Dockerfile reads (keep in sync with its COPY lines and .dockerignore) plus the
# Dockerfile and this script: sha256 over the lines "<sha256 of file>  <path>\n" sorted by path,
# 16 hex digits.
inputs() {
  cd "$repo"
  { find native/src src bin deploy/crds -type f
    printf '%s\n' Dockerfile .dockerignore package.json package-lock.json tsconfig.json tsconfig.build.json \
      native/binding.gyp scripts/bundle.mjs scripts/build-image.sh; } | LC_ALL=C sort
}
key="$(cd "$repo" && inputs | while IFS= read -r f; do sha256sum "$f"; done | sha256sum | cut -c1-16)"
base_key="$(printf '%s\n' "$suite" "$mirror" "$build_packages" "$runtime_packages" "$(sed -n '/^# --- bases ---$/,/^# --- end of bases ---$/p' "${BASH_SOURCE[0]}")" | sha256sum | cut -c1-16)"
tag="${IPSEC_OPERATOR_IMAGE_TAG:-$key}"
reference="localhost/ipsec-operator:$tag"
out="$cache_root/$tag"
if [[ -f "$out/.complete" && "$(cat "$out/.key")" == "$key" ]]; then
  log "up to date: $out/ipsec-operator.oci.tar ($reference)"
  ln -sfn "$tag" "$cache_root/current"
  exit 0
fi

# buildah's storage lives in the cache too: the layer cache of the Dockerfile's steps
# (--layers) and the base images survive between runs, and nothing lands in /var/lib/containers.
storage=(--root "$cache_root/storage" --runroot "/run/ipsec-operator-buildah" --storage-driver overlay)
bh() { buildah "${storage[@]}" "$@"; }
# chroot isolation: RUN steps need no cgroups or user namespaces, which containers (CI
# runners) often do not grant.
export BUILDAH_ISOLATION=chroot

mkdir -p "$cache_root"
start=$SECONDS

# --- bases ---
base_ref() { echo "localhost/ipsec-operator-base:$1-$base_key"; }
build_base() {
  local stage=$1 packages=$2 ref tar ctr
  ref="$(base_ref "$stage")"
  if bh inspect --type image "$ref" >/dev/null 2>&1; then log "base $ref: cached"; return; fi
  tar="$(mktemp "$cache_root/.base-$stage.XXXXXX.tar")"
  log "base $ref: mmdebstrap $suite ($packages)"
  local t=$SECONDS
  # minbase: essential packages and apt, so the Dockerfile's own apt-get steps still work.
  # No docs, man pages or locales: the image never reads them.
  nice -n 10 mmdebstrap --quiet --variant=minbase --include="$packages" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$suite" "$tar" "$mirror" || { rm -f "$tar"; die "mmdebstrap of the $stage base failed"; }
  ctr="$(bh from scratch)"
  bh add --quiet "$ctr" "$tar" / >/dev/null
  rm -f "$tar"
  # What the public node images set and the Dockerfile relies on. npm_config_nodedir: node-gyp
  # takes Node's headers from Debian's libnode-dev instead of downloading them.
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env npm_config_nodedir=/usr --cmd node "$ctr"
  bh commit --quiet --rm "$ctr" "$ref" >/dev/null
  log "base $ref: built in $((SECONDS - t))s"
}
build_base build "$build_packages"
build_base runtime "$runtime_packages"
# --- end of bases ---

# The build stage fetches npm packages over TLS and must trust what this machine trusts: its CA
# bundle (which may hold a TLS-intercepting proxy's CA) goes into a layer on top of the local
# build base only. The runtime image never contains it.
build_from="$(base_ref build)"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
if [[ -f "$ca_bundle" ]]; then
  with_ca="$build_from-ca-$(sha256sum "$ca_bundle" | cut -c1-12)"
  if ! bh inspect --type image "$with_ca" >/dev/null 2>&1; then
    ctr="$(bh from --pull=never "$build_from")"
    bh copy --quiet "$ctr" "$ca_bundle" /etc/ssl/certs/build-host-ca-certificates.crt >/dev/null
    bh config --env npm_config_cafile=/etc/ssl/certs/build-host-ca-certificates.crt "$ctr"
    bh commit --quiet --rm "$ctr" "$with_ca" >/dev/null
  fi
  build_from="$with_ca"
fi

log "image $reference (key $key) from the Dockerfile"
t=$SECONDS
# --network host: the build stage's apt-get and npm ci need the network.
nice -n 10 buildah "${storage[@]}" build --quiet --layers --network host \
  --build-arg "BUILD_BASE=$build_from" --build-arg "RUNTIME_BASE=$(base_ref runtime)" \
  -t "$reference" -f "$repo/Dockerfile" "$repo" >/dev/null || die "buildah build failed (see above)"
log "image built in $((SECONDS - t))s"

tmp="$(mktemp -d "$cache_root/.out-$tag.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
bh push --quiet "$reference" "oci-archive:$tmp/ipsec-operator.oci.tar:$reference" || die "writing the OCI archive failed"
# The manifest digest, as a registry reports it after a push of this archive.
digest="$(tar -xOf "$tmp/ipsec-operator.oci.tar" index.json | sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' | head -n 1)"
printf '{"key":"%s","reference":"%s","digest":"%s","seconds":%d}\n' "$key" "$reference" "$digest" $((SECONDS - start)) >"$tmp/image.json"
echo "$key" >"$tmp/.key"
touch "$tmp/.complete"
rm -rf "$out"
mv -T "$tmp" "$out"
trap - EXIT
ln -sfn "$tag" "$cache_root/current"

# Old images: keep the newest three archives; the storage keeps only the bases and this image.
find "$cache_root" -mindepth 1 -maxdepth 1 -type d ! -name storage ! -name "$tag" ! -name '.*' -printf '%T@ %p\n' \
  | sort -rn | tail -n +3 | cut -d' ' -f2- | while IFS= read -r old; do log "pruning $old"; rm -rf "$old"; done
bh images --format '{{.Name}}:{{.Tag}}' | { grep '^localhost/ipsec-operator:' || true; } | { grep -vx "$reference" || true; } \
  | while IFS= read -r old; do bh rmi "$old" >/dev/null 2>&1 || true; done

log "done in $((SECONDS - start))s: $out/ipsec-operator.oci.tar ($reference, $digest)"
