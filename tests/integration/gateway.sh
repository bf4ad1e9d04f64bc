#!/bin/bash
# tests/integration/gateway.sh: a gateway group of two ferryd processes (A on :4447, B on :4448)
# serving one rbd image in one subsystem, coordinated through a RADOS object
# (mgmt/gateway_group.hh, deploy/gateway-group.md). Uses the cluster named by CEPH_CONF and
# CEPH_POOL (tests/run starts one), or starts and stops its own. Without Ceph it fails.
#   - a gateway whose CNTLIDs overlap a member's is refused (exit 2, naming both)
#   - A owns ANA group 1 (the image), B its own group 2; ferry-perf --verify writes through A
#   - ferry_gateway_tests through B: CNTLID in B's range, Identify CMIC/ANATT/ANAGRPID/NMIC, the
#     ANA log (group 1 inaccessible), 302h on a read; then it kills A with -9 and waits for
#     the ANA change AEN, group 1 optimized within 2 x ANATT, I/O through B
#   - B broke A's lock (A's client blocklisted); what was written through A reads back
#     through B (ferry-perf --verify-state)
#   - A restarted asks for its group back and B hands it over cleanly; SIGTERM of B hands
#     group 2 to A; data still verifies through A
#   - A paused (SIGSTOP) past dead_after: the restarted B takes group 1 and breaks A's lock;
#     resumed, A knows it is fenced and leaves the group to B; data verifies through B
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"

PORT_A=${PORT_A:-4447}
PORT_B=${PORT_B:-4448}
PERF=$BUILD/bin/ferry-perf
MICRO=${CEPH_MICRO:-$(dirname "$(readlink -f "$0")")/../../../shared/ceph/micro}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.gateway.XXXXXX")
NQN=nqn.2026-11.io.ferry:gateway
GROUP=int-$$
own_cluster=0
pids=()
stop_all() {
    local p
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_all
    if [ -n "${CEPH_CONF:-}" ]; then
        timeout 60 rbd -c "$CEPH_CONF" -p "$CEPH_POOL" rm "$IMAGE" >/dev/null 2>&1 || true
        timeout 30 rados -c "$CEPH_CONF" -p "$CEPH_POOL" rm "ferry.gateway_group.$GROUP" >/dev/null 2>&1 || true
    fi
    if [ -n "${CEPH_CONF:-}" ]; then timeout 60 rbd -c "$CEPH_CONF" -p "$CEPH_POOL" rm "$IMAGE-2" >/dev/null 2>&1 || true; fi
    if [ "$own_cluster" = 1 ]; then CEPH_MICRO_DIR=$WORK/ceph "$MICRO" stop >/dev/null 2>&1 || true; fi
}
IMAGE=ferry-gw-$$
trap cleanup EXIT

if [ -z "${CEPH_CONF:-}" ] || [ -z "${CEPH_POOL:-}" ]; then
    own_cluster=1
    if check "Ceph micro cluster starts ($MICRO)" env CEPH_MICRO_DIR="$WORK/ceph" CEPH_MICRO_MGR=0 \
            CEPH_MICRO_IMAGE="" "$MICRO" start; then
        eval "$(CEPH_MICRO_DIR=$WORK/ceph "$MICRO" env)"
    fi
fi
if [ -z "${CEPH_CONF:-}" ] || [ ! -r "$CEPH_CONF" ]; then
    fail_check "a Ceph cluster to test against" "no readable CEPH_CONF (is Ceph installed? deploy/install-deps --test)"
    summary
    exit 0
fi
echo "cluster: $CEPH_CONF, pool $CEPH_POOL, image $IMAGE, group object ferry.gateway_group.$GROUP"
check "rbd create $CEPH_POOL/$IMAGE (128 MiB, exclusive-lock)" \
    timeout 60 rbd -c "$CEPH_CONF" -p "$CEPH_POOL" create --size 128M --image-feature layering,exclusive-lock "$IMAGE" || true

# gateway NAME PORT HOME_GROUP CNTLID_MIN CNTLID_MAX [NAMESPACES [MANAGEMENT]]: its ferryd config
# and gateway file. A gateway that lists no namespaces gets the group's map.
NS1='{ "nsid": 1, "backend": "rbd", "pool": "'$CEPH_POOL'", "image": "'$IMAGE'", "ceph_conf": "'$CEPH_CONF'", "ana_group": 1 }'
gateway() {
    local management=${7:-'{ "enabled": false }'}
    cat > "$WORK/$1.json" <<JSON
{ "listeners": [ { "address": "127.0.0.1", "port": $2 } ],
  "subsystems": [ { "nqn": "$NQN", "allow_any_host": true, "namespaces": [ ${6-$NS1} ] } ],
  "management": $management }
JSON
    cat > "$WORK/gw-$1.json" <<JSON
{ "group": "$GROUP", "name": "$1", "subsystem": "$NQN", "ana_group": $3,
  "cntlid_min": $4, "cntlid_max": $5, "pool": "$CEPH_POOL", "ceph_conf": "$CEPH_CONF" }
JSON
}
gateway gw-a "$PORT_A" 1 1 1000 "$NS1" '{ "port": 0 }'
gateway gw-b "$PORT_B" 2 1001 2000 ""
gateway gw-c 4449 3 900 1100

