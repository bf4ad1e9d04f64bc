#!/bin/bash
# tests/lab/guest/pcie-guest.sh: guest side of tests/lab/pcie-vfio.sh, run by lab/guest
# (--bin). ferryd (staged with its libraries in /opt/host/files/ferry) exports the guest's
# emulated NVMe controllers through VFIO; the guest's own kernel initiator uses them.
#
#   pcie-guest.sh MODE SIZE [EXPECT...]
#     MODE full:  (guest with an IOMMU) everything below plus a kill -9 of ferryd during I/O
#     MODE basic: (guest without an IOMMU) setup.sh refuses without --noiommu and binds with
#                 it; ferryd says it runs in no-IOMMU mode; an I/O queue beyond the SSDs'
#                 hardware queues (2 each) is refused
#     In both the guest booted with --no-vfio: deploy/setup.sh binds the controllers to
#     vfio-pci first and gives them back to the kernel nvme driver at the end.
#     SIZE: fio region size (4k blocks at 0, 128k blocks at SIZE, per namespace)
#     EXPECT: "nsN:OFFSET_MIB:MIB:SHA256" patterns an earlier boot wrote, read back here
# Prints PASS/FAIL per step, "PATTERN nsN OFFSET_MIB MIB SHA256" for every pattern it writes,
# and "N passed, N failed" last.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh
MODE=${1:-basic} SIZE=${2:-8M}
shift 2 || true
EXPECT=("$@")
F=/opt/host/files
NQN=nqn.2026-11.io.ferry:ssd
FERRYD=("$F/ferry/lib/ld-linux-x86-64.so.2" --library-path "$F/ferry/lib" "$F/ferry/bin/ferryd")
export FERRYCTL=$F/ferry/bin/ferryctl-run  # what setup.sh binds devices with
LOG=/tmp/ferryd.log
PID=""
SIZE_B=$(_size_bytes "$SIZE")
PAT_OFF_MIB=$(( 2 * SIZE_B >> 20 ))   # patterns go after the two fio regions

start_ferryd() {
    "${FERRYD[@]}" --config "$F/pcie.json" --cpus 0,1 --pool-mib 32 --idle-spin-us 0 >> "$LOG" 2>&1 &
    PID=$!
    wait_listen 4420 60 && kill -0 "$PID"
}

