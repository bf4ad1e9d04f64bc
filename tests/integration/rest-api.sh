#!/bin/bash
# tests/integration/rest-api.sh: the REST API against the real ferryd on loopback (issue 8,
# tests 1 and 4, curl level). ferryd starts with a config holding only a listener; curl creates
# a subsystem, a RAM namespace and an allowed host; ferry-perf --verify passes as that host (and
# is refused as another). ferryd stopped and started on its state file serves the same state
# (GET /api/v1/config equal, same namespace UUIDs) and data path. Then a burst of 500 changes
# is cut by kill -9: the state file must load and hold every change that got a 2xx. Last, the
# API over HTTPS (tls_cert/tls_key, a self-signed certificate): curl with --cacert works, an
# untrusted certificate and plain HTTP do not.
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"

PORT=${PORT:-4446}
PERF=$BUILD/bin/ferry-perf
NQN=nqn.2026-11.io.ferry:rest
HOST=nqn.2014-08.org.nvmexpress:uuid:7d1f0e6a-3c9b-4b1e-8f5a-2a6c4e8b9d01
OTHER_HOST=nqn.2014-08.org.nvmexpress:uuid:7d1f0e6a-3c9b-4b1e-8f5a-2a6c4e8b9d02
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.rest.XXXXXX")
trap 'lab_cleanup >/dev/null 2>&1 || true' EXIT
cat > "$WORK/ferryd.json" <<JSON
{
  // only a listener: everything else comes through the API
  "listeners": [ { "address": "127.0.0.1", "port": $PORT } ],
  "management": { "port": 0 }
}
JSON

