#!/bin/bash
# shellcheck shell=bash
# tests/lab/lib.sh: host-side helpers for ferry's lab scenarios (tests/lab/*.sh).
# Sourced, not run. Starts/stops ferryd, runs ../shared/lab/initiator guests, counts
# results and prints the final "N passed, N failed" line.
#
#   lab_begin NAME                 work dir $WORK (configs, logs), traps that kill what we started
#   write_ram_config FILE PORT NQN [SIZE]  one subsystem, one RAM namespace (1GiB), any host
#   start_ferryd CONFIG LOGFILE [ARGS...]   ferryd in the background, wait for "ferryd: ready"
#   stop_ferryd                    SIGTERM (FERRYD_STOP_WAIT_S, default 10 s; then the process
#                                  state, the threads' stacks and SIGKILL); non-zero if ferryd
#                                  had crashed or hung
#   ferryd_alive                   ferryd still running?
#   check NAME CMD...              run CMD, print PASS: NAME / FAIL: NAME, count it; returns
#                                  CMD's status (use it in an if, or add || true under set -e)
#   fail_check NAME [WHY]          count a check that could not run as failed
#   run_initiator NAME ARGS...     lab/initiator --quiet ARGS in the foreground; adds the
#                                  guest's "N passed, N failed" line to the totals
#   start_initiator_bg NAME ARGS...  the same in the background ($BG_PID, $BG_OUT)
#   initiator_run_dir OUTFILE [T]  the run dir (console.log, qemu.pid) of a lab/initiator run
#   guest_summary_line OUTFILE     the guest's "N passed, N failed" line of a lab/initiator run
#   guest_kernel_crash CONSOLE     did a guest kernel crash, and does the report name nvme
#   run_guest NAME ARGS...         lab/guest --quiet ARGS in the foreground; adds the guest
#                                  program's "N passed, N failed" line (from its console) to
#                                  the totals; $GUEST_CONSOLE is the console log
#   stage_ferryd DIR               ferryd, ferryctl and their libraries in DIR, to run in a lab guest
#   live_guest_script OUT SCRIPT   SCRIPT with the REST API's address and token (from ferryd's
#                                  log and $WORK/api-token) and guest/live-common.sh in front
#   check_fio_blocks IMAGE REGION  fio's blocks of the default scenario are at their offsets
#   lab_finish                     clean up, print the ferryd log path and the summary; exits
#
# Environment: BUILD (default $REPO/build; ferryd is $BUILD/bin/ferryd), FERRY_LAB (lab
# scripts, default $REPO/../shared/lab), NVMF_LAB_CACHE (lab cache, default /var/cache/nvmf-lab),
# TMPDIR (work dirs go there, default /tmp).
set -euo pipefail
if [ "${BASH_SOURCE[0]}" = "$0" ]; then     # run instead of sourced: show the header
    sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$REPO/build}
FERRYD=$BUILD/bin/ferryd
LAB=${FERRY_LAB:-$REPO/../shared/lab}
LAB=$(cd "$LAB" 2>/dev/null && pwd || echo "$LAB")
NVMF_LAB_CACHE=${NVMF_LAB_CACHE:-/var/cache/nvmf-lab}
export NVMF_LAB_CACHE

T_PASS=0 T_FAIL=0
LAB_NAME=lab WORK="" LAB_T0=$SECONDS LAB_DONE=0
FERRYD_PID="" FERRYD_LOG=""
BG_PID="" BG_OUT=""
LAB_CHILDREN=()     # pids of lab/initiator runs we started (killed on exit)
LAB_OUTFILES=()     # their output files (to find their qemu pids on exit)
declare -gA LAB_OUT_OF=()  # lab run pid -> its output file

# ---------------------------------------------------------------- counting
check() {
    local name=$1; shift
    if "$@"; then
        T_PASS=$((T_PASS + 1)); echo "PASS: $name"
    else
        T_FAIL=$((T_FAIL + 1)); echo "FAIL: $name"
        return 1
    fi
}

