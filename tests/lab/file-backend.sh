#!/bin/bash
# tests/lab/file-backend.sh: a namespace backed by a file on the host through io_uring.
# ferryd serves a 256 MiB image file; the default lab/initiator scenario (fio write+verify
# at 4k and 128k, read-back) runs against it; after ferryd exits, the image holds fio's
# blocks at the offsets they were written to (checked on the host from fio's verify headers);
# a second ferryd on the same file serves the same data (fio --verify_only from a new guest).
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the file-backed namespace lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4424
NQN=nqn.2026-11.io.ferry:file
SIZE=16M

lab_begin file-backend
IMG=$WORK/ns1.img
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "transport": "tcp", "address": "127.0.0.1", "port": $PORT } ],
  "subsystems": [
    { "nqn": "$NQN", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "file", "path": "$IMG", "size": "256MiB" } ] }
  ],
  "management": { "port": 0 }
}
JSON

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts with a file namespace" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log"; then
    check "namespace is served through io_uring" grep -q "file $IMG (io_uring" "$WORK/ferryd.log" || true
    run_initiator default --port "$PORT" --nqn "$NQN" --fio-size "$SIZE" || true
    check "ferryd stops cleanly" stop_ferryd || true
    check "the image holds fio's blocks at their offsets" check_fio_blocks "$IMG" $((16 << 20)) || true
    if check "ferryd restarts on the same image" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd2.log"; then
        FIO_SIZE=$SIZE run_initiator readback-after-restart --port "$PORT" --nqn "$NQN" \
            --script "$(dirname "$(readlink -f "$0")")/guest/readback-guest.sh" || true
        check "ferryd stops cleanly after the read-back" stop_ferryd || true
    fi
fi
lab_finish
