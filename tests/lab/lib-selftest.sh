#!/bin/bash
# tests/lab/lib-selftest.sh: how lib.sh and run-all.sh answer the lab harness's own failures,
# without QEMU: a fake ../shared/lab/initiator and fake scenarios replay what CI saw.
#  - The harness boots a guest again after a boot that ran to LAB-EXIT (its pipefail race, see
#    lib.sh _completed_boot_retried): the first boot's result counts and the retry is stopped.
#  - A boot that really died before /init: the retry's result counts.
#  - A failed run shows what its failed guest steps printed and ferryd's warnings and errors.
#  - Console and log searches find a match on the first line of a 2 MiB file (grep -q under
#    pipefail fails those by SIGPIPE to the writer).
#  - guest_kernel_crash tells a crash outside nvme (CI's TCG double fault) from one in nvme code.
#  - run-all.sh runs a failed scenario once more only after a guest kernel crash outside nvme,
#    and lists only the counted runs' failed checks.
# Last line: "N passed, N failed".
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
case ${1:-} in
    "") ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $(basename "$0")" >&2; exit 2 ;;
esac

SELF=$(mktemp -d "${TMPDIR:-/tmp}/ferry-lab-selftest.XXXXXX")
trap 'rm -rf "$SELF"' EXIT
PASSED=0 FAILED=0
ok() {  # ok NAME CMD...
    local name=$1; shift
    if "$@"; then PASSED=$((PASSED + 1)); echo "PASS: $name"; else FAILED=$((FAILED + 1)); echo "FAIL: $name"; fi
}

# ---------------------------------------------------------------- a fake lab/initiator
mkdir -p "$SELF/lab" "$SELF/cache/runs"
cat > "$SELF/lab/initiator" <<'SH'
#!/bin/bash
# fake ../shared/lab/initiator; FAKE_MODE: retry-after-exit | boot-died
set -euo pipefail
d=$(mktemp -d "$NVMF_LAB_CACHE/runs/initiator.XXXX") log=$d/console.log
sleeper=""
trap 'touch "$d/terminated"; [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 130' TERM
con() { printf '%s\r\n' "$@" >> "$log"; }
echo "[lab] console log: $log"
case $FAKE_MODE in
    retry-after-exit)  # the whole script ran; the harness misjudges it and boots again
        con "LAB-BOOTED: uptime 8.8 s" "PASS: first-step (0.1 s)" "PASS: second-step (0.2 s)" \
            "2 passed, 0 failed" "LAB-EXIT: 0" "[   79.40] sysrq: Power Off"
        echo "[lab] guest died during boot (attempt 1/3), log: $log" >&2
        cp "$log" "$log.boot-failure.1"
        : > "$log"
        con "LAB-BOOTED: uptime 8.6 s" "FAIL: nobody-drives-the-retry (1.0 s)"
        sleep 20 & sleeper=$!; wait "$sleeper"; sleeper=""
        con "0 passed, 1 failed" "LAB-EXIT: 1"
        touch "$d/retry-finished"
        echo "0 passed, 1 failed"; exit 1 ;;
    step-fails)  # a guest step fails: what it printed must reach the run's output
        con "LAB-BOOTED: uptime 8.6 s" "=== STEP connect: nvme connect" "PASS: connect (0.3 s)" \
            "=== STEP fio-verify-never-failed: fio_never_failed" "    fio passes: 3, failures: 1" \
            "      bg: (groupid=0, jobs=1): err= 5 (file:io_u.c:1896, func=io_u error, error=Input/output error)" \
            "FAIL: fio-verify-never-failed (rc=1, 0.2 s)" "=== STEP disconnect: nvme disconnect" \
            "PASS: disconnect (0.2 s)" "2 passed, 1 failed" "LAB-EXIT: 1"
        echo "2 passed, 1 failed"; exit 1 ;;
    boot-died)  # died before /init: the retry is the run
        con "[    1.20] Kernel panic - not syncing: Attempted to kill init!"
        echo "[lab] guest died during boot (attempt 1/3), log: $log" >&2
        cp "$log" "$log.boot-failure.1"
        : > "$log"
        con "LAB-BOOTED: uptime 8.6 s" "PASS: after-the-retry (0.1 s)" "1 passed, 0 failed" "LAB-EXIT: 0"
        echo "1 passed, 0 failed"; exit 0 ;;
esac
SH
chmod +x "$SELF/lab/initiator"

