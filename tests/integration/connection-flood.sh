#!/bin/bash
# tests/integration/connection-flood.sh: 2,000 connections that never finish their handshake
# (from 127.0.0.2, reopened as fast as ferryd sheds them) do not stop a well-behaved host on
# 127.0.0.1 from connecting and running verified I/O, and ferryd says what it did in a few
# rate-limited log lines, not one per connection. Also out of descriptors (EMFILE): ferryd
# warns, pauses accepting instead of spinning, and serves again afterwards. Loopback only, no
# guest; the lab version with TLS and DH-HMAC-CHAP is tests/lab/secure-channel.sh.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)

PORT=${PORT:-4446}
# info: at debug ferryd logs every one of the ~170,000 connections the flood opens (~140 MB).
export FERRYD_LOG_LEVEL=${FERRYD_LOG_LEVEL:-info}
PERF=$BUILD/bin/ferry-perf
NQN=nqn.2026-11.io.ferry:flood
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.flood.XXXXXX")
FLOOD_PID=""
trap '[ -n "$FLOOD_PID" ] && kill "$FLOOD_PID" 2>/dev/null; lab_cleanup >/dev/null 2>&1 || true' EXIT
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": $PORT } ],
  "subsystems": [
    { "nqn": "$NQN", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "64MiB" } ] }
  ],
  "management": { "port": 0 }
}
JSON

# flood SEND SECONDS: 2,000 connections from 127.0.0.2 in the background; waits until opened.
flood() {
    rm -f "$WORK/flood.ready"
    python3 "$HERE/flood.py" --addr 127.0.0.1 --port "$PORT" --source 127.0.0.2 --count 2000 \
        --seconds "$2" --send "$1" --reopen --ready-file "$WORK/flood.ready" > "$WORK/flood-$1.out" 2>&1 &
    FLOOD_PID=$!
    local i
    for i in $(seq 300); do
        [ -e "$WORK/flood.ready" ] && return 0
        kill -0 "$FLOOD_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
flood_done() {  # waits for the flooder; it must have opened its 2,000 connections
    local rc=0
    wait "$FLOOD_PID" || rc=$?
    FLOOD_PID=""
    cat "$WORK/flood-$1.out"
    [ "$rc" = 0 ]
}

if check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" --max-connections 4096; then
    for kind in nothing partial-icreq; do
        before=$(grep -c 'admission: shed' "$WORK/ferryd.log" || true)
        t0=$SECONDS
        if check "2,000 silent connections open ($kind)" flood "$kind" 25; then
            check "ferry-perf --verify runs during the flood ($kind)" \
                "$PERF" -p "$PORT" -n "$NQN" --verify -t 3 --rw rw --bs 4k --qd 16 || true
            check "a second host connects during the flood ($kind)" \
                "$PERF" -p "$PORT" -n "$NQN" --verify -t 1 --rw rw --bs 128k --qd 4 --queues 2 || true
            check "the flooder opened its 2,000 connections ($kind)" flood_done "$kind" || true
            after=$(grep -c 'admission: shed' "$WORK/ferryd.log" || true)
            lines=$((after - before)) secs=$((SECONDS - t0 + 2))
            check "shedding logged at most once a second ($lines lines in ${secs}s, $kind)" \
                test "$lines" -ge 1 -a "$lines" -le "$secs" || true
        fi
    done
    total=$(wc -l < "$WORK/ferryd.log")
    check "ferryd's log stays short ($total lines for both floods)" test "$total" -lt 1500 || true
    check "ferryd serves after the floods" "$PERF" -p "$PORT" -n "$NQN" --verify -t 1 --rw rw --bs 4k --qd 8 || true
    check "ferryd stops cleanly" stop_ferryd || true
fi

# Out of descriptors: a ferryd whose hard open-files limit is 300 warns at start that it is
# below --max-connections; when a flood uses them all, accept fails with EMFILE: ferryd pauses
# accepting and says so once a second (not once per attempt), and serves again afterwards.
printf '#!/bin/sh\nexec prlimit --nofile=300:300 %q "$@"\n' "$FERRYD" > "$WORK/ferryd-300-fds"
chmod +x "$WORK/ferryd-300-fds"
FERRYD=$WORK/ferryd-300-fds
lowfd() { grep -q 'open files limit 300 is below --max-connections 4096' "$WORK/ferryd-lowfd.log"; }
if check "ferryd starts with 300 descriptors" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd-lowfd.log" \
        --max-connections 4096 --max-pending-per-address 4000 --max-pending 4000; then
    check "ferryd warns that 300 descriptors are below --max-connections" lowfd || true
    t0=$SECONDS
    if check "flood of 2,000 while ferryd has 300 descriptors" flood nothing 8; then
        flood_done nothing > /dev/null || true
        lines=$(grep -c 'accept failed' "$WORK/ferryd-lowfd.log" || true) secs=$((SECONDS - t0 + 2))
        check "EMFILE reported at most once a second ($lines lines in ${secs}s)" \
            test "$lines" -ge 1 -a "$lines" -le "$secs" || true
    fi
    check "ferryd serves once the flood is gone" "$PERF" -p "$PORT" -n "$NQN" --verify -t 1 --rw rw --bs 4k --qd 8 || true
    check "ferryd (300 descriptors) stops cleanly" stop_ferryd || true
fi
echo "ferryd log: $WORK/ferryd.log"
summary
