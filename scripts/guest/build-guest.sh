#!/usr/bin/env bash
# Builds the test guest of the QEMU driver tests from the Debian packages installed on this machine
# (linux-image-amd64, busybox-static, qemu-guest-agent, stress): nothing binary is committed.
#
#   scripts/guest/build-guest.sh OUTDIR
#
# OUTDIR receives:
#   vmlinuz     the host's newest /boot/vmlinuz-*, copied
#   initrd.img  a gzip'd newc cpio: busybox (with every applet linked, /sbin/hwclock included, which
#               qemu-ga's guest-set-time needs), the virtio and e1000 modules of that kernel, qemu-ga
#               and stress (the benchmark's memory dirtier) with the shared libraries ldd lists,
#               busybox init, and the tenant application (scripts/guest/tenant.sh)
#   stamp       what the build was made from: kernel version and a hash of every input
#
# Idempotent and cached: when OUTDIR/stamp matches the inputs, nothing is done (a CI run builds once;
# test processes that race are serialised by a lock in OUTDIR). Takes a few seconds.
set -euo pipefail

out=${1:?usage: build-guest.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

exec 9>"$out/.lock"
flock 9

die() {
  echo "build-guest: $*" >&2
  exit 1
}

kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || die "no /boot/vmlinuz-*: apt-get install -y linux-image-amd64"
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[ -d "$moddir" ] || die "$moddir is missing (kernel $kver without its modules)"
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox is missing: apt-get install -y busybox-static"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || ldd "$busybox" 2>&1 | grep -q 'not a dynamic' ||
  die "$busybox is not static: apt-get install -y busybox-static"
qga=/usr/sbin/qemu-ga
[ -x "$qga" ] || die "$qga is missing: apt-get install -y qemu-guest-agent"
stress=/usr/bin/stress
[ -x "$stress" ] || die "$stress is missing: apt-get install -y stress"
command -v cpio >/dev/null || die "cpio is missing: apt-get install -y cpio"

# The modules, in the insmod order that works (notes/qemu-on-this-machine.md).
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console e1000)
module_paths=()
for m in "${modules[@]}"; do
  p=$(find "$moddir" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n 1)
  [ -n "$p" ] || die "module $m not found under $moddir"
  module_paths+=("$p")
done

inputs=$(
  {
    sha256sum "$here/build-guest.sh" "$here/tenant.sh" "$here/rc.sh" "$busybox" "$qga" "$stress" "${module_paths[@]}"
    echo "$kver"
  } | sha256sum | cut -c1-16
)
stamp="kernel=$kver inputs=$inputs"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ]; then
  echo "build-guest: $out is up to date ($stamp)"
  exit 0
fi

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,var/lib,lib/modules,root}
ln -s ../run "$root/var/run"

cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] && continue
  ln -sf busybox "$root/bin/$applet"
done
ln -sf ../bin/busybox "$root/sbin/hwclock"
ln -sf bin/busybox "$root/init"

for i in "${!modules[@]}"; do
  p=${module_paths[$i]}
  dest=$root/lib/modules/${modules[$i]}.ko
  case $p in
    *.xz) xz -dc "$p" >"$dest" ;;
    *.zst) zstd -qdc "$p" >"$dest" ;;
    *.gz) gzip -dc "$p" >"$dest" ;;
    *) cp "$p" "$dest" ;;
  esac
done

# qemu-ga, stress and the libraries they link (ldd prints "name => /path (addr)" or "/path (addr)").
cp "$qga" "$root/usr/sbin/qemu-ga"
cp "$stress" "$root/usr/bin/stress"
for lib in $(ldd "$qga" "$stress" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\// && $i !~ /:$/) print $i }' | sort -u); do
  cp -L --parents "$lib" "$root"
done

install -m 0755 "$here/rc.sh" "$root/etc/rc.sh"
install -m 0755 "$here/tenant.sh" "$root/bin/tenant"
cat >"$root/etc/inittab" <<'TAB'
::sysinit:/etc/rc.sh
::respawn:/bin/tenant
TAB
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1 >"$work/initrd.img")
cp "$kernel" "$work/vmlinuz"
mv -f "$work/initrd.img" "$out/initrd.img"
mv -f "$work/vmlinuz" "$out/vmlinuz"
echo "$stamp" >"$out/stamp"
echo "build-guest: built $out ($stamp)"
