#!/bin/bash
# tests/lab/guest/controller-reset-guest.sh: guest side of tests/lab/controller-reset.sh, run by
# lab/initiator --script. Connects to $LAB_NQN with 2 I/O queues, writes 4 MiB, resets the
# controller (`nvme reset`: Linux tears its I/O queues down, clears CC.EN and waits for
# CSTS.RDY 0, then connects anew), reads the data back through the new queues, resets once
# more under fio, disconnects (CC.SHN: Linux waits for SHST complete), and the kernel must not
# have logged a failed reset or an incomplete shutdown.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh
modprobe nvme-tcp || true

# _live CTRL: the controller is live again within 30 s
_live() {
    local c=/sys/class/nvme/${1##*/} i
    for ((i = 0; i < 300; i++)); do
        [ "$(cat "$c/state" 2>/dev/null)" = live ] && { echo "state live after $((i / 10)).$((i % 10)) s"; return 0; }
        sleep 0.1
    done
    echo "state: $(cat "$c/state" 2>/dev/null)"; return 1
}
_reset() { nvme reset "$1" && _live "$1"; }
_write() { head -c $((4 << 20)) /dev/urandom > /tmp/w.bin && dd if=/tmp/w.bin of="$1" bs=1M oflag=direct status=none; }
_verify() { dd if="$1" of=/tmp/r.bin bs=1M count=4 iflag=direct status=none && cmp /tmp/w.bin /tmp/r.bin; }
# _reset_under_fio DEV CTRL: fio writes and verifies 16 MiB at 8 MiB while the controller is
# reset in the middle; Linux requeues the I/O the reset interrupted, so fio must succeed.
_reset_under_fio() {
    fio --name=during-reset --filename="$1" --rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio \
        --direct=1 --offset=8M --size=48M --verify=crc32c --do_verify=1 \
        --output=/tmp/fio.out & local fio_pid=$!
    sleep 0.5
    # the reset must meet fio's writes: fio still running when it is issued
    kill -0 "$fio_pid" 2>/dev/null || { echo "fio ended before the reset"; wait "$fio_pid"; return 1; }
    _reset "$2"; local rc=$?
    wait "$fio_pid"; local frc=$?
    tail -5 /tmp/fio.out
    [ "$rc" -eq 0 ] && [ "$frc" -eq 0 ]
}
# No failed reset, no incomplete or timed-out shutdown: Linux reports a CSTS.RDY or SHST it
# waited for in vain as "Device not ready; aborting reset/shutdown" (nvme_wait_ready).
_kernel_quiet() {
    ! dmesg | grep -iE 'not ready|aborting|shutdown (incomplete|timeout)|failed to reset|reset.*failed|Removing after'
}

# nvme-cli's walk over every FID (`nvme get-feature` without -f) goes on only past Invalid
# Field: it sends buffers for the FIDs that have data (LBA Range Type 03h: 4 KiB), which must
# not end it (a length check before the FID did), so the ones offered after 03h are listed.
_features() {
    local out
    out=$(nvme get-feature "$1" 2>&1)
    echo "$out" | grep -E 'get-feature:0x0(4|7|b|f)' | head -4
    echo "$out" | grep -q 'Number of Queues' && echo "$out" | grep -q 'Keep Alive Timer'
}

dev="" ctrl=""
if step connect nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" --hostnqn="$LAB_HOSTNQN" \
        --nr-io-queues=2; then
    dev=$(nvmf_find_ns "$LAB_NQN" 30) || dev=""
    ctrl=$(nvmf_find_ctrl "$LAB_NQN") || ctrl=""
fi
if [ -n "$dev" ] && [ -n "$ctrl" ]; then
    step "nvme get-feature lists every feature offered" _features "$ctrl"
    step "write 4 MiB" _write "$dev"
    step "nvme reset, live again" _reset "$ctrl"
    step "read back after the reset" _verify "$dev"
    step "nvme reset under fio write+verify" _reset_under_fio "$dev" "$ctrl"
    step "read back after the second reset" _verify "$dev"
else
    step "namespace appears" false
fi
step disconnect _disconnect "$LAB_NQN"
step "kernel logged no failed reset or incomplete shutdown" _kernel_quiet
dmesg | grep -iE 'nvme' | tail -12
summary
