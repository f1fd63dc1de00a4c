#!/usr/bin/env bash
# Builds the initramfs of the test VM (test/infra/vm) and caches it outside the work tree.
#
# The host kernel lacks ESP/AH/IPComp, so SA and traffic tests run in a qemu VM that boots
# Debian's stock kernel. The initramfs holds only what is needed to reach the host's root
# filesystem (static busybox, virtio/9p/overlay modules) plus the XFRM, crypto and
# networking modules the tests use; everything else (node, iproute2, the project) comes from
# the host through a read-only 9p share. See test/infra/vm/guest/init for the boot sequence.
#
# Output: the cache directory, printed as the last line on stdout. It contains
#   vmlinuz              the kernel to boot (a copy, so the directory is self-contained)
#   initramfs.cpio.gz    cpio newc, gzip
#   kernel-version       the kernel release the modules belong to
# The directory name is a hash of the kernel, this script and the guest files, so a rerun
# with nothing changed only prints the path.
#
# Environment:
#   IPSEC_OPERATOR_CACHE       cache root (default ~/.cache/ipsec-operator)
#   IPSEC_OPERATOR_VM_KERNEL   kernel to boot: a release (6.12.117+deb12-amd64) or its first
#                              version numbers (6.12: the newest 6.12.x installed). Default
#                              6.1, Debian 12's stock kernel (linux-image-amd64); the test
#                              matrix also boots 6.12 (linux-image-6.12-amd64).
#
# One image per kernel release: the cache key covers the release, so images for 6.1 and 6.12
# live side by side.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
guest_dir="$repo_root/test/infra/vm/guest"
guest_files=("$guest_dir/init" "$guest_dir/control-server.mjs")

# Modules loaded at boot. Their dependencies are added from modules.dep; the crypto trees are
# added whole because AEAD/cipher templates (gcm, rfc4106, cbc, hmac...) are loaded on demand.
modules=(
  virtio_pci virtio_net 9pnet_virtio 9p overlay
  xfrm_user esp4 esp6 ah4 ah6 ipcomp ipcomp6 xfrm_ipcomp xfrm_interface
  xfrm4_tunnel xfrm6_tunnel tunnel4 tunnel6
  authenc authencesn gcm ccm seqiv echainiv chacha20poly1305
  veth bridge
  nf_tables nft_chain_nat nft_nat nft_masq nf_conntrack nf_nat # the NAT router of test/kernel/vm/nat-traversal.test.ts
)
module_trees=(kernel/crypto kernel/arch/x86/crypto kernel/lib/crypto)

die() {
  echo "build-vm: $*" >&2
  exit 1
}

need_cmd() { # command, Debian package that provides it
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install the Debian package '$2' (apt-get install $2)"
}

need_cmd modprobe kmod
need_cmd depmod kmod
need_cmd cpio cpio
need_cmd gzip gzip
need_cmd xz xz-utils
need_cmd sha256sum coreutils

busybox=/bin/busybox
[[ -x $busybox ]] || die "$busybox not found: install the Debian package 'busybox-static'"
# The dynamic 'busybox' package also installs /bin/busybox; it cannot run before the host
# root is mounted, so insist on the static build.
ldd_out=$(ldd "$busybox" 2>&1 || true)
if [[ $ldd_out != *'not a dynamic executable'* ]]; then
  die "$busybox is dynamically linked: install the Debian package 'busybox-static' (it replaces 'busybox')"
fi

# A release, or a version prefix ending at a dot or dash: "6.1" picks 6.1.0-57-amd64, not
# 6.12.117+deb12-amd64. Only kernels with both /boot/vmlinuz-<release> and modules count.
wanted=${IPSEC_OPERATOR_VM_KERNEL:-6.1}
kver=""
for vmlinuz in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V); do
  candidate=${vmlinuz#/boot/vmlinuz-}
  [[ -f /lib/modules/$candidate/modules.dep ]] || continue
  [[ $candidate == "$wanted" || $candidate == "$wanted".* || $candidate == "$wanted"-* ]] && kver=$candidate
done
if [[ -z $kver ]]; then
  package=linux-image-amd64
  [[ $wanted == 6.1 ]] || package="linux-image-$wanted-amd64"
  die "no kernel $wanted with both /boot/vmlinuz-<release> and /lib/modules/<release>/modules.dep (installed: $(ls /boot | sed -n 's/^vmlinuz-//p' | tr '\n' ' ')): install the Debian package '$package' (scripts/bootstrap.sh does)"
fi
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
[[ -r $kernel ]] || die "$kernel not readable: install the Debian package 'linux-image-amd64' (or set IPSEC_OPERATOR_VM_KERNEL)"
[[ -f $moddir/modules.dep ]] || die "$moddir/modules.dep missing: install the Debian package 'linux-image-amd64' (or set IPSEC_OPERATOR_VM_KERNEL)"
for f in "${guest_files[@]}"; do
  [[ -f $f ]] || die "guest file $f missing: is this a complete checkout of ipsec-operator?"
done

# The key covers everything the image is made of: the kernel release and its files' identity
# (a Debian rebuild keeps the release name), this script and the guest files.
key=$(
  {
    echo "$kver"
    stat -c '%s %Y' "$kernel" "$moddir/modules.dep" "$busybox"
    cat "${BASH_SOURCE[0]}" "${guest_files[@]}"
  } | sha256sum | cut -c1-16
)
cache_root="${IPSEC_OPERATOR_CACHE:-$HOME/.cache/ipsec-operator}/vm"
out="$cache_root/$key"
if [[ -f $out/initramfs.cpio.gz && -f $out/vmlinuz ]]; then
  echo "build-vm: cached image for $kver" >&2
  echo "$out"
  exit 0
fi

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,lower,lowerusr,rw,newroot} "$root/lib/modules/$kver"

