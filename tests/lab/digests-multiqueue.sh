#!/bin/bash
# tests/lab/digests-multiqueue.sh: one ferryd (generated config, 127.0.0.1:4421,
# subsystem nqn.2026-11.io.ferry:dmq, 1 GiB RAM namespace) and three default
# lab/initiator scenarios against it: header+data digests (-g -G); 2 I/O queues of
# depth 128 with 4 fio jobs at iodepth 32; both together. ferryd runs two reactors
# (--cpus 0,1), so one controller's queues live on different threads. ferryd must survive
# each run and stop cleanly. Then ferryd again with --c2h-success always: reads end with
# C2HData SUCCESS although the kernel keeps SQ flow control (nvme connect without
# --disable-sqflow), with digests and 2 queues; fio verify must pass. Then ferryd with
# --socket-engine uring: digests + 2 queues of depth 128 + 4 fio jobs, and 2 plain queues.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the digests + multi-queue lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4421
NQN=nqn.2026-11.io.ferry:dmq

lab_begin digests-multiqueue
write_ram_config "$WORK/ferryd.json" "$PORT" "$NQN"

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts with two reactors" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" --cpus 0,1; then
    run_initiator digests --port "$PORT" --nqn "$NQN" --fio-size 16M \
        --connect-opts "-g -G" || true
    check "ferryd alive after digests run" ferryd_alive || true
    run_initiator multiqueue --port "$PORT" --nqn "$NQN" --fio-size 16M \
        --connect-opts "-i 2 -Q 128" --jobs 4 --iodepth 32 || true
    check "ferryd alive after multi-queue run" ferryd_alive || true
    check "connections were served by both reactors" grep -q 'reactor 1: conn' "$WORK/ferryd.log" || true
    run_initiator digests-multiqueue --port "$PORT" --nqn "$NQN" --fio-size 16M \
        --connect-opts "-g -G -i 2 -Q 128" --jobs 4 --iodepth 32 || true
    check "ferryd still running at the end, stops cleanly" stop_ferryd || true
fi
if check "ferryd starts with --c2h-success always" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd-always.log" \
        --cpus 0,1 --c2h-success always; then
    run_initiator c2h-success-always --port "$PORT" --nqn "$NQN" --fio-size 16M \
        --connect-opts "-g -G -i 2" --jobs 2 --iodepth 32 || true
    check "ferryd (--c2h-success always) stops cleanly" stop_ferryd || true
fi
# The io_uring socket engine (multishot receives into provided buffers) under the kernel
# initiator: digests, 2 queues of depth 128, 4 fio jobs (4 KiB and 128 KiB write+verify).
if check "ferryd starts with --socket-engine uring" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd-uring.log" \
        --cpus 0,1 --socket-engine uring; then
    check "reactors use io_uring with multishot receives" grep -q 'io_uring (multishot receive' \
        "$WORK/ferryd-uring.log" || true
    run_initiator uring-digests-multiqueue --port "$PORT" --nqn "$NQN" --fio-size 16M \
        --connect-opts "-g -G -i 2 -Q 128" --jobs 4 --iodepth 32 || true
    run_initiator uring-plain --port "$PORT" --nqn "$NQN" --fio-size 16M \
        --connect-opts "-i 2" --jobs 2 --iodepth 32 || true
    check "ferryd (--socket-engine uring) stops cleanly" stop_ferryd || true
fi
lab_finish
