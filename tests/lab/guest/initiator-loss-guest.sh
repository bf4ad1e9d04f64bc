#!/bin/bash
# tests/lab/guest/initiator-loss-guest.sh: guest side of tests/lab/initiator-loss.sh,
# run by lab/initiator --script. Connects to $LAB_NQN at $LAB_ADDR:$LAB_PORT with a
# 5 s keep-alive timeout, starts fio random 4k writes in the background (time based,
# 600 s), waits until writes reach the namespace, prints the marker line
# LOSS-TEST-IO-RUNNING and sleeps forever: the host then freezes this guest (SIGSTOP
# to qemu) and expects the target to time the controller out.
# Exits non-zero (without the marker) if it cannot get that far.
set -euo pipefail
# /lab/lib.sh in the guest is ../shared/lab/guest-lib.sh
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh

# writes completed on block device $1 (field 5 of /sys/block/X/stat)
writes_done() { awk '{print $5}' "/sys/block/${1##*/}/stat"; }

# io_flowing DEV FIO_PID T: fio still runs and the write count grows within T s
io_flowing() {
    local dev=$1 pid=$2 t=$3 w0 w
    w0=$(writes_done "$dev")
    for ((; t > 0; t--)); do
        sleep 1
        kill -0 "$pid" 2>/dev/null || { echo "fio exited"; cat /tmp/fio-loss.out; return 1; }
        w=$(writes_done "$dev")
        if [ "$w" -gt "$w0" ]; then echo "writes completed: $w0 -> $w"; return 0; fi
    done
    echo "no writes completed on $dev"
    return 1
}

give_up() {
    echo "--- dmesg (tail) ---"; dmesg | tail -30
    summary || true
    exit 1
}

modprobe nvme-tcp
# shellcheck disable=SC2206
copt=(${LAB_CONNECT_OPTS:-})
step connect-kato-5s nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" \
    --hostnqn="$LAB_HOSTNQN" --hostid="$(cat /etc/nvme/hostid)" --keep-alive-tmo=5 "${copt[@]}" || give_up
dev=$(nvmf_find_ns "$LAB_NQN" 30) || dev=""
ctrl=$(nvmf_find_ctrl "$LAB_NQN") || ctrl=""
echo "controller: ${ctrl:-none} namespace: ${dev:-none} kato: $(cat "/sys/class/nvme/${ctrl##*/}/kato" 2>/dev/null || echo '?')"
step namespace-appears test -b "$dev" || give_up

fio --name=loss --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
    --iodepth=16 --size=256M --time_based --runtime=600 > /tmp/fio-loss.out 2>&1 &
fio_pid=$!
step fio-writes-flowing io_flowing "$dev" "$fio_pid" 60 || give_up

echo "LOSS-TEST-IO-RUNNING"
while :; do sleep 3600; done