fail_check() {
    T_FAIL=$((T_FAIL + 1)); echo "FAIL: $1${2:+ ($2)}"
    return 0
}

# add_counts "N passed, N failed": add a guest's summary line to the totals
add_counts() {
    [[ $1 =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]] || return 1
    T_PASS=$((T_PASS + BASH_REMATCH[1]))
    T_FAIL=$((T_FAIL + BASH_REMATCH[2]))
}

summary() {
    echo "$T_PASS passed, $T_FAIL failed"
    [ "$T_FAIL" -eq 0 ]
}

# ---------------------------------------------------------------- processes
_pid_alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"
}

_is_qemu() {
    _pid_alive "$1" && [[ $(cat "/proc/$1/comm" 2>/dev/null) == qemu* ]]
}

_log_tail() {
    [ -n "$FERRYD_LOG" ] && [ -f "$FERRYD_LOG" ] || return 0
    echo "--- ferryd log tail ($FERRYD_LOG) ---"
    tail -n 30 "$FERRYD_LOG" | sed 's/^/    /'
}

# require_port_free PORT: nothing may listen on 127.0.0.1:PORT yet (a stale ferryd, ...)
require_port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "error: 127.0.0.1:$1 is already in use (stale ferryd or lab guest?)"
        return 1
    fi
}

# ---------------------------------------------------------------- ferryd
# write_ram_config FILE PORT NQN [SIZE]: one subsystem (any host) with a RAM namespace of SIZE
# (default 1GiB) and 4 KiB blocks, listening on 127.0.0.1:PORT
write_ram_config() {
    cat > "$1" <<JSON
{
  "listeners": [ { "transport": "tcp", "address": "127.0.0.1", "port": $2 } ],
  "subsystems": [
    { "nqn": "$3", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "${4:-1GiB}", "block_size": 4096 } ] }
  ],
  "management": { "port": 0 }
}
JSON
}

# start_ferryd CONFIG LOGFILE [extra ferryd args]
start_ferryd() {
    local config=$1 log=$2 i st=0; shift 2
    if [ -n "$FERRYD_PID" ] && _pid_alive "$FERRYD_PID"; then
        echo "start_ferryd: ferryd already running (pid $FERRYD_PID)"; return 1
    fi
    if [ ! -x "$FERRYD" ]; then
        echo "start_ferryd: $FERRYD not found or not executable (build first, or set BUILD=...)"; return 1
    fi
    [ -r "$config" ] || { echo "start_ferryd: config $config not readable"; return 1; }
    FERRYD_LOG=$log
    : > "$log"
    # --idle-spin-us 0: the lab's TCG guest needs both host cores; a reactor that spins after
    # each burst of work steals them (measured: 4k write+verify with digests, 2 queues, 4 jobs
    # at QD32 took 133 s with the default 200 us spin, 53 s without).
    "$FERRYD" --config "$config" --log-level "${FERRYD_LOG_LEVEL:-debug}" --idle-spin-us 0 "$@" >> "$log" 2>&1 &
    FERRYD_PID=$!
    echo "ferryd: pid $FERRYD_PID, config $config, log $log"
    for ((i = 0; i < 200; i++)); do    # 20 s
        if grep -qF 'ferryd: ready' "$log"; then
            echo "ferryd: ready after $((i / 10)).$((i % 10)) s"
            return 0
        fi
        if ! _pid_alive "$FERRYD_PID"; then
            wait "$FERRYD_PID" 2>/dev/null || st=$?
            echo "start_ferryd: ferryd exited with status $st before it was ready"
            FERRYD_PID=""; _log_tail; return 1
        fi
        sleep 0.1
    done
    echo "start_ferryd: no 'ferryd: ready' in $log after 20 s"
    _log_tail
    kill -KILL "$FERRYD_PID" 2>/dev/null || true
    wait "$FERRYD_PID" 2>/dev/null || true
    FERRYD_PID=""
    return 1
}