cp "$busybox" "$root/bin/busybox"
# Applet links: /bin for stage 1; /vmbin is copied next to busybox in the guest's /run after
# switch_root (links made at build time, as forking 300 'ln' under TCG costs seconds).
mkdir -p "$root/vmbin"
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] && continue
  ln -s busybox "$root/bin/$applet"
  ln -s ../busybox "$root/vmbin/$applet"
done
# The kernel runs /sbin/modprobe to load crypto templates on demand (until the guest's
# switch_root, after which the host's kmod modprobe is used).
ln -sf /bin/busybox "$root/sbin/modprobe"

# Modules go into the initramfs uncompressed: Debian's 6.1 ships them as .ko, 6.12 as .ko.xz,
# and busybox's modprobe in stage 1 need not know the compression. depmod below indexes them
# under their new names.
declare -A copied=()
copy_module() { # absolute path under $moddir
  local rel=${1#"$moddir"/}
  [[ -n ${copied[$rel]:-} ]] && return 0
  copied[$rel]=1
  mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
  case $rel in
    *.ko.xz) xz -dc "$1" >"$root/lib/modules/$kver/${rel%.xz}" ;;
    *.ko.zst) zstd -qdc "$1" >"$root/lib/modules/$kver/${rel%.zst}" ;;
    *.ko.gz) gzip -dc "$1" >"$root/lib/modules/$kver/${rel%.gz}" ;;
    *) cp "$1" "$root/lib/modules/$kver/$rel" ;;
  esac
}

for m in "${modules[@]}"; do
  deps=$(modprobe -S "$kver" --show-depends "$m" 2>&1) ||
    die "kernel $kver has no module '$m' ($deps): the VM needs a Debian 12 kernel (linux-image-amd64, linux-image-6.12-amd64)"
  # Lines are 'insmod /path/x.ko [params]' or 'builtin x'.
  while read -r verb path _; do
    [[ $verb == insmod ]] && copy_module "$path"
  done <<<"$deps"
done
for tree in "${module_trees[@]}"; do
  [[ -d $moddir/$tree ]] || continue
  while IFS= read -r -d '' ko; do copy_module "$ko"; done < <(find "$moddir/$tree" -name '*.ko*' -print0)
done
# Every module copied brings what it depends on (modules.dep of the full tree), to the
# closure: a module whose dependency was left out would load without it in stage 1 and fail
# ("Unknown symbol"). 6.12, for one, moved gf128mul (ghash, so GCM, needs it) to lib/crypto.
declare -A depends_on=()
while IFS=: read -r module deps; do depends_on[$module]=$deps; done <"$moddir/modules.dep"
added=1
while ((added)); do
  added=0
  for rel in "${!copied[@]}"; do
    for dep in ${depends_on[$rel]:-}; do
      [[ -n ${copied[$dep]:-} ]] && continue
      copy_module "$moddir/$dep"
      added=1
    done
  done
done
cp "$moddir"/modules.{order,builtin} "$root/lib/modules/$kver/" 2>/dev/null || true
[[ -f $moddir/modules.builtin.modinfo ]] && cp "$moddir/modules.builtin.modinfo" "$root/lib/modules/$kver/"
depmod -b "$root" "$kver" || die "depmod failed for the initramfs modules"

cp "$guest_dir/init" "$root/init"
chmod 0755 "$root/init"
cp "$guest_dir/control-server.mjs" "$root/control-server.mjs"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) |
  gzip -6 >"$work/initramfs.cpio.gz"
cp "$kernel" "$work/vmlinuz"
echo "$kver" >"$work/kernel-version"
rm -rf "$root"

# Publish atomically; a concurrent build of the same key may have won the race.
if ! mv -T "$work" "$out" 2>/dev/null; then
  [[ -f $out/initramfs.cpio.gz ]] || die "could not move the image into $out"
fi
trap - EXIT
rm -rf "$work"
echo "build-vm: built image for $kver ($(du -k "$out/initramfs.cpio.gz" | cut -f1) KiB initramfs)" >&2
echo "$out"