# lab_run MODE: run_initiator through lib.sh against the fake in a subshell; prints its output
# and ends with "COUNTS passed failed rc"
lab_run() {
    (
        export FERRY_LAB=$SELF/lab NVMF_LAB_CACHE=$SELF/cache FAKE_MODE=$1
        # shellcheck source-path=SCRIPTDIR source=lib.sh
        source "$HERE/lib.sh"
        # shellcheck disable=SC2034 # lib.sh's work dir (lab_begin is not called here)
        WORK=$(mktemp -d "$SELF/work.XXXX")
        FERRYD_LOG=$SELF/ferryd.log
        rc=0
        run_initiator "$1" --script /dev/null || rc=$?
        echo "COUNTS $T_PASS $T_FAIL $rc"
    ) 2>&1
}
counts_are() {  # counts_are OUTPUT "P F RC"
    local got; got=$(sed -n 's/^COUNTS //p' <<<"$1")
    [ "$got" = "$2" ] || { echo "    counts: got '$got', want '$2'"; sed 's/^/    | /' <<<"$1"; return 1; }
}
run_dir_of() { sed -n 's/^ *\[lab\] console log: \(.*\)\/console.log$/\1/p' <<<"$1" | head -1; }

out=$(lab_run retry-after-exit)
d=$(run_dir_of "$out")
ok "retry after a boot that ran to LAB-EXIT: the first boot's 2 passed, 0 failed, status 0" \
    counts_are "$out" "2 0 0"
ok "that retry was stopped (SIGTERM) before it finished" \
    test -n "$d" -a -e "$d/terminated" -a ! -e "$d/retry-finished"
ok "the stop is said in the output" grep -q 'harness boots the guest again although it ran to LAB-EXIT' <<<"$out"

out=$(lab_run boot-died)
d=$(run_dir_of "$out")
ok "a boot that died before /init: the retry's 1 passed, 0 failed counts" counts_are "$out" "1 0 0"
ok "that retry ran to its end" test -n "$d" -a ! -e "$d/terminated"

cat > "$SELF/ferryd.log" <<'LOG'
2026-12-01 09:15:40.100 info conn 7 (127.0.0.1:50000, qid 2): closing: host closed the connection
2026-12-01 09:15:40.200 warning controller 2 of nqn.x (host nqn.h): keep-alive timeout (1000 ms without a command on any queue); tearing down
2026-12-01 09:15:40.210 debug conn 8 qid 1: cid 12 opcode 0x01 nsid 1: Command Sequence Error (0x400c)
2026-12-01 09:15:40.220 debug conn 8 (127.0.0.1:50002): ICReq accepted (header digest false, data digest false, maxr2t 0)
LOG
out=$(lab_run step-fails)
excerpt=$(sed -n '/^--- guest step fio-verify-never-failed failed/,/^---.*ferryd/p' <<<"$out")
ok "a failed guest step: what it printed is shown, up to its FAIL line" \
    test "$(grep -c 'err= 5 (file:io_u.c' <<<"$excerpt") $(grep -c 'STEP disconnect' <<<"$excerpt")" = "1 0"
ferryd_part=$(sed -n '/^--- ferryd: last warnings/,/^--- .*console tail/p' <<<"$out")
ok "a failed run: ferryd's warnings and failed I/O commands are shown, nothing else of its log" \
    test "$(grep -c 'keep-alive timeout\|Command Sequence Error (0x400c)' <<<"$ferryd_part") \
$(grep -c 'closing: host closed\|ICReq accepted' <<<"$ferryd_part")" = "2 0"

# ---------------------------------------------------------------- searches in big files
big=$SELF/big.log
{ echo "LAB-MARKER first line"; head -c 2097152 /dev/zero | tr '\0' 'x' | fold -w 100; } > "$big"
search_checks() {
    (
        # shellcheck source-path=SCRIPTDIR source=lib.sh
        source "$HERE/lib.sh"
        sleep 0 & dead=$!; wait "$dead"
        r=0
        for _ in 1 2 3 4 5; do wait_console "$big" '^LAB-MARKER' 1 "$dead" >/dev/null || r=1; done
        echo "wait_console $r"
        r=0
        # shellcheck disable=SC2034 # read by log_has_since
        FERRYD_LOG=$big
        for _ in 1 2 3 4 5; do log_has_since 0 'lab-marker' || r=1; done
        echo "log_has_since $r"
    )
}
res=$(search_checks)
ok "wait_console finds the first line of a 2 MiB console (5 tries)" grep -qx 'wait_console 0' <<<"$res"
ok "log_has_since finds the first line of a 2 MiB log (5 tries)" grep -qx 'log_has_since 0' <<<"$res"

