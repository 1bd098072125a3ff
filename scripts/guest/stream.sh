#!/bin/sh
# The test guest's stream server (tenant.stream=1): TCP port 7000 (busybox nc, a process per
# connection) sends every client the same deterministic stream, paced: line n (from 0) is n as nine
# decimal digits and a newline (10 bytes), about 100 lines a second. A client knows which byte comes
# next, so it sees any lost, repeated or corrupted byte, and the gaps between arrivals are stalls.
# The server is reachable through the tenant NIC (tenant.ip); the metadata NIC's user network does
# not forward inbound connections.
#
# Serial lines: STREAM listening port=7000
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/args.sh

if [ "${1:-}" = serve ]; then
  # One connection: stdout is the socket; a write to a closed one ends this process (SIGPIPE).
  fifo=/tmp/stream.$$.fifo
  mkfifo "$fifo"
  trap 'rm -f "$fifo"' EXIT
  n=0
  while :; do
    printf '%09d\n' "$n" || exit 0
    n=$((n + 1))
    read -r -t 0.01 _ <>"$fifo"
  done
fi

[ "$(arg tenant.stream)" = 1 ] || idle
echo "STREAM listening port=7000"
# -ll with -e: keep listening, a child per connection.
exec nc -ll -p 7000 -e /bin/stream serve