log_has() { grep -qF "$2" "$1"; }
wait_log() {  # wait_log FILE TEXT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do log_has "$1" "$2" && return 0; sleep 0.1; done
    echo "no '$2' in $1 after $3 s"; tail -5 "$1"; return 1
}
PID=""
start_gw() {  # start_gw NAME LOG: sets PID
    "$BUILD/bin/ferryd" -c "$WORK/$1.json" --gateway "$WORK/gw-$1.json" --idle-spin-us 0 > "$2" 2>&1 &
    PID=$!
    pids+=("$PID")
    wait_log "$2" "ferryd: ready" 30
}

if check "gateway A starts" start_gw gw-a "$WORK/a.log"; then PID_A=$PID; fi
check "A takes its ANA group 1 (nobody owned it)" wait_log "$WORK/a.log" "ANA group 1 -> optimized" 15 || true
if check "gateway B starts" start_gw gw-b "$WORK/b.log"; then PID_B=$PID; fi
check "B takes its ANA group 2" wait_log "$WORK/b.log" "ANA group 2 -> optimized" 15 || true
check "B (no namespace in its file) took namespace 1 from the group's map" \
    grep -q "namespace 1 added from the group's namespace map" "$WORK/b.log" || true

# A namespace added through A's REST API appears on B, and goes when it is removed there.
API_PORT=$(sed -n 's|.*ferryd: REST API on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$WORK/a.log" | head -1)
api() {  # api METHOD PATH [BODY]: curl against A's REST API, prints the status
    curl -sS -o "$WORK/api.out" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $(cat "$WORK/api-token")" \
        -H 'Content-Type: application/json' ${3:+-d "$3"} "http://127.0.0.1:$API_PORT/api/v1$2"
}
timeout 60 rbd -c "$CEPH_CONF" -p "$CEPH_POOL" create --size 16M "$IMAGE-2" || true
check "POST namespace 2 (image $IMAGE-2) through A's REST API" test "$(api POST "/subsystems/$NQN/namespaces" \
    '{"nsid": 2, "backend": "rbd", "pool": "'"$CEPH_POOL"'", "image": "'"$IMAGE-2"'", "ceph_conf": "'"$CEPH_CONF"'", "ana_group": 1}')" = 201 || cat "$WORK/api.out"
check "B adds namespace 2" wait_log "$WORK/b.log" "namespace 2 added through another gateway" 15 || true
check "DELETE namespace 2 through A's REST API" test "$(api DELETE "/subsystems/$NQN/namespaces/2")" = 204 || cat "$WORK/api.out"
check "B removes namespace 2" wait_log "$WORK/b.log" "namespace 2 was removed through another gateway" 15 || true
# The live states the group gives A's listener (not configuration): group 1 (namespace 1) optimized.
check "GET listeners on A shows the gateway group's live ANA states" test "$(api GET /listeners)" = 200 || true
check "... group 1 optimized, run by gw-a" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))[0]["ana_managed"]
sys.exit(0 if m["groups"] == {"1": "optimized"} and "gw-a" in m["by"] else f"ana_managed: {m}")' "$WORK/api.out" || true

# CNTLIDs 900..1100 overlap both: refused before it serves.
st=0
"$BUILD/bin/ferryd" -c "$WORK/gw-c.json" --gateway "$WORK/gw-gw-c.json" > "$WORK/c.log" 2>&1 || st=$?
check "a gateway with overlapping CNTLIDs exits 2" test "$st" = 2 || true
check "... naming the clash" grep -q "CNTLIDs 900..1100 overlap gateway gw-" "$WORK/c.log" || true
# A second live gateway of A's name: refused (they would fence each other forever).
sed 's/"name": "gw-c"/"name": "gw-a"/' "$WORK/gw-gw-c.json" > "$WORK/gw-dup.json"
st=0
"$BUILD/bin/ferryd" -c "$WORK/gw-c.json" --gateway "$WORK/gw-dup.json" > "$WORK/dup.log" 2>&1 || st=$?
check "a second live gateway named gw-a exits 2" test "$st" = 2 || true
check "... saying the name is in use" grep -q "another gateway named gw-a is alive" "$WORK/dup.log" || true

