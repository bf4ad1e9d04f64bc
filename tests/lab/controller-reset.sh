#!/bin/bash
# tests/lab/controller-reset.sh: controller reset and shutdown with the real kernel initiator.
# ferryd serves a 64 MiB RAM namespace; the guest (guest/controller-reset-guest.sh) resets the
# controller twice with `nvme reset` (the second under fio write+verify) and verifies the data
# through the new queues, then disconnects. ferryd must log the resets (CC.EN cleared) and the
# shutdown begun and complete, and the kernel no failed reset or incomplete shutdown.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the controller reset/shutdown lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4433
NQN=nqn.2026-11.io.ferry:reset

lab_begin controller-reset
write_ram_config "$WORK/ferryd.json" "$PORT" "$NQN" 64MiB

# count_is N PATTERN: ferryd logged PATTERN exactly N times
count_is() {
    local n
    n=$(grep -c "$2" "$FERRYD_LOG" || true)
    echo "'$2': $n"
    [ "$n" -eq "$1" ]
}

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log"; then
    run_initiator controller-reset --port "$PORT" --nqn "$NQN" \
        --script "$(dirname "$(readlink -f "$0")")/guest/controller-reset-guest.sh" || true
    check "ferryd logs both resets begun" count_is 2 "disabled by the host (CC.EN cleared)" || true
    check "ferryd logs both resets complete" count_is 2 "reset complete: no I/O queue left" || true
    check "ferryd logs the shutdown at disconnect, and its completion" \
        count_is 1 "shutdown complete: no I/O queue left" || true
    check "ferryd stops cleanly" stop_ferryd || true
fi
lab_finish
