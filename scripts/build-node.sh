#!/usr/bin/env bash
# Builds the test node (the `node` test layer, test/infra/node/): a multi-call binary with the
# kubelet, kube-controller-manager and kube-scheduler of the same Kubernetes release as the test
# control plane (test/infra/node/kube), and containerd 2 with its runc shim and ctr
# (test/infra/node/containerd), at the versions pinned in their go.mod files. runc and the CNI
# plugins are Debian packages (runc, containernetworking-plugins).
#
# Binaries land in ${IPSEC_OPERATOR_CACHE:-$HOME/.cache/ipsec-operator}/node/<key>/, where <key>
# hashes every build input (go.mod, go.sum, *.go under test/infra/node and this script);
# test/infra/node/binaries.ts computes the same key and refuses anything else. With nothing
# changed, a rerun only hashes and exits. Go's build cache defaults to the same cache root
# (GOCACHE, if set, wins), so CI that keeps the cache directory rebuilds incrementally.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${IPSEC_OPERATOR_CACHE:-$HOME/.cache/ipsec-operator}"
cache_root="$cache_dir/node"
kube_mod="test/infra/node/kube"
containerd_mod="test/infra/node/containerd"

log() { printf '[build-node] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "go is not on PATH: install Go $(sed -n 's/^go //p' "$repo/$kube_mod/go.mod") or newer"
for tool in /usr/sbin/runc /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback; do
  [[ -x "$tool" ]] || die "$tool is missing: apt-get install runc containernetworking-plugins"
done
command -v buildah >/dev/null || die "buildah is not installed (it makes the pause image): apt-get install buildah"

# The cache key. Keep in sync with nodeBuildKey() in test/infra/node/binaries.ts: sha256 over
# the lines "<sha256 of file>  <path relative to the repo>\n" of the inputs, sorted by path
# (bytewise), truncated to 16 hex digits.
build_key() {
  cd "$repo"
  find test/infra/node -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print \
    | { cat; echo scripts/build-node.sh; } \
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

export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0
export GOCACHE="${GOCACHE:-$cache_dir/go-build}"

mod_version() { (cd "$repo/$1" && go list -m -f '{{.Version}}' "$2"); }
mod_time() { (cd "$repo/$1" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$2"); }
k8s_version="$(mod_version "$kube_mod" k8s.io/kubernetes)"
k8s_date="$(mod_time "$kube_mod" k8s.io/kubernetes)"
containerd_version="$(mod_version "$containerd_mod" github.com/containerd/containerd/v2)"
k8s_major="$(echo "$k8s_version" | sed -E 's/^v([0-9]+)\..*/\1/')"
k8s_minor="$(echo "$k8s_version" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')"

# The version stamps of the upstream release builds, so the Node object reports the kubelet's
# real version (the apiserver's version-skew rules read it) and containerd reports its own.
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$k8s_major -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$k8s_date"
done
pause_ref="localhost/ipsec-node/pause:$key"
containerd_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$containerd_version"

log "key $key: Kubernetes $k8s_version (kubelet, kube-controller-manager, kube-scheduler), containerd $containerd_version, $(go version | cut -d' ' -f3)"
log "downloading modules (Go module proxy)"
(cd "$repo/$kube_mod" && go mod download) || die "go mod download failed in $kube_mod"
(cd "$repo/$containerd_mod" && go mod download) || die "go mod download failed in $containerd_mod"

# One go build at a time: each already uses every core. containerd first: it shares no
# packages with the control plane, whose build may still be filling the Go build cache.
log "building containerd $containerd_version (containerd, containerd-shim-runc-v2, ctr)"
t=$SECONDS
# no_btrfs, no_devmapper: snapshotters the node does not use (btrfs needs cgo headers).
for cmd in containerd containerd-shim-runc-v2 ctr; do
  (cd "$repo/$containerd_mod" && nice -n 10 go build -trimpath -tags 'no_btrfs no_devmapper' \
    -ldflags="$containerd_ldflags" -o "$tmp/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd") \
    || die "go build of $cmd failed (see above)"
done
log "containerd built in $((SECONDS - t))s"

log "building ipsec-node (kubelet + kube-controller-manager + kube-scheduler); cold: many minutes"
t=$SECONDS
(cd "$repo/$kube_mod" && nice -n 10 go build -trimpath -ldflags="$k8s_ldflags" -o "$tmp/ipsec-node" .) \
  || die "go build of $kube_mod failed (see above)"
log "ipsec-node built in $((SECONDS - t))s"

# The sandbox image: the CRI runs every Pod in one, and registry.k8s.io/pause is out of reach.
log "building the pause image ($pause_ref)"
(cd "$repo/$kube_mod" && go build -trimpath -ldflags='-s -w' -o "$tmp/pause" ./pause) || die "go build of pause failed"
storage=(--root "$tmp/.storage" --runroot "$tmp/.runroot" --storage-driver vfs)
ctr="$(buildah "${storage[@]}" from scratch)"
buildah "${storage[@]}" copy --quiet "$ctr" "$tmp/pause" /pause >/dev/null
buildah "${storage[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
buildah "${storage[@]}" commit --quiet --rm "$ctr" "$pause_ref" >/dev/null
buildah "${storage[@]}" push --quiet "$pause_ref" "oci-archive:$tmp/pause.oci.tar:$pause_ref" || die "writing the pause image failed"
buildah "${storage[@]}" rmi --all >/dev/null 2>&1 || true
rm -rf "$tmp/.storage" "$tmp/.runroot"

cat >"$tmp/manifest.json" <<EOF
{"key":"$key","kubernetes":"$k8s_version","containerd":"$containerd_version","pause":"$pause_ref","runc":"$(/usr/sbin/runc --version | sed -n 's/^runc version //p')","go":"$(go env GOVERSION)"}
EOF
touch "$tmp/.complete"
if mv -T "$tmp" "$out" 2>/dev/null; then trap - EXIT; else log "another build published $key first"; fi
ln -sfn "$key" "$cache_root/current"

# Keep the newest two other builds and drop older ones.
find "$cache_root" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name '.build-*' -printf '%T@ %p\n' \
  | sort -rn | tail -n +3 | cut -d' ' -f2- | while IFS= read -r old; do log "pruning $old"; rm -rf "$old"; done

log "done in $((SECONDS - start))s: $out"
