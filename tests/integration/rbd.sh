#!/bin/bash
# tests/integration/rbd.sh: the rbd backend against a real Ceph cluster (../shared/ceph/micro:
# 1 mon, 1 OSD in RAM, image rbd/ferry0 of 1 GiB). Uses the cluster named by CEPH_CONF,
# CEPH_POOL and CEPH_IMAGE (tests/run starts one), or starts and stops its own. Without Ceph
# it fails: nothing is skipped.
#   - ferry_rbd_tests: the store through the target (geometry, VWC, Flush, FUA, Write Zeroes,
#     deallocate, Compare as on RAM, 512 B blocks, errors naming pool/image, no hang)
#   - ferryd with two reactors: ferry-perf --verify at 4K and 128K on several queues; librbd's
#     threads are not pinned to a reactor's CPU
#   - kill -9 of ferryd after acknowledged writes: a new ferryd reads all of them back
#     (ferry-perf --verify-state), and the check fails when the image is overwritten behind it
#   - SIGTERM while the cluster's writes are paused (ceph osd pause) with writes in flight: the
#     rbd queues outlive the reactor's 10 s give-up until librbd returned every command, then
#     ferryd exits cleanly
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"

PORT=${PORT:-4446}
PERF=$BUILD/bin/ferry-perf
MICRO=${CEPH_MICRO:-$(dirname "$(readlink -f "$0")")/../../../shared/ceph/micro}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.rbd.XXXXXX")
own_cluster=0
cleanup() {
    lab_cleanup >/dev/null 2>&1 || true
    if [ "$own_cluster" = 1 ]; then CEPH_MICRO_DIR=$WORK/ceph "$MICRO" stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

if [ -z "${CEPH_CONF:-}" ] || [ -z "${CEPH_POOL:-}" ] || [ -z "${CEPH_IMAGE:-}" ]; then
    own_cluster=1
    if check "Ceph micro cluster starts ($MICRO)" env CEPH_MICRO_DIR="$WORK/ceph" CEPH_MICRO_MGR=0 \
            "$MICRO" start; then
        eval "$(CEPH_MICRO_DIR=$WORK/ceph "$MICRO" env)"
    fi
fi
if [ -z "${CEPH_CONF:-}" ] || [ ! -r "$CEPH_CONF" ]; then
    fail_check "a Ceph cluster to test against" "no readable CEPH_CONF (is Ceph installed? deploy/install-deps --test)"
    summary
    exit 0
fi
export CEPH_CONF CEPH_POOL CEPH_IMAGE
echo "cluster: $CEPH_CONF, image $CEPH_POOL/$CEPH_IMAGE"
# ferryd gets an image of its own, empty (ferry_rbd_tests writes patterns into CEPH_IMAGE).
IMAGE=ferry-int-$$
rbd_() { timeout 60 rbd -c "$CEPH_CONF" -p "$CEPH_POOL" "$@"; }
cleanup_image() { rbd_ rm "$IMAGE" >/dev/null 2>&1 || true; }
# ferryd (lab_cleanup) lets go of the image before it is removed, then the cluster stops.
trap 'lab_cleanup >/dev/null 2>&1 || true; cleanup_image; cleanup' EXIT
check "rbd create $CEPH_POOL/$IMAGE (256 MiB)" rbd_ create --size 256M "$IMAGE" || true

# The store through the target, in process.
check "ferry_rbd_tests" timeout 600 "$BUILD/bin/ferry_rbd_tests" || true

cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": $PORT } ],
  "subsystems": [
    { "nqn": "nqn.2026-11.io.ferry:rbd", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "rbd", "pool": "$CEPH_POOL", "image": "$IMAGE",
                        "ceph_conf": "$CEPH_CONF" } ] }
  ],
  "management": { "port": 0 }
}
JSON
NQN=nqn.2026-11.io.ferry:rbd
perf() {  # perf NAME ARGS...
    local name=$1; shift
    check "ferry-perf --verify $name" "$PERF" -p "$PORT" -n "$NQN" --verify "$@" || true
}
# Threads of ferryd that are not reactors must not be pinned to one CPU (librbd's threads
# inherit the affinity of the thread that opens the image).
unpinned_librbd_threads() {
    local pid=$1 all t name cpus others=0 bad=0
    all=$(grep Cpus_allowed_list "/proc/$pid/status" | awk '{print $2}')
    for t in /proc/"$pid"/task/*; do
        name=$(cat "$t/comm") cpus=$(grep Cpus_allowed_list "$t/status" | awk '{print $2}')
        case $name in
            ferry-r*) ;;
            *) others=$((others + 1))
               if [ "$cpus" != "$all" ]; then echo "thread $name is pinned to $cpus (process: $all)"; bad=1; fi ;;
        esac
    done
    echo "$others non-reactor threads, process CPUs $all"
    [ "$others" -gt 5 ] && [ "$bad" = 0 ]
}

if check "ferryd starts with an rbd namespace (2 reactors)" \
        start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" --cpus 0,1; then
    check "librbd's threads are not pinned to a reactor's CPU" unpinned_librbd_threads "$FERRYD_PID" || true
    perf "rw 4k qd16 4 queues 2 threads" -t 3 --rw rw --bs 4k --qd 16 --queues 4 --cpus 0,1 --size 64m --offset 64m
    perf "rw 128k qd8 2 queues 2 threads" -t 3 --rw rw --bs 128k --qd 8 --queues 2 --cpus 0,1 --size 64m --offset 64m
    # Acknowledged writes survive kill -9: write a region with stamps, remember what was written.
    rm -f "$WORK/state"
    perf "write 16m (state saved)" -t 3 --rw write --bs 64k --qd 8 --queues 2 --cpus 0,1 --size 16m \
        --offset 0 --verify-state "$WORK/state"
    check "kill -9 ferryd" kill -9 "$FERRYD_PID" || true
    wait "$FERRYD_PID" 2>/dev/null || true
    FERRYD_PID=""
fi
if check "a new ferryd opens the image" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd2.log" --cpus 0,1; then
    perf "read back every block written before kill -9" -t 2 --rw read --bs 64k --qd 8 --queues 2 --cpus 0,1 \
        --size 16m --offset 0 --verify-state "$WORK/state" --json "$WORK/readback.json"
    check "the read back covered the whole region" \
        python3 -c "import json,sys; j=json.load(open('$WORK/readback.json')); sys.exit(0 if j['verified_blocks'] >= 4096 else 1)" || true
    # The check can fail: overwrite the start of the region behind ferryd's back.
    if check "rbd writes over the region" rbd_ bench --io-type write --io-size 64K --io-threads 1 --io-total 1M \
            --io-pattern seq "$IMAGE" >/dev/null; then
        if "$PERF" -p "$PORT" -n "$NQN" --verify -t 1 --rw read --bs 64k --qd 8 --queues 2 --cpus 0,1 --size 16m \
                --offset 0 --verify-state "$WORK/state" > "$WORK/overwritten.out" 2>&1; then
            fail_check "verify detects blocks overwritten behind it" "ferry-perf passed"
        else
            check "verify detects blocks overwritten behind it" grep -q 'verify: LBA' "$WORK/overwritten.out" || true
        fi
    fi
    check "ferryd stops cleanly" stop_ferryd || true
fi

# SIGTERM with commands held in librbd (the cluster's writes paused): the reactor gives up on
# its connections after 10 s, but the rbd queues wait until librbd has returned every command
# (here: once writes are unpaused), so no callback writes into freed memory; ferryd then exits
# cleanly. Writes are held with `ceph osd pause` (the pausewr/pauserd flags: clients keep their
# ops until the flags clear), not by stopping the OSD: a CI run's OSD (Ceph 16, memstore) kept
# every op after a SIGSTOP/SIGCONT of 11 s 'delayed' for good, so ferryd's close of the image
# waited out librbd's timeouts and the next stage found no working cluster.
ceph_() { timeout 60 ceph -c "$CEPH_CONF" "$@"; }
writes_paused=""
unpause_writes() { if [ -n "$writes_paused" ]; then ceph_ osd unpause >/dev/null 2>&1 || true; writes_paused=""; fi; }
trap 'unpause_writes; lab_cleanup >/dev/null 2>&1 || true; cleanup_image; cleanup' EXIT
log_has() { grep -qF "$2" "$1"; }
wait_log() {  # wait_log FILE TEXT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do log_has "$1" "$2" && return 0; sleep 0.1; done
    echo "no '$2' in $1 after $3 s"; return 1
}
if check "a third ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd3.log" --cpus 0,1; then
    "$PERF" -p "$PORT" -n "$NQN" -t 30 --rw write --bs 64k --qd 8 --queues 2 --cpus 0,1 --size 16m \
        --offset 32m > "$WORK/held.out" 2>&1 &
    held_perf=$!
    sleep 1
    writes_paused=1
    check "ceph osd pause" ceph_ osd pause || true
    # Long enough that librbd has the new OSD map and every queue's writes are held (writes
    # already at the OSD still complete), and well before librbd's 15 s OSD op timeout fails them.
    sleep 1
    pid=$FERRYD_PID
    kill -TERM "$pid"
    FERRYD_PID=""
    check "after 10 s the rbd queues wait for the commands held in librbd" \
        wait_log "$WORK/ferryd3.log" "librbd call(s) outstanding" 20 || true
    unpause_writes
    ferryd_exited() {
        local i st=0
        for ((i = 0; i < 300; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$1" 2>/dev/null; then echo "ferryd still running 30 s after writes were unpaused"; kill -KILL "$1"; fi
        wait "$1" 2>/dev/null || st=$?
        echo "ferryd exit status $st"
        [ "$st" = 0 ] || [ "$st" = 143 ]
    }
    check "ferryd exits cleanly once writes are unpaused" ferryd_exited "$pid" || true
    check "the queues let go only after librbd returned the commands" \
        log_has "$WORK/ferryd3.log" "outstanding librbd calls returned" || true
    kill "$held_perf" 2>/dev/null || true
    wait "$held_perf" 2>/dev/null || true
fi
echo "ferryd logs: $WORK/ferryd.log $WORK/ferryd2.log $WORK/ferryd3.log"
summary
