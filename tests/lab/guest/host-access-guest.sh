#!/bin/bash
# tests/lab/guest/host-access-guest.sh: guest side of tests/lab/host-access.sh, run by
# lab/initiator --script in the lab guest (target at $LAB_ADDR:$LAB_PORT). Checks per-
# subsystem host access control: HOST_B sees and connects only to OPEN_NQN (discovery
# hides RESTRICTED_NQN, connect to it is refused); HOST_A sees both, connects to
# RESTRICTED_NQN and writes/reads/verifies data on its namespace.
# host-access.sh prepends the four names below; the defaults here are the same.
set -euo pipefail
# /lab/lib.sh in the guest is ../shared/lab/guest-lib.sh
# shellcheck source-path=SCRIPTDIR/../../../../shared/lab source=guest-lib.sh
source /lab/lib.sh

OPEN_NQN=${OPEN_NQN:-nqn.2026-11.io.ferry:open}
RESTRICTED_NQN=${RESTRICTED_NQN:-nqn.2026-11.io.ferry:restricted}
HOST_A=${HOST_A:-nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555}
HOST_B=${HOST_B:-nqn.2014-08.org.nvmexpress:uuid:66666666-7777-4888-9999-aaaaaaaaaaaa}
TGT=(-t tcp -a "$LAB_ADDR" -s "$LAB_PORT")
HOSTOPT=()
DISC=/tmp/discovery.out
DISC_OK=0

# act as host NQN: /etc/nvme/host{nqn,id}, and pass both explicitly to nvme-cli
as_host() {
    set_host_ids "$1"
    HOSTOPT=(--hostnqn="$1" --hostid="$(cat /etc/nvme/hostid)")
    echo "--- acting as host $1 (hostid $(cat /etc/nvme/hostid))"
}

discover() {
    local rc=0
    nvme discover "${TGT[@]}" "${HOSTOPT[@]}" > "$DISC" 2>&1 || rc=$?
    cat "$DISC"
    return "$rc"
}
listed() { [ "$DISC_OK" = 1 ] && grep -q "subnqn: *$1\$" "$DISC"; }
not_listed() { [ "$DISC_OK" = 1 ] && ! grep -q "subnqn: *$1\$" "$DISC"; }

connect() { nvme connect "${TGT[@]}" -n "$1" "${HOSTOPT[@]}"; }

# the connect must fail and leave no controller of that subsystem behind
connect_refused() {
    if nvme connect "${TGT[@]}" -n "$1" "${HOSTOPT[@]}"; then
        echo "connect to $1 succeeded but must be refused"
        nvme disconnect -n "$1" || true
        return 1
    fi
    if nvmf_find_ctrl "$1"; then echo "a controller of $1 exists"; return 1; fi
    return 0
}

# fio write+verify (crc32c) of 8 MiB at offset 0 with one job; extra args go to fio
fio_8m() { LAB_FIO_JOBS=1 fio_job ha "$1" 4k 0 8M "${@:2}"; }

# 1 MiB random pattern at 32 MiB, direct I/O, read back and compare
dd_verify() {
    local dev=$1
    head -c 1048576 /dev/urandom > /tmp/pattern &&
    dd if=/tmp/pattern of="$dev" bs=64k seek=512 oflag=direct conv=fsync status=none &&
    dd if="$dev" of=/tmp/readback bs=64k skip=512 count=16 iflag=direct status=none &&
    cmp /tmp/pattern /tmp/readback
}

no_controllers_left() {
    local n
    for n in "$OPEN_NQN" "$RESTRICTED_NQN"; do
        if nvmf_find_ctrl "$n"; then echo "controller of $n still present"; return 1; fi
    done
    return 0
}

modprobe nvme-tcp

# ---- HOST_B: may use OPEN_NQN only
as_host "$HOST_B"
if step B-discover discover; then DISC_OK=1; else DISC_OK=0; fi
step B-discovery-lists-open listed "$OPEN_NQN" || true
step B-discovery-hides-restricted not_listed "$RESTRICTED_NQN" || true
step B-connect-restricted-refused connect_refused "$RESTRICTED_NQN" || true
dev=""
if step B-connect-open connect "$OPEN_NQN"; then
    dev=$(nvmf_find_ns "$OPEN_NQN" 30) || dev=""
fi
echo "open namespace: ${dev:-none}"
step B-open-namespace-appears test -b "$dev" || true
step B-disconnect-open _disconnect "$OPEN_NQN" || true

# ---- HOST_A: allowed on both
as_host "$HOST_A"
if step A-discover discover; then DISC_OK=1; else DISC_OK=0; fi
step A-discovery-lists-open listed "$OPEN_NQN" || true
step A-discovery-lists-restricted listed "$RESTRICTED_NQN" || true
dev=""
if step A-connect-restricted connect "$RESTRICTED_NQN"; then
    dev=$(nvmf_find_ns "$RESTRICTED_NQN" 30) || dev=""
fi
echo "restricted namespace: ${dev:-none}"
if step A-restricted-namespace-appears test -b "$dev"; then
    step A-fio-write-verify fio_8m "$dev" || true
    step A-fio-readback-verify fio_8m "$dev" --verify_only=1 || true
    step A-dd-write-read-compare dd_verify "$dev" || true
else
    step A-fio-write-verify false || true
    step A-fio-readback-verify false || true
    step A-dd-write-read-compare false || true
fi
step A-disconnect-restricted _disconnect "$RESTRICTED_NQN" || true
step no-controllers-left no_controllers_left || true

if [ "$FAIL" -gt 0 ]; then
    echo "--- dmesg (tail) ---"; dmesg | tail -30
fi
summary