URL="" TOKEN=""
# api_setup: the API's URL from the log line, the token from the file it names
api_setup() {
    local line
    line=$(grep -o 'REST API on https\?://[^ ]* (token file [^)]*)' "$FERRYD_LOG" | tail -1)
    [ -n "$line" ] || { echo "no 'REST API on' line in $FERRYD_LOG"; return 1; }
    URL=$(sed -E 's/REST API on (https?:[^ ]*) .*/\1/' <<<"$line")
    TOKEN_FILE=$(sed -E 's/.*\(token file (.*)\)/\1/' <<<"$line")
    TOKEN=$(cat "$TOKEN_FILE")
    echo "API at $URL, token file $TOKEN_FILE"
}
# api METHOD PATH [BODY]: the body goes to $WORK/out, the status to $STATUS
api() {
    local args=(-sS -o "$WORK/out" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $TOKEN" ${CACERT:+--cacert "$CACERT"})
    [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
    STATUS=$(curl "${args[@]}" "$URL$2") || STATUS=000
}
# expect CODE METHOD PATH [BODY]
expect() {
    local want=$1; shift
    api "$@"
    [ "$STATUS" = "$want" ] && return 0
    echo "$1 $2: status $STATUS, expected $want: $(head -c 500 "$WORK/out")"
    return 1
}
json_field() {  # json_field FILE PYTHON-EXPR (d = the document)
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}
same_json() { python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' "$1" "$2" ||
    { echo "differ: $1 $2"; diff <(python3 -m json.tool "$1") <(python3 -m json.tool "$2") | head -20; return 1; }; }
token_file_private() { [ "$(stat -c %a "$TOKEN_FILE")" = 600 ] || { echo "mode $(stat -c %a "$TOKEN_FILE")"; return 1; }; }
token_not_logged() { ! grep -qF "$TOKEN" "$FERRYD_LOG"; }
no_token_is_401() {
    local s; s=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/api/v1/config")
    [ "$s" = 401 ] || { echo "status $s"; return 1; }
}
perf_as() {  # perf_as HOSTNQN [ferry-perf args]
    local h=$1; shift
    "$PERF" -p "$PORT" -n "$NQN" --hostnqn "$h" --verify -t 2 --rw rw --qd 16 "$@"
}
refused_as_other_host() { ! perf_as "$OTHER_HOST" -t 0.5 >"$WORK/refused.out" 2>&1; }

if check "ferryd starts with only a listener" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" &&
   check "API line in the log" api_setup; then
    check "token file is 0600" token_file_private || true
    check "the token is not logged" token_not_logged || true
    check "no token: 401" no_token_is_401 || true
    check "create subsystem" expect 201 POST /api/v1/subsystems "{\"nqn\": \"$NQN\", \"allow_any_host\": false}" || true
    check "create RAM namespace" expect 201 POST "/api/v1/subsystems/$NQN/namespaces" \
        '{"backend": "ram", "size": "64MiB", "block_size": 4096}' || true
    cp "$WORK/out" "$WORK/ns.json"
    check "allow a host" expect 201 POST "/api/v1/subsystems/$NQN/hosts" "{\"nqn\": \"$HOST\"}" || true
    check "ferry-perf --verify as the allowed host" perf_as "$HOST" || true
    check "ferry-perf as another host is refused" refused_as_other_host || true
    check "GET /api/v1/config" expect 200 GET /api/v1/config || true
    cp "$WORK/out" "$WORK/config-before.json"
    UUID=$(json_field "$WORK/ns.json" 'd["uuid"]')
    check "stop ferryd" stop_ferryd || true

    # test 4: the state file (here the --config file) brings back the same state
    if check "ferryd restarts on its state file" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd2.log" &&
       check "API line in the log (restart)" api_setup; then
        check "GET /api/v1/config after the restart" expect 200 GET /api/v1/config || true
        cp "$WORK/out" "$WORK/config-after.json"
        check "config equal before and after the restart" same_json "$WORK/config-before.json" "$WORK/config-after.json" || true
        check "namespace 1 keeps its UUID" expect 200 GET "/api/v1/subsystems/$NQN/namespaces/1" || true
        check "UUID $UUID" test "$(json_field "$WORK/out" 'd["uuid"]')" = "$UUID" || true
        check "ferry-perf --verify after the restart" perf_as "$HOST" || true

        # kill -9 during a burst of 500 changes: hosts added (every fourth change removes the
        # one added just before), null namespaces added; the client logs a change only after its 2xx.
        : > "$WORK/acked"
        python3 - "$URL" "$TOKEN" "$NQN" "$WORK/acked" > "$WORK/burst.out" 2>&1 <<'PY' &
import http.client, json, sys, urllib.parse
url, token, nqn, acked = sys.argv[1:]
host, port = urllib.parse.urlparse(url).hostname, urllib.parse.urlparse(url).port
sub = "/api/v1/subsystems/" + urllib.parse.quote(nqn, safe="")
log = open(acked, "w")
conn = http.client.HTTPConnection(host, port, timeout=10)
def call(method, path, body=None):
    conn.request(method, path, json.dumps(body) if body is not None else None,
                 {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    return r.status
try:
    for i in range(500):
        if i % 10 == 9:
            op, st = f"ns {i}", call("POST", sub + "/namespaces", {"backend": "null", "size": "1MiB", "nsid": 100 + i})
        elif i % 4 == 3:
            h = f"nqn.2026-11.io.ferry:burst-{i - 1}"  # added by the change before
            print("try del " + h, file=log, flush=True)
            op, st = "del " + h, call("DELETE", sub + "/hosts/" + urllib.parse.quote(h, safe=""))
        else:
            h = f"nqn.2026-11.io.ferry:burst-{i}"
            op, st = "add " + h, call("POST", sub + "/hosts", {"nqn": h})
        if st // 100 != 2:
            print(f"{op}: status {st}", file=sys.stderr)
            sys.exit(2)
        print(op, file=log, flush=True)
except (OSError, http.client.HTTPException) as e:
    print(f"stopped by {e!r}")
PY
        burst_pid=$!
        for _ in $(seq 300); do
            [ "$(wc -l < "$WORK/acked" 2>/dev/null || echo 0)" -ge 150 ] && break
            sleep 0.05
        done
        kill -KILL "$FERRYD_PID"
        wait "$FERRYD_PID" 2>/dev/null || true
        FERRYD_PID=""
        wait "$burst_pid" || true
        echo "burst: $(grep -vc '^try' "$WORK/acked") changes acknowledged before kill -9; $(cat "$WORK/burst.out")"
        check "burst ran into the kill, not an error" grep -q "stopped by" "$WORK/burst.out" || true
        check "the state file is JSON" python3 -m json.tool "$WORK/ferryd.json" >/dev/null || true

        state_holds_acked() {
            python3 - "$WORK/config-state.json" "$WORK/acked" "$NQN" <<'PY'
import json, sys
cfg, acked, nqn = json.load(open(sys.argv[1])), open(sys.argv[2]).read().splitlines(), sys.argv[3]
sub = next(s for s in cfg["subsystems"] if s["nqn"] == nqn)
hosts = {h["nqn"] for h in sub["hosts"]}
nsids = {n["nsid"] for n in sub["namespaces"]}
present, absent, tried = set(), set(), set()
for line in acked:
    op, _, what = line.partition(" ")
    if op == "try":
        tried.add(what.split(" ", 1)[1])
    elif op == "add":
        present.add(what)
    elif op == "del":
        present.discard(what); absent.add(what)
    elif op == "ns":
        if 100 + int(what) not in nsids:
            sys.exit(f"namespace {100 + int(what)} acknowledged but not in the state")
# a delete sent but not acknowledged may or may not have happened
bad = [h for h in present - tried if h not in hosts] + [h for h in absent if h in hosts]
if bad:
    sys.exit(f"state differs from the acknowledged changes: {bad[:5]}")
print(f"{len(present)} hosts and {sum(1 for l in acked if l.startswith('ns '))} namespaces as acknowledged")
PY
        }
        if check "ferryd starts on the state file left by kill -9" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd3.log" &&
           check "API line in the log (after kill -9)" api_setup; then
            check "GET /api/v1/config after kill -9" expect 200 GET /api/v1/config || true
            cp "$WORK/out" "$WORK/config-state.json"
            check "the state holds every acknowledged change" state_holds_acked || true
            check "namespace 1 still there" expect 200 GET "/api/v1/subsystems/$NQN/namespaces/1" || true
            check "namespace 1 still has UUID $UUID" test "$(json_field "$WORK/out" 'd["uuid"]')" = "$UUID" || true
            check "ferry-perf --verify after kill -9" perf_as "$HOST" || true
            check "ferryd stops cleanly" stop_ferryd || true
        fi
    fi
fi

# HTTPS: with tls_cert and tls_key the API speaks TLS only (OpenSSL); curl trusts the
# self-signed certificate through --cacert, refuses it without, and plain HTTP gets no answer.
make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/api.key" -out "$WORK/api.crt" 2>/dev/null
}
untrusted_refused() { ! curl -sS -o /dev/null "$URL/healthz" 2>/dev/null; }
plain_http_refused() {
    local s; s=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "${URL/https:/http:}/healthz" 2>/dev/null) || s=000
    [ "$s" != 200 ] || { echo "plain HTTP answered 200"; return 1; }
}
if check "self-signed certificate" make_cert; then
    cat > "$WORK/https.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": $PORT } ],
  "management": { "port": 0, "tls_cert": "$WORK/api.crt", "tls_key": "$WORK/api.key",
                  "token_file": "$WORK/https-token" }
}
JSON
    if check "ferryd starts with HTTPS for the API" start_ferryd "$WORK/https.json" "$WORK/ferryd-https.log" &&
       check "API line names https" api_setup; then
        check "URL is https" test "${URL%%:*}" = https || true
        CACERT=$WORK/api.crt
        check "GET /api/v1/config over HTTPS" expect 200 GET /api/v1/config || true
        check "create a subsystem over HTTPS" expect 201 POST /api/v1/subsystems \
            "{\"nqn\": \"$NQN\", \"allow_any_host\": true}" || true
        unset CACERT
        check "an untrusted certificate is refused by curl" untrusted_refused || true
        check "plain HTTP to the HTTPS port gets no answer" plain_http_refused || true
        check "ferryd stops cleanly (HTTPS)" stop_ferryd || true
    fi
fi

echo "ferryd logs: $WORK/ferryd*.log"
summary
