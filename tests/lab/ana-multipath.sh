#!/bin/bash
# tests/lab/ana-multipath.sh: ANA multipath with one ferryd and two listeners (issue 12, done
# when 4). ferryd listens on 127.0.0.1:4426 (path A) and :4427 (path B), subsystem
# nqn.2026-11.io.ferry:ana with a 256 MiB RAM namespace in ANA group 1, REST API on an
# ephemeral port. The guest (guest/ana-multipath-guest.sh) connects to both ports with native
# NVMe multipath (one subsystem, two paths, both optimized), runs fio write+verify passes on
# the multipath head and flips the ANA states through the REST API: path A inaccessible (I/O
# moves to B), then back (B inaccessible, I/O on A), then both optimized; sysfs ana_state and
# `nvme list-subsys` show each change; no fio pass fails. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the ANA multipath lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT_A=4426
PORT_B=4427
NQN=nqn.2026-11.io.ferry:ana
GUEST_DIR=$REPO/tests/lab/guest

lab_begin ana-multipath
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "transport": "tcp", "address": "127.0.0.1", "port": $PORT_A },
                 { "transport": "tcp", "address": "127.0.0.1", "port": $PORT_B } ],
  "subsystems": [
    { "nqn": "$NQN", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "256MiB", "block_size": 4096, "ana_group": 1 } ] }
  ],
  "management": { "port": 0 }
}
JSON

ports_free() { require_port_free "$PORT_A" && require_port_free "$PORT_B"; }
if check "ports $PORT_A and $PORT_B free" ports_free &&
   check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" &&
   check "REST API port and token" live_guest_script "$WORK/guest.sh" "$GUEST_DIR/ana-multipath-guest.sh"; then
    sed -i "1i PORT_B=$PORT_B" "$WORK/guest.sh"
    run_initiator ana-multipath --port "$PORT_A" --nqn "$NQN" --script "$WORK/guest.sh" --timeout 900 || true
    check "ferryd logged path A's group 1 made inaccessible" \
        grep -q "listener 127.0.0.1:$PORT_A: ANA group 1 optimized -> inaccessible" "$FERRYD_LOG" || true
    check "ferryd logged the four ANA state changes, each notifying one controller" python3 -c '
import re, sys
log = open(sys.argv[1], errors="replace").read()
changes = re.findall(r"ANA group 1 (\w+ -> \w+) \(change count \d+, (\d+) controller", log)
print("    ANA changes logged:", changes)
sys.exit(0 if len(changes) == 4 and all(n == "1" for _, n in changes) else 1)' "$FERRYD_LOG" || true
    check "state file holds both listeners optimized again" python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
ana = [l.get("ana", {}) for l in c["listeners"]]
print("    listeners ana:", ana)
sys.exit(0 if len(ana) == 2 and all(a == {} for a in ana) else 1)' "$WORK/ferryd.json" || true
    check "ferryd did not crash, stops cleanly" stop_ferryd || true
fi
lab_finish
