#!/usr/bin/env bash
# Builds the test guest of the QEMU driver tests from the Debian packages installed on this machine
# (linux-image-amd64, busybox-static, qemu-guest-agent, stress): nothing binary is committed.
#
#   scripts/guest/build-guest.sh OUTDIR
#
# OUTDIR receives:
#   vmlinuz     the host's newest /boot/vmlinuz-*, copied
#   initrd.img  a gzip'd newc cpio: busybox (with every applet linked, /sbin/hwclock included, which
#               qemu-ga's guest-set-time needs), the virtio, e1000, virtio-blk, virtio-scsi, ext4 and
#               virtio-net modules of that kernel with their dependencies, qemu-ga and stress (the
#               benchmark's memory dirtier) with the shared libraries ldd lists, busybox init, the
#               tenant application (scripts/guest/tenant.sh), the record writer (recorder.sh) and
#               the stream server (stream.sh)
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

# The modules and, before each, what it needs (modules.dep), in an order insmod can follow, in
# groups that rc.sh loads only when the VM has such a device (a guest without a disk boots as fast as
# before). `base` is the insmod order that works (notes/qemu-on-this-machine.md); then the disk and
# network drivers of a guest that boots from its disk: virtio-blk, virtio-scsi (and the SCSI disk
# driver), ext4 (crc32c is a crypto module ext4 asks for by name: loaded explicitly, as there is no
# modprobe) and virtio-net.
groups=(
  "base:virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console e1000"
  "blk:virtio_blk"
  "scsi:virtio_scsi sd_mod"
  "ext4:crc32c_generic ext4"
  "net:virtio_net"
)
declare -A dep_path dep_list
while IFS=: read -r path deps; do
  name=${path##*/}
  name=${name%%.ko*}
  dep_path[$name]=$path
  dep_list[$name]=$deps
done <"$moddir/modules.dep"
modules=()
module_groups=()
module_paths=()
declare -A placed
place() {
  local group=$1 m=$2 d dn
  [ -n "${placed[$m]:-}" ] && return 0
  [ -n "${dep_path[$m]:-}" ] || die "module $m not found in $moddir/modules.dep"
  placed[$m]=1
  for d in ${dep_list[$m]}; do
    dn=${d##*/}
    place "$group" "${dn%%.ko*}"
  done
  modules+=("$m")
  module_groups+=("$group")
  module_paths+=("$moddir/${dep_path[$m]}")
}
for g in "${groups[@]}"; do
  for m in ${g#*:}; do place "${g%%:*}" "$m"; done
done

# The guest's own programs (scripts/guest): start-up, their shared reading of the tenant arguments,
# the tenant application, the record writer and the stream server.
programs=(rc.sh args.sh tenant.sh recorder.sh stream.sh)

inputs=$(
  {
    sha256sum "$here/build-guest.sh" "${programs[@]/#/$here/}" "$busybox" "$qga" "$stress" "${module_paths[@]}"
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

: >"$root/lib/modules/order"
for i in "${!modules[@]}"; do
  echo "${module_groups[$i]} ${modules[$i]}" >>"$root/lib/modules/order"
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
install -m 0644 "$here/args.sh" "$root/etc/args.sh"
install -m 0755 "$here/tenant.sh" "$root/bin/tenant"
install -m 0755 "$here/recorder.sh" "$root/bin/recorder"
install -m 0755 "$here/stream.sh" "$root/bin/stream"
# The recorder and the stream server idle unless their argument is set (tenant.records=1,
# tenant.stream=1); init restarts any of them that exits.
cat >"$root/etc/inittab" <<'TAB'
::sysinit:/etc/rc.sh
::respawn:/bin/tenant
::respawn:/bin/recorder
::respawn:/bin/stream
TAB
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1 >"$work/initrd.img")
cp "$kernel" "$work/vmlinuz"
mv -f "$work/initrd.img" "$out/initrd.img"
mv -f "$work/vmlinuz" "$out/vmlinuz"
echo "$stamp" >"$out/stamp"
echo "build-guest: built $out ($stamp)"
