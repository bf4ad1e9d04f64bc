#!/bin/bash
# tests/integration/keys.sh: host keys (DH-HMAC-CHAP host and controller secrets, TLS PSKs) and
# listener TLS modes through the configuration file (inline and "*_file"), the REST API (curl)
# and ferryctl (--*-key and --*-key-file); rotation and clearing; a restart from the state file.
# Then every configured key, and its base64 body, is looked for in ferryd's log, GET /config,
# GET /subsystems, GET /subsystems/{nqn}, GET .../hosts, GET /listeners, the state file and
# ferryctl's output (tables and --json): none may be found. Key directory 0700, key files 0600,
# the state file references them; files of rotated keys and removed hosts are gone; a key file
# others may read stops ferryd with a clear error. Keys: tests/keys/make_test_keys.py and the
# lab's `nvme gen-tls-key` PSK. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"

PORT=${PORT:-4447}
PORT2=$((PORT + 1))
CTL=$BUILD/bin/ferryctl
NQN=nqn.2026-11.io.ferry:keys
ENC_NQN=nqn.2026-11.io.ferry%3Akeys
H1=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000000a1   # config, key files
H2=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000000a2   # config, inline
H3=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000000a3   # API
H4=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000000a4   # ferryctl, files
H5=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000000a5   # ferryctl, command line
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.keys.XXXXXX")
trap 'lab_cleanup >/dev/null 2>&1 || true' EXIT

key() { python3 "$REPO/tests/keys/make_test_keys.py" "$1" | cut -d' ' -f2; }
D0=$(key dhchap_00_32) D1=$(key dhchap_01_32) D2=$(key dhchap_02_48) D3=$(key dhchap_03_64)
D1B=$(key dhchap_01_32_b) D3B=$(key dhchap_03_64_b)
P1=$(key psk_01_32) P2=$(key psk_02_48) P1B=$(key psk_01_32_b)
PLAB=$(tr -d '\n' < "${FERRY_LAB_PSK:-$LAB/tls-test-psk.txt}")
ALL_KEYS=("$D0" "$D1" "$D2" "$D3" "$D1B" "$D3B" "$P1" "$P2" "$P1B" "$PLAB")

# Key files an operator wrote (0600), referenced from the config by relative path.
mkdir -p "$WORK/etc/host-keys" "$WORK/state" "$WORK/ctl-keys"
put_key() { (umask 077; printf '%s\n' "$2" > "$1"); }
put_key "$WORK/etc/host-keys/h1.dhchap" "$D1"
put_key "$WORK/etc/host-keys/h1.ctrl" "$D2"
put_key "$WORK/etc/host-keys/h1.psk" "$PLAB"
put_key "$WORK/ctl-keys/h4.dhchap" "$D3"
put_key "$WORK/ctl-keys/h4.ctrl" "$D0"
put_key "$WORK/ctl-keys/h4.psk" "$P2"
put_key "$WORK/ctl-keys/h1.rotated" "$D1B"
cat > "$WORK/etc/ferry.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": $PORT, "tls": "allowed" } ],
  "subsystems": [ { "nqn": "$NQN", "hosts": [
      { "nqn": "$H1", "dhchap_key_file": "host-keys/h1.dhchap", "dhchap_ctrl_key_file": "host-keys/h1.ctrl",
        "tls_psk_file": "host-keys/h1.psk" },
      { "nqn": "$H2", "dhchap_key": "$D0", "tls_psk": "$P1" } ],
    "namespaces": [ { "nsid": 1, "size": "16MiB" } ] } ],
  "management": { "address": "127.0.0.1", "port": 0 }
}
JSON
chmod 600 "$WORK/etc/ferry.json"
STATE=$WORK/state/ferryd.json
FERRYD_ARGS=(--state-file "$STATE")
LOGS=()

