#!/usr/bin/env bash
# Installs and builds everything the tests and the local demo need, on a fresh Debian 12
# machine (as root): Debian packages, npm dependencies (which build the native addon), the
# TypeScript build, the Go-built control plane (kube-apiserver + etcd, kubectl, helm), the test
# node (kubelet, containerd 2, ...), the operator's image (make image) and the test VM's
# initramfs. Every step is skipped quickly when already done, so running it again costs seconds.
# Build caches live in ${IPSEC_OPERATOR_CACHE:-$HOME/.cache/ipsec-operator}.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

# Debian packages: the VM (qemu, Debian's stock 6.1 kernel with ESP/AH/IPComp modules and the
# 6.12 kernel of the test matrix, busybox for its initramfs, xz for 6.12's compressed
# modules), iproute2 for namespaces and conformance checks, tcpdump for captures, prometheus
# for the metrics tests; buildah, mmdebstrap, runc and the CNI plugins for the image and the
# test node.
PACKAGES=(qemu-system-x86 qemu-system-data linux-image-amd64 linux-image-6.12-amd64 busybox-static xz-utils iproute2 kmod cpio gzip util-linux tcpdump nftables procps python3 make g++ prometheus buildah mmdebstrap runc containernetworking-plugins)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "bootstrap: installing Debian packages needs root" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# node-gyp would download Node's headers (no internet here); Debian's nodejs ships them in /usr.
if [ -f /usr/include/node/node_version.h ]; then export npm_config_nodedir=/usr; fi

# npm ci when node_modules does not match package-lock.json (its install script builds native/).
lock_hash=$(sha256sum package-lock.json | cut -c1-16)
if [ ! -f node_modules/.lock-hash ] || [ "$(cat node_modules/.lock-hash)" != "$lock_hash" ] || [ ! -f native/build/Release/xfrm_netlink.node ]; then
  step "npm ci (builds the native addon)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" > node_modules/.lock-hash
fi

step "native addon (incremental)"
npx --no-install node-gyp build --directory native >/dev/null

step "TypeScript build"
npm run --silent build

step "control plane (kube-apiserver + etcd, kubectl, helm)"
scripts/build-controlplane.sh

step "test node (kubelet, kube-controller-manager, kube-scheduler, containerd 2, pause image)"
scripts/build-node.sh

step "operator image from the Dockerfile (make image; the node layer runs it)"
scripts/build-image.sh

step "test VM initramfs (kernels 6.1 and 6.12)"
IPSEC_OPERATOR_VM_KERNEL=6.1 scripts/build-vm.sh
IPSEC_OPERATOR_VM_KERNEL=6.12 scripts/build-vm.sh

step "iproute2 from bookworm-backports (shows SA direction; not installed)"
scripts/fetch-iproute2.sh

printf '\nbootstrap done in %ss\n' $((SECONDS - started))
