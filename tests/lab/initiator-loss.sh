#!/bin/bash
# tests/lab/initiator-loss.sh: keep-alive enforcement when an initiator vanishes.
# ferryd (generated config, 127.0.0.1:4423, subsystem nqn.2026-11.io.ferry:loss, 1 GiB
# RAM namespace). A background lab guest (guest/initiator-loss-guest.sh) connects with
# a 5 s keep-alive timeout and runs fio writes; once it prints LOSS-TEST-IO-RUNNING
# (+5 s) the guest is frozen with SIGSTOP on its qemu: sockets stay open, no traffic.
# ferryd must log "keep-alive timeout" and "freed" within 20 s. Then qemu is killed,
# ferryd must still run and serve a fresh default lab/initiator scenario, and stop
# without having crashed. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the initiator-loss (keep-alive timeout) lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4423
NQN=nqn.2026-11.io.ferry:loss
MARKER=LOSS-TEST-IO-RUNNING
GUEST_SCRIPT=$REPO/tests/lab/guest/initiator-loss-guest.sh
KA_WINDOW=20        # seconds after the freeze for ferryd to time the controller out

lab_begin initiator-loss
write_ram_config "$WORK/ferryd.json" "$PORT" "$NQN"

# freeze_and_check RUN_DIR: SIGSTOP the guest's qemu, then ferryd must log the
# keep-alive timeout and the freed controller within KA_WINDOW seconds; kill qemu
freeze_and_check() {
    local run=$1 qpid off deadline
    qpid=$(cat "$run/qemu.pid" 2>/dev/null || true)
    if ! check "guest qemu running (pid ${qpid:-?})" _is_qemu "$qpid"; then
        fail_check "ferryd logs 'keep-alive timeout'" "not run"
        fail_check "ferryd logs 'freed'" "not run"
        return 0
    fi
    sleep 5
    off=$(stat -c %s "$FERRYD_LOG")
    kill -STOP "$qpid"
    deadline=$((SECONDS + KA_WINDOW))
    echo "froze guest qemu (pid $qpid) at ferryd log byte $off; waiting up to $KA_WINDOW s"
    check "ferryd logs 'keep-alive timeout' within $KA_WINDOW s" wait_log_since "$off" "keep-alive timeout" "$deadline" || true
    check "ferryd logs 'freed' within $KA_WINDOW s" wait_log_since "$off" "freed" "$deadline" || true
    echo "--- ferryd log since the freeze (first 20 lines) ---"
    tail -c +"$((off + 1))" "$FERRYD_LOG" | head -n 20 | sed 's/^/    /'
    kill -KILL "$qpid" 2>/dev/null || true
}

# end_loss_guest PID OUT RUN_DIR: kill the loss guest's qemu (frozen or not), wait for
# its lab/initiator to exit (status ignored; SIGTERM after 15 s), show its output
end_loss_guest() {
    local pid=$1 out=$2 run=$3 q="" i
    [ -z "$run" ] || q=$(cat "$run/qemu.pid" 2>/dev/null || true)
    if [ -n "$q" ] && _is_qemu "$q"; then kill -KILL "$q" 2>/dev/null || true; fi
    for ((i = 0; i < 150; i++)); do _pid_alive "$pid" || break; sleep 0.1; done
    if _pid_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    wait_initiator "$pid" || true
    echo "loss guest lab/initiator output:"
    sed 's/^/    /' "$out"
}

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log"; then
    start_initiator_bg loss-guest --port "$PORT" --nqn "$NQN" --script "$GUEST_SCRIPT" --timeout 900
    loss_pid=$BG_PID loss_out=$BG_OUT
    run=$(initiator_run_dir "$loss_out" 60) || run=""
    echo "loss guest: lab/initiator pid $loss_pid, run dir ${run:-?}"
    io_ok=0
    if [ -z "$run" ]; then
        fail_check "guest I/O running (console shows $MARKER)" "no run dir"
    elif check "guest I/O running (console shows $MARKER)" wait_console "$run/console.log" "^$MARKER" 300 "$loss_pid"; then
        io_ok=1
    fi
    if [ "$io_ok" = 1 ]; then
        freeze_and_check "$run"
    else
        fail_check "ferryd logs 'keep-alive timeout'" "not run"
        fail_check "ferryd logs 'freed'" "not run"
        if [ -n "$run" ]; then
            echo "--- loss guest console tail ($run/console.log) ---"
            tr -d '\r' < "$run/console.log" | tail -n 40 | sed 's/^/    /'
        fi
    fi
    end_loss_guest "$loss_pid" "$loss_out" "$run"
    if check "ferryd still running after the initiator loss" ferryd_alive; then
        run_initiator fresh-default --port "$PORT" --nqn "$NQN" --fio-size 16M || true
    else
        fail_check "fresh default scenario" "ferryd not running"
    fi
    check "ferryd did not crash, stops cleanly" stop_ferryd || true
fi
lab_finish
