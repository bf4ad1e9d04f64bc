#!/bin/bash
# tests/lab/run-all.sh: run the lab scenarios one after the other (demo,
# digests-multiqueue, host-access, initiator-loss, file-backend, pcie-vfio, perf-kernel-target,
# live-namespaces, subsystem-recreate, dhchap, tls, secure-channel, ana-multipath, large-transfer,
# gateway-failover by default; one QEMU guest at a time),
# print each one's result and end with the summed "N passed, N failed" line.
# Exit status 0 only if every scenario passed.
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
ALL=(demo digests-multiqueue host-access initiator-loss file-backend pcie-vfio perf-kernel-target live-namespaces subsystem-recreate dhchap tls secure-channel ana-multipath large-transfer gateway-failover)

usage() {
    cat <<EOF2
usage: $(basename "$0") [SCENARIO...]

Runs tests/lab/SCENARIO.sh for each SCENARIO (default, in order: ${ALL[*]}),
streaming their output, then prints one result line per scenario and the total
"N passed, N failed" as the last line. A scenario that ends without such a line
counts as one failure. Scenario output is also kept in a temp dir (printed).

Env: BUILD (ferryd is \$BUILD/bin/ferryd, default <repo>/build), FERRY_LAB (lab
scripts, default <repo>/../shared/lab), NVMF_LAB_CACHE, TMPDIR.
  -h, --help   this text
EOF2
}

SCEN=()
for a in "$@"; do
    case $a in
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; echo "error: unknown option: $a" >&2; exit 2 ;;
        *) a=${a%.sh}; [ -x "$HERE/$a.sh" ] || { echo "error: no scenario $HERE/$a.sh" >&2; exit 2; }
           SCEN+=("$a") ;;
    esac
done
[ ${#SCEN[@]} -gt 0 ] || SCEN=("${ALL[@]}")

OUT=$(mktemp -d "${TMPDIR:-/tmp}/ferry-lab.run-all.XXXXXX")
CHILD="" TAILPID=""
stop_child() {
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true   # the scenario's trap stops ferryd and qemu
        wait "$CHILD" 2>/dev/null || true
    fi
}
# on SIGINT/SIGTERM: stop the running scenario (its own trap cleans up and prints its
# summary), skip the rest, still print the results and the total
ABORT=0
trap 'ABORT=1; stop_child' INT TERM

TP=0 TF=0 RESULTS=()
T0=$SECONDS
for s in "${SCEN[@]}"; do
    log=$OUT/$s.log rc=0 t1=$SECONDS
    echo "##### $s: $HERE/$s.sh (output also in $log)"
    : > "$log"
    "$HERE/$s.sh" > "$log" 2>&1 &
    CHILD=$!
    tail -n +1 -f --pid="$CHILD" "$log" &
    TAILPID=$!
    wait "$CHILD" || rc=$?
    wait "$TAILPID" 2>/dev/null || true
    CHILD="" TAILPID=""
    line=$(tail -n 1 "$log")
    if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # failed without saying so
    else
        p=0 f=1 line="no summary line"
    fi
    TP=$((TP + p)) TF=$((TF + f))
    RESULTS+=("$(printf '%-20s %s (exit %s, %s s)' "$s" "$line" "$rc" $((SECONDS - t1)))")
    if [ "$ABORT" = 1 ]; then
        RESULTS+=("interrupted: skipped the remaining scenarios"); TF=$((TF + 1)); break
    fi
done

echo "##### results ($((SECONDS - T0)) s; logs in $OUT)"
for r in "${RESULTS[@]}"; do echo "$r"; done
echo "$TP passed, $TF failed"
[ "$TF" -eq 0 ]
