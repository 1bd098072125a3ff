#!/bin/sh
# System start-up of the test guest (busybox init runs it once, before the tenant application):
# file systems, the tenant arguments (args.sh), the drivers, the data disk at /data, the tenant NIC,
# and the QEMU guest agent on its virtio-serial port.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/args.sh

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/qga /data
collect_args

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

# The drivers this VM's devices need, each module after what it needs (build-guest.sh wrote the
# order, in groups, from the kernel's modules.dep): virtio PCI IDs (vendor 1af4), legacy and modern.
want=" base "
serial=0
for dev in /sys/bus/pci/devices/*; do
  [ "$(cat "$dev/vendor")" = 0x1af4 ] || continue
  case $(cat "$dev/device") in
    0x1000 | 0x1041) want="$want net " ;;
    0x1001 | 0x1042) want="$want blk ext4 " ;;
    0x1004 | 0x1048) want="$want scsi ext4 " ;;
    0x1003 | 0x1043) serial=1 ;;
  esac
done
while read -r group m; do
  case $want in *" $group "*) ;; *) continue ;; esac
  insmod "/lib/modules/$m.ko" || echo "RC insmod $m failed"
done </lib/modules/order
# shellcheck disable=SC2086
step modules $want

name=$(arg tenant.name)
[ -n "$name" ] && hostname "$name"

# The data disk: the ext4 partition labelled `data`, on virtio-blk (probed as its module loads) or
# virtio-scsi (whose disks appear asynchronously): waited for only when such a controller exists.
data=$(findfs LABEL=data 2>/dev/null)
if [ -z "$data" ] && ls /sys/bus/virtio/drivers/virtio_blk/virtio* /sys/bus/virtio/drivers/virtio_scsi/virtio* >/dev/null 2>&1; then
  waited=0
  while [ -z "$data" ] && [ $waited -lt 100 ]; do
    sleep 0.05
    waited=$((waited + 1))
    data=$(findfs LABEL=data 2>/dev/null)
  done
fi
if [ -n "$data" ]; then
  if mount -t ext4 "$data" /data; then
    step "data dev=$data"
  else
    echo "RC data dev=$data mount failed"
  fi
fi

# The tenant NIC (virtio-net on the host's bridge) gets tenant.ip.
ip=$(arg tenant.ip)
nic=$(nic_by_driver virtio_net)
if [ -n "$ip" ] && [ -n "$nic" ]; then
  ip link set "$nic" up
  ip addr add "$ip" dev "$nic" || echo "RC net $nic ip=$ip failed"
  step "net if=$nic ip=$ip"
elif [ -n "$ip" ]; then
  echo "RC net ip=$ip: no virtio_net interface"
fi

# The guest agent's port, found by its name: its number follows the order the virtio devices were
# probed in (vport0p1 only when the virtio-serial controller comes first). It appears once
# virtio_console has probed the device, and its name a little later.
agent_port() {
  for p in /sys/class/virtio-ports/*; do
    if [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && [ -e "/dev/${p##*/}" ]; then
      echo "/dev/${p##*/}"
      return 0
    fi
  done
  return 1
}
port=
waited=0
if [ "$serial" = 1 ]; then
  while ! port=$(agent_port) && [ $waited -lt 200 ]; do
    sleep 0.05
    waited=$((waited + 1))
  done
fi
step "vport wait=$waited port=$port"
if [ -n "$port" ]; then
  /usr/sbin/qemu-ga -d -m virtio-serial -p "$port" -t /run/qga -f /run/qga/qemu-ga.pid ||
    echo "RC qemu-ga failed to start"
  # At the highest priority, as time daemons run: a clock step lands when qemu-ga runs, and a
  # CPU-bound tenant at the same priority delays it by scheduler ticks. Its daemon child writes
  # the pid file after the parent has returned.
  wait_for -s /run/qga/qemu-ga.pid 100 0.02
  qga=$(cat /run/qga/qemu-ga.pid 2>/dev/null)
  renice -n -20 -p "$qga" >/dev/null 2>&1 || echo "RC qemu-ga priority unchanged"
  step "qemu-ga nice=$(awk '{ print $19 }' "/proc/$qga/stat" 2>/dev/null)"
else
  echo "RC no org.qemu.guest_agent.0 port: no guest agent"
fi
read -r up _ </proc/uptime
echo "RC ready uptime=$up boot_id=$(cat /proc/sys/kernel/random/boot_id)"
