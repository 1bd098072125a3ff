#!/usr/bin/env bash
# Builds the test guest as a disk that boots through the BIOS (SeaBIOS), from the Debian packages
# installed on this machine (build-guest.sh's, plus syslinux, mtools, dosfstools, e2fsprogs, fdisk):
# nothing binary is committed, nothing is mounted, no loop device is used.
#
#   scripts/guest/build-disk.sh OUTDIR
#
# OUTDIR receives what build-guest.sh puts there (vmlinuz, initrd.img, stamp), and:
#   disk.raw    a raw disk with an MBR (syslinux's mbr.bin) and two partitions:
#                 1  FAT (type c, bootable), 64 MiB: SYSLINUX (ldlinux.sys, ldlinux.c32),
#                    syslinux.cfg, vmlinuz, initrd.img; syslinux loads the kernel and the initrd
#                    with `console=ttyS0 panic=-1 quiet` (the tenant arguments come as SMBIOS
#                    OEM strings: see args.sh)
#                 2  ext4 labelled `data`, 64 MiB, empty: the guest mounts it at /data
#               A VM writes to its own qcow2 overlay (qemu-img create -f qcow2 -F raw -b disk.raw).
#   disk.stamp  what the disk was made from: the guest's stamp and a hash of this script
#
# Idempotent and cached like build-guest.sh (a lock of its own in OUTDIR serialises racing builds).
set -euo pipefail

out=${1:?usage: build-disk.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

die() {
  echo "build-disk: $*" >&2
  exit 1
}

exec 8>"$out/.disk.lock"
flock 8

bash "$here/build-guest.sh" "$out"

export PATH=$PATH:/usr/sbin:/sbin
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$mbr" ] || die "$mbr is missing: apt-get install -y syslinux-common"
command -v syslinux >/dev/null || die "syslinux is missing: apt-get install -y syslinux"
command -v mcopy >/dev/null || die "mcopy is missing: apt-get install -y mtools"
command -v mkfs.vfat >/dev/null || die "mkfs.vfat is missing: apt-get install -y dosfstools"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing: apt-get install -y e2fsprogs"
command -v sfdisk >/dev/null || die "sfdisk is missing: apt-get install -y fdisk"

stamp="$(cat "$out/stamp") disk=$(cat "$here/build-disk.sh" "$mbr" | sha256sum | cut -c1-16)"
if [ -f "$out/disk.stamp" ] && [ "$(cat "$out/disk.stamp")" = "$stamp" ] && [ -f "$out/disk.raw" ]; then
  echo "build-disk: $out/disk.raw is up to date ($stamp)"
  exit 0
fi

work=$(mktemp -d "$out/.disk.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Sizes in 512-byte sectors: partitions aligned to 1 MiB.
mib=2048
boot_start=$mib
boot_size=$((64 * mib))
data_start=$((boot_start + boot_size))
data_size=$((64 * mib))
total=$((data_start + data_size))

# Partition 1: FAT with SYSLINUX. Its boot sector's hidden-sector count is the partition's offset.
cat >"$work/syslinux.cfg" <<'CFG'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND console=ttyS0 panic=-1 quiet
CFG
truncate -s $((boot_size * 512)) "$work/boot.img"
mkfs.vfat -n BOOT -h "$boot_start" "$work/boot.img" >/dev/null
syslinux --install "$work/boot.img"
mcopy -i "$work/boot.img" "$out/vmlinuz" "$out/initrd.img" "$work/syslinux.cfg" ::/

# Partition 2: ext4 labelled data, made from an empty directory.
mkdir "$work/data"
truncate -s $((data_size * 512)) "$work/data.img"
mkfs.ext4 -q -L data -d "$work/data" "$work/data.img"

# The disk: the partition table, the images at their offsets, the MBR boot code in its first 440 bytes.
truncate -s $((total * 512)) "$work/disk.raw"
sfdisk -q "$work/disk.raw" <<TABLE
label: dos
unit: sectors
start=$boot_start, size=$boot_size, type=c, bootable
start=$data_start, size=$data_size, type=83
TABLE
dd if="$work/boot.img" of="$work/disk.raw" bs=512 seek="$boot_start" conv=notrunc,sparse status=none
dd if="$work/data.img" of="$work/disk.raw" bs=512 seek="$data_start" conv=notrunc,sparse status=none
dd if="$mbr" of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none

mv -f "$work/disk.raw" "$out/disk.raw"
echo "$stamp" >"$out/disk.stamp"
echo "build-disk: built $out/disk.raw ($stamp)"
