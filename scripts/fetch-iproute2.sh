#!/usr/bin/env bash
# Fetches a newer iproute2 than Debian 12's own (6.1) for the kernel-matrix tests, without
# installing it: Debian 12's `ip xfrm state` predates SA direction (XFRMA_SA_DIR, Linux 6.10)
# and prints no `dir in`/`dir out`, so a test cannot check with iproute2 what the 6.12 kernel
# kept. bookworm-backports builds iproute2 6.15 for Debian 12 (same libraries), served by the
# same Debian registry. The package is downloaded with apt-get into a private apt state (the
# machine's sources and installed packages are left as they are) and unpacked into the cache.
#
# Output: the path of the unpacked `ip`, as the last line on stdout. A rerun with the binary
# already there only prints the path.
#
# Environment:
#   IPSEC_OPERATOR_CACHE   cache root (default ~/.cache/ipsec-operator)
set -euo pipefail

cache_root="${IPSEC_OPERATOR_CACHE:-$HOME/.cache/ipsec-operator}"
out="$cache_root/iproute2-bookworm-backports"
ip_bin="$out/root/bin/ip"

die() {
  echo "fetch-iproute2: $*" >&2
  exit 1
}

if [[ -x $ip_bin ]] && "$ip_bin" -V >/dev/null 2>&1; then
  echo "fetch-iproute2: cached $("$ip_bin" -V)" >&2
  echo "$ip_bin"
  exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found: this needs a Debian 12 machine"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: install the Debian package 'dpkg'"

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/.iproute2.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/root"
echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$work/sources.list"
apt_options=(
  -o "Dir::Etc::sourcelist=$work/sources.list" -o 'Dir::Etc::sourceparts=-'
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o 'APT::Sandbox::User=root' -q
)
apt-get "${apt_options[@]}" update >&2 || die "apt-get update of bookworm-backports failed"
version=$(apt-cache "${apt_options[@]}" policy iproute2 | sed -n 's/^ *Candidate: //p')
[[ $version == *bpo12* ]] || die "bookworm-backports has no iproute2 (candidate: '${version:-none}')"
(cd "$work" && apt-get "${apt_options[@]}" download "iproute2=$version" >&2) || die "apt-get download iproute2=$version failed"
dpkg-deb -x "$work"/iproute2_*.deb "$work/root" || die "could not unpack iproute2 $version"
"$work/root/bin/ip" -V >&2 || die "the unpacked ip ($version) does not run here"

rm -rf "$out"
mkdir -p "$out"
mv "$work/root" "$out/root"
echo "$version" >"$out/version"
echo "$ip_bin"
