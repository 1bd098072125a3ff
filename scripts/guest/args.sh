# Sourced by the test guest's programs (rc.sh, tenant.sh, recorder.sh, stream.sh): the tenant
# arguments, whichever way the VM got them, and small helpers they share.
#
# The arguments are words like `tenant.name=web_0 tenant.ip=10.77.0.11/24 tenant.records=1`. They come
# from the kernel command line (direct kernel boot: QEMU's -append; boot from disk: syslinux's APPEND)
# and from SMBIOS type-11 OEM strings `intermission.args=<words>` (boot from disk: the driver passes
# `-smbios type=11,value=intermission.args=...`). rc.sh collects both, once, into $TENANT_ARGS, one
# word a line, command line first: a name given twice takes its last value, so the OEM strings win.
TENANT_ARGS=/run/tenant.args

# Writes $TENANT_ARGS (rc.sh, once /proc, /sys and /run are mounted).
collect_args() {
  {
    tr ' ' '\n' </proc/cmdline
    for raw in /sys/firmware/dmi/entries/11-*/raw; do
      [ -r "$raw" ] || continue
      # An SMBIOS structure: type, length of the formatted part, handle, string count; then the
      # strings, each ending in a NUL.
      len=$(od -An -tu1 -j1 -N1 "$raw" | tr -d ' ')
      dd if="$raw" bs=1 skip="$len" 2>/dev/null | tr '\0' '\n' | sed -n 's/^intermission\.args=//p' | tr ' ' '\n'
    done
  } | grep -v '^$' >"$TENANT_ARGS.new"
  mv "$TENANT_ARGS.new" "$TENANT_ARGS"
}

# arg NAME [DEFAULT]: the value of NAME=, or DEFAULT when it is not given (or empty).
arg() {
  awk -v key="$1=" -v dflt="${2:-}" '
    index($0, key) == 1 { v = substr($0, length(key) + 1) }
    END { print (v == "" ? dflt : v) }' "$TENANT_ARGS" 2>/dev/null
}

# nic_by_driver DRIVER: the name of the first network interface bound to DRIVER (e1000: the
# metadata NIC; virtio_net: the tenant NIC), whatever order the kernel named them in.
nic_by_driver() {
  for dev in /sys/class/net/*; do
    drv=$(readlink "$dev/device/driver" 2>/dev/null) || continue
    if [ "${drv##*/}" = "$1" ]; then
      echo "${dev##*/}"
      return 0
    fi
  done
  return 1
}

# Sleeps for ever without a process per second (init's respawn entries of a program that is off).
idle() {
  exec sleep 2147483647
}