rm -f "$WORK/state"
check "ferry-perf --verify writes through A (state saved)" "$PERF" -p "$PORT_A" -n "$NQN" --verify -t 3 \
    --rw randwrite --bs 4k --qd 16 --size 32m --verify-state "$WORK/state" || true
check "ferry-perf 128k writes through A (state saved)" "$PERF" -p "$PORT_A" -n "$NQN" --verify -t 2 \
    --rw write --bs 128k --qd 4 --size 32m --offset 32m --verify-state "$WORK/state2" || true

check "ferry_gateway_tests: through B, kill -9 A, B takes over" env GW_NQN="$NQN" GW_PORT_B="$PORT_B" \
    GW_PID_A="${PID_A:-0}" GW_CNTLID_MIN_B=1001 GW_CNTLID_MAX_B=2000 timeout 120 "$BUILD/bin/ferry_gateway_tests" || true
check "B judged A dead" grep -q "gateway gw-a is dead" "$WORK/b.log" || true
check "B broke A's lock on the image (A blocklisted)" grep -q "broke the lock of rbd image" "$WORK/b.log" || true
check "writes made through A before the kill read back through B" "$PERF" -p "$PORT_B" -n "$NQN" --verify \
    -t 2 --rw randread --bs 4k --qd 16 --size 32m --verify-state "$WORK/state" || true
check "... and the 128k ones" "$PERF" -p "$PORT_B" -n "$NQN" --verify -t 2 --rw read --bs 128k --qd 4 \
    --size 32m --offset 32m --verify-state "$WORK/state2" || true

# A comes back: it asks for group 1, B hands it over (inaccessible, lock released), A takes it.
if check "gateway A restarts" start_gw gw-a "$WORK/a2.log"; then PID_A=$PID; fi
check "B hands group 1 back to A" wait_log "$WORK/b.log" "hands ANA group 1 to gateway gw-a" 20 || true
check "A serves group 1 again" wait_log "$WORK/a2.log" "ANA group 1 -> optimized" 20 || true
check "data still verifies through A (reads and writes)" "$PERF" -p "$PORT_A" -n "$NQN" --verify -t 2 --rw rw \
    --bs 4k --qd 8 --size 32m --verify-state "$WORK/state" || true
# B stops cleanly: its group 2 goes to A.
kill -TERM "${PID_B:-0}" 2>/dev/null || true
st=0; wait "${PID_B:-0}" 2>/dev/null || st=$?
check "B exits 0 on SIGTERM" test "$st" = 0 || true
check "B handed group 2 to A as it stopped" grep -q "hands ANA group 2 to gateway gw-a (this gateway stops)" "$WORK/b.log" || true
check "A took group 2" wait_log "$WORK/a2.log" "ANA group 2 -> optimized" 10 || true

# A paused past dead_after (not dead): B (restarted) takes group 1 and breaks A's lock, which
# blocklists A's image client. Resumed, A must see it lost the group, call itself fenced and
# leave it to B (not ask for it back, not take group 2's images while fenced).
if check "gateway B restarts" start_gw gw-b "$WORK/b2.log"; then PID_B=$PID; fi
check "B gets its group 2 back from A" wait_log "$WORK/b2.log" "ANA group 2 -> optimized" 20 || true
check "SIGSTOP gateway A" kill -STOP "${PID_A:-0}" || true
check "B takes group 1 from the paused A" wait_log "$WORK/b2.log" "takes ANA group 1 over from dead gateway gw-a" 20 || true
check "B broke the paused A's lock" wait_log "$WORK/b2.log" "broke the lock of rbd image" 20 || true
a_at=$(stat -c %s "$WORK/a2.log"); b_at=$(stat -c %s "$WORK/b2.log")
check "SIGCONT gateway A" kill -CONT "${PID_A:-0}" || true
check "A, resumed, knows it was taken over" wait_log "$WORK/a2.log" "took ANA group 1 over (this gateway was judged dead)" 20 || true
sleep 4
check "A, fenced, did not ask for group 1 back" \
    bash -c "! tail -c +$((a_at + 1)) '$WORK/a2.log' | grep -q 'asks gateway gw-b to hand its home ANA group 1 back'" || true
check "B still serves group 1 (no hand-back)" \
    bash -c "! tail -c +$((b_at + 1)) '$WORK/b2.log' | grep -q 'hands ANA group 1 to gateway gw-a'" || true
check "data written through A reads back through B after the pause" "$PERF" -p "$PORT_B" -n "$NQN" --verify -t 2 \
    --rw rw --bs 4k --qd 8 --size 32m --verify-state "$WORK/state" || true
stop_all
summary
