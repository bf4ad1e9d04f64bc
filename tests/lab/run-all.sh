#!/bin/bash
# tests/lab/run-all.sh: run the lab scenarios one after the other (demo,
# digests-multiqueue, host-access, initiator-loss, file-backend, pcie-vfio, perf-kernel-target,
# live-namespaces, subsystem-recreate, dhchap, tls, secure-channel, ana-multipath, large-transfer,
# controller-reset, gateway-failover by default; one QEMU guest at a time),
# print each one's result and end with the summed "N passed, N failed" line.
# Exit status 0 only if every scenario passed.
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
SCEN_DIR=${LAB_SCENARIO_DIR:-$HERE}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"     # guest_kernel_crash (sourcing it only defines functions)
ALL=(demo digests-multiqueue host-access initiator-loss file-backend pcie-vfio perf-kernel-target live-namespaces subsystem-recreate dhchap tls secure-channel ana-multipath large-transfer controller-reset gateway-failover)

usage() {
    cat <<EOF2
usage: $(basename "$0") [SCENARIO...]

Runs tests/lab/SCENARIO.sh for each SCENARIO (default, in order: ${ALL[*]}),
streaming their output, then prints one result line per scenario and the total
"N passed, N failed" as the last line. A scenario that ends without such a line
counts as one failure. Scenario output is also kept in a temp dir (printed).

A scenario that failed while a guest kernel died outside nvme code (a TCG
emulation fault such as a double fault in the slab allocator under fio's stat(),
seen once in CI; no frame, module line aside, and no process of the report names
nvme) runs once more and the second run counts; the first run's log is kept and
the rerun is named in the results. Any crash report that names nvme counts.
The failed checks of the counted runs are listed before the results.

Env: BUILD (ferryd is \$BUILD/bin/ferryd, default <repo>/build), FERRY_LAB (lab
scripts, default <repo>/../shared/lab), NVMF_LAB_CACHE, TMPDIR,
LAB_SCENARIO_DIR (where SCENARIO.sh are, default this script's directory).
  -h, --help   this text
EOF2
}

SCEN=()
for a in "$@"; do
    case $a in
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; echo "error: unknown option: $a" >&2; exit 2 ;;
        *) a=${a%.sh}; [ -x "$SCEN_DIR/$a.sh" ] || { echo "error: no scenario $SCEN_DIR/$a.sh" >&2; exit 2; }
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

# scenario_guest_crash LOG: a guest kernel crash outside nvme code in a console the scenario's
# LOG names ("console log: PATH"): prints "PATH: first report line"; status 1 if there is none
# or if any console's crash report names nvme
scenario_guest_crash() {
    local c what="" w
    while read -r c; do
        [ -r "$c" ] || continue
        w=$(guest_kernel_crash "$c") || continue
        [[ $w == nvme:* ]] && return 1
        what="$c: $w"
    done < <(grep -ao 'console log: [^ ,]*' "$1" | sed 's/^console log: //' | sort -u)
    [ -n "$what" ] && echo "$what"
}

TP=0 TF=0 RESULTS=() FAILED=()
T0=$SECONDS
for s in "${SCEN[@]}"; do
    log=$OUT/$s.log t1=$SECONDS rerun=""
    while :; do
        rc=0
        echo "##### $s: $SCEN_DIR/$s.sh (output also in $log)"
        : > "$log"
        "$SCEN_DIR/$s.sh" > "$log" 2>&1 &
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
        if [ "$f" -gt 0 ] && [ -z "$rerun" ] && [ "$ABORT" = 0 ] && crash=$(scenario_guest_crash "$log"); then
            mv "$log" "$log.first"
            rerun="rerun: the first run ($line, log $log.first) lost a guest to a kernel crash outside nvme"
            echo "##### $s: failed ($line) and a guest kernel died outside nvme code: $crash"
            echo "##### $s: a TCG emulation fault, not ferryd's doing; running $s once more (first run's log: $log.first)"
            continue
        fi
        break
    done
    TP=$((TP + p)) TF=$((TF + f))
    RESULTS+=("$(printf '%-20s %s (exit %s, %s s)' "$s" "$line" "$rc" $((SECONDS - t1)))${rerun:+; $rerun}")
    while IFS= read -r l; do FAILED+=("$s: $l"); done < <(grep -a 'FAIL: ' "$log" || true)
    if [ "$ABORT" = 1 ]; then
        RESULTS+=("interrupted: skipped the remaining scenarios"); TF=$((TF + 1)); break
    fi
done

echo "##### failed checks of the counted runs: ${#FAILED[@]}"
for l in "${FAILED[@]}"; do echo "$l"; done
echo "##### results ($((SECONDS - T0)) s; logs in $OUT)"
for r in "${RESULTS[@]}"; do echo "$r"; done
echo "$TP passed, $TF failed"
[ "$TF" -eq 0 ]
