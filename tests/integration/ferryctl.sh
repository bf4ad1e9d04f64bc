#!/bin/bash
# tests/integration/ferryctl.sh: ferryctl against a live ferryd (issue 8, test 1, ferryctl part).
# ferryd starts with a config holding only an NVMe/TCP listener and the management API on an
# ephemeral port (read back from its "REST API on" log line); ferryctl creates a subsystem, a
# RAM namespace and an allowed host; ferry-perf --verify passes against it (and a host that is
# not allowed is refused); list/show/remove of subsystems, namespaces, listeners and referrals;
# each failure gets its documented exit status and message: the API's 404 message for an
# unknown subsystem (compared with what curl gets), 409, 4xx with a JSON path, 401 for a wrong
# token, no token file, nothing listening, a usage error. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"

PORT=${PORT:-4441}
PERF=$BUILD/bin/ferry-perf
CTL=$BUILD/bin/ferryctl
NQN=nqn.2026-11.io.ferry:ctl
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:0f8fc3c2-8d7e-4e0e-9d5e-6d1b2c3a4f50
OTHER_HOST=nqn.2014-08.org.nvmexpress:uuid:7a1e6c55-2b4d-4c1f-8e3a-9f0d1c2b3a4e
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.ferryctl.XXXXXX")
trap 'lab_cleanup >/dev/null 2>&1 || true' EXIT
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": $PORT } ],
  "management": { "address": "127.0.0.1", "port": 0 }
}
JSON

# ctl ARGS...: ferryctl against this ferryd; stdout in $WORK/out, stderr in $WORK/err, status in $RC
ctl() {
    RC=0
    "$CTL" --url "$URL" --token-file "$TOKEN_FILE" "$@" > "$WORK/out" 2> "$WORK/err" || RC=$?
    if [ "$RC" -ne 0 ]; then sed 's/^/    stderr: /' "$WORK/err"; fi
    return "$RC"
}
# expect_exit CODE ARGS...: ferryctl ARGS exits with CODE (stderr in $WORK/err)
expect_exit() {
    local want=$1; shift
    ctl "$@" >/dev/null || true
    [ "$RC" -eq "$want" ] || { echo "ferryctl $*: exit status $RC, expected $want"; return 1; }
}
out_has() { grep -qE "$1" "$WORK/out" || { echo "stdout lacks /$1/:"; sed 's/^/    /' "$WORK/out"; return 1; }; }
err_has() { grep -qF -- "$1" "$WORK/err" || { echo "stderr lacks '$1':"; sed 's/^/    /' "$WORK/err"; return 1; }; }
json_check() {  # json_check PYTHON_EXPR: evaluated with j = stdout parsed as JSON
    python3 -c "import json,sys; j=json.load(open('$WORK/out')); sys.exit(0 if ($1) else 1)" ||
        { echo "JSON check failed: $1"; head -c 2000 "$WORK/out"; echo; return 1; }
}
perf() {  # perf HOSTNQN ARGS...
    local host=$1; shift
    "$PERF" -p "$PORT" -n "$NQN" --hostnqn "$host" --rw rw --bs 4k --qd 16 "$@"
}

if ! check "ferryd starts (listener + management on port 0)" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log"; then
    summary; exit 1
fi
api_line=$(grep -oE 'ferryd: REST API on https?://[^ ]+ \(token file [^)]+\)' "$WORK/ferryd.log" | head -1 || true)
URL=$(sed -E 's/^ferryd: REST API on ([^ ]+) .*/\1/' <<<"$api_line")
TOKEN_FILE=$(sed -E 's/.*\(token file (.+)\)$/\1/' <<<"$api_line")
if ! check "ferryd logs 'REST API on URL (token file PATH)' with a real port" \
        grep -qE '^https?://[^:]+:[1-9][0-9]*$' <<<"$URL"; then
    echo "log line: '$api_line'"; summary; exit 1
fi
echo "API: $URL, token file $TOKEN_FILE"
check "the token file exists, mode 0600" test "$(stat -c %a "$TOKEN_FILE" 2>/dev/null)" = 600 || true

# ---- create through ferryctl, use it with ferry-perf --verify
check "subsystem add" ctl subsystem add "$NQN" --serial FERRYCTL01 || true
check "ns add (RAM, 64MiB)" ctl --json ns add "$NQN" --backend ram --size 64MiB || true
check "ns add --json gives nsid 1 and a UUID" json_check "j['nsid'] == 1 and len(j['uuid']) == 36" || true
check "host add" ctl host add "$NQN" "$HOSTNQN" || true
check "ferry-perf --verify as the allowed host" perf "$HOSTNQN" --verify -t 2 || true
if perf "$OTHER_HOST" -t 0.5 > "$WORK/other.out" 2>&1; then
    fail_check "a host that is not allowed is refused" "ferry-perf connected"
