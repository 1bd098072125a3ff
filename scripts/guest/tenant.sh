#!/bin/sh
# The tenant application of the test guest: what a customer's workload does with Scheduled Events.
#
# - brings up the metadata NIC (the e1000 one; tenant.mdip, default 169.254.0.15/16) on the VM's
#   user-mode network, whose 169.254.169.254:80 the host forwards to this VM's own metadata channel
#   (tenant.ip is the tenant NIC's, which rc.sh configures);
# - polls /metadata/scheduledevents once per second with `Metadata: true`, logs every event it
#   sees (and every change of its status) and APPROVES Freeze events (POST StartRequests);
# - keeps a ticker every 10 ms and reports the largest gap between ticks once per second, in guest
#   time; with tenant.beat=1 it also prints a short line per tick, for a host-side observer that
#   timestamps serial output as it arrives;
# - with tenant.dirty_mb=N, rewrites every page of N MB of its memory without pause (stress), so
#   that guest memory keeps getting dirtied (for the migration benchmark); it logs the first passes.
#
# Everything goes to the serial console, one line per write, in forms a test parses:
#   TENANT t=<uptime> wall=<epoch s.us> boot=<boot id> start ip=<ip>
#   TENANT t=<uptime> wall=<epoch s.us> event=<id> type=<type> status=<status> incarnation=<n> notbefore=<date>
#   TENANT t=<uptime> wall=<epoch s.us> event=<id> approve=<ok|failed>
#   TICK t=<uptime> n=<ticks> gap_ms=<largest gap since the last report>
#   B <tick> <uptime>                     (tenant.beat=1 only)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/args.sh

URL='http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01'
IP=$(arg tenant.mdip 169.254.0.15/16)
BEAT=$(arg tenant.beat 0)
DIRTY_MB=$(arg tenant.dirty_mb 0)
BOOT=$(cat /proc/sys/kernel/random/boot_id)

# The wall clock with microseconds (busybox date has no %N; adjtimex prints tv_sec and tv_usec).
wall() {
  adjtimex | awk '/tv_sec/ { s = $2 } /tv_usec/ { u = $2 } END { printf "%d.%06d", s, u }'
}

log() {
  read -r up _ </proc/uptime
  echo "TENANT t=$up wall=$(wall) $*"
}

# Uptime in centiseconds, as a decimal integer without leading zeros.
cs() {
  v=${1%.*}${1#*.}
  while [ "${v#0}" != "$v" ] && [ ${#v} -gt 1 ]; do v=${v#0}; done
  echo "$v"
}

ticker() {
  fifo=/tmp/tick.fifo
  mkfifo "$fifo"
  read -r up _ </proc/uptime
  last=$(cs "$up")
  report=$last
  max=0
  n=0
  while :; do
    # A 10 ms sleep without forking: read with a timeout on a fifo nobody writes to.
    read -r -t 0.01 _ <>"$fifo"
    read -r up _ </proc/uptime
    v=${up%.*}${up#*.}
    while [ "${v#0}" != "$v" ] && [ ${#v} -gt 1 ]; do v=${v#0}; done
    gap=$((v - last))
    [ $gap -gt $max ] && max=$gap
    last=$v
    n=$((n + 1))
    [ "$BEAT" = 1 ] && echo "B $n $up"
    if [ $((v - report)) -ge 100 ]; then
      echo "TICK t=$up n=$n gap_ms=$((max * 10))"
      max=0
      report=$v
    fi
  done
}

dirtier() {
  mb=$1
  # stress (Debian's) keeps rewriting one byte in every page of its N MB without pause, as fast as
  # the vCPU goes: every page dirty again on every pass, and never a zero page (which a copying
  # migration would send as a flag, for nothing). With -v it prints one line per pass.
  log "dirtier mb=$mb"
  pass=0
  stress -v --vm 1 --vm-bytes "${mb}M" --vm-stride 4096 --vm-keep 2>&1 | while read -r line; do
    case $line in
      *touching*)
        # A pass starts: the one before it is done.
        [ $pass -ge 1 ] && [ $pass -le 3 ] && log "dirtier pass=$pass"
        pass=$((pass + 1))
        ;;
    esac
  done
}

# The events of one document, one per line: id|type|status|notbefore.
events() {
  sed 's/{"EventId"/\n{"EventId"/g' "$1" | awk '
    function field(k,   s) {
      if (!match($0, "\"" k "\": *\"[^\"]*\"")) return ""
      s = substr($0, RSTART, RLENGTH)
      sub("^\"" k "\": *\"", "", s)
      sub("\"$", "", s)
      return s
    }
    /^\{"EventId"/ { print field("EventId") "|" field("EventType") "|" field("EventStatus") "|" field("NotBefore") }'
}

ticker &
[ "$DIRTY_MB" -gt 0 ] 2>/dev/null && dirtier "$DIRTY_MB" &

i=0
while ! NIC=$(nic_by_driver e1000) && [ $i -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
NIC=${NIC:-eth0}
ip link set lo up
ip link set "$NIC" up
ip addr add "$IP" dev "$NIC"
log "boot=$BOOT start ip=$IP"

seen=/tmp/seen
: >"$seen"
last_inc=
while :; do
  if timeout 5 wget -q -O /tmp/doc.json --header 'Metadata: true' "$URL" 2>/dev/null; then
    inc=$(sed -n 's/.*"DocumentIncarnation": *\([0-9]*\).*/\1/p' /tmp/doc.json)
    if [ "$inc" != "$last_inc" ]; then
      log "incarnation=$inc"
      last_inc=$inc
    fi
    events /tmp/doc.json >/tmp/events
    while IFS='|' read -r id type status notbefore; do
      [ -n "$id" ] || continue
      if ! grep -qx "$id $status" "$seen"; then
        echo "$id $status" >>"$seen"
        log "event=$id type=$type status=$status incarnation=$inc notbefore=$notbefore"
      fi
      if [ "$type" = Freeze ] && [ "$status" = Scheduled ] && ! grep -qx "$id approved" "$seen"; then
        if timeout 5 wget -q -O /dev/null --header 'Metadata: true' --header 'Content-Type: application/json' \
          --post-data "{\"StartRequests\":[{\"EventId\":\"$id\"}]}" "$URL" 2>/dev/null; then
          echo "$id approved" >>"$seen"
          log "event=$id approve=ok"
        else
          log "event=$id approve=failed"
        fi
      fi
    done </tmp/events
  else
    log "poll=failed"
  fi
  sleep 1
done