# the block device of namespace NSID of $NQN (waits up to 30 s)
ns_dev() {
    local want=$1 t=30 b
    while [ "$t" -gt 0 ]; do
        for b in /sys/block/nvme*n*; do
            [ -e "$b" ] || continue
            case ${b##*/} in *c*n*) continue ;; esac
            [ "$(cat "$b/device/subsysnqn" 2>/dev/null)" = "$NQN" ] || continue
            [ "$(cat "$b/nsid" 2>/dev/null)" = "$want" ] && { echo "/dev/${b##*/}"; return 0; }
        done
        sleep 1; t=$((t - 1))
    done
    return 1
}

# Each host I/O queue must sit on a hardware queue of its own on each SSD.
hw_queues_distinct() {
    local bdf lines n ids
    for bdf in $LAB_NVME_BDFS; do
        lines=$(grep -o "I/O queue [0-9]* connected.*" "$LOG" | grep -o "hardware queue [0-9]* of $bdf" | awk '{print $3}')
        n=$(echo "$lines" | grep -c .)
        ids=$(echo "$lines" | sort -u | grep -c .)
        echo "    $bdf: host I/O queues on hardware queues: $(echo $lines)"
        [ "$n" -ge 2 ] && [ "$n" -eq "$ids" ] || return 1
    done
}

write_pattern() {  # write_pattern NSID DEV OFFSET_MIB MIB
    local nsid=$1 dev=$2 off=$3 mib=$4
    head -c $((mib << 20)) /dev/urandom > /tmp/pat.$nsid || return 1
    dd if=/tmp/pat.$nsid of="$dev" bs=1M seek="$off" oflag=direct status=none || return 1
    echo "PATTERN ns$nsid $off $mib $(sha256sum < /tmp/pat.$nsid | cut -d' ' -f1)"
}

read_pattern() {  # read_pattern DEV OFFSET_MIB MIB SHA
    local got
    got=$(dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none | sha256sum | cut -d' ' -f1)
    echo "    read back $3 MiB at $2 MiB: $got"
    [ "$got" = "$4" ]
}

ssds_on() {  # ssds_on DRIVER: every controller is bound to DRIVER
    local b d
    for b in $LAB_NVME_BDFS; do
        d=$(basename "$(readlink /sys/bus/pci/devices/$b/driver 2>/dev/null)")
        echo "    $b: driver ${d:-none}"
        [ "$d" = "$1" ] || return 1
    done
}

if [ "$MODE" = full ]; then
    step "setup.sh config binds the SSDs to vfio-pci" "$F/setup.sh" config --hugemem 256 --devices "$LAB_NVME_BDFS"
else
    refuses_without_noiommu() {
        local out rc=0
        out=$("$F/setup.sh" config --hugemem 256 --devices "$LAB_NVME_BDFS" 2>&1) || rc=$?
        echo "$out" | sed 's/^/    /'
        [ "$rc" -ne 0 ] && grep -qi "iommu" <<< "$out" && ssds_on nvme
    }
    step "setup.sh config refuses without an IOMMU unless --noiommu" refuses_without_noiommu
    step "setup.sh config --noiommu binds the SSDs to vfio-pci" \
        "$F/setup.sh" config --noiommu --hugemem 256 --devices "$LAB_NVME_BDFS"
fi
"$F/setup.sh" status || true
step "both SSDs on vfio-pci" ssds_on vfio-pci

modprobe nvme-tcp || true
step "ferryd starts on the VFIO SSDs" start_ferryd
if [ "$MODE" != full ]; then
    step "ferryd runs in vfio no-IOMMU mode (and says so)" grep -q "NO-IOMMU mode" "$LOG"
fi
step connect nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$NQN" -i 2 --reconnect-delay=1 --ctrl-loss-tmo=120
d1=$(ns_dev 1) || d1=""
d2=$(ns_dev 2) || d2=""
echo "namespace 1: ${d1:-none}  namespace 2: ${d2:-none}"
step "both namespaces appear" test -n "$d1" -a -n "$d2"
step "each host I/O queue on its own hardware queue" hw_queues_distinct

for e in "${EXPECT[@]}"; do
    IFS=: read -r ns off mib sha <<< "$e"
    dev=$d1; [ "$ns" = ns2 ] && dev=$d2
    step "pattern of the earlier boot on $ns at $off MiB" read_pattern "${dev:-/dev/null}" "$off" "$mib" "$sha"
done

for n in 1 2; do
    dev=$d1; [ $n = 2 ] && dev=$d2
    [ -n "$dev" ] || { step "ns$n usable" false; continue; }
    step "ns$n fio write+verify 4k" fio_job ns${n}w4k "$dev" 4k 0 "$SIZE"
    step "ns$n fio write+verify 128k" fio_job ns${n}w128k "$dev" 128k "$SIZE" "$SIZE"
    step "ns$n random pattern written" write_pattern $n "$dev" "$PAT_OFF_MIB" 4
done

if [ "$MODE" = full ] && [ -n "$d1" ] && [ -n "$d2" ]; then
    # kill -9 in the middle of I/O: the controllers are taken over by a new ferryd (which
    # resets them), the kernel reconnects, and fio's write+verify and the old data survive.
    # At most 500 IOPS, so that the 2,048 writes take at least 4 s however fast the guest
    # runs this time (unpaced they once took 0.8 s and fio was done before the kill).
    off=$(( (PAT_OFF_MIB + 4) ))M
    fio --name=kill9 --filename="$d1" --ioengine=libaio --direct=1 --iodepth=16 --rw=randwrite --bs=4k \
        --offset="$off" --size=8M --rate_iops=500 --verify=crc32c --verify_fatal=1 --do_verify=1 \
        > /tmp/fio-kill9.out 2>&1 &
    fpid=$!
    sleep 2
    step "fio running when ferryd is killed" kill -0 $fpid
    kill -9 "$PID"; wait "$PID" 2>/dev/null
    echo "ferryd killed with SIGKILL at $(date +%T)"
    sleep 2
    step "ferryd starts again on the same SSDs" start_ferryd
    step "the kernel reconnects and fio across the kill completes and verifies" wait $fpid
    tail -5 /tmp/fio-kill9.out | sed 's/^/    /'
    step "ns1 4k region still verifies after the restart" fio_job ns1w4k "$d1" 4k 0 "$SIZE" --verify_only=1
    step "ns2 128k region still verifies after the restart" fio_job ns2w128k "$d2" 128k "$SIZE" "$SIZE" --verify_only=1
fi

if [ "$MODE" != full ]; then
    # This boot gives each SSD 2 hardware I/O queues (lab/guest --ioqpairs 2) and the host
    # holds both: a second host's I/O queue is refused at Connect, ferryd says why.
    refused_for_queues() {
        local u; u=$(cat /proc/sys/kernel/random/uuid)
        ! nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$NQN" -i 1 \
            --hostnqn="nqn.2014-08.org.nvmexpress:uuid:$u" --hostid="$u" || return 1
        sleep 1
        grep "no hardware I/O queue left" "$LOG" | tail -1 | sed 's/^/    /'
        grep -q "Connect qid 1 .* rejected: namespace 1: controller 0000:00:04.0: no hardware I/O queue left" "$LOG"
    }
    step "an I/O queue beyond the SSDs' hardware queues is refused" refused_for_queues
fi
step disconnect _disconnect "$NQN"

kill "$PID" 2>/dev/null
for _ in $(seq 20); do kill -0 "$PID" 2>/dev/null || break; sleep 0.5; done
step "ferryd stops and shuts both SSDs down cleanly" \
    test "$(grep -c 'shut down cleanly' <(sed -n '/SIGTERM received/,$p' "$LOG"))" -eq 2
echo "--- ferryd log (vfio, controller, queue and error lines) ---"
grep -E "vfio|controller 0000|hardware queue|error|warn" "$LOG" | tail -40

step "setup.sh reset gives the SSDs back to the kernel" "$F/setup.sh" reset --devices "$LAB_NVME_BDFS"
step "both SSDs back on the nvme driver" ssds_on nvme
sync
summary
