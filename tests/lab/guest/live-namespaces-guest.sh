#!/bin/bash
# tests/lab/guest/live-namespaces-guest.sh: guest side of tests/lab/live-namespaces.sh (issue 8
# test 2). Connected to $LAB_NQN (namespace 1) with fio write+verify passes running on
# namespace 1, it adds namespaces through ferryd's REST API ($API, $TOKEN: prepended by the
# host with live-common.sh): each must appear as a block device without a reconnect; writes
# and verifies on one, grows another (the new size shows), removes both (the devices go).
# The controller (CNTLID) stays the same throughout and fio on namespace 1 never fails.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh
: "${API:?}" "${TOKEN:?}"
ENC=${LAB_NQN//:/%3A}

give_up() { echo "--- dmesg (tail) ---"; dmesg | tail -40; summary || true; exit 1; }

modprobe nvme-tcp
step connect nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" --hostnqn="$LAB_HOSTNQN" \
    --hostid="$(cat /etc/nvme/hostid)" || give_up
step namespace-1-appears wait_ns 1 30 || give_up
dev1=$(ns_dev 1)
ctrl=$(nvmf_find_ctrl "$LAB_NQN") || ctrl=""
cntlid=$(cat "/sys/class/nvme/${ctrl##*/}/cntlid" 2>/dev/null || echo "?")
echo "controller ${ctrl:-none} (cntlid $cntlid), namespace 1 on $dev1"

fio_loop "$dev1" &
fio_pid=$!
sleep 3

step add-namespace-lowest-free-nsid api_expect 201 POST "/subsystems/$ENC/namespaces" \
    -d '{"backend": "ram", "size": "64MiB", "block_size": 4096}' || true
echo "    nsid: $(jq -r .nsid /tmp/api.out 2>/dev/null)"
step added-nsid-is-2 test "$(jq -r .nsid /tmp/api.out 2>/dev/null)" = 2 || true
step namespace-2-appears-without-reconnect wait_ns 2 30 || true
if dev2=$(ns_dev 2); then
    step namespace-2-fio-write-verify fio_job ns2 "$dev2" 4k 0 16M || true
else
    step namespace-2-fio-write-verify false || true
fi

step add-namespace-5 api_expect 201 POST "/subsystems/$ENC/namespaces" \
    -d '{"nsid": 5, "backend": "ram", "size": "32MiB", "block_size": 512}' || true
step namespace-5-appears wait_ns 5 30 || true
step grow-namespace-5 api_expect 200 PATCH "/subsystems/$ENC/namespaces/5" -d '{"size": "96MiB"}' || true
grown() {
    local t=30 d s
    for ((; t > 0; t--)); do
        d=$(ns_dev 5) && s=$(cat "/sys/block/${d##*/}/size") && [ $((s * 512)) -eq $((96 << 20)) ] && {
            echo "    $d: $((s * 512)) bytes"; return 0; }
        sleep 1
    done
    echo "    namespace 5 size: ${s:-?} sectors"; return 1
}
step namespace-5-shows-new-size grown || true

step remove-namespace-2 api_expect 204 DELETE "/subsystems/$ENC/namespaces/2" || true
step namespace-2-disappears wait_ns_gone 2 30 || true
step remove-namespace-5 api_expect 204 DELETE "/subsystems/$ENC/namespaces/5" || true
step namespace-5-disappears wait_ns_gone 5 30 || true
step namespace-1-still-there wait_ns 1 1 || true

same_controller() {
    local now state
    now=$(cat "/sys/class/nvme/${ctrl##*/}/cntlid" 2>/dev/null || echo gone)
    state=$(ctrl_state "$ctrl")
    echo "    cntlid $cntlid -> $now, state $state"
    [ "$now" = "$cntlid" ] && [ "$state" = live ]
}
step no-reconnect-same-controller same_controller || true

step fio-namespace-1-completed-passes fio_passes_at_least 2 300 || true
touch /tmp/stop-fio
wait "$fio_pid" || true
step fio-namespace-1-never-failed fio_never_failed || true
step disconnect nvme disconnect -n "$LAB_NQN" || true
dmesg | grep -iE 'nvme|rescan' | tail -20 || true
summary
