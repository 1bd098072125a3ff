#!/usr/bin/env bash
# Installs QEMU 10.0.2 beside the system's QEMU (Debian 12's 7.2), without replacing it: the target
# of the cross-version in-place upgrade tests (notes: qemu-on-this-machine.md).
#
#   scripts/fetch-qemu.sh [PREFIX]        (default /opt/qemu-10.0.2; needs root)
#
# Adds Debian's bookworm-backports suite to /etc/apt/sources.list.d when no apt source names it,
# downloads qemu-system-x86, qemu-system-common and qemu-system-data from it (apt-get download: no
# package is installed) and unpacks them into PREFIX with dpkg -x. The binary is then
# PREFIX/usr/bin/qemu-system-x86_64; its data directory lacks SeaBIOS, so run it with
# `-L /usr/share/qemu` (the 7.2 firmware, which a VM migrated from 7.2 must keep anyway).
#
# Idempotent: nothing is done when PREFIX already holds a binary that prints version 10.0.2.
set -euo pipefail

prefix=${1:-/opt/qemu-10.0.2}
version=10.0.2
binary=$prefix/usr/bin/qemu-system-x86_64

installed() {
  [ -x "$binary" ] && "$binary" --version 2>/dev/null | head -n 1 | grep -q "version $version "
}

if installed; then
  echo "fetch-qemu: $binary is QEMU $version already"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' >/etc/apt/sources.list.d/bookworm-backports.list
  echo "fetch-qemu: added bookworm-backports to /etc/apt/sources.list.d"
fi
apt-get update -qq

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt's download sandbox user must be able to write there.
chmod 0755 "$work"
chown _apt "$work" 2>/dev/null || true
(cd "$work" && apt-get download -qq \
  qemu-system-x86/bookworm-backports qemu-system-common/bookworm-backports qemu-system-data/bookworm-backports)

mkdir -p "$prefix"
for deb in "$work"/*.deb; do
  dpkg -x "$deb" "$prefix"
done

if ! installed; then
  echo "fetch-qemu: $binary does not print version $version:" >&2
  "$binary" --version >&2 || true
  exit 1
fi
echo "fetch-qemu: installed QEMU $version at $prefix"
