#!/bin/sh
# The test guest's record writer (tenant.records=1): a tenant process that appends numbered,
# checksummed records to a file on its disk, makes each one durable with fsync, and only then says so.
#
# - appends to /data/records.log (the ext4 partition labelled `data`) one line per record:
#     R <seq> <payload> <crc>
#   where payload is `b=<boot id, 8 hex digits>,t=<uptime>` (no spaces) and crc is the CRC-32 (zlib's,
#   busybox `crc32`, 8 lower-case hex digits) of the text `<seq> <payload>`;
# - fsyncs the file after every record (busybox `sync FILE` calls fsync(2) on it), then prints
#   `REC ACK <seq>` on the serial console: an acknowledged record is on the disk;
# - every tenant.records_ms milliseconds (default 100);
# - after a reboot, continues from the last record in the file; a last line that is torn or fails its
#   checksum (a record written but never acknowledged when the VM stopped) is cut off first.
#
# Serial lines: REC START seq=<n> [dropped=<bytes>] | REC ACK <seq> | REC ERROR <what>
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/args.sh

[ "$(arg tenant.records)" = 1 ] || idle
LOG=/data/records.log
if ! grep -q ' /data ' /proc/mounts; then
  echo "REC ERROR no /data (no ext4 partition labelled data)"
  idle
fi

# Whether a record line is whole and its checksum right.
valid() {
  set -- $1
  [ "$1" = R ] && [ $# -eq 4 ] && [ "$(printf '%s %s' "$2" "$3" | crc32)" = "$4" ]
}

seq=1
dropped=0
if [ -s "$LOG" ]; then
  last=$(tail -n 1 "$LOG")
  if [ "$(tail -c 1 "$LOG" | od -An -tx1 | tr -d ' ')" != 0a ] || ! valid "$last"; then
    dropped=$(tail -n 1 "$LOG" | wc -c)
    truncate -s $(($(stat -c %s "$LOG") - dropped)) "$LOG"
    sync "$LOG"
    last=$(tail -n 1 "$LOG")
  fi
  # shellcheck disable=SC2086
  [ -n "$last" ] && set -- $last && seq=$(($2 + 1))
fi
echo "REC START seq=$seq dropped=$dropped"

ms=$(arg tenant.records_ms 100)
pause=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))
fifo=/tmp/recorder.fifo
[ -p "$fifo" ] || mkfifo "$fifo"
boot=$(cut -c1-8 /proc/sys/kernel/random/boot_id)
while :; do
  read -r up _ </proc/uptime
  payload="b=$boot,t=$up"
  crc=$(printf '%s %s' "$seq" "$payload" | crc32)
  printf 'R %s %s %s\n' "$seq" "$payload" "$crc" >>"$LOG"
  if ! sync "$LOG"; then
    echo "REC ERROR fsync failed at seq=$seq"
    exit 1
  fi
  echo "REC ACK $seq"
  seq=$((seq + 1))
  # A sleep without forking: read with a timeout on a fifo nobody writes to.
  read -r -t "$pause" _ <>"$fifo"
done