else
    check "a host that is not allowed is refused" true
fi

# ---- list / show
check "subsystem list shows it" ctl subsystem list || true
check "subsystem list: NQN, 1 host, 1 namespace" out_has "^$NQN +1 +1 " || true
check "subsystem list --json" ctl --json subsystem list || true
check "subsystem list --json holds the subsystem" json_check "any(s['nqn'] == '$NQN' for s in j)" || true
check "subsystem show" ctl subsystem show "$NQN" || true
check "subsystem show: serial, host, RAM namespace of 64 MiB" \
    bash -c "grep -qE '^serial: +FERRYCTL01' '$WORK/out' && grep -qF '$HOSTNQN' '$WORK/out' &&
             grep -qE '^1 +ram +64 ?MiB +4096 ' '$WORK/out'" || true
check "ns add --nsid 5 --block-size 512" ctl ns add "$NQN" --nsid 5 --size 16MiB --block-size 512 || true
check "ns list shows nsid 1 and 5" ctl ns list "$NQN" || true
check "ns list: both namespaces" bash -c "grep -qE '^1 +ram' '$WORK/out' && grep -qE '^5 +ram +16 ?MiB +512 ' '$WORK/out'" || true
check "ferry-perf --verify on nsid 5 (512 B blocks)" perf "$HOSTNQN" --verify --nsid 5 -t 1 || true
check "ns resize 5 to 32MiB" ctl ns resize "$NQN" 5 32MiB || true
check "ns show 5: 32 MiB" bash -c "'$CTL' --url '$URL' --token-file '$TOKEN_FILE' ns show '$NQN' 5 | grep -qE '^5 +ram +32 ?MiB'" || true
check "ns remove 5" ctl ns remove "$NQN" 5 || true
check "subsystem set --allow-any-host false" ctl subsystem set "$NQN" --allow-any-host false || true
# Model and serial are what hosts identify a subsystem by: fixed once a host connected.
check "subsystem set --model after a host connected: exit 1" expect_exit 1 subsystem set "$NQN" --model ferry-test || true
check "subsystem set --model after a host connected: HTTP 409" err_has "HTTP 409" || true
check "subsystem set --model on a fresh subsystem" bash -c "'$CTL' --url '$URL' --token-file '$TOKEN_FILE' subsystem add \
    nqn.2026-11.io.ferry:fresh && '$CTL' --url '$URL' --token-file '$TOKEN_FILE' subsystem set nqn.2026-11.io.ferry:fresh \
    --model ferry-test --serial FRESH1 && '$CTL' --url '$URL' --token-file '$TOKEN_FILE' subsystem show \
    nqn.2026-11.io.ferry:fresh | grep -qE '^model: +ferry-test'" || true
check "a subsystem NQN not in spec form: created with the API's warning" ctl subsystem add testnqn || true
check "the warning is printed" err_has "ferryctl: warning: " || true
check "listener add 127.0.0.1 PORT+1" ctl listener add 127.0.0.1 $((PORT + 1)) || true
check "listener list shows both" bash -c "'$CTL' --url '$URL' --token-file '$TOKEN_FILE' listener list |
    grep -cE '^tcp +127.0.0.1 +($PORT|$((PORT + 1))) +none\$' | grep -qx 2" || true
check "ferry-perf --verify through the new listener" \
    "$PERF" -p $((PORT + 1)) -n "$NQN" --hostnqn "$HOSTNQN" -t 1 --rw rw --bs 4k --qd 8 --verify || true
check "listener remove" ctl listener remove 127.0.0.1 $((PORT + 1)) || true
check "referral add" ctl referral add 127.0.0.2 8009 || true
check "referral list" ctl referral list || true
check "referral list shows it" out_has '^127\.0\.0\.2 +8009$' || true
check "referral remove" ctl referral remove 127.0.0.2 || true
check "controller list" ctl controller list || true
check "config prints the state with the subsystem" ctl config || true
check "config: the subsystem, its host and namespace 1" \
    json_check "any(s['nqn'] == '$NQN' and s['namespaces'][0]['nsid'] == 1 for s in j['subsystems'])" || true
check "stats" ctl stats || true
check "stats --json is JSON" ctl --json stats || true
check "devices" ctl devices || true

# ---- failures: exit status and message
MISSING=nqn.2026-11.io.ferry:missing
check "unknown subsystem: exit 1" expect_exit 1 subsystem show "$MISSING" || true
api_msg=$(curl -s -H "Authorization: Bearer $(cat "$TOKEN_FILE")" "$URL/api/v1/subsystems/$MISSING" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["error"])' 2>/dev/null || true)
check "unknown subsystem: the API's 404 message ('$api_msg')" \
    err_has "GET /api/v1/subsystems/$MISSING: HTTP 404 Not Found: $api_msg" || true
