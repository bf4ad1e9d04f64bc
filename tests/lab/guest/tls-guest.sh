# tests/lab/guest/tls-guest.sh (run by tests/lab/tls.sh, which prepends HOST_WRONG and
# KEY_GUEST, HOST384, KEY384): against a TLS-required listener, a plain connect is refused, a
# connect with a PSK other than ferryd's fails, and a SHA-384 PSK connects (with fio verify)
# when tlshd's GnuTLS is >= 3.8.11 and fails when older (it binds PSKs with HMAC-SHA256 only).
# shellcheck shell=bash
source /lab/lib.sh

plain_connect_refused() {
    if nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" --hostnqn "$LAB_HOSTNQN" 2>&1; then
        echo "plain connect succeeded"; nvme disconnect -n "$LAB_NQN"; return 1
    fi
}
plain_discover_refused() {
    if nvme discover -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" --hostnqn "$LAB_HOSTNQN" 2>&1; then
        echo "plain discover succeeded"; return 1
    fi
}
wrong_psk_refused() {
    tls_setup_keys "$KEY_GUEST" "$HOST_WRONG" "$LAB_NQN" || return 1
    if nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" --hostnqn "$HOST_WRONG" --tls 2>&1; then
        echo "connect with the wrong PSK succeeded"; nvme disconnect -n "$LAB_NQN"; return 1
    fi
}

gnutls_at_least_3_8_11() {
    local v
    v=$(dpkg-query -W -f='${Version}' libgnutls30t64 2>/dev/null || dpkg-query -W -f='${Version}' libgnutls30 2>/dev/null)
    echo "guest GnuTLS: ${v:-unknown}"
    dpkg --compare-versions "${v:-0}" ge 3.8.11
}
sha384_psk() {
    tls_setup_keys "$KEY384" "$HOST384" "$LAB_NQN" nqn.2014-08.org.nvmexpress.discovery || return 1
    if gnutls_at_least_3_8_11; then
        LAB_HOSTNQN=$HOST384 nvmf_scenario "$LAB_ADDR" "$LAB_PORT" "$LAB_NQN" "$HOST384" 1 16M
    elif nvme connect -t tcp -a "$LAB_ADDR" -s "$LAB_PORT" -n "$LAB_NQN" --hostnqn "$HOST384" --tls 2>&1; then
        echo "connected with a SHA-384 PSK through GnuTLS < 3.8.11 (unexpected)"; nvme disconnect -n "$LAB_NQN"; return 1
    else
        echo "SHA-384 PSK refused as expected with GnuTLS < 3.8.11"
    fi
}

set_host_ids "$LAB_HOSTNQN"
step plain-connect-refused plain_connect_refused || true
step plain-discover-refused plain_discover_refused || true
step wrong-psk-refused wrong_psk_refused || true
step sha384-psk sha384_psk || true
summary
