#!/bin/bash
# tests/lab/guest/subsystem-recreate-guest.sh: guest side of tests/lab/subsystem-recreate.sh
# (issue 8 test 3). Connected with --keep-alive-tmo 1 --reconnect-delay 1 and fio write+verify
# passes running, it deletes the subsystem through ferryd's REST API ($API, $TOKEN: prepended
# by the host with live-common.sh) $CYCLES times (default 5): the controller must go to
# `connecting`; the subsystem is re-created from what GET returned (same namespace UUID) and
# the controller must be `live` again within 5 s of the re-creation, with the same namespace.
# fio's verify never fails.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh
: "${API:?}" "${TOKEN:?}"
CYCLES=${CYCLES:-5}
ENC=${LAB_NQN//:/%3A}

give_up() { echo "--- dmesg (tail) ---"; dmesg | tail -40; summary || true; exit 1; }

modprobe nvme-tcp
step connect-kato-1s-reconnect-1s nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" \
    --hostnqn="$LAB_HOSTNQN" --hostid="$(cat /etc/nvme/hostid)" --keep-alive-tmo=1 --reconnect-delay=1 \
    --ctrl-loss-tmo=120 || give_up
step namespace-appears wait_ns 1 30 || give_up
dev=$(ns_dev 1)
ctrl=$(nvmf_find_ctrl "$LAB_NQN") || ctrl=""
uuid0=$(cat "/sys/block/${dev##*/}/uuid" 2>/dev/null || echo "?")
echo "controller ${ctrl:-none}, namespace 1 on $dev, uuid $uuid0"

fio_loop "$dev" &
fio_pid=$!

# wait_state STATE T: the controller reaches STATE within T s (0.1 s polls); prints the time
wait_state() {
    local want=$1 n=$(($2 * 10)) t0 s
    t0=$(date +%s.%N)
    for ((; n > 0; n--)); do
        s=$(ctrl_state "$ctrl")
        if [ "$s" = "$want" ]; then
            echo "    $ctrl: $want after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
            return 0
        fi
        sleep 0.1
    done
    echo "    $ctrl: $s, not $want, after $2 s"; return 1
}

same_namespace() {
    local d u
    d=$(ns_dev 1) || { echo "    namespace 1: no block device"; return 1; }
    u=$(cat "/sys/block/${d##*/}/uuid" 2>/dev/null || echo "?")
    echo "    namespace 1: $d uuid $u"
    [ "$d" = "$dev" ] && [ "$u" = "$uuid0" ]
}

for ((k = 1; k <= CYCLES; k++)); do
    sleep 3  # fio I/O flowing
    if ! step "cycle-$k-get-subsystem" api_expect 200 GET "/subsystems/$ENC"; then continue; fi
    jq 'del(.controllers, .warnings)' /tmp/api.out > /tmp/subsystem.json
    step "cycle-$k-delete-subsystem" api_expect 204 DELETE "/subsystems/$ENC" || continue
    step "cycle-$k-host-connecting" wait_state connecting 10 || true
    step "cycle-$k-recreate-same-uuid" api_expect 201 POST /subsystems -d @/tmp/subsystem.json || true
    step "cycle-$k-live-within-5s" wait_state live 5 || true
    step "cycle-$k-same-namespace" same_namespace || true
done

step fio-completed-passes fio_passes_at_least 1 300 || true
touch /tmp/stop-fio
wait "$fio_pid" || true
step fio-verify-never-failed fio_never_failed || true
step disconnect nvme disconnect -n "$LAB_NQN" || true
dmesg | grep -iE 'nvme' | tail -30 || true
summary
