#!/bin/bash
# tests/lab/live-namespaces.sh: namespaces added, grown and removed through ferryd's REST API
# while the kernel initiator is connected and fio write+verify runs (issue 8 test 2).
# ferryd (generated config, 127.0.0.1:4425, subsystem nqn.2026-11.io.ferry:live with a 512 MiB
# RAM namespace 1, REST API on an ephemeral port). The guest (guest/live-namespaces-guest.sh)
# calls the API itself (10.0.2.2:API_PORT): a namespace added appears as a new block device
# without a reconnect, one removed disappears, a grown one shows its new size, and fio on
# namespace 1 never fails. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the live-namespaces lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4425
NQN=nqn.2026-11.io.ferry:live
GUEST_DIR=$REPO/tests/lab/guest

lab_begin live-namespaces
write_ram_config "$WORK/ferryd.json" "$PORT" "$NQN" 512MiB

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" &&
   check "REST API port and token" live_guest_script "$WORK/guest.sh" "$GUEST_DIR/live-namespaces-guest.sh"; then
    run_initiator live-namespaces --port "$PORT" --nqn "$NQN" --script "$WORK/guest.sh" --timeout 1200 || true
    check "ferryd logged namespace 2 added" grep -q "namespace 2 added" "$FERRYD_LOG" || true
    check "ferryd logged namespace 2 removed, its store closed" grep -q "namespace 2 removed, store ram closed" "$FERRYD_LOG" || true
    check "ferryd logged namespace 5 grown" grep -q "namespace 5 grown" "$FERRYD_LOG" || true
    check "state file holds namespace 1 only" python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
ids = [n["nsid"] for n in c["subsystems"][0]["namespaces"]]
print("    state file namespaces:", ids)
sys.exit(0 if ids == [1] else 1)' "$WORK/ferryd.json" || true
    check "ferryd did not crash, stops cleanly" stop_ferryd || true
fi
lab_finish