check "ns remove on an unknown subsystem: exit 1" expect_exit 1 ns remove "$MISSING" 1 || true
check "ns remove on an unknown subsystem: HTTP 404" err_has "HTTP 404" || true
check "duplicate subsystem: exit 1" expect_exit 1 subsystem add "$NQN" || true
check "duplicate subsystem: HTTP 409" err_has "POST /api/v1/subsystems: HTTP 409" || true
check "bad size: exit 1" expect_exit 1 ns add "$NQN" --size 1GB || true
check "bad size: HTTP 4xx with the JSON path /size" bash -c "grep -qE 'HTTP 4(00|22) .*\\(at /size\\)' '$WORK/err'" ||
    sed 's/^/    /' "$WORK/err"
echo wrong-token > "$WORK/wrong-token"
RC=0; "$CTL" --url "$URL" --token-file "$WORK/wrong-token" subsystem list > /dev/null 2> "$WORK/err" || RC=$?
check "wrong token: exit 4" test "$RC" -eq 4 || true
check "wrong token: HTTP 401 named" err_has "HTTP 401" || true
RC=0; "$CTL" --url "$URL" --token-file "$WORK/no-such-file" subsystem list > /dev/null 2> "$WORK/err" || RC=$?
check "missing token file: exit 4" test "$RC" -eq 4 || true
RC=0; FERRY_URL=http://127.0.0.1:1 FERRY_TOKEN_FILE=$TOKEN_FILE "$CTL" subsystem list > /dev/null 2> "$WORK/err" || RC=$?
check "nothing listening (FERRY_URL): exit 3" test "$RC" -eq 3 || true
check "nothing listening: 'cannot connect' named" err_has "http://127.0.0.1:1: cannot connect" || true
check "usage error (--backend bogus): exit 2" expect_exit 2 ns add "$NQN" --backend bogus || true

# ---- host keys (tests/integration/keys.sh covers them in full) and listener TLS modes
KEYHOST=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000000c1
DKEY=$(python3 "$REPO/tests/keys/make_test_keys.py" dhchap_01_32 | cut -d' ' -f2)
(umask 077; printf '%s\n' "$DKEY" > "$WORK/host.dhchap")
check "host add --dhchap-key-file" ctl host add "$NQN" "$KEYHOST" --dhchap-key-file "$WORK/host.dhchap" || true
check "host add prints which keys are set" out_has "^$KEYHOST +set +- +-" || true
check "host set-keys --tls-psk-file with a DH-HMAC-CHAP key: the API refuses (exit 1, path /tls_psk)" \
    expect_exit 1 host set-keys "$NQN" "$KEYHOST" --tls-psk-file "$WORK/host.dhchap" || true
check "... at /tls_psk" err_has "(at /tls_psk)" || true
check "host set-keys with nothing to change: usage error (exit 2)" expect_exit 2 host set-keys "$NQN" "$KEYHOST" || true
check "host set-keys --clear-dhchap-key" ctl --json host set-keys "$NQN" "$KEYHOST" --clear-dhchap-key || true
check "host set-keys --json: no key set" json_check "not (j['dhchap_key_set'] or j['dhchap_ctrl_key_set'] or j['tls_psk_set'])" || true
check "host list" ctl host list "$NQN" || true
check "host list: both hosts, no key set" out_has "^$KEYHOST +- +- +-" || true
check "no key in ferryctl's output or ferryd's log" bash -c "! grep -rqF -- '${DKEY:10:40}' '$WORK/out' '$WORK/ferryd.log'" || true
check "host remove (keyed host)" ctl host remove "$NQN" "$KEYHOST" || true
check "listener add --tls required" ctl listener add 127.0.0.1 $((PORT + 1)) --tls required || true
check "listener list shows the TLS mode" ctl listener list || true
check "listener list: required on port $((PORT + 1)), none on $PORT" \
    bash -c "grep -qE '127.0.0.1 +$((PORT + 1)) +required' '$WORK/out' && grep -qE '127.0.0.1 +$PORT +none' '$WORK/out'" || true
check "listener add --tls bogus: usage error (exit 2)" expect_exit 2 listener add 127.0.0.1 $((PORT + 2)) --tls bogus || true
check "listener remove (TLS)" ctl listener remove 127.0.0.1 $((PORT + 1)) || true

# ---- remove
check "host remove" ctl host remove "$NQN" "$HOSTNQN" || true
check "ns remove 1" ctl ns remove "$NQN" 1 || true
check "subsystem remove" ctl subsystem remove "$NQN" || true
check "removed subsystem: show exits 1 with 404" expect_exit 1 subsystem show "$NQN" || true
check "subsystem list after remove" ctl subsystem list || true
check "subsystem list no longer shows it" bash -c "! grep -qF '$NQN' '$WORK/out'" || true
check "ferryd stops cleanly" stop_ferryd || true
echo "ferryd log: $WORK/ferryd.log"
summary