# ---------------------------------------------------------------- guest kernel crashes
# CI's TCG double fault (2026-12-01, ana-multipath, fio's stat() in the slab allocator), cut
cat > "$SELF/tcg-crash.log" <<'LOG'
=== STEP fio-runs: more_passes 1 120
[   17.187443] traps: PANIC: double fault, error_code: 0x0
[   17.190100] Oops: double fault: 0000 [#1] PREEMPT SMP NOPTI
[   17.190733] CPU: 1 UID: 0 PID: 325 Comm: fio Not tainted 6.12.117+deb13-amd64 #1  Debian 6.12.117-1
[   17.191059] RIP: 0010:kmem_cache_alloc_lru_noprof+0x70/0x300
[   17.192861] Call Trace:
[   17.194346]  __d_alloc+0x2b/0x220
[   17.194460]  d_alloc_parallel+0x5e/0x470
[   17.194583]  vfs_fstatat+0x80/0xb0
[   17.195476] Modules linked in: nvme_tcp nvme_fabrics nvme_keyring nvme_core nvme_auth virtio_net
[   17.196313] Kernel panic - not syncing: Fatal exception in interrupt
LOG
sed -e 's/__d_alloc+0x2b/nvme_tcp_recv_data+0x2b/' "$SELF/tcg-crash.log" > "$SELF/nvme-crash.log"
printf '%s\r\n' "PASS: connect (0.3 s)" "BUG-free run: 1 passed, 0 failed" > "$SELF/clean.log"
# shellcheck source-path=SCRIPTDIR source=lib.sh
crash_of() { ( source "$HERE/lib.sh"; guest_kernel_crash "$1" ); }
not() { ! "$@"; }
w=$(crash_of "$SELF/tcg-crash.log") || w="(no crash)"
ok "a crash outside nvme: its first line, no 'nvme:' (the Modules line does not count)" \
    test "$w" = "[   17.187443] traps: PANIC: double fault, error_code: 0x0"
w=$(crash_of "$SELF/nvme-crash.log") || w="(no crash)"
ok "a crash with nvme_tcp_recv_data in its trace: 'nvme:'" \
    test "$w" = "nvme: [   17.187443] traps: PANIC: double fault, error_code: 0x0"
ok "a console without a crash: none" not crash_of "$SELF/clean.log"

# ---------------------------------------------------------------- run-all.sh reruns
# Fake scenarios: each run writes a console log, names it, and fails the first time.
mkdir -p "$SELF/scen"
fake_scenario() {  # fake_scenario NAME CONSOLE_FIXTURE
    cat > "$SELF/scen/$1.sh" <<SH
#!/bin/bash
n=\$(cat "$SELF/scen/$1.runs" 2>/dev/null || echo 0); n=\$((n + 1)); echo "\$n" > "$SELF/scen/$1.runs"
c=$SELF/scen/$1.console.\$n
if [ "\$n" = 1 ]; then cp "$2" "\$c"; else printf 'PASS: step\r\n' > "\$c"; fi
echo "    [lab] console log: \$c"
if [ "\$n" = 1 ]; then echo "FAIL: $1 first run"; echo "1 passed, 1 failed"; exit 1; fi
echo "PASS: $1 run \$n"; echo "3 passed, 0 failed"
SH
    chmod +x "$SELF/scen/$1.sh"
}
fake_scenario tcgcrash "$SELF/tcg-crash.log"
fake_scenario nvmecrash "$SELF/nvme-crash.log"
fake_scenario nocrash "$SELF/clean.log"
all=$(LAB_SCENARIO_DIR=$SELF/scen TMPDIR=$SELF "$HERE/run-all.sh" tcgcrash nvmecrash nocrash 2>&1 || true)
runs_of() { cat "$SELF/scen/$1.runs"; }
ok "run-all: the scenario that lost a guest to a crash outside nvme ran twice" test "$(runs_of tcgcrash)" = 2
ok "run-all: a crash in nvme code and a plain failure are not run again" \
    test "$(runs_of nvmecrash) $(runs_of nocrash)" = "1 1"
ok "run-all: the rerun counts (3 + 1 + 1 passed, 0 + 1 + 1 failed)" \
    test "$(tail -1 <<<"$all")" = "5 passed, 2 failed"
ok "run-all: the results line names the rerun" grep -q '^tcgcrash .*rerun: the first run (1 passed, 1 failed' <<<"$all"
failed_list=$(sed -n '/^##### failed checks of the counted runs/,/^##### results/p' <<<"$all")
ok "run-all: the failed checks listed are the counted runs' (not tcgcrash's first)" \
    test "$(grep -c 'FAIL: ' <<<"$failed_list") $(grep -c 'tcgcrash' <<<"$failed_list")" = "2 0"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
