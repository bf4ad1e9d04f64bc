#!/bin/bash
# tests/lab/gateway-failover.sh: a gateway group fails over under a real Linux host (issue 12,
# done when 3). A throwaway Ceph cluster (../shared/ceph/micro) holds one image; two ferryd
# gateways of one group serve it in one subsystem: A on 127.0.0.1:4430 (home of ANA group 1,
# the namespace's group; CNTLIDs 1..1000) and B on :4431 (group 2; 1001..2000). The guest
# (guest/gateway-failover-guest.sh) connects to both with native NVMe multipath and runs fio
# write+verify on the multipath head; when it prints KILL-GATEWAY-A, A is killed with -9. B
# must take the group over (break A's lock, change -> optimized, AEN), the host must move to
# B by itself; at RESTART-GATEWAY-A, A is started again and B must hand the group back while
# fio writes through B, and the host must move back to A. fio must finish every pass without
# an I/O error or a verify failure.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the gateway group fail-over lab scenario against \$BUILD/bin/ferryd (Ceph from ../shared/ceph/micro).
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT_A=4430
PORT_B=4431
NQN=nqn.2026-11.io.ferry:gateway-lab
GUEST_DIR=$REPO/tests/lab/guest
MICRO=${CEPH_MICRO:-$REPO/../shared/ceph/micro}
MARKER=KILL-GATEWAY-A
MARKER2=RESTART-GATEWAY-A

lab_begin gateway-failover
# This scenario's cluster only: an inherited CEPH_KEYRING (another cluster's, e.g. from
# `micro env`) makes the OSD's mkfs and every client fail to authenticate.
unset CEPH_CONF CEPH_KEYRING CEPH_CLIENT
CEPH_DIR=$WORK/ceph
GW_PIDS=()
stop_gateways() {
    local p
    for p in "${GW_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${GW_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    GW_PIDS=()
    CEPH_MICRO_DIR=$CEPH_DIR "$MICRO" stop >/dev/null 2>&1 || true
}
trap 'rc=$?; stop_gateways; _lab_on_exit $rc' EXIT

start_cluster() {
    env CEPH_MICRO_DIR="$CEPH_DIR" CEPH_MICRO_MGR=0 CEPH_MICRO_PORT=40700 CEPH_MICRO_IMAGE=gwlab \
        CEPH_MICRO_SIZE=256M "$MICRO" start > "$WORK/ceph.log" 2>&1 || { tail -20 "$WORK/ceph.log"; return 1; }
}
gateway() {  # gateway NAME PORT HOME CNTLID_MIN CNTLID_MAX
    cat > "$WORK/$1.json" <<JSON
{ "listeners": [ { "transport": "tcp", "address": "127.0.0.1", "port": $2 } ],
  "subsystems": [ { "nqn": "$NQN", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "rbd", "pool": "rbd", "image": "gwlab",
                        "ceph_conf": "$CEPH_DIR/ceph.conf", "ana_group": 1 } ] } ],
  "management": { "enabled": false } }
JSON
    cat > "$WORK/gw-$1.json" <<JSON
{ "group": "lab", "name": "$1", "subsystem": "$NQN", "ana_group": $3, "cntlid_min": $4, "cntlid_max": $5,
  "pool": "rbd", "ceph_conf": "$CEPH_DIR/ceph.conf" }
JSON
}
wait_text() {  # wait_text FILE TEXT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do grep -qF "$2" "$1" && return 0; sleep 0.1; done
    echo "no '$2' in $1 after $3 s"; tail -5 "$1"; return 1
}
start_gateway() {  # start_gateway NAME LOG
    "$FERRYD" -c "$WORK/$1.json" --gateway "$WORK/gw-$1.json" --idle-spin-us 0 --log-level info > "$2" 2>&1 &
    GW_PIDS+=("$!")
    LAST_PID=$!
    wait_text "$2" "ferryd: ready" 30
}

ports_free() { require_port_free "$PORT_A" && require_port_free "$PORT_B"; }
gateway gw-a "$PORT_A" 1 1 1000
gateway gw-b "$PORT_B" 2 1001 2000
if check "ports $PORT_A and $PORT_B free" ports_free &&
   check "Ceph micro cluster with image rbd/gwlab" start_cluster &&
   check "gateway A starts" start_gateway gw-a "$WORK/a.log" && PID_A=$LAST_PID &&
   check "A owns ANA group 1" wait_text "$WORK/a.log" "ANA group 1 -> optimized" 15 &&
   check "gateway B starts" start_gateway gw-b "$WORK/b.log"; then
    { echo "PORT_B=$PORT_B"; cat "$GUEST_DIR/live-common.sh" "$GUEST_DIR/gateway-failover-guest.sh"; } > "$WORK/guest.sh"
    start_initiator_bg gateway-failover --port "$PORT_A" --nqn "$NQN" --script "$WORK/guest.sh" --timeout 1200
    guest_pid=$BG_PID guest_out=$BG_OUT
    run=$(initiator_run_dir "$guest_out" 60) || run=""
    if [ -n "$run" ] && check "guest fio runs through A (console shows $MARKER)" \
            wait_console "$run/console.log" "^$MARKER" 400 "$guest_pid"; then
        check "kill -9 gateway A (pid $PID_A)" kill -9 "$PID_A" || true
        check "B judges A dead and takes group 1 over" wait_text "$WORK/b.log" "takes ANA group 1 over from dead gateway gw-a" 30 || true
        check "B broke A's image lock" wait_text "$WORK/b.log" "broke the lock of rbd image rbd/gwlab" 30 || true
        check "B serves group 1 optimized and notified the host's controller" python3 -c '
import re, sys
log = open(sys.argv[1], errors="replace").read()
m = re.findall(r"ANA group 1 -> optimized on \d+ listener\(s\) \(change count \d+, (\d+) controller", log)
print("    controllers notified when group 1 became optimized:", m)
sys.exit(0 if m and int(m[-1]) >= 1 else 1)' "$WORK/b.log" || true
        # Hand-back under load: A restarts while fio writes through B.
        if check "guest asks for A back (console shows $MARKER2)" \
                wait_console "$run/console.log" "^$MARKER2" 400 "$guest_pid"; then
            check "gateway A restarts" start_gateway gw-a "$WORK/a2.log" || true
            check "B hands group 1 back to A (fio writing through B)" \
                wait_text "$WORK/b.log" "hands ANA group 1 to gateway gw-a" 60 || true
            check "A serves group 1 again" wait_text "$WORK/a2.log" "ANA group 1 -> optimized" 60 || true
        else
            fail_check "gateway A restarts" "the guest never got to $MARKER2"
        fi
    else
        fail_check "kill -9 gateway A" "the guest never got to $MARKER"
    fi
    rc=0
    wait_initiator "$guest_pid" || rc=$?
    sed 's/^/    /' "$guest_out"
    console=$(initiator_console "$guest_out")
    rc=$(guest_exit_status "$rc" "$console")
    _print_guest_steps "$console"
    line=$(guest_summary_line "$guest_out")
    _report_run gateway-failover lab/initiator "$rc" "$line" "$console" 0 60
    echo "--- gateway B log (gateway lines) ---"
    grep -E "gateway gw-b|ferryd:" "$WORK/b.log" | grep -v " -> inaccessible on" | tail -20 | sed 's/^/    /'
fi
stop_gateways
lab_finish
