#!/bin/bash
# tests/lab/host-access.sh: per-subsystem host access control. One ferryd (generated
# config, 127.0.0.1:4422) with nqn.2026-11.io.ferry:open (any host) and
# nqn.2026-11.io.ferry:restricted (HOST_A only), each with a 256 MiB RAM namespace.
# The guest script guest/host-access-guest.sh checks, as HOST_B, that discovery hides
# :restricted and connecting to it is refused while :open works, and as HOST_A that
# both are listed and :restricted serves verified I/O. On the host: ferryd's log must
# have a "not allowed" line naming HOST_B, and ferryd must stop cleanly.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the host access control lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4422
OPEN_NQN=nqn.2026-11.io.ferry:open
RESTRICTED_NQN=nqn.2026-11.io.ferry:restricted
HOST_A=nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555
HOST_B=nqn.2014-08.org.nvmexpress:uuid:66666666-7777-4888-9999-aaaaaaaaaaaa
GUEST_SCRIPT=$REPO/tests/lab/guest/host-access-guest.sh

lab_begin host-access
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "transport": "tcp", "address": "127.0.0.1", "port": $PORT } ],
  "subsystems": [
    { "nqn": "$OPEN_NQN",
      "allow_any_host": true,
      "hosts": [],
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "256MiB", "block_size": 4096 } ] },
    { "nqn": "$RESTRICTED_NQN",
      "allow_any_host": false,
      "hosts": [ "$HOST_A" ],
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "256MiB", "block_size": 4096 } ] }
  ],
  "management": { "port": 0 }
}
JSON
# the guest script with this scenario's names prepended (one source of truth)
{
    echo '#!/bin/bash'
    printf 'OPEN_NQN=%q RESTRICTED_NQN=%q HOST_A=%q HOST_B=%q\n' \
        "$OPEN_NQN" "$RESTRICTED_NQN" "$HOST_A" "$HOST_B"
    cat "$GUEST_SCRIPT"
} > "$WORK/host-access-guest.sh"

# shellcheck disable=SC2317  # called through check
# ferryd logs "host <hostnqn> not allowed to access <subnqn>" when it refuses a host
host_b_refusal_logged() {
    grep -F 'not allowed' "$FERRYD_LOG" | grep -F "$HOST_B" >/dev/null && return 0
    echo "no line with 'not allowed' and $HOST_B in $FERRYD_LOG"
    return 1
}

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log"; then
    run_initiator host-access --port "$PORT" --nqn "$RESTRICTED_NQN" --hostnqn "$HOST_A" \
        --script "$WORK/host-access-guest.sh" || true
    check "ferryd logged HOST_B 'not allowed'" host_b_refusal_logged || true
    check "ferryd still running at the end, stops cleanly" stop_ferryd || true
fi
lab_finish
