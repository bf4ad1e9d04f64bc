#!/bin/bash
# tests/lab/dhchap.sh: DH-HMAC-CHAP with the Linux host. Two ferryd on 127.0.0.1 from the
# same subsystem (nqn.2026-11.io.ferry:auth, 64 MiB RAM namespace), one picking the NULL DH
# group (--dhchap-dhgroups null, port 4427), one ffdhe2048 (--dhchap-dhgroups ffdhe2048,
# port 4428): the Linux host offers every group and lets the controller choose, so both
# are exercised. Keys are made here in `nvme gen-dhchap-key`'s format (python3: random key,
# CRC-32, base64). The guest script guest/dhchap-guest.sh checks: HOST_A (32-byte SHA-256 key,
# unidirectional, NULL group) connects with --dhchap-secret and serves fio-verified I/O;
# HOST_B (64-byte SHA-512 key plus a controller key, ffdhe2048) connects with
# --dhchap-secret and --dhchap-ctrl-secret, I/O verified, re-authenticates through sysfs;
# a wrong secret, no secret, and a host that is not listed are refused. Here: ferryd's logs
# name the hash and group of each success, the failure's reason, two authentications of
# HOST_B's admin queue (re-authentication), and no authentication attempt by HOST_D.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the DH-HMAC-CHAP lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4427
PORT2=4428
NQN=nqn.2026-11.io.ferry:auth
HOST_A=nqn.2014-08.org.nvmexpress:uuid:a1a1a1a1-2222-4333-8444-555555555555
HOST_B=nqn.2014-08.org.nvmexpress:uuid:b2b2b2b2-7777-4888-9999-aaaaaaaaaaaa
HOST_D=nqn.2014-08.org.nvmexpress:uuid:d4d4d4d4-7777-4888-9999-aaaaaaaaaaaa
GUEST_SCRIPT=$REPO/tests/lab/guest/dhchap-guest.sh

# A secret as `nvme gen-dhchap-key --hmac=HH` prints it: DHHC-1:HH:base64(key || crc32 LE):
gen_key() {
    python3 -c 'import base64,os,sys,zlib
n={"00":32,"01":32,"02":48,"03":64}[sys.argv[1]]; k=os.urandom(n)
print("DHHC-1:%s:%s:" % (sys.argv[1], base64.b64encode(k+zlib.crc32(k).to_bytes(4,"little")).decode()))' "$1"
}
KEY_A=$(gen_key 01)
KEY_B=$(gen_key 03)
CKEY_B=$(gen_key 03)
KEY_WRONG=$(gen_key 01)

lab_begin dhchap
write_config() {
    cat > "$1" <<JSON
{
  "listeners": [ { "transport": "tcp", "address": "127.0.0.1", "port": $2 } ],
  "subsystems": [
    { "nqn": "$NQN",
      "allow_any_host": false,
      "hosts": [ { "nqn": "$HOST_A", "dhchap_key": "$KEY_A" },
                 { "nqn": "$HOST_B", "dhchap_key": "$KEY_B", "dhchap_ctrl_key": "$CKEY_B" } ],
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "64MiB", "block_size": 4096 } ] }
  ],
  "management": { "port": 0 }
}
JSON
    chmod 600 "$1"
}
write_config "$WORK/ferryd.json" "$PORT"
write_config "$WORK/ferryd2.json" "$PORT2"
{
    echo '#!/bin/bash'
    printf 'NQN=%q HOST_A=%q HOST_B=%q HOST_D=%q KEY_A=%q KEY_B=%q CKEY_B=%q KEY_WRONG=%q PORT2=%q\n' \
        "$NQN" "$HOST_A" "$HOST_B" "$HOST_D" "$KEY_A" "$KEY_B" "$CKEY_B" "$KEY_WRONG" "$PORT2"
    cat "$GUEST_SCRIPT"
} > "$WORK/dhchap-guest.sh"

FERRYD2_PID=""
FERRYD2_LOG=$WORK/ferryd2.log
start_second() {
    "$FERRYD" --config "$WORK/ferryd2.json" --log-level debug --idle-spin-us 0 --dhchap-dhgroups ffdhe2048 \
        > "$FERRYD2_LOG" 2>&1 &
    FERRYD2_PID=$!
    for _ in $(seq 200); do grep -qF 'ferryd: ready' "$FERRYD2_LOG" && return 0; sleep 0.1; done
    echo "second ferryd not ready"; tail -5 "$FERRYD2_LOG"; return 1
}
stop_second() {
    [ -n "$FERRYD2_PID" ] || return 1
    kill -TERM "$FERRYD2_PID" && wait "$FERRYD2_PID"
}

# shellcheck disable=SC2317  # called through check
logged() {  # FILE PATTERN...: one line of FILE has every fixed string
    local f=$1 line; shift
    while IFS= read -r line; do
        local ok=1 p
        for p in "$@"; do [[ $line == *"$p"* ]] || ok=0; done
        [ "$ok" = 1 ] && return 0
    done < "$f"
    echo "no line in $f with: $*"; return 1
}
# shellcheck disable=SC2317
two_admin_auths_of_b() {
    local n; n=$(grep -F "host $HOST_B authenticated" "$FERRYD2_LOG" | grep -c 'qid 0:' || true)
    [ "$n" -ge 2 ] && return 0
    echo "HOST_B's admin queue authenticated $n time(s), want >= 2 (re-authentication)"; return 1
}
# shellcheck disable=SC2317
no_auth_of_d() {
    grep -F "$HOST_D" "$FERRYD_LOG" | grep -i 'authentica' >/dev/null && { echo "HOST_D reached authentication"; return 1; }
    logged "$FERRYD_LOG" "host $HOST_D not allowed"
}
# shellcheck disable=SC2317
no_key_in_logs() {
    local k
    for k in "$KEY_A" "$KEY_B" "$CKEY_B" "$KEY_WRONG"; do
        k=${k#DHHC-1:??:}; k=${k:0:16}
        if grep -qF -- "$k" "$FERRYD_LOG" "$FERRYD2_LOG"; then echo "a key's text is in a log"; return 1; fi
    done
}

if check "ports $PORT $PORT2 free" require_port_free "$PORT" && require_port_free "$PORT2" &&
   check "ferryd (null group) starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" --dhchap-dhgroups null &&
   check "ferryd (ffdhe2048) starts" start_second; then
    run_initiator dhchap --port "$PORT" --nqn "$NQN" --hostnqn "$HOST_A" \
        --script "$WORK/dhchap-guest.sh" || true
    check "HOST_A authenticated: sha256, NULL group" \
        logged "$FERRYD_LOG" "host $HOST_A authenticated" "sha256" "DH group null" "unidirectional" || true
    check "HOST_B authenticated: sha512, ffdhe2048, bidirectional" \
        logged "$FERRYD2_LOG" "host $HOST_B authenticated" "sha512" "DH group ffdhe2048" "bidirectional" || true
    check "HOST_B re-authenticated (sysfs)" two_admin_auths_of_b || true
    check "wrong secret logged as failed" \
        logged "$FERRYD_LOG" "host $HOST_A failed authentication" "authentication failed" || true
    check "HOST_D never reached authentication" no_auth_of_d || true
    check "no key in the logs" no_key_in_logs || true
    check "second ferryd stops cleanly" stop_second || true
    check "ferryd still running at the end, stops cleanly" stop_ferryd || true
fi
lab_finish
