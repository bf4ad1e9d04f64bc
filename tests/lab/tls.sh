#!/bin/bash
# tests/lab/tls.sh: NVMe/TCP TLS 1.3 with PSKs against the guest's Linux 6.12 host (tlshd,
# nvme-cli 2.13). One ferryd (127.0.0.1:4431, "tls": "required") with one subsystem and three
# hosts whose PSKs are in its config (host field "tls_psk"): the lab's default
# SHA-256 PSK (lab/tls-test-psk.txt), a SHA-384 PSK made here, and a host configured with a
# PSK other than the one its guest uses. Checks: the full initiator scenario over TLS with
# each of the first two (ferryd logs "TLS 1.3 <suite> identity ..." per connection), a plain
# connection to the listener is refused, the wrong PSK fails to connect and ferryd logs why,
# and no configured key appears in ferryd's log. The SHA-384 PSK (TLS_AES_256_GCM_SHA384)
# works only with GnuTLS >= 3.8.11 in the guest's tlshd: older GnuTLS (Debian 13's 3.8.9)
# binds every PSK with HMAC-SHA256 but offers only TLS_AES_256_GCM_SHA384 for a 48-byte key,
# which no OpenSSL server accepts. So the guest script checks its GnuTLS: new enough, the
# connect over the SHA-384 PSK must work; older, it must fail and ferryd must say why.
# (tests/unit/tls_test.cc runs TLS_AES_256_GCM_SHA384 with an OpenSSL client.)
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the TLS lab scenario against \$BUILD/bin/ferryd.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

PORT=4431
NQN=nqn.2026-11.io.ferry:tls
HOST256=nqn.2014-08.org.nvmexpress:uuid:6e766d66-6c61-4200-8000-000000000001   # lab/initiator --tls default
HOST384=nqn.2014-08.org.nvmexpress:uuid:6e766d66-6c61-4200-8000-000000000384
HOST_WRONG=nqn.2014-08.org.nvmexpress:uuid:6e766d66-6c61-4200-8000-0000000000ff
KEY256=$(cat "$LAB/tls-test-psk.txt")
# interchange format: base64(key || CRC-32 little endian), as nvme gen-tls-key prints it
make_key() {  # make_key HH NBYTES
    python3 -c 'import base64,os,sys,zlib; k=os.urandom(int(sys.argv[2]))
print("NVMeTLSkey-1:%s:%s:" % (sys.argv[1], base64.b64encode(k + zlib.crc32(k).to_bytes(4, "little")).decode()))' "$1" "$2"
}
KEY384=$(make_key 02 48)
KEY_FERRY=$(make_key 01 32)   # what ferryd has for HOST_WRONG
KEY_GUEST=$(make_key 01 32)   # what HOST_WRONG's guest uses
GUEST_SCRIPT=$REPO/tests/lab/guest/tls-guest.sh

lab_begin tls
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "transport": "tcp", "address": "127.0.0.1", "port": $PORT, "tls": "required" } ],
  "subsystems": [
    { "nqn": "$NQN", "allow_any_host": false,
      "hosts": [ { "nqn": "$HOST256", "tls_psk": "$KEY256" },
                 { "nqn": "$HOST384", "tls_psk": "$KEY384" },
                 { "nqn": "$HOST_WRONG", "tls_psk": "$KEY_FERRY" } ],
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "64MiB", "block_size": 4096 } ] }
  ],
  "management": { "port": 0 }
}
JSON
{
    echo '#!/bin/bash'
    printf 'HOST_WRONG=%q KEY_GUEST=%q HOST384=%q KEY384=%q\n' "$HOST_WRONG" "$KEY_GUEST" "$HOST384" "$KEY384"
    cat "$GUEST_SCRIPT"
} > "$WORK/tls-guest.sh"

# shellcheck disable=SC2317  # called through check
suite_logged() {  # suite_logged SUITE HOSTNQN
    grep -F "TLS 1.3 $1" "$FERRYD_LOG" | grep -F "identity $2 " | head -2 && return 0
    echo "no 'TLS 1.3 $1 identity $2' line in $FERRYD_LOG"; return 1
}
# shellcheck disable=SC2317
plain_refusal_logged() {
    grep -F 'plain connection to a TLS-required listener' "$FERRYD_LOG" | head -2 && return 0
    echo "no plain-connection refusal in $FERRYD_LOG"; return 1
}
# shellcheck disable=SC2317
wrong_psk_logged() {
    grep -F 'TLS handshake failed' "$FERRYD_LOG" | grep -F "$HOST_WRONG" | head -2 && return 0
    echo "no 'TLS handshake failed' line naming $HOST_WRONG in $FERRYD_LOG"; return 1
}
# shellcheck disable=SC2317
sha384_logged() {
    grep -F 'TLS 1.3 TLS_AES_256_GCM_SHA384' "$FERRYD_LOG" | grep -F "identity $HOST384 " | head -1 && return 0
    grep -F 'bound its SHA-384 PSK with HMAC-SHA256' "$FERRYD_LOG" | grep -F "$HOST384" | head -1 && return 0
    echo "neither a TLS_AES_256_GCM_SHA384 session nor the GnuTLS binder note for $HOST384 in $FERRYD_LOG"
    return 1
}
# shellcheck disable=SC2317
no_key_in_log() {
    local k b
    for k in "$KEY256" "$KEY384" "$KEY_FERRY" "$KEY_GUEST"; do
        b=${k#NVMeTLSkey-1:??:}; b=${b%:}
        if grep -qF "${b:0:24}" "$FERRYD_LOG"; then echo "a configured key is in $FERRYD_LOG"; return 1; fi
    done
}

if check "port $PORT free" require_port_free "$PORT" &&
   check "ferryd starts" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log"; then
    run_initiator tls-sha256 --port "$PORT" --nqn "$NQN" --tls --fio-size 16M || true
    check "ferryd logged TLS_AES_128_GCM_SHA256" suite_logged TLS_AES_128_GCM_SHA256 "$HOST256" || true
    run_initiator tls-refusals --port "$PORT" --nqn "$NQN" --hostnqn "$HOST256" \
        --script "$WORK/tls-guest.sh" || true
    check "ferryd logged the plain connection's refusal" plain_refusal_logged || true
    check "ferryd logged why the wrong PSK failed" wrong_psk_logged || true
    check "ferryd logged the SHA-384 host's session or why it cannot be" sha384_logged || true
    check "no configured key in ferryd's log" no_key_in_log || true
    check "ferryd still running at the end, stops cleanly" stop_ferryd || true
fi
lab_finish
