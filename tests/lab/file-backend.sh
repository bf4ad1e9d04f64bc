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
  ]
}
JSON

# Every 4 KiB block of [0, 16M) and every 128 KiB block of [16M, 32M) must start with fio's
# verify header (magic 0xacca) naming its own offset.
check_image() {
    python3 - "$IMG" <<'PY'
import struct, sys
img = open(sys.argv[1], "rb")
M = 16 << 20
bad = 0
for base, bs in ((0, 4096), (M, 128 << 10)):
    for off in range(base, base + M, bs):
        img.seek(off)
        hdr = img.read(24)
        magic, = struct.unpack_from("<H", hdr, 0)
        offset, = struct.unpack_from("<Q", hdr, 16)
        if magic != 0xACCA or offset != off:
            bad += 1
            if bad <= 5:
                print(f"offset {off}: magic {magic:#x}, header offset {offset}")
print(f"image check: {bad} bad blocks")
sys.exit(1 if bad else 0)
PY
}

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts with a file namespace" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log"; then
    check "namespace is served through io_uring" grep -q "file $IMG (io_uring" "$WORK/ferryd.log" || true
    run_initiator default --port "$PORT" --nqn "$NQN" --fio-size "$SIZE" || true
    check "ferryd stops cleanly" stop_ferryd || true
    check "the image holds fio's blocks at their offsets" check_image || true
    if check "ferryd restarts on the same image" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd2.log"; then
        FIO_SIZE=$SIZE run_initiator readback-after-restart --port "$PORT" --nqn "$NQN" \
            --script "$(dirname "$(readlink -f "$0")")/guest/readback-guest.sh" || true
        check "ferryd stops cleanly after the read-back" stop_ferryd || true
    fi
fi
lab_finish
