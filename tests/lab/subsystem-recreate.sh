#!/bin/bash
# tests/lab/subsystem-recreate.sh: the subsystem deleted through ferryd's REST API while the
# kernel initiator runs fio write+verify, and re-created (issue 8 test 3), 5 times.
# ferryd (generated config, 127.0.0.1:4426, subsystem nqn.2026-11.io.ferry:recreate with a
# 256 MiB file namespace, so the data outlives the subsystem; REST API on an ephemeral port).
# The guest (guest/subsystem-recreate-guest.sh) connects with --keep-alive-tmo 1
# --reconnect-delay 1, deletes the subsystem through the API: the controller goes to
# `connecting`; re-creates it from what GET returned (same namespace UUID): `live` again
# within 5 s, same namespace; fio's verify never fails. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the subsystem-recreate lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4426
NQN=nqn.2026-11.io.ferry:recreate
GUEST_DIR=$REPO/tests/lab/guest

lab_begin subsystem-recreate
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "transport": "tcp", "address": "127.0.0.1", "port": $PORT } ],
  "subsystems": [
    { "nqn": "$NQN", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "file", "path": "$WORK/ns1.img", "size": "256MiB",
                        "block_size": 4096 } ] }
  ],
  "management": { "port": 0 }
}
JSON

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" &&
   check "REST API port and token" live_guest_script "$WORK/guest.sh" "$GUEST_DIR/subsystem-recreate-guest.sh"; then
    run_initiator subsystem-recreate --port "$PORT" --nqn "$NQN" --script "$WORK/guest.sh" --timeout 1200 || true
    n=$(grep -c "subsystem $NQN removed" "$FERRYD_LOG" || true)
    check "ferryd logged 5 removals ($n)" test "$n" -ge 5 || true
    n=$(grep -c "closing all its connections: subsystem removed" "$FERRYD_LOG" || true)
    check "ferryd closed the controller's connections each time ($n)" test "$n" -ge 5 || true
    check "ferryd did not crash, stops cleanly" stop_ferryd || true
fi
lab_finish