ferryd_alive() {
    if _pid_alive "$FERRYD_PID"; then return 0; fi
    echo "ferryd (pid ${FERRYD_PID:-none}) is not running"; _log_tail
    return 1
}

# stop_ferryd: 0 = was running and exited with status 0 (or 143: killed by the SIGTERM)
# within 10 s; 1 = had already died (crash); 2 = needed SIGKILL; 3 = bad exit status.
stop_ferryd() {
    local pid=$FERRYD_PID st=0 i
    if [ -z "$pid" ]; then echo "stop_ferryd: ferryd was not started"; return 1; fi
    FERRYD_PID=""
    if ! _pid_alive "$pid"; then
        wait "$pid" 2>/dev/null || st=$?
        echo "stop_ferryd: ferryd (pid $pid) had already exited with status $st (crashed?)"
        _log_tail; return 1
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local wait_s=${FERRYD_STOP_WAIT_S:-10}
    for ((i = 0; i < wait_s * 10; i++)); do
        _pid_alive "$pid" || break
        sleep 0.1
    done
    if _pid_alive "$pid"; then
        echo "stop_ferryd: ferryd (pid $pid) still running $wait_s s after SIGTERM: SIGKILL"
        # Whether it is still in ferryd's code or already exiting in the kernel (tearing down
        # its address space: ptrace then fails with "No such process").
        grep -E '^(State|Threads|VmSize|VmRSS):' "/proc/$pid/status" 2>/dev/null | tr '\n' ' '; echo
        for t in /proc/"$pid"/task/*; do
            echo "  task ${t##*/} $(cat "$t/comm" 2>/dev/null) state $(awk '{print $3}' "$t/stat" 2>/dev/null)" \
                "wchan $(cat "$t/wchan" 2>/dev/null)"
        done | head -20
        cat "/proc/$pid/stack" 2>/dev/null | head -12
        # Where it is stuck, for the log (gdb is on the test machines; nothing if it is not).
        command -v gdb >/dev/null && timeout 60 gdb -p "$pid" -batch -ex "thread apply all bt" 2>&1 | tail -80
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        _log_tail; return 2
    fi
    wait "$pid" 2>/dev/null || st=$?
    case $st in
        0|143) echo "stop_ferryd: ferryd stopped (status $st)"; return 0 ;;
        *) echo "stop_ferryd: ferryd exited with status $st after SIGTERM"; _log_tail; return 3 ;;
    esac
}

