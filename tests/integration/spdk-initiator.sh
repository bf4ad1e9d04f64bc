#!/bin/bash
# tests/integration/spdk-initiator.sh: SPDK's initiator tools (../shared/peers/spdk, v26.01) as a
# second, independent host against ferryd on loopback, with their default options: the empty
# host NQN they send is accepted where a subsystem allows any host and refused where an allow
# list applies; spdk_nvme_identify reads the controller, the namespaces and the discovery log;
# 5 s spdk_nvme_perf runs (default host, so an empty host NQN) complete I/O without errors;
# given the discovery service, spdk_nvme_perf attaches every subsystem the log lists.
# Without the peer (no ../shared/peers/spdk) it says so and counts nothing.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"

PORT=${PORT:-4446}
PEER=${FERRY_SPDK_PEER:-$REPO/../shared/peers/spdk}
if [ ! -x "$PEER/target" ]; then
    echo "no SPDK peer at $PEER: nothing to run"
    summary
    exit 0
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.spdk.XXXXXX")
trap 'lab_cleanup >/dev/null 2>&1 || true' EXIT
OPEN=nqn.2026-11.io.ferry:spdk-open
LISTED=nqn.2026-11.io.ferry:spdk-listed
ALLOWED_HOST=nqn.2014-08.org.nvmexpress:uuid:5b0e1c1e-7a1b-4a7e-9c1d-3f2e1d0c9b8a
# Three more any-host subsystems: with them the discovery log has more entries (5 for the
# empty host NQN) than SPDK's host reads in its first 4 KiB (3), so it reads on at an offset.
EXTRA=nqn.2026-11.io.ferry:spdk-extra
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": $PORT } ],
  "subsystems": [
    { "nqn": "$OPEN", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "null", "size": "1GiB" },
                      { "nsid": 2, "backend": "ram", "size": "64MiB", "block_size": 512 } ] },
    { "nqn": "$LISTED", "hosts": [ "$ALLOWED_HOST" ],
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "16MiB" } ] },
    { "nqn": "$EXTRA-1", "allow_any_host": true, "namespaces": [ { "nsid": 1, "backend": "null", "size": "1GiB" } ] },
    { "nqn": "$EXTRA-2", "allow_any_host": true, "namespaces": [ { "nsid": 1, "backend": "null", "size": "1GiB" } ] },
    { "nqn": "$EXTRA-3", "allow_any_host": true, "namespaces": [ { "nsid": 1, "backend": "null", "size": "1GiB" } ] }
  ],
  "management": { "port": 0 }
}
JSON
trid() {  # trid NQN [HOSTNQN]
    echo "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:$1${2:+ hostnqn:$2}"
}
spdk() { "$PEER/target" run "$@"; }

identify_open() {  # spdk_nvme_identify makes up a host NQN of its own (a random UUID one)
    spdk spdk_nvme_identify -r "$(trid "$OPEN")" > "$WORK/identify.out" 2>&1 &&
        grep -q "Model Number: *ferry" "$WORK/identify.out" &&
        grep -q "Subsystem NQN: *$OPEN" "$WORK/identify.out" &&
        [ "$(grep -c '^Namespace ID:' "$WORK/identify.out")" -eq 2 ]
}
identify_discovery() {
    spdk spdk_nvme_identify -r "$(trid nqn.2014-08.org.nvmexpress.discovery)" > "$WORK/discovery.out" 2>&1 &&
        grep -q "$OPEN" "$WORK/discovery.out" && ! grep -q "$LISTED" "$WORK/discovery.out"
}
perf_run() {  # perf_run NAME TRID ARGS...: a run in which I/O completes and none fails
    local name=$1 id=$2; shift 2
    spdk spdk_nvme_perf -c 0x2 "$@" -r "$id" > "$WORK/perf-$name.out" 2>&1 || {
        tail -20 "$WORK/perf-$name.out"; return 1; }
    grep -E '^Total *:' "$WORK/perf-$name.out"
    local iops
    iops=$(awk '/^Total *:/ { print int($3) }' "$WORK/perf-$name.out")
    # spdk_nvme_perf logs "CQ transport error -6" for a qpair it has itself disconnected at the
    # end of the run (it does so against SPDK's own target too): not an error of the target.
    [ -n "$iops" ] && [ "$iops" -gt 0 ] &&
        ! grep -iE 'error|failed' "$WORK/perf-$name.out" | grep -v 'DISCONNECTED\] CQ transport error -6' >/dev/null
}
through_discovery() {  # spdk_nvme_perf given the discovery service attaches what it lists
    spdk spdk_nvme_perf -c 0x2 -q 1 -o 4096 -w read -t 1 -r "$(trid nqn.2014-08.org.nvmexpress.discovery)" \
        > "$WORK/perf-discovery.out" 2>&1 || { tail -20 "$WORK/perf-discovery.out"; return 1; }
    local attached
    attached=$(grep -c '^Attached to' "$WORK/perf-discovery.out" || true)
    echo "attached to $attached controllers through the discovery log"
    [ "$attached" -eq 4 ] && grep -q "Attached to.*$EXTRA-3" "$WORK/perf-discovery.out" &&
        grep -qE '^Total *:' "$WORK/perf-discovery.out"
}
empty_hostnqn_logged() {
    grep -q "empty host NQN accepted" "$FERRYD_LOG"
}
listed_refuses_empty() {  # spdk_nvme_perf exits 0 even when it attached no controller
    spdk spdk_nvme_perf -c 0x2 -q 1 -o 4096 -w read -t 1 -r "$(trid "$LISTED")" > "$WORK/listed.out" 2>&1 || true
    grep -q "No valid NVMe controllers found" "$WORK/listed.out" && ! grep -q '^Total' "$WORK/listed.out" &&
        grep -q "host <empty host NQN> not allowed to access $LISTED" "$FERRYD_LOG"
}

if check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" --cpus 0; then
    check "spdk_nvme_identify on an any-host subsystem" identify_open || true
    check "spdk_nvme_identify of the discovery log (only the subsystems the host may use)" identify_discovery || true
    check "spdk_nvme_perf, default host (empty NQN), 5 s randread 4k qd32 on a null namespace" \
        perf_run randread "$(trid "$OPEN") ns:1" -q 32 -o 4096 -w randread -t 5 || true
    check "ferryd logs the empty host NQN it accepted" empty_hostnqn_logged || true
    check "spdk_nvme_perf through the discovery log (read at an offset) attaches every subsystem listed" \
        through_discovery || true
    check "spdk_nvme_perf, default host, 5 s randrw 128k qd16 on a RAM namespace with 512 B LBAs" \
        perf_run randrw "$(trid "$OPEN") ns:2" -q 16 -o 131072 -w randrw -M 50 -t 5 || true
    check "an allow-list subsystem refuses the empty host NQN" listed_refuses_empty || true
    check "an allow-list subsystem accepts its listed host (spdk_nvme_perf hostnqn:)" \
        perf_run listed "$(trid "$LISTED" "$ALLOWED_HOST")" -q 8 -o 4096 -w randrw -M 50 -t 2 || true
    check "ferryd stops cleanly" stop_ferryd || true
fi
echo "ferryd log: $WORK/ferryd.log"
summary
