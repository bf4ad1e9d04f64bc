#!/bin/bash
# tests/lab/guest/dhchap-guest.sh: guest side of tests/lab/dhchap.sh, run by lab/initiator
# --script in the lab guest (ferryd picking the NULL DH group at $LAB_ADDR:$LAB_PORT, the one
# picking ffdhe2048 at $LAB_ADDR:$PORT2). dhchap.sh prepends the names and keys below.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh

: "${NQN:?}" "${HOST_A:?}" "${HOST_B:?}" "${HOST_D:?}" "${KEY_A:?}" "${KEY_B:?}" "${CKEY_B:?}" "${KEY_WRONG:?}" "${PORT2:?}"
HOSTOPT=()
as_host() {
    set_host_ids "$1"
    HOSTOPT=(--hostnqn="$1" --hostid="$(cat /etc/nvme/hostid)")
    echo "--- acting as host $1"
}
connect() {  # PORT ARGS...
    local port=$1; shift
    nvme connect -t tcp -a "$LAB_ADDR" -s "$port" -n "$NQN" "${HOSTOPT[@]}" "$@"
}
connect_refused() {  # PORT ARGS...
    local out rc=0
    out=$(connect "$@" 2>&1) || rc=$?
    echo "$out"
    if [ "$rc" = 0 ]; then echo "connect succeeded but must be refused"; nvme disconnect -n "$NQN" || true; return 1; fi
    if nvmf_find_ctrl "$NQN"; then echo "a controller of $NQN exists"; return 1; fi
    return 0
}
dmesg_says() { dmesg | tail -40 > /tmp/dmesg.tail; grep -qiE "$1" /tmp/dmesg.tail || { echo "dmesg has no /$1/:"; cat /tmp/dmesg.tail; return 1; }; }
fio_4m() { LAB_FIO_JOBS=1 fio_job dh "$1" 4k 0 4M "${@:2}"; }
reauth() {
    local c; c=$(nvmf_find_ctrl "$NQN") || return 1
    echo "$KEY_B" > "/sys/class/nvme/${c#/dev/}/dhchap_secret" || return 1
    sleep 3
    dmesg_says 're-authenticating'
}

modprobe nvme-tcp

# ---- HOST_A: unidirectional, SHA-256 key, NULL group (first ferryd)
as_host "$HOST_A"
dev=""
if step A-connect-dhchap-secret connect "$LAB_PORT" --dhchap-secret="$KEY_A"; then
    dev=$(nvmf_find_ns "$NQN" 30) || dev=""
fi
if step A-namespace-appears test -b "$dev"; then
    step A-fio-write-verify fio_4m "$dev" || true
else
    step A-fio-write-verify false || true
fi
step A-disconnect _disconnect "$NQN" || true
dmesg -C || true
step A-wrong-secret-refused connect_refused "$LAB_PORT" --dhchap-secret="$KEY_WRONG" || true
step A-wrong-secret-dmesg-says-auth-failed dmesg_says 'auth.*fail|fail.*auth' || true
step A-no-secret-refused connect_refused "$LAB_PORT" || true

# ---- HOST_B: bidirectional, SHA-512 keys, ffdhe2048 (second ferryd)
as_host "$HOST_B"
dev=""
dmesg -C || true
if step B-connect-bidirectional connect "$PORT2" --dhchap-secret="$KEY_B" --dhchap-ctrl-secret="$CKEY_B"; then
    dev=$(nvmf_find_ns "$NQN" 30) || dev=""
fi
if step B-namespace-appears test -b "$dev"; then
    step B-fio-write-verify fio_4m "$dev" || true
    step B-reauth-sysfs reauth || true
    step B-fio-readback-after-reauth fio_4m "$dev" --verify_only=1 || true
else
    step B-fio-write-verify false || true
    step B-reauth-sysfs false || true
    step B-fio-readback-after-reauth false || true
fi
step B-disconnect _disconnect "$NQN" || true

# ---- HOST_D: not listed, refused before any authentication
as_host "$HOST_D"
step D-not-allowed-refused connect_refused "$LAB_PORT" --dhchap-secret="$KEY_A" || true

if [ "$FAIL" -gt 0 ]; then
    echo "--- dmesg (tail) ---"; dmesg | tail -30
fi
summary
