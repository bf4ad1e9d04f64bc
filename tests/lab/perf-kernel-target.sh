#!/bin/bash
# tests/lab/perf-kernel-target.sh: ferry-perf is a real initiator, not a mirror of ferryd.
# Boots the Linux kernel target (../shared/lab/kernel-target: nvmet + nvmet-tcp in a QEMU
# guest, emulated NVMe namespace, forwarded to host 127.0.0.1:14430) and runs
# ferry-perf --verify against it: 4k random mix, 128k with 2 queues, and both with header and
# data digests. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs \$BUILD/bin/ferry-perf --verify against the Linux kernel target in a lab guest.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=14430
NQN=nqn.2024-01.org.nvmf-lab:kernel-target
PERF=$BUILD/bin/ferry-perf

lab_begin perf-kernel-target
if check "port $PORT free" require_port_free "$PORT" && check "ferry-perf built" test -x "$PERF"; then
    KT_OUT=$WORK/kernel-target.out
    "$LAB/kernel-target" --port "$PORT" --seconds 600 > "$KT_OUT" 2>&1 &
    LAB_CHILDREN+=("$!")
    LAB_OUTFILES+=("$KT_OUT")
    ready=1
    for ((i = 0; i < 180; i++)); do
        grep -q 'READY' "$KT_OUT" && { ready=0; break; }
        _pid_alive "${LAB_CHILDREN[-1]}" || break
        sleep 1
    done
    if check "kernel target ready" test "$ready" = 0; then
        perf() {  # perf NAME ARGS...
            local name=$1; shift
            echo "--- ferry-perf $name: $*"
            check "ferry-perf --verify vs kernel target: $name" \
                "$PERF" -a 127.0.0.1 -p "$PORT" -n "$NQN" --verify --json "$WORK/$name.json" "$@" || true
        }
        perf rw-4k --rw rw --bs 4k --qd 8 -t 8 --size 64m
        perf rw-128k-2q --rw rw --bs 128k --qd 4 --queues 2 -t 8 --size 64m
        perf rw-4k-digests --rw rw --bs 4k --qd 8 -t 8 --size 64m --digest hdr,data
        perf rw-128k-digests --rw rw --bs 128k --qd 4 --queues 2 -t 8 --size 64m --digest hdr,data
    else
        tail -20 "$KT_OUT"
    fi
fi
lab_finish
