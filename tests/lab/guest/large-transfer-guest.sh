#!/bin/bash
# tests/lab/guest/large-transfer-guest.sh: guest side of tests/lab/large-transfer.sh, run by
# lab/initiator --script. Connects to $LAB_NQN; the controller must say MDTS 11 (8 MiB) and the
# kernel must take that as the namespace's max_hw_sectors_kb; then ONE 8 MiB write and ONE
# 8 MiB read (nvme-cli passthrough: a single NVMe command each, never split by the host)
# verify with cmp, and so does a 4 MiB + 4 KiB command (1025 blocks, beyond the old 1 MiB).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh
modprobe nvme-tcp || true

_mdts_is_11() {
    local out; out=$(nvme id-ctrl "$1" 2>&1); grep -E '^mdts ' <<< "$out"
    grep -qE '^mdts +: 11$' <<< "$out"
}
_max_hw_kb_is_8192() {
    local kb; kb=$(cat "/sys/block/${1##*/}/queue/max_hw_sectors_kb"); echo "max_hw_sectors_kb $kb"
    [ "$kb" = 8192 ]
}
# _one_command DEV START_BLOCK BYTES: write BYTES of random data in one command, read them
# back in one command, compare (4 KiB LBAs; --block-count is 0-based).
_one_command() {
    local dev=$1 start=$2 bytes=$3 count=$(($3 / 4096 - 1))
    head -c "$bytes" /dev/urandom > /tmp/w.bin
    rm -f /tmp/r.bin
    nvme write "$dev" --start-block "$start" --block-count "$count" --data-size "$bytes" --data /tmp/w.bin || return 1
    nvme read "$dev" --start-block "$start" --block-count "$count" --data-size "$bytes" --data /tmp/r.bin || return 1
    cmp /tmp/w.bin /tmp/r.bin
}

dev="" ctrl=""
if step connect nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" --hostnqn="$LAB_HOSTNQN"; then
    dev=$(nvmf_find_ns "$LAB_NQN" 30) || dev=""
    ctrl=$(nvmf_find_ctrl "$LAB_NQN") || ctrl=""
fi
if [ -n "$dev" ] && [ -n "$ctrl" ]; then
    step "id-ctrl MDTS 11" _mdts_is_11 "$ctrl"
    step "kernel max_hw_sectors_kb 8192" _max_hw_kb_is_8192 "$dev"
    step "one 8 MiB write and read verify" _one_command "$dev" 0 $((8 << 20))
    step "one 4 MiB + 4 KiB write and read verify" _one_command "$dev" 4096 $(((4 << 20) + 4096))
else
    step "namespace appears" false
fi
step disconnect _disconnect "$LAB_NQN"
summary
