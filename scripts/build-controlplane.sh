#!/usr/bin/env bash
# Builds the test control plane: a multi-call binary (kube-apiserver over an
# embedded etcd, and kubectl) from test/infra/controlplane and helm from
# test/infra/helm, at the versions pinned in their go.mod files.
#
# Binaries land in ${IPSEC_OPERATOR_CACHE:-$HOME/.cache/ipsec-operator}/controlplane/<key>/
# where <key> hashes every build input (go.mod, go.sum, *.go of both modules and
# this script). The TypeScript harness (test/infra/controlplane/binaries.ts)
# computes the same key and refuses to run anything else, so a stale build is
# never used silently. With nothing changed, a rerun only hashes and exits.
#
# Needs Go (see go.mod for the version) and the Go module proxy; go.sum is
# committed, so a clean clone needs nothing else.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${IPSEC_OPERATOR_CACHE:-$HOME/.cache/ipsec-operator}/controlplane"
cp_mod="test/infra/controlplane"
helm_mod="test/infra/helm"

log() { printf '[build-controlplane] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "go is not on PATH: install Go $(sed -n 's/^go //p' "$repo/$cp_mod/go.mod") or newer"

# The cache key. Keep in sync with buildKey() in test/infra/controlplane/binaries.ts:
# sha256 over the lines "<sha256 of file>  <path relative to the repo>\n" of the
# inputs, sorted by path (bytewise), truncated to 16 hex digits.
build_key() {
  cd "$repo"
  find "$cp_mod" "$helm_mod" -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print \
    | { cat; echo scripts/build-controlplane.sh; } \
    | LC_ALL=C sort \
    | while IFS= read -r f; do sha256sum "$f"; done \
    | sha256sum | cut -c1-16
}

key="$(build_key)"
out="$cache_root/$key"
if [[ -f "$out/.complete" ]]; then
  log "up to date: $out"
  ln -sfn "$key" "$cache_root/current"
  exit 0
fi

mkdir -p "$cache_root"
tmp="$(mktemp -d "$cache_root/.build-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

# -mod=readonly: a build must never rewrite go.mod/go.sum; a missing go.sum line
# is an error to fix in the repo (go mod tidy), not something to fetch silently.
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0

# Version stamps that the upstream release builds set with -X, so that
# `kubectl version`, the apiserver's /version and `helm version` report the
# pinned releases instead of v0.0.0-master.
mod_version() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }
mod_time() { (cd "$1" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$2"); }

k8s_version="$(mod_version "$repo/$cp_mod" k8s.io/kubernetes)"
k8s_date="$(mod_time "$repo/$cp_mod" k8s.io/kubernetes)"
etcd_version="$(mod_version "$repo/$cp_mod" go.etcd.io/etcd/server/v3)"
helm_version="$(mod_version "$repo/$helm_mod" helm.sh/helm/v3)"
helm_k8s="$(mod_version "$repo/$helm_mod" k8s.io/client-go)"   # v0.MINOR.PATCH
k8s_major="$(echo "$k8s_version" | sed -E 's/^v([0-9]+)\..*/\1/')"
k8s_minor="$(echo "$k8s_version" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')"
helm_k8s_minor="$(echo "$helm_k8s" | sed -E 's/^v0\.([0-9]+)\..*/\1/')"

k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$k8s_major -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$k8s_date"
done
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
done

log "key $key: Kubernetes $k8s_version, etcd $etcd_version, helm $helm_version, $(go version | cut -d' ' -f3)"
log "downloading modules (Go module proxy)"
(cd "$repo/$cp_mod" && go mod download) || die "go mod download failed in $cp_mod"
(cd "$repo/$helm_mod" && go mod download) || die "go mod download failed in $helm_mod"

# One go build at a time: each already uses every core, and this machine
# (and CI's) has two.
log "building ipsec-controlplane (kube-apiserver + etcd + kubectl); cold: many minutes"
t=$SECONDS
(cd "$repo/$cp_mod" && go build -trimpath -ldflags="$k8s_ldflags" -o "$tmp/ipsec-controlplane" .) \
  || die "go build of $cp_mod failed (see above)"
ln -s ipsec-controlplane "$tmp/kubectl"   # kubectl is chosen by argv[0]
log "ipsec-controlplane built in $((SECONDS - t))s"

log "building helm $helm_version"
t=$SECONDS
(cd "$repo/$helm_mod" && go build -trimpath -ldflags="$helm_ldflags" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm) \
  || die "go build of helm failed (see above)"
log "helm built in $((SECONDS - t))s"

cat >"$tmp/manifest.json" <<EOF
{"key":"$key","kubernetes":"$k8s_version","etcd":"$etcd_version","helm":"$helm_version","go":"$(go env GOVERSION)"}
EOF
touch "$tmp/.complete"
# Publish atomically: a concurrent run that finished first wins, ours is dropped.
if mv -T "$tmp" "$out" 2>/dev/null; then trap - EXIT; else log "another build published $key first"; fi
ln -sfn "$key" "$cache_root/current"

# Keep the newest two other builds (another work tree may still use one) and
# drop older ones: each is a few hundred MB.
find "$cache_root" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name '.build-*' -printf '%T@ %p\n' \
  | sort -rn | tail -n +3 | cut -d' ' -f2- | while IFS= read -r old; do log "pruning $old"; rm -rf "$old"; done

log "done in $((SECONDS - start))s: $out"
