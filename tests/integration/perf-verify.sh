#!/bin/bash
# tests/integration/perf-verify.sh: ferry-perf --verify against the real ferryd on loopback
# (no guest): mixed random I/O on 4 KiB and 512 B LBA namespaces, large transfers over R2T,
# header and data digests, several queues on several threads, two reactors. A null namespace
# (writes dropped) must make --verify fail: the verifier can fail end to end. Last, ferryd is
# stopped under load: ferry-perf must exit 2 with the error, not abort.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"

PORT=${PORT:-4440}
PERF=$BUILD/bin/ferry-perf
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.perf.XXXXXX")
trap 'lab_cleanup >/dev/null 2>&1 || true' EXIT
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": $PORT } ],
  "subsystems": [
    { "nqn": "nqn.2026-11.io.ferry:perf", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "256MiB" },
                      { "nsid": 2, "backend": "ram", "size": "64MiB", "block_size": 512 },
                      { "nsid": 3, "backend": "null", "size": "64MiB" } ] }
  ],
  "management": { "port": 0 }
}
JSON
perf() {  # perf NAME ARGS...
    local name=$1; shift
    check "ferry-perf --verify $name" "$PERF" -p "$PORT" -n nqn.2026-11.io.ferry:perf --verify -t 2 "$@" || true
}
# ferryd stopped under load: ferry-perf reports the lost target (exit status 2) instead of
# aborting (a failed keep-alive thrown past its running worker threads was SIGABRT, 134).
stop_under_load() {  # stop_under_load LABEL_PREFIX OUTPUT_FILE
    local st=0 perf_pid
    "$PERF" -p "$PORT" -n nqn.2026-11.io.ferry:perf -t 8 --rw rw --bs 4k --qd 8 > "$2" 2>&1 &
    perf_pid=$!
    sleep 1
    check "${1}ferryd stops cleanly (ferry-perf still running)" stop_ferryd || true
    wait "$perf_pid" || st=$?
    check "${1}ferry-perf exits 2 when the target goes away (got $st), saying why" \
        bash -c "[ $st = 2 ] && grep -q '^ferry-perf: ' '$2'" || cat "$2"
}
if check "ferryd starts (2 reactors)" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" --cpus 0,1; then
    check "ferryd says its connections use cubic (--tcp-congestion default)" \
        grep -q 'NVMe/TCP connections use TCP congestion control cubic ' "$WORK/ferryd.log" || true
    perf "rw 4k qd32" --rw rw --bs 4k --qd 32
    perf "rw 128k qd8 (R2T) 2 queues" --rw rw --bs 128k --qd 8 --queues 2
    perf "rw 1m qd4" --rw rw --bs 1m --qd 4
    perf "rw 8m qd2 (MDTS)" --rw rw --bs 8m --qd 2
    perf "rw 4k, 512 B LBAs" --rw rw --bs 4k --qd 16 --nsid 2
    perf "rw 8k digests" --rw rw --bs 8k --qd 16 --digest hdr,data
    perf "rw 64k digests 4 queues 2 threads" --rw rw --bs 64k --qd 8 --queues 4 --cpus 0,1 --digest hdr,data
    # 64 H2CData PDUs per write: more PDUs in flight than ferry-perf has header slots per command.
    perf "rw 8m qd8 digests" --rw rw --bs 8m --qd 8 --digest hdr,data
    perf "sequential write then rw 4k" --rw write --bs 4k --qd 16 --size 16m
    # A null namespace drops writes: the verifier must report lost blocks and fail.
    if "$PERF" -p "$PORT" -n nqn.2026-11.io.ferry:perf --nsid 3 --verify -t 1 --rw rw --bs 4k --qd 8 \
            > "$WORK/null.out" 2>&1; then
        fail_check "verify detects dropped writes (null namespace)" "ferry-perf passed"
    else
        check "verify detects dropped writes (null namespace)" grep -q 'block lost' "$WORK/null.out" || true
    fi
    stop_under_load "" "$WORK/gone.out"
fi
# The same data checks through the io_uring socket engine (multishot receives into provided
# buffers, sends through the ring), and its shutdown under load.
if check "ferryd starts (2 reactors, --socket-engine uring, --tcp-congestion system)" start_ferryd \
        "$WORK/ferryd.json" "$WORK/ferryd-uring.log" --cpus 0,1 --socket-engine uring --tcp-congestion system; then
    sys_cc=$(cat /proc/sys/net/ipv4/tcp_congestion_control)
    check "ferryd says its connections keep the system's congestion control ($sys_cc)" \
        grep -q "use TCP congestion control $sys_cc (system default $sys_cc)" "$WORK/ferryd-uring.log" || true
    check "ferryd says it uses multishot receives" grep -q 'io_uring (multishot receive' "$WORK/ferryd-uring.log" || true
    perf "uring: rw 4k qd32" --rw rw --bs 4k --qd 32
    perf "uring: rw 128k qd8 (R2T) 2 queues" --rw rw --bs 128k --qd 8 --queues 2
    perf "uring: rw 8m qd8 digests" --rw rw --bs 8m --qd 8 --digest hdr,data
    perf "uring: rw 64k digests 4 queues 2 threads" --rw rw --bs 64k --qd 8 --queues 4 --cpus 0,1 --digest hdr,data
    stop_under_load "uring: " "$WORK/gone-uring.out"
fi
# An algorithm the kernel lacks is refused at start, naming those it has.
bad_congestion() {
    local st=0
    "$FERRYD" -c "$WORK/ferryd.json" --tcp-congestion no-such-cc > "$WORK/bad-cc.out" 2>&1 || st=$?
    [ "$st" = 2 ] && grep "TCP congestion control 'no-such-cc'.*(available: .*cubic" "$WORK/bad-cc.out" >/dev/null
}
check "--tcp-congestion no-such-cc: exit status 2, the available algorithms named" bad_congestion ||
    cat "$WORK/bad-cc.out"
echo "ferryd logs: $WORK/ferryd.log $WORK/ferryd-uring.log"
summary
