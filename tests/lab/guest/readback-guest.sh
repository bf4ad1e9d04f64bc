#!/bin/bash
# tests/lab/guest/readback-guest.sh: guest side of tests/lab/file-backend.sh, run by
# lab/initiator --script. Connects to $LAB_NQN and verifies, with fio's --verify_only, the
# two regions that the default scenario of an earlier run wrote (4k blocks at 0, 128k blocks
# at FIO_SIZE), then disconnects. Proves the data survived a restart of the target.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh
SIZE=${FIO_SIZE:-16M}
modprobe nvme-tcp || true
dev=""
if step connect nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" --hostnqn="$LAB_HOSTNQN"; then
    dev=$(nvmf_find_ns "$LAB_NQN" 30) || dev=""
fi
if [ -n "$dev" ]; then
    step readback-after-restart _readback "$dev" "$SIZE"
else
    step readback-after-restart false
fi
step disconnect _disconnect "$LAB_NQN"
summary
