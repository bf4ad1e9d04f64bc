#!/bin/bash
# tests/lab/guest/gateway-failover-guest.sh: guest side of tests/lab/gateway-failover.sh
# (issue 12, done when 3). Two ferryd gateways of one group serve $LAB_NQN: A through $LAB_PORT
# (owns ANA group 1, the image's namespace: optimized), B through $PORT_B (inaccessible).
# Connects both with native NVMe multipath, runs fio write+verify passes on the multipath head,
# prints KILL-GATEWAY-A (the host then kills A with -9), and checks that path B becomes
# optimized and fio goes on; then prints RESTART-GATEWAY-A (the host restarts A) and checks that
# the host reconnects A, B hands group 1 back under fio's writes, path A is optimized again and
# fio goes on through it; fio never fails a pass (verify included) and both controllers are live.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh
: "${PORT_B:?}"
PORT_A=$LAB_PORT

give_up() { echo "--- dmesg (tail) ---"; dmesg | tail -40; summary || true; exit 1; }

modprobe nvme-tcp
step native-multipath-on grep -qx Y /sys/module/nvme_core/parameters/multipath || give_up
for port in "$PORT_A" "$PORT_B"; do
    step "connect-gateway-port-$port" nvme connect -t tcp -a "$LAB_ADDR" -s "$port" -n "$LAB_NQN" \
        --hostnqn="$LAB_HOSTNQN" --hostid="$(cat /etc/nvme/hostid)" || give_up
done
step namespace-1-appears wait_ns 1 30 || give_up
dev=$(ns_dev 1)
step one-subsystem-two-paths one_subsystem_two_paths || give_up
distinct_cntlids() {
    local a b
    a=$(cat "/sys/class/nvme/$(ctrl_of "$PORT_A")/cntlid"); b=$(cat "/sys/class/nvme/$(ctrl_of "$PORT_B")/cntlid")
    echo "    CNTLID through A: $a, through B: $b"
    [ "$a" -ge 1 ] && [ "$a" -le 1000 ] && [ "$b" -ge 1001 ] && [ "$b" -le 2000 ]
}
step cntlids-from-each-gateways-range distinct_cntlids || true
step path-a-optimized wait_ana "$PORT_A" optimized 10 || true
step path-b-inaccessible wait_ana "$PORT_B" inaccessible 10 || true

fio_loop "$dev" 16M &
fio_pid=$!
step fio-runs-through-gateway-a more_passes 1 180 || true
io_b0=$(ios_of "$PORT_B")
echo "KILL-GATEWAY-A"
step path-b-becomes-optimized wait_ana "$PORT_B" optimized 90 || true
step fio-continues-through-gateway-b more_passes 2 240 || true
io_b1=$(ios_of "$PORT_B")
step io-went-through-gateway-b sh -c "echo '    I/Os through B: $io_b0 -> $io_b1'; [ $io_b1 -gt $io_b0 ]" || true
# A restarted (the host does that at RESTART-GATEWAY-A): the kernel reconnects path A by itself,
# B hands group 1 back while fio writes through B (none of those writes may fail), and fio goes
# on through A.
a_live() { [ "$(ctrl_state "$(ctrl_of "$PORT_A")")" = live ]; }
wait_a_live() {
    local i
    for ((i = 0; i < $1; i++)); do a_live && return 0; sleep 1; done
    echo "    controller through A: $(ctrl_state "$(ctrl_of "$PORT_A")") after $1 s"; return 1
}
io_a0=$(ios_of "$PORT_A")
echo "RESTART-GATEWAY-A"
step path-a-reconnects wait_a_live 90 || true
step path-a-optimized-again wait_ana "$PORT_A" optimized 90 || true
step path-b-inaccessible-again wait_ana "$PORT_B" inaccessible 30 || true
step fio-continues-through-gateway-a more_passes 2 240 || true
io_a1=$(ios_of "$PORT_A")
step io-went-through-gateway-a sh -c "echo '    I/Os through A: $io_a0 -> $io_a1'; [ $io_a1 -gt $io_a0 ]" || true
touch /tmp/stop-fio
wait "$fio_pid" || true
step fio-never-failed fio_never_failed || true
b_live() {
    local b; b=$(cat "/sys/class/nvme/$(ctrl_of "$PORT_B")/state")
    echo "    controller through B: $b"
    nvme list-subsys "$dev" | sed 's/^/    /'
    [ "$b" = live ]
}
step surviving-path-live b_live || true
step restarted-path-live a_live || true
dmesg | grep -iE 'nvme|ana' | tail -25 || true
step disconnect nvme disconnect -n "$LAB_NQN" || true
summary
