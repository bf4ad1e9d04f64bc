# shellcheck shell=bash
# tests/lab/guest/live-common.sh: helpers shared by the guest sides of live-namespaces.sh,
# subsystem-recreate.sh, ana-multipath.sh and gateway-failover.sh. The host prepends API=http://10.0.2.2:PORT/api/v1 and TOKEN=... and
# this file to the guest script it runs (lab/initiator --script takes one file).

# api METHOD PATH [curl args]: the REST call; prints the HTTP status; body in /tmp/api.out
api() {
    local m=$1 p=$2; shift 2
    curl -sS -m 30 -o /tmp/api.out -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' "$@" "$API$p" || echo "curl-failed"
}

# api_expect STATUS METHOD PATH [curl args]: the call answers STATUS (shows the answer)
api_expect() {
    local want=$1 got; shift
    got=$(api "$@")
    echo "    $1 $2 -> $got $(head -c 400 /tmp/api.out | tr '\n' ' ')"
    [ "$got" = "$want" ]
}

# ns_dev NSID: the block device of namespace NSID of $LAB_NQN (multipath head), if any
ns_dev() {
    local b
    for b in /sys/block/nvme*n*; do
        [ -e "$b" ] || continue
        case ${b##*/} in *c*n*) continue ;; esac
        [ "$(cat "$b/device/subsysnqn" 2>/dev/null)" = "$LAB_NQN" ] || continue
        if [ "$(cat "$b/nsid" 2>/dev/null)" = "$1" ]; then echo "/dev/${b##*/}"; return 0; fi
    done
    return 1
}

# wait_ns NSID T / wait_ns_gone NSID T: the block device appears / disappears within T s
wait_ns() {
    local t=$2 d
    for ((; t > 0; t--)); do
        if d=$(ns_dev "$1"); then echo "    namespace $1: $d"; return 0; fi
        sleep 1
    done
    echo "    namespace $1: no block device"; ls /sys/block; return 1
}
wait_ns_gone() {
    local t=$2
    for ((; t > 0; t--)); do
        ns_dev "$1" >/dev/null || { echo "    namespace $1: gone"; return 0; }
        sleep 1
    done
    echo "    namespace $1: still $(ns_dev "$1")"; return 1
}

# fio_loop DEV [SIZE]: write+verify passes (4k random, SIZE, default 32M) until /tmp/stop-fio
# exists; counts passes in /tmp/fio-passes, failures in /tmp/fio-failures (output kept in
# /tmp/fio-fail.N)
fio_loop() {
    local dev=$1 size=${2:-32M} ok=0 bad=0
    while [ ! -e /tmp/stop-fio ]; do
        if fio --name=bg --filename="$dev" --ioengine=libaio --direct=1 --iodepth=16 --rw=randwrite --bs=4k \
               --size="$size" --verify=crc32c --verify_fatal=1 --do_verify=1 > /tmp/fio-bg.out 2>&1; then
            ok=$((ok + 1)); echo "$ok" > /tmp/fio-passes
        else
            bad=$((bad + 1)); echo "$bad" > /tmp/fio-failures; cp /tmp/fio-bg.out "/tmp/fio-fail.$bad"
        fi
    done
}
fio_passes() { cat /tmp/fio-passes 2>/dev/null || echo 0; }

# fio_passes_at_least N T: the background loop completed N passes within T s
fio_passes_at_least() {
    local n=$1 t=$2
    for ((; t > 0; t--)); do
        [ "$(fio_passes)" -ge "$n" ] && { echo "    fio passes: $(fio_passes)"; return 0; }
        sleep 1
    done
    echo "    fio passes: $(fio_passes), wanted $n"; return 1
}
# more_passes N T: N more passes than now complete within T s
more_passes() { fio_passes_at_least $(($(fio_passes) + $1)) "$2"; }

# fio_never_failed: no pass of the background loop failed (shows the first failure: fio's
# error lines and the kernel's I/O errors first, then fio's whole output)
fio_never_failed() {
    echo "    fio passes: $(fio_passes), failures: $(cat /tmp/fio-failures 2>/dev/null || echo 0)"
    [ ! -e /tmp/fio-failures ] && return 0
    echo "    fio's errors in the first failed pass:"
    grep -aiE 'err=|error|verify|bad|crc|mismatch' /tmp/fio-fail.1 | head -6 | sed 's/^/      /' || true
    echo "    the kernel's I/O errors and path changes:"
    dmesg | grep -aE 'I/O Error|DNR|failing I/O|identifiers changed|Removing|removing|ctrl_loss_tmo' | head -6 |
        sed 's/^/      /' || true
    cat /tmp/fio-fail.1; return 1
}

# ctrl_state CTRL: live, connecting, resetting, ...
ctrl_state() { cat "/sys/class/nvme/${1##*/}/state" 2>/dev/null || echo gone; }

# ---- multipath paths of $LAB_NQN, by the target port they go through
# ctrl_of PORT: the controller (nvmeN) of $LAB_NQN connected through that port
ctrl_of() {
    local c
    for c in /sys/class/nvme/nvme*; do
        [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$LAB_NQN" ] || continue
        grep -q "trsvcid=$1\(,\|$\)" "$c/address" 2>/dev/null && { echo "${c##*/}"; return 0; }
    done
    return 1
}
# path_of PORT: namespace 1's path device (nvmeXcYnZ) through that port
path_of() {
    local c p
    c=$(ctrl_of "$1") || return 1
    for p in /sys/class/nvme/"$c"/nvme*c*n*; do [ -e "$p" ] && { echo "${p##*/}"; return 0; }; done
    return 1
}
ana_of() { cat "/sys/block/$(path_of "$1")/ana_state" 2>/dev/null || echo "?"; }
# wait_ana PORT STATE T: the path through PORT shows STATE within T s
wait_ana() {
    local t=$3
    for ((; t > 0; t--)); do
        [ "$(ana_of "$1")" = "$2" ] && { echo "    port $1 ($(path_of "$1")): $2"; return 0; }
        sleep 1
    done
    echo "    port $1: $(ana_of "$1"), wanted $2"; return 1
}
# ios_of PORT: completed reads + writes on that path (sysfs stat fields 1 and 5; fio's
# verify phase only reads)
ios_of() { awk '{print $1 + $5}' "/sys/block/$(path_of "$1")/stat" 2>/dev/null || echo 0; }
# one_subsystem_two_paths: $dev (the multipath head) is one subsystem of $LAB_NQN with a path
# through $PORT_A and one through $PORT_B
one_subsystem_two_paths() {
    local subsys=0 s
    for s in /sys/class/nvme-subsystem/nvme-subsys*; do
        [ "$(cat "$s/subsysnqn" 2>/dev/null)" = "$LAB_NQN" ] && subsys=$((subsys + 1))
    done
    nvme list-subsys "$dev" | sed 's/^/    /'
    echo "    subsystems: $subsys; paths: $(path_of "$PORT_A") $(path_of "$PORT_B"); head $dev"
    [ "$subsys" = 1 ] && path_of "$PORT_A" >/dev/null && path_of "$PORT_B" >/dev/null
}
