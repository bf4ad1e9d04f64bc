#!/bin/bash
# tests/lab/guest/ana-multipath-guest.sh: guest side of tests/lab/ana-multipath.sh (issue 12,
# done when 4). Connects to $LAB_NQN through $LAB_PORT (path A) and $PORT_B (path B) with
# native NVMe multipath, runs fio write+verify passes (16 MiB, crc32c) on the multipath head
# while ferryd's REST API ($API, $TOKEN) flips the listeners' ANA states; each path's sysfs
# ana_state follows, I/O (reads and writes) goes to the optimized path only, and no fio pass fails.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh
: "${API:?}" "${TOKEN:?}" "${PORT_B:?}"
PORT_A=$LAB_PORT

give_up() { echo "--- dmesg (tail) ---"; dmesg | tail -40; summary || true; exit 1; }

# io_moves_to ON OFF: over 4 s, I/O grows on the path through ON and not through OFF
io_moves_to() {
    local on0 off0 on1 off1
    sleep 1    # requests sent before the change have completed or been retried
    on0=$(ios_of "$1"); off0=$(ios_of "$2")
    sleep 4
    on1=$(ios_of "$1"); off1=$(ios_of "$2")
    echo "    I/Os through port $1: $on0 -> $on1; through port $2: $off0 -> $off1"
    [ "$on1" -gt "$on0" ] && [ "$off1" -eq "$off0" ]
}
set_ana() { api_expect 200 PUT "/listeners/127.0.0.1:$1/ana/1" -d "{\"state\": \"$2\"}"; }
# rest_shows PORT STATE: GET /listeners lists group 1 of listener PORT in STATE
rest_shows() {
    api_expect 200 GET /listeners &&
        jq -e --argjson p "$1" --arg s "$2" '[.. | objects | select(.port? == $p) | .ana?["1"]?] | any(. == $s)' \
            /tmp/api.out
}

modprobe nvme-tcp
step native-multipath-on grep -qx Y /sys/module/nvme_core/parameters/multipath || give_up
for port in "$PORT_A" "$PORT_B"; do
    step "connect-port-$port" nvme connect -t tcp -a "$LAB_ADDR" -s "$port" -n "$LAB_NQN" \
        --hostnqn="$LAB_HOSTNQN" --hostid="$(cat /etc/nvme/hostid)" || give_up
done
step namespace-1-appears wait_ns 1 30 || give_up
dev=$(ns_dev 1)
step one-subsystem-two-paths one_subsystem_two_paths || give_up
step path-a-optimized wait_ana "$PORT_A" optimized 10 || true
step path-b-optimized wait_ana "$PORT_B" optimized 10 || true
step ana-group-1 test "$(cat "/sys/block/$(path_of "$PORT_A")/ana_grpid")" = 1 || true

fio_loop "$dev" 16M &
fio_pid=$!
step fio-runs more_passes 1 120 || true

step rest-path-a-inaccessible set_ana "$PORT_A" inaccessible || true
step rest-lists-path-a-inaccessible rest_shows "$PORT_A" inaccessible || true
step path-a-shows-inaccessible wait_ana "$PORT_A" inaccessible 15 || true
step path-b-still-optimized wait_ana "$PORT_B" optimized 1 || true
step list-subsys-shows-inaccessible sh -c "nvme list-subsys '$dev' | tee /dev/stderr | grep -q inaccessible" || true
step io-moves-to-path-b io_moves_to "$PORT_B" "$PORT_A" || true
step fio-continues-on-path-b more_passes 1 120 || true

step rest-path-a-optimized-again set_ana "$PORT_A" optimized || true
step rest-path-b-inaccessible set_ana "$PORT_B" inaccessible || true
step path-b-shows-inaccessible wait_ana "$PORT_B" inaccessible 15 || true
step path-a-shows-optimized wait_ana "$PORT_A" optimized 15 || true
step io-moves-to-path-a io_moves_to "$PORT_A" "$PORT_B" || true
step fio-continues-on-path-a more_passes 1 120 || true
step rest-path-b-optimized-again set_ana "$PORT_B" optimized || true
step path-b-shows-optimized wait_ana "$PORT_B" optimized 15 || true

touch /tmp/stop-fio
wait "$fio_pid" || true
step fio-never-failed fio_never_failed || true
both_live() {
    local a b
    a=$(cat "/sys/class/nvme/$(ctrl_of "$PORT_A")/state"); b=$(cat "/sys/class/nvme/$(ctrl_of "$PORT_B")/state")
    echo "    controllers: $a, $b"
    [ "$a" = live ] && [ "$b" = live ]
}
step both-controllers-live-no-reset both_live || true
dmesg | grep -iE 'nvme|ana' | tail -20 || true
step disconnect nvme disconnect -n "$LAB_NQN" || true
summary
