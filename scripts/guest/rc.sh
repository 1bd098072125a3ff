#!/bin/sh
# System start-up of the test guest (busybox init runs it once, before the tenant application):
# file systems, the virtio and e1000 drivers, and the QEMU guest agent on its virtio-serial port.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/qga

step() {
  read -r up _ </proc/uptime
  echo "RC $* uptime=$up"
}
step mounted

# wait_for TEST PATH TRIES INTERVAL: polls `[ TEST PATH ]`; leaves the polls it took in $waited.
wait_for() {
  waited=0
  while [ ! "$1" "$2" ] && [ $waited -lt "$3" ]; do
    sleep "$4"
    waited=$((waited + 1))
  done
}

# The insmod order that works with this kernel (notes/qemu-on-this-machine.md).
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console e1000; do
  insmod "/lib/modules/$m.ko" || echo "RC insmod $m failed"
done
step modules

for word in $(cat /proc/cmdline); do
  case $word in tenant.name=*) hostname "${word#tenant.name=}" ;; esac
done

# The agent's port appears once virtio_console has probed the device.
wait_for -e /dev/vport0p1 200 0.05
step "vport wait=$waited"
if [ -e /dev/vport0p1 ]; then
  /usr/sbin/qemu-ga -d -m virtio-serial -p /dev/vport0p1 -t /run/qga -f /run/qga/qemu-ga.pid ||
    echo "RC qemu-ga failed to start"
  # At the highest priority, as time daemons run: a clock step lands when qemu-ga runs, and a
  # CPU-bound tenant at the same priority delays it by scheduler ticks. Its daemon child writes
  # the pid file after the parent has returned.
  wait_for -s /run/qga/qemu-ga.pid 100 0.02
  qga=$(cat /run/qga/qemu-ga.pid 2>/dev/null)
  renice -n -20 -p "$qga" >/dev/null 2>&1 || echo "RC qemu-ga priority unchanged"
  step "qemu-ga nice=$(awk '{ print $19 }' "/proc/$qga/stat" 2>/dev/null)"
else
  echo "RC no /dev/vport0p1: no guest agent"
fi
read -r up _ </proc/uptime
echo "RC ready uptime=$up boot_id=$(cat /proc/sys/kernel/random/boot_id)"
