#!/bin/bash
# tests/lab/guest/readback-guest.sh: guest side of tests/lab/file-backend.sh, run by
# lab/initiator --script. Connects to $LAB_NQN and verifies, with fio's --verify_only, the
# two regions that the default scenario of an earlier run wrote (4k blocks at 0, 128k blocks
# at FIO_SIZE), deallocates and zeroes a range elsewhere and reads zeroes back, then disconnects.
# Proves the data survived a restart of the target.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh
SIZE=${FIO_SIZE:-16M}
modprobe nvme-tcp || true
dev=""
if step connect nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" --hostnqn="$LAB_HOSTNQN"; then
    dev=$(nvmf_find_ns "$LAB_NQN" 30) || dev=""
fi
# A deallocate (blkdiscard: Dataset Management) and a Write Zeroes (blkdiscard -z) over 4 MiB
# of random data at 128 MiB, on the file store's io_uring fallocate path: both read back as
# zeroes.
_zeroed_after() {  # dev blkdiscard-options...
    local dev=$1
    shift
    dd if=/dev/urandom of="$dev" bs=1M seek=128 count=4 oflag=direct status=none || return 1
    cmp -s -n $((4 << 20)) <(dd if="$dev" bs=1M skip=128 count=4 iflag=direct status=none) /dev/zero && {
        echo "random data read back as zeroes before the discard"; return 1; }
    blkdiscard "$@" -o $((128 << 20)) -l $((4 << 20)) "$dev" || return 1
    cmp -n $((4 << 20)) <(dd if="$dev" bs=1M skip=128 count=4 iflag=direct status=none) /dev/zero
}
if [ -n "$dev" ]; then
    step readback-after-restart _readback "$dev" "$SIZE"
    step deallocate-reads-zeroes _zeroed_after "$dev"
    step write-zeroes-reads-zeroes _zeroed_after "$dev" -z
else
    step readback-after-restart false
fi
step disconnect _disconnect "$LAB_NQN"
summary