start() {  # start LOGNAME: ferryd from the state file when there is one; sets URL, TOKEN_FILE
    LOGS+=("$WORK/$1")
    start_ferryd "$WORK/etc/ferry.json" "$WORK/$1" "${FERRYD_ARGS[@]}" || return 1
    local line
    line=$(grep -oE 'ferryd: REST API on https?://[^ ]+ \(token file [^)]+\)' "$WORK/$1" | head -1 || true)
    URL=$(sed -E 's/^ferryd: REST API on ([^ ]+) .*/\1/' <<<"$line")
    TOKEN_FILE=$(sed -E 's/.*\(token file (.+)\)$/\1/' <<<"$line")
    [ -n "$URL" ]
}
N=0
SEEN=$WORK/seen  # every answer and output, searched for keys at the end
mkdir -p "$SEEN"
api() {  # api METHOD PATH [BODY]: curl; body in $WORK/out (and kept), status in $STATUS
    local args=(-s -o "$WORK/out" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $(cat "$TOKEN_FILE")")
    [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
    STATUS=$(curl "${args[@]}" "$URL/api/v1$2")
    N=$((N + 1)); cp "$WORK/out" "$SEEN/api.$N"
}
ctl() {  # ctl ARGS...: ferryctl; stdout in $WORK/out (and kept)
    RC=0
    "$CTL" --url "$URL" --token-file "$TOKEN_FILE" "$@" > "$WORK/out" 2> "$WORK/err" || RC=$?
    N=$((N + 1)); cp "$WORK/out" "$SEEN/ctl.$N"; cp "$WORK/err" "$SEEN/ctl-err.$N"
    [ "$RC" -eq 0 ] || { sed 's/^/    stderr: /' "$WORK/err"; return 1; }
}
status_is() { [ "$STATUS" = "$1" ] || { echo "HTTP $STATUS, expected $1:"; head -c 600 "$WORK/out"; echo; return 1; }; }
json_check() {  # json_check PYTHON_EXPR (j = $WORK/out as JSON)
    python3 -c "import json,sys; j=json.load(open('$WORK/out')); sys.exit(0 if ($1) else 1)" ||
        { echo "JSON check failed: $1"; head -c 1500 "$WORK/out"; echo; return 1; }
}
# host_keys HOSTNQN D C P: GET .../hosts/HOSTNQN says dhchap_key_set D, dhchap_ctrl_key_set C, tls_psk_set P
host_keys() {
    api GET "/subsystems/$ENC_NQN/hosts/${1//:/%3A}"
    status_is 200 && json_check "j['dhchap_key_set'] == $2 and j['dhchap_ctrl_key_set'] == $3 and j['tls_psk_set'] == $4"
}
# state_refs: "HOST FIELD PATH" per key reference of the state file
state_refs() {
    python3 - "$STATE" <<'PY'
import json, sys
for s in json.load(open(sys.argv[1]))['subsystems']:
    for h in s.get('hosts', []):
        if isinstance(h, dict):
            for k, v in sorted(h.items()):
                if k.endswith('_file'):
                    print(h['nqn'], k[:-5], v)
PY
}
# key_in_state HOST FIELD KEY: the state file references a file holding KEY for HOST's FIELD
key_in_state() {
    local path
    path=$(state_refs | awk -v h="$1" -v f="$2" '$1 == h && $2 == f {print $3}')
    [ -n "$path" ] || { echo "no $2 reference for $1 in the state file"; return 1; }
    case $path in /*) ;; *) path=$(dirname "$STATE")/$path ;; esac
    [ "$(cat "$path")" = "$3" ] || { echo "$path does not hold the expected key"; return 1; }
}
modes_ok() {  # key directory 0700, every file in it 0600, one file per reference
    local d=$WORK/state/keys bad=0 f
    [ "$(stat -c %a "$d")" = 700 ] || { echo "key directory mode $(stat -c %a "$d")"; bad=1; }
    for f in "$d"/*; do
        [ "$(stat -c %a "$f")" = 600 ] || { echo "$f mode $(stat -c %a "$f")"; bad=1; }
    done
    local files refs
    files=$(find "$d" -type f | wc -l); refs=$(state_refs | wc -l)
    [ "$files" -eq "$refs" ] || { echo "$files key files for $refs references"; bad=1; }
    return $bad
}

# ---- 1. from the config file: key files and inline keys; listener TLS mode
if ! check "ferryd starts with keys from files and inline" start ferryd.1.log; then summary; exit 1; fi
check "host 1 (key files): all three keys set" host_keys "$H1" True True True || true
check "host 2 (inline): host key and PSK set, no controller key" host_keys "$H2" True False True || true
api GET /listeners
check "GET /listeners: tls allowed" json_check "j[0]['tls'] == 'allowed'" || true

# ---- 2. the API: keys in POST, refusals that quote no key
api POST "/subsystems/$ENC_NQN/hosts" "{\"nqn\": \"$H3\", \"dhchap_key\": \"$D2\", \"dhchap_ctrl_key\": \"$D3\", \"tls_psk\": \"$P1B\"}"
check "API: host 3 added with keys (201)" status_is 201 || true
check "API: the answer says which keys are set" json_check "j == {'nqn': '$H3', 'dhchap_key_set': True, 'dhchap_ctrl_key_set': True, 'tls_psk_set': True}" || true
BAD_KEY="${D1:0:12}X${D1:13}"
api POST "/subsystems/$ENC_NQN/hosts" "{\"nqn\": \"nqn.2026-11.io.h:bad\", \"dhchap_key\": \"$BAD_KEY\"}"
check "API: a damaged key gets 422 at /dhchap_key" bash -c "[ $STATUS = 422 ] && grep -q '\"path\": \"/dhchap_key\"' '$WORK/out'" || true
check "API: the refusal does not quote the key" bash -c "! grep -qF -- '${BAD_KEY:10:20}' '$WORK/out'" || true
api POST "/subsystems/$ENC_NQN/hosts" "{\"nqn\": \"nqn.2026-11.io.h:bad\", \"dhchap_ctrl_key\": \"$D1\"}"
check "API: a controller key without a host key gets 422" status_is 422 || true
api POST "/subsystems/$ENC_NQN/hosts" "{\"nqn\": \"nqn.2026-11.io.h:bad\", \"tls_psk_file\": \"$WORK/ctl-keys/h4.psk\"}"
check "API: a key file in a request body gets 422 (ferryd reads no file for a client)" status_is 422 || true

# ---- 3. ferryctl: --*-file and the command line; listener --tls required
check "ferryctl host add with --*-key-file" ctl host add "$NQN" "$H4" --dhchap-key-file "$WORK/ctl-keys/h4.dhchap" \
    --dhchap-ctrl-key-file "$WORK/ctl-keys/h4.ctrl" --tls-psk-file "$WORK/ctl-keys/h4.psk" || true
check "ferryctl --json host add with --tls-psk on the command line" ctl --json host add "$NQN" "$H5" --tls-psk "$P1" || true
check "ferryctl --json: tls_psk_set true, dhchap_key_set false" json_check "j['tls_psk_set'] and not j['dhchap_key_set']" || true
check "host 4: all three keys set" host_keys "$H4" True True True || true
check "ferryctl listener add --tls required" ctl listener add 127.0.0.1 "$PORT2" --tls required || true
ctl listener list || true
check "ferryctl listener list: $PORT allowed, $PORT2 required" bash -c "grep -qE '127.0.0.1 +$PORT +allowed' '$WORK/out' && grep -qE '127.0.0.1 +$PORT2 +required' '$WORK/out'" || true
ctl host list "$NQN" || true
check "ferryctl host list: host 2 has dhchap and PSK, no controller key" grep -qE "^$H2 +set +- +set" "$WORK/out" || true
check "ferryctl host add without --dhchap-key but --dhchap-ctrl-key: refused (exit 1)" \
    bash -c "! '$CTL' --url '$URL' --token-file '$TOKEN_FILE' host add '$NQN' nqn.2026-11.io.h:x --dhchap-ctrl-key '$D1' 2>/dev/null" || true
check "state file references key files" modes_ok || true

# ---- 4. rotation and clearing
cp -r "$WORK/state/keys" "$WORK/keys.before"
check "ferryctl host set-keys: host 1's DH-HMAC-CHAP key from a file" ctl host set-keys "$NQN" "$H1" --dhchap-key-file "$WORK/ctl-keys/h1.rotated" || true
check "ferryctl host set-keys --clear-tls-psk (host 2)" ctl host set-keys "$NQN" "$H2" --clear-tls-psk || true
check "host 2: PSK cleared, host key kept" host_keys "$H2" True False False || true
api PATCH "/subsystems/$ENC_NQN/hosts/${H3//:/%3A}" "{\"dhchap_key\": \"$D3B\", \"dhchap_ctrl_key\": null}"
check "API PATCH: host 3's host key replaced, controller key cleared" status_is 200 || true
check "host 3: host key and PSK, no controller key" host_keys "$H3" True False True || true
api PATCH "/subsystems/$ENC_NQN/hosts/${H3//:/%3A}" "{\"dhchap_key\": null}"
check "API PATCH: host 3's host key cleared (no controller key left)" status_is 200 || true
api PATCH "/subsystems/$ENC_NQN/hosts/${H1//:/%3A}" "{\"dhchap_key\": null}"
check "API PATCH: clearing host 1's host key while its controller key stays: 422" status_is 422 || true
check "rotated: host 1's dhchap_key file holds the new key" key_in_state "$H1" dhchap_key "$D1B" || true
refs_are() {  # refs_are HOST "FIELD..." : the state file references exactly these keys of HOST
    local got
    got=$(state_refs | awk -v h="$1" '$1 == h {print $2}' | sort | tr '\n' ' ')
    [ "$got" = "$2 " ] || { echo "$1: references '$got', expected '$2 '"; return 1; }
}
check "host 3: the state file references its PSK only" refs_are "$H3" "tls_psk" || true
check "host 2: the state file references its host key only" refs_are "$H2" "dhchap_key" || true
check "host 1: the state file references all three" refs_are "$H1" "dhchap_ctrl_key dhchap_key tls_psk" || true
gone=0
for f in "$WORK/keys.before"/*; do
    [ -e "$WORK/state/keys/$(basename "$f")" ] || gone=$((gone + 1))
done
# host 1 dhchap (rotated), host 2 PSK (cleared), host 3 dhchap twice (rotated, then cleared) and ctrl (cleared)
check "files of rotated and cleared keys are deleted (4 of the earlier files)" test "$gone" -eq 4 || true
check "modes and one file per reference after rotation" modes_ok || true
ctl host remove "$NQN" "$H5" || true
check "host 5 removed: its key file is deleted" modes_ok || true

# ---- 5. restart from the state file
check "ferryd stops" stop_ferryd || true
if ! check "ferryd restarts from the state file" start ferryd.2.log; then summary; exit 1; fi
check "after restart: host 1 keys (rotated host key, controller key, PSK)" host_keys "$H1" True True True || true
check "after restart: host 2 host key only" host_keys "$H2" True False False || true
check "after restart: host 3 PSK only" host_keys "$H3" False False True || true
check "after restart: host 4 keys" host_keys "$H4" True True True || true
check "after restart: host 1's key file still holds the rotated key" key_in_state "$H1" dhchap_key "$D1B" || true
check "after restart: host 4's PSK file holds its PSK" key_in_state "$H4" tls_psk "$P2" || true
api GET /listeners
check "after restart: listener TLS modes kept" json_check "sorted(l['tls'] for l in j) == ['allowed', 'required']" || true
ls "$WORK/state/keys" > "$WORK/keys.restart"
api POST "/subsystems/$ENC_NQN/namespaces" '{"size": "1MiB"}'
check "a change after restart keeps the key files as they are (adopted, not rewritten)" \
    bash -c "[ $STATUS = 201 ] && ls '$WORK/state/keys' | cmp -s - '$WORK/keys.restart'" || true

# ---- 6. everything a user or log can see, searched for every key
api GET /config; api GET /subsystems; api GET "/subsystems/$ENC_NQN"; api GET "/subsystems/$ENC_NQN/hosts"; api GET /listeners
ctl config || true; ctl --json config || true
ctl subsystem list || true
ctl subsystem show "$NQN" || true
check "ferryctl subsystem show says which keys each host has" grep -qF "$H4 (keys: dhchap_key, dhchap_ctrl_key, tls_psk)" "$WORK/out" || true
ctl --json subsystem show "$NQN" || true
ctl host list "$NQN" || true; ctl --json host list "$NQN" || true; ctl host show "$NQN" "$H1" || true
ctl listener list || true; ctl --json listener list || true
cp "$STATE" "$SEEN/state.json"
leaks() {
    local k body found=0 i=0
    for k in "${ALL_KEYS[@]}"; do
        i=$((i + 1))
        body=${k#*:*:}; body=${body%:}
        if grep -rqF -- "$body" "$SEEN" "${LOGS[@]}"; then
            echo "key #$((i)) (${k:0:10}...) found in: $(grep -rlF -- "$body" "$SEEN" "${LOGS[@]}" | tr '\n' ' ')"; found=1
        fi
    done
    return $found
}
check "no key and no key's base64 body in ferryd's logs, API answers, ferryctl output or the state file ($N answers)" leaks || true
check "the state file holds *_file references only" bash -c "grep -q '_file' '$STATE' && ! grep -qE '\"(dhchap_key|dhchap_ctrl_key|tls_psk)\"' '$STATE'" || true
check "ferryd stops" stop_ferryd || true

# ---- 7. a key file others may read: refused at startup, with a clear error and no key
chmod 644 "$WORK/etc/host-keys/h1.psk"
rm -rf "$WORK/state"   # start from the config again
RC=0; timeout 20 "$FERRYD" --config "$WORK/etc/ferry.json" > "$WORK/ferryd.refused.log" 2>&1 || RC=$?   # a ferryd that starts is stopped after 20 s
check "a key file with mode 0644: ferryd exits with status 2" test "$RC" -eq 2 || true
check "... naming the file, the mode and the JSON path" \
    grep -qE "/subsystems/0/hosts/0/tls_psk_file: key file .*h1.psk: mode 0644 .*chmod 600" "$WORK/ferryd.refused.log" || true
LOGS+=("$WORK/ferryd.refused.log")
check "... without the key" leaks || true

echo "ferryd logs: ${LOGS[*]}"
summary
