#!/bin/bash
# tests/lab/demo.sh: the demo. ferryd --config deploy/demo.json (subsystem
# nqn.2026-11.io.ferry:demo, 1 GiB RAM namespace, 127.0.0.1:4420), then the default
# lab/initiator scenario from a Linux guest (discover, connect, list, id-ctrl, id-ns,
# fio 4k and 128k write+verify, read-back verify, disconnect); ferryd must still be
# running at the end and stop cleanly. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the demo lab scenario against \$BUILD/bin/ferryd (BUILD default: $REPO/build).
Env: BUILD, FERRY_LAB (lab scripts, default $REPO/../shared/lab), NVMF_LAB_CACHE." "$@"

PORT=4420
NQN=nqn.2026-11.io.ferry:demo

lab_begin demo
if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts with deploy/demo.json" start_ferryd "$REPO/deploy/demo.json" "$WORK/ferryd.log" \
       --state-file "$WORK/state.json"; then
    run_initiator default --port "$PORT" --nqn "$NQN" --fio-size 16M || true
    check "ferryd still running at the end, stops cleanly" stop_ferryd || true
fi
lab_finish