# live_guest_script OUT GUEST_SCRIPT: the guest script with the API address, the token and the
# shared helpers in front (lab/initiator --script takes one file)
live_guest_script() {
    local api_port token
    api_port=$(sed -n 's|.*ferryd: REST API on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$FERRYD_LOG" | head -1)
    token=$(cat "$WORK/api-token" 2>/dev/null || true)
    [ -n "$api_port" ] && [ -n "$token" ] || { echo "no REST API port or token in $FERRYD_LOG / $WORK"; return 1; }
    { echo "API=http://10.0.2.2:$api_port/api/v1"; echo "TOKEN=$token"
      cat "$GUEST_DIR/live-common.sh" "$2"; } > "$1"
    echo "REST API: host 127.0.0.1:$api_port (guest 10.0.2.2:$api_port)"
}

# ---------------------------------------------------------------- lab/initiator
# console log path of a lab/initiator run, from its output ("[lab] console log: PATH"); the
# kept console of its first boot instead when the harness booted the guest again after that
# boot had run to the end (OUTFILE.console, written by wait_initiator)
initiator_console() {
    if [ -s "$1.console" ]; then cat "$1.console"; return; fi
    sed -n 's/^\[lab\] console log: //p' "$1" 2>/dev/null | head -1
}

# guest_summary_line OUTFILE: the guest's "N passed, N failed" line of a lab/initiator run: the
# one lab/initiator printed, or, when the result was taken from a kept console (see
# wait_initiator), the one in that console (without one: its PASS and FAIL lines counted, plus
# one failure, as lab/initiator counts its default scenario)
guest_summary_line() {
    local out=$1 c line p f
    if [ -s "$out.console" ]; then
        c=$(cat "$out.console")
        line=$(tr -d '\r' < "$c" | grep -aE '^[0-9]+ passed, [0-9]+ failed$' | tail -1 || true)
        if [ -z "$line" ]; then
            p=$(tr -d '\r' < "$c" | grep -ac '^PASS: ' || true)
            f=$(tr -d '\r' < "$c" | grep -ac '^FAIL: ' || true)
            line="$p passed, $((f + 1)) failed"
        fi
        echo "$line"
        return
    fi
    grep -aE '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1 || true
}

# initiator_run_dir OUTFILE [TIMEOUT_S]: wait until the run announced its console log and
# print the run dir; falls back to the newest $NVMF_LAB_CACHE/runs/initiator.* dir.
initiator_run_dir() {
    local out=$1 t=${2:-60} c d
    for ((; t > 0; t--)); do
        c=$(initiator_console "$out")
        if [ -n "$c" ]; then echo "${c%/*}"; return 0; fi
        sleep 1
    done
    d=$(find "$NVMF_LAB_CACHE/runs" -mindepth 1 -maxdepth 1 -type d -name 'initiator.*' -printf '%T@ %p\n' 2>/dev/null \
        | sort -rn | head -1 | cut -d' ' -f2-) || true
    [ -n "$d" ] && [ -d "$d" ] && { echo "$d"; return 0; }
    return 1
}

# guest_kernel_crash CONSOLE: whether a guest kernel crashed (a console line "[ t] Oops",
# "BUG:", "general protection fault", "traps: PANIC" or "Kernel panic"): prints the report's
# first line, prefixed "nvme: " when the report (that line to the console's end, without the
# "Modules linked in" line: RIP, call trace, process name) names nvme; status 1 if none crashed
guest_kernel_crash() {
    local report first
    report=$(tr -d '\r' < "$1" 2>/dev/null |
        sed -n '/^\[ *[0-9.]*\] \(Oops\|BUG:\|general protection fault\|traps: PANIC\|Kernel panic\)/,$p' |
        grep -av 'Modules linked in:' || true)
    [ -n "$report" ] || return 1
    first=$(head -1 <<<"$report")
    if grep -ai nvme <<<"$report" >/dev/null; then echo "nvme: $first"; else echo "$first"; fi
}

_print_guest_steps() {
    local console=$1
    [ -r "$console" ] || return 0
    tr -d '\r' < "$console" | grep -aE '^(PASS|FAIL): ' | sed 's/^/    guest /' || true
}

# _print_failed_step_output CONSOLE: the first lines each failed guest step printed (between
# its "=== STEP" line and its FAIL line), so that a CI record that keeps only a window around
# the failure shows why (fio's error, the kernel's I/O errors), not just that
_print_failed_step_output() {
    local console=$1 step
    [ -r "$console" ] || return 0
    while IFS= read -r step; do
        echo "--- guest step $step failed; what it printed (first 16 lines) ---"
        tr -d '\r' < "$console" | awk -v s="$step" '
            index($0, "=== STEP " s ":") == 1 { on = 1; n = 0; next }
            on && index($0, "FAIL: " s " (") == 1 { exit }
            on && n < 16 { print "    " $0; n++ }' || true
    done < <(tr -d '\r' < "$console" | sed -n 's/^FAIL: \(.*\) (.*$/\1/p' | head -3)
}

# _print_ferryd_errors: ferryd's last warnings and errors, and the last I/O commands it failed
# (debug lines "conn N qid Q: cid C ... (0xSTATUS)"), when a run failed
_print_ferryd_errors() {
    [ -n "$FERRYD_LOG" ] && [ -r "$FERRYD_LOG" ] || return 0
    echo "--- ferryd: last warnings, errors and failed I/O commands ($FERRYD_LOG) ---"
    grep -aE '^[0-9-]+ [0-9:.]+ (warning|error|critical) | qid [1-9][0-9]*: cid .*\(0x[0-9a-f]+\)$' "$FERRYD_LOG" |
        tail -n 12 | cut -c1-220 | sed 's/^/    /' || true
}

_forget_child() {
    local pid=$1 i
    for i in "${!LAB_CHILDREN[@]}"; do
        [ "${LAB_CHILDREN[$i]}" = "$pid" ] && unset 'LAB_CHILDREN[i]'
    done
    return 0
}

# start_initiator_bg NAME ARGS...: lab/initiator --quiet ARGS in the background;
# sets BG_PID and BG_OUT (its stdout+stderr)
start_initiator_bg() { _start_lab_bg initiator "$@"; }

# _start_lab_bg TOOL NAME ARGS...: $LAB/TOOL --quiet ARGS in the background ($BG_PID, output
# in $BG_OUT); killed, with its qemu, if the scenario exits first
_start_lab_bg() {
    local tool=$1 name=$2; shift 2
    BG_OUT=$WORK/$tool-$name.out
    local shown; shown=$(printf ' %q' "$@")
    echo "--- $name: lab/$tool --quiet$shown"
    "$LAB/$tool" --quiet "$@" > "$BG_OUT" 2>&1 &
    BG_PID=$!
    LAB_CHILDREN+=("$BG_PID")
    LAB_OUTFILES+=("$BG_OUT")
    LAB_OUT_OF[$BG_PID]=$BG_OUT
}

# _completed_boot_retried OUTFILE: ../shared/lab boots a guest again when it judges that the
# boot died before /init ran, by `tr -d '\r' < console | grep -qa '^LAB-BOOTED'` under
# `set -o pipefail`: grep -q exits at the first match, and when tr still has console to write
# (over 4 KiB) tr dies of SIGPIPE and the pipeline fails although the line is there (measured on
# CI's consoles: 100 of 2,000 tries on one of 5.6 KB, 48 of 1,000 on one of 12 KB). That boot
# ran the whole guest script; the retry runs it again with nobody on the host side driving it
# (in CI the gateway fail-over guest then waited in vain for a kill that had already happened).
# Prints the harness's kept copy of such a boot's console (it reached LAB-EXIT).
_completed_boot_retried() {
    local n log kept
    while read -r n log; do
        kept=$log.boot-failure.$n
        # grep without -q reads to the end: no SIGPIPE for tr (the same race)
        if tr -d '\r' < "$kept" 2>/dev/null | grep -a '^LAB-BOOTED' >/dev/null &&
            tr -d '\r' < "$kept" | grep -a '^LAB-EXIT: ' >/dev/null; then
            echo "$kept"
            return 0
        fi
    done < <(sed -n 's|^\[lab\] guest died during boot (attempt \([0-9]*\)/3), log: \(.*\)$|\1 \2|p' "$1" 2>/dev/null)
    return 1
}

# wait_initiator PID: wait for a background lab/initiator (or lab/guest); returns its status.
# If the harness boots the guest again after a boot that ran to LAB-EXIT (see
# _completed_boot_retried), stops the retry and takes the result from that boot: its console
# (OUTFILE.console for initiator_console) and its LAB-EXIT status.
wait_initiator() {
    local pid=$1 rc=0 out=${LAB_OUT_OF[$1]:-} kept="" l
    while [ -n "$out" ] && _pid_alive "$pid"; do
        if kept=$(_completed_boot_retried "$out"); then
            echo "    [ferry-lab] the harness boots the guest again although it ran to LAB-EXIT" \
                "($kept): stopping the retry (pid $pid), taking that boot's result"
            kill -TERM "$pid" 2>/dev/null || true    # its trap stops the retry's qemu
            break
        fi
        sleep 0.5
    done
    wait "$pid" || rc=$?
    _forget_child "$pid"
    if [ -z "$kept" ] && [ -n "$out" ] && kept=$(_completed_boot_retried "$out"); then
        echo "    [ferry-lab] the harness booted the guest again although it ran to LAB-EXIT" \
            "($kept): taking that boot's result"
    fi
    if [ -n "$kept" ]; then
        echo "$kept" > "$out.console"
        l=$(tr -d '\r' < "$kept" | grep -a '^LAB-EXIT: ' | tail -1 || true)
        if [[ $l =~ ^LAB-EXIT:\ ([0-9]+) ]]; then rc=${BASH_REMATCH[1]}; else rc=1; fi
    fi
    return "$rc"
}

# guest_exit_status RC CONSOLE: the lab run's exit status, RC, except in one harness race:
# ../shared/lab reads the guest's exit code from its console's "LAB-EXIT: N" line, and a kernel
# message printed into that line ("LAB-EXIT: 0[   44.636630] sysrq: Power Off", seen in CI)
# makes it `return` a non-number: status 2. Then the guest's own code is the number before the
# message's timestamp; anything else stays RC.
guest_exit_status() {
    local rc=$1 console=$2 l
    if [ "$rc" = 2 ] && [ -r "$console" ]; then
        l=$(tr -d '\r' < "$console" | grep -a '^LAB-EXIT: ' | tail -1 || true)
        if [[ $l =~ ^LAB-EXIT:\ ([0-9]+)\[\ *[0-9]+\.[0-9]+\]\  ]]; then
            echo "    [lab] exit status 2 was the harness misreading '$l': the guest exited ${BASH_REMATCH[1]}" >&2
            echo "${BASH_REMATCH[1]}"
            return
        fi
    fi
    echo "$rc"
}

# _report_run NAME TOOL RC LINE CONSOLE T0 TAIL: print a lab run's result line and add its
# "N passed, N failed" LINE to the totals. No summary line, or a non-zero exit with 0 failures
# reported, counts as one more failure. On a failed run, show the last TAIL console lines.
_report_run() {
    local name=$1 tool=$2 rc=$3 line=$4 console=$5 t0=$6 tail_lines=$7
    echo "=== $name: ${line:-no summary line}, exit status $rc, $((SECONDS - t0)) s${console:+, console log: $console}"
    if [ -n "$line" ] && add_counts "$line"; then
        if [ "$rc" -ne 0 ] && [[ $line == *" 0 failed" ]]; then
            fail_check "$name: $tool exit status $rc"
        fi
    else
        fail_check "$name: $tool gave no 'N passed, N failed' line"
    fi
    if [ "$rc" -ne 0 ]; then
        _print_failed_step_output "$console"
        _print_ferryd_errors
    fi
    if [ "$rc" -ne 0 ] && [ -r "$console" ]; then
        echo "--- $name: guest console tail ($console) ---"
        tr -d '\r' < "$console" | tail -n "$tail_lines" | sed 's/^/    /'
    fi
}

# run_initiator NAME ARGS...: run lab/initiator --quiet ARGS, print its output and the
# guest's PASS/FAIL steps, add its "N passed, N failed" line to the totals (see _report_run).
run_initiator() {
    local name=$1; shift
    local rc=0 line console t0=$SECONDS
    start_initiator_bg "$name" "$@"
    wait_initiator "$BG_PID" || rc=$?
    sed 's/^/    /' "$BG_OUT"
    console=$(initiator_console "$BG_OUT")
    rc=$(guest_exit_status "$rc" "$console")
    _print_guest_steps "$console"
    line=$(guest_summary_line "$BG_OUT")
    _report_run "$name" lab/initiator "$rc" "$line" "$console" "$t0" 40
    return "$rc"
}

# run_guest NAME ARGS...: run lab/guest --quiet ARGS; the same for the summary line its
# program prints on the guest console ($GUEST_CONSOLE).
run_guest() {
    local name=$1; shift
    local rc=0 line="" t0=$SECONDS
    _start_lab_bg guest "$name" "$@"
    wait_initiator "$BG_PID" || rc=$?
    sed 's/^/    /' "$BG_OUT"
    GUEST_CONSOLE=$(initiator_console "$BG_OUT")
    rc=$(guest_exit_status "$rc" "$GUEST_CONSOLE")
    _print_guest_steps "$GUEST_CONSOLE"
    [ -r "$GUEST_CONSOLE" ] &&
        line=$(tr -d '\r' < "$GUEST_CONSOLE" | grep -aE '^[0-9]+ passed, [0-9]+ failed$' | tail -1 || true)
    _report_run "$name" lab/guest "$rc" "$line" "$GUEST_CONSOLE" "$t0" 60
    return "$rc"
}

# stage_ferryd DIR: ferryd with its whole ldd closure (and the host's loader) in DIR/bin and
# DIR/lib, to run in a lab guest as DIR/lib/ld-linux-x86-64.so.2 --library-path DIR/lib DIR/bin/ferryd
# Also ferryctl (deploy/setup.sh binds devices through it), run by bin/ferryctl-run with the
# staged loader and libraries (the guest's Debian has other library versions).
stage_ferryd() {
    local dir=$1 l b ctl
    ctl=$(dirname "$FERRYD")/ferryctl
    mkdir -p "$dir/bin" "$dir/lib"
    cp -L "$FERRYD" "$dir/bin/ferryd"
    cp -L "$ctl" "$dir/bin/ferryctl"
    for b in "$FERRYD" "$ctl"; do
        for l in $(ldd "$b" | awk '/=>/ && $3 ~ /^\// {print $3}') /lib/x86_64-linux-gnu/libgcc_s.so.1; do
            [ -e "$l" ] && cp -L "$l" "$dir/lib/"
        done
    done
    cp -L /lib64/ld-linux-x86-64.so.2 "$dir/lib/ld-linux-x86-64.so.2"
    cat > "$dir/bin/ferryctl-run" <<'SH'
#!/bin/sh
d=$(dirname "$(readlink -f "$0")")/..
exec "$d/lib/ld-linux-x86-64.so.2" --library-path "$d/lib" "$d/bin/ferryctl" "$@"
SH
    chmod +x "$dir/bin/ferryctl-run"
}

# check_fio_blocks IMAGE REGION: every 4 KiB block of [0, REGION) and every 128 KiB block of
# [REGION, 2*REGION) in IMAGE starts with fio's verify header (magic 0xacca) naming its own
# offset: the layout the default scenario's two fio steps write (REGION = --fio-size in bytes).
check_fio_blocks() {
    python3 - "$1" "$2" <<'PY'
import struct, sys
img = open(sys.argv[1], "rb")
M = int(sys.argv[2])
bad = 0
for base, bs in ((0, 4096), (M, 128 << 10)):
    for off in range(base, base + M, bs):
        img.seek(off)
        hdr = img.read(24)
        magic, = struct.unpack_from("<H", hdr, 0)
        offset, = struct.unpack_from("<Q", hdr, 16)
        if magic != 0xACCA or offset != off:
            bad += 1
            if bad <= 5:
                print(f"    {sys.argv[1]}: offset {off}: magic {magic:#x}, header offset {offset}")
print(f"    {sys.argv[1]}: {bad} bad blocks")
sys.exit(1 if bad else 0)
PY
}

# wait_console CONSOLE REGEX TIMEOUT_S [PID]: wait until a console line matches REGEX
# (extended, anchored by the caller); gives up early once PID (the lab run) has exited
wait_console() {
    local console=$1 re=$2 t=$3 pid=${4:-}
    for ((; t > 0; t--)); do
        # grep without -q: under pipefail, grep -q leaving early can fail the pipeline by
        # SIGPIPE to tr (see _completed_boot_retried)
        tr -d '\r' < "$console" 2>/dev/null | grep -aE "$re" >/dev/null && return 0
        if [ -n "$pid" ] && ! _pid_alive "$pid"; then
            tr -d '\r' < "$console" 2>/dev/null | grep -aE "$re" >/dev/null && return 0
            echo "lab run (pid $pid) ended before '$re' appeared in $console"; return 1
        fi
        sleep 1
    done
    echo "no '$re' in $console"
    return 1
}

# log_has_since OFFSET PATTERN: ferryd log, from byte OFFSET on, has a line with PATTERN
# (fixed string, case-insensitive)
log_has_since() {
    tail -c +"$(($1 + 1))" "$FERRYD_LOG" | grep -iF -- "$2" >/dev/null
}

# wait_log_since OFFSET PATTERN DEADLINE: wait until log_has_since, up to $SECONDS = DEADLINE
wait_log_since() {
    while :; do
        log_has_since "$1" "$2" && return 0
        [ "$SECONDS" -lt "$3" ] || break
        sleep 0.5
    done
    echo "no '$2' in $FERRYD_LOG (after byte $1)"
    return 1
}

# ---------------------------------------------------------------- begin / end
# lab_cleanup: stop whatever we started that is still running (lab runs, their qemu, ferryd)
lab_cleanup() {
    local p f c d q i
    for p in "${LAB_CHILDREN[@]}"; do
        if _pid_alive "$p"; then
            echo "cleanup: stopping lab/initiator (pid $p)"
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
    for f in "${LAB_OUTFILES[@]}"; do
        c=$(initiator_console "$f"); [ -n "$c" ] || continue
        d=${c%/*}
        q=$(cat "$d/qemu.pid" 2>/dev/null || true)
        if [ -n "$q" ] && _is_qemu "$q"; then
            echo "cleanup: killing qemu (pid $q, run $d)"
            kill -KILL "$q" 2>/dev/null || true
        fi
    done
    for p in "${LAB_CHILDREN[@]}"; do
        for ((i = 0; i < 50; i++)); do _pid_alive "$p" || break; sleep 0.1; done
        if _pid_alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
        wait "$p" 2>/dev/null || true
    done
    LAB_CHILDREN=()
    if [ -n "$FERRYD_PID" ]; then
        if _pid_alive "$FERRYD_PID"; then
            echo "cleanup: stopping ferryd (pid $FERRYD_PID)"
            stop_ferryd >/dev/null || true
        fi
        FERRYD_PID=""
    fi
    return 0
}

_lab_on_exit() {
    local rc=$1
    trap - EXIT INT TERM
    [ "$LAB_DONE" = 1 ] && exit "$rc"
    # aborted (error or signal): clean up, still end with a summary line
    set +e
    lab_cleanup
    [ -n "$FERRYD_LOG" ] && echo "ferryd log: $FERRYD_LOG"
    fail_check "$LAB_NAME: scenario aborted (status $rc)"
    summary
    exit $((rc == 0 ? 1 : rc))
}

# lab_begin NAME: work dir $WORK, exit/signal traps
lab_begin() {
    LAB_NAME=$1
    LAB_T0=$SECONDS
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-lab.$LAB_NAME.XXXXXX")
    trap '_lab_on_exit $?' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    echo "=== $LAB_NAME: work dir $WORK; ferryd $FERRYD; lab $LAB"
    if [ ! -x "$LAB/initiator" ]; then
        echo "error: $LAB/initiator not found (set FERRY_LAB)"; return 1
    fi
}

# lab_finish: stop leftovers, print the ferryd log path and the summary (last line); exits
lab_finish() {
    local rc=0
    lab_cleanup
    echo "=== $LAB_NAME: $((SECONDS - LAB_T0)) s; work dir $WORK"
    [ -n "$FERRYD_LOG" ] && echo "ferryd log: $FERRYD_LOG"
    LAB_DONE=1
    summary || rc=$?
    exit "$rc"
}

# lab_usage TEXT "$@": print TEXT and exit 0 on -h/--help; refuse any other argument
lab_usage() {
    local text=$1; shift
    case ${1:-} in
        "") return 0 ;;
        -h|--help) echo "$text"; exit 0 ;;
        *) echo "$text" >&2; echo "error: unknown argument: $1" >&2; exit 2 ;;
    esac
}
