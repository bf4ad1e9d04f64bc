#!/bin/bash
# tests/lab/large-transfer.sh: MDTS 8 MiB through the real kernel initiator. ferryd serves a
# 64 MiB RAM namespace; the guest (guest/large-transfer-guest.sh) reads MDTS 11 with
# `nvme id-ctrl`, and writes and reads ONE 8 MiB command and one 4 MiB + 4 KiB command with
# nvme-cli passthrough, each verified with cmp.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the large transfer (MDTS) lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4432
NQN=nqn.2026-11.io.ferry:large

lab_begin large-transfer
write_ram_config "$WORK/ferryd.json" "$PORT" "$NQN" 64MiB

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log"; then
    run_initiator large-transfer --port "$PORT" --nqn "$NQN" \
        --script "$(dirname "$(readlink -f "$0")")/guest/large-transfer-guest.sh" || true
    check "ferryd stops cleanly" stop_ferryd || true
fi
lab_finish
