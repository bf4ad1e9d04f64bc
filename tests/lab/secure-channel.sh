#!/bin/bash
# tests/lab/secure-channel.sh: TLS and DH-HMAC-CHAP on the same connections, under attack.
# One ferryd (127.0.0.1:4429, TLS required) exports a RAM namespace to one host that has a TLS
# PSK (the lab's test key), a DH-HMAC-CHAP host key and a controller key (bidirectional).
# While integration/flood.py holds 2,000 connections from 127.0.0.2 that stop half way into a
# TLS ClientHello (reopened as ferryd sheds them, up to 500 a second: the
# TCG guest needs the CPU), the guest's kernel runs the lab
# initiator's scenario with `nvme connect --tls --dhchap-secret --dhchap-ctrl-secret`
# (discover, connect, fio write+verify, disconnect). On the host: ferryd logged TLS 1.3 and a
# bidirectional DH-HMAC-CHAP success for that host on the admin and I/O queues, the keys
# appear nowhere in its log, and it stops cleanly. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the TLS + DH-HMAC-CHAP lab scenario (with a half-open connection flood) against
\$BUILD/bin/ferryd. Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4429
NQN=nqn.2026-11.io.ferry:secure
HOST=nqn.2014-08.org.nvmexpress:uuid:6e766d66-6c61-4200-8000-000000000001  # lab/initiator --tls default
PSK=$(cat "$LAB/tls-test-psk.txt")
# DH-HMAC-CHAP secrets as `nvme gen-dhchap-key` prints them: DHHC-1:HH:base64(key || crc32le):
dhchap_key() {  # dhchap_key HASH(0-3) BYTES SEED
    python3 -c 'import base64,hashlib,sys,zlib
h,n,seed=int(sys.argv[1]),int(sys.argv[2]),sys.argv[3]
k=hashlib.sha512(seed.encode()).digest()[:n]
print("DHHC-1:%02x:%s:" % (h, base64.b64encode(k+zlib.crc32(k).to_bytes(4,"little")).decode()))' "$@"
}
HOST_KEY=$(dhchap_key 1 32 ferry-lab-secure-host)
CTRL_KEY=$(dhchap_key 3 64 ferry-lab-secure-ctrl)

lab_begin secure-channel
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": $PORT, "tls": "required" } ],
  "subsystems": [
    { "nqn": "$NQN",
      "hosts": [ { "nqn": "$HOST", "tls_psk": "$PSK", "dhchap_key": "$HOST_KEY", "dhchap_ctrl_key": "$CTRL_KEY" } ],
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "128MiB" } ] }
  ],
  "management": { "port": 0 }
}
JSON
FLOOD_PID=""
stop_flood() { [ -n "$FLOOD_PID" ] && kill "$FLOOD_PID" 2>/dev/null; FLOOD_PID=""; }
trap 'stop_flood; _lab_on_exit $?' EXIT

# shellcheck disable=SC2317  # called through check
flood_started() {
    python3 "$REPO/tests/integration/flood.py" --addr 127.0.0.1 --port "$PORT" --source 127.0.0.2 \
        --count 2000 --seconds 900 --send partial-tls --reopen --max-rate 500 --ready-file "$WORK/flood.ready" \
        > "$WORK/flood.out" 2>&1 &
    FLOOD_PID=$!
    local i
    for i in $(seq 300); do
        [ -e "$WORK/flood.ready" ] && return 0
        kill -0 "$FLOOD_PID" 2>/dev/null || { cat "$WORK/flood.out"; return 1; }
        sleep 0.1
    done
    return 1
}
# shellcheck disable=SC2317
flood_still_running() { kill -0 "$FLOOD_PID" 2>/dev/null; }
# shellcheck disable=SC2317
log_has() { grep -E "$1" "$FERRYD_LOG" | grep -F "$HOST" >/dev/null || { echo "no line matching '$1' for $HOST"; return 1; }; }
# shellcheck disable=SC2317
# Every connection that authenticated had its TLS 1.3 line first; the admin queue and at
# least one I/O queue are among them.
auth_on_tls_connections() {
    local conns c n=0 admin=0
    conns=$(grep -F "$HOST" "$FERRYD_LOG" | grep -E 'authenticated to .*DH-HMAC-CHAP' |
        sed -E 's/.* conn ([0-9]+) .*/\1/' | sort -u)
    for c in $conns; do
        grep -qE " conn $c \(.*\): TLS 1\.3 " "$FERRYD_LOG" || { echo "conn $c authenticated without TLS"; return 1; }
        n=$((n + 1))
    done
    grep -F "$HOST" "$FERRYD_LOG" | grep -E 'authenticated to .*DH-HMAC-CHAP' | grep ' qid 0:' >/dev/null && admin=1
    echo "$n connection(s) with TLS + DH-HMAC-CHAP (admin queue: $admin)"
    [ "$n" -ge 2 ] && [ "$admin" = 1 ]
}
# shellcheck disable=SC2317
no_key_in_log() {
    local k body
    for k in "$PSK" "$HOST_KEY" "$CTRL_KEY"; do
        body=${k#*:*:}; body=${body%:}
        if grep -qF -e "$k" -e "$body" "$FERRYD_LOG"; then echo "a key is in $FERRYD_LOG"; return 1; fi
    done
}

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts (TLS required)" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" &&
   check "2,000 half-open TLS connections from 127.0.0.2" flood_started; then
    run_initiator secure-channel --port "$PORT" --nqn "$NQN" --tls --hostnqn "$HOST" --fio-size 16M \
        --connect-opts "--dhchap-secret=$HOST_KEY --dhchap-ctrl-secret=$CTRL_KEY" || true
    check "the flood ran through the whole scenario" flood_still_running || true
    stop_flood
    cat "$WORK/flood.out" 2>/dev/null || true
    check "ferryd logged TLS 1.3 for the host" log_has 'TLS 1\.3' || true
    check "ferryd logged bidirectional DH-HMAC-CHAP for the host" log_has 'authenticated to .*DH-HMAC-CHAP.*bidirectional' || true
    check "the admin and every I/O queue authenticated over TLS (same connections)" auth_on_tls_connections || true
    check "no key in ferryd's log" no_key_in_log || true
    check "ferryd still running at the end, stops cleanly" stop_ferryd || true
fi
lab_finish
