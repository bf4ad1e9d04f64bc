#!/bin/bash
# tests/integration/deploy.sh: the deployment files. deploy/ferryd.service passes
# `systemd-analyze verify` without a single diagnostic (on a copy whose ExecStart is the built
# ferryd, since verify needs the binary to exist) and keeps the settings deploy/README.md
# promises; a broken copy must fail verify (the check can fail). deploy/ferry.example.json is
# JSON once its comments are stripped and holds what it documents (management, two listeners,
# pcie, file and RAM namespaces, hosts). Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"

UNIT=$REPO/deploy/ferryd.service
EXAMPLE=$REPO/deploy/ferry.example.json
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.deploy.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# verify_clean UNITFILE: systemd-analyze verify exits 0 and says nothing about the unit (it only
# warns about unknown keys and bad values, with status 0).
verify_clean() {
    local out rc=0
    out=$(systemd-analyze verify "$1" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] || grep -qF "$(basename "$1")" <<<"$out"; then
        echo "systemd-analyze verify $1: status $rc"
        sed 's/^/    /' <<<"$out"
        return 1
    fi
}

has_setting() {  # has_setting LINE: the unit holds exactly this line
    grep -qxF "$1" "$UNIT" || { echo "deploy/ferryd.service has no line '$1'"; return 1; }
}

if ! command -v systemd-analyze >/dev/null; then
    fail_check "systemd-analyze present" "install systemd"
else
    mkdir -p "$WORK/unit"
    sed "s|^ExecStart=/usr/local/bin/ferryd |ExecStart=$BUILD/bin/ferryd |" "$UNIT" > "$WORK/unit/ferryd.service"
    check "ExecStart is rewritten to the built ferryd" grep -qF "ExecStart=$BUILD/bin/ferryd --config" \
        "$WORK/unit/ferryd.service" || true
    check "systemd-analyze verify deploy/ferryd.service" verify_clean "$WORK/unit/ferryd.service" || true

    mkdir -p "$WORK/broken"
    sed 's/^ProtectHome=yes$/ProtectHome=sometimes/' "$WORK/unit/ferryd.service" > "$WORK/broken/ferryd.service"
    if verify_clean "$WORK/broken/ferryd.service" >/dev/null; then
        fail_check "verify rejects a bad value (ProtectHome=sometimes)" "it passed"
    else
        check "verify rejects a bad value (ProtectHome=sometimes)" true
    fi
    sed 's|^ExecStart=[^ ]*|ExecStart=/nonexistent/ferryd|' "$WORK/unit/ferryd.service" > "$WORK/broken/ferryd.service"
    if verify_clean "$WORK/broken/ferryd.service" >/dev/null; then
        fail_check "verify rejects a missing binary" "it passed"
    else
        check "verify rejects a missing binary" true
    fi
fi

for line in "ExecStart=/usr/local/bin/ferryd --config /var/lib/ferry/ferry.json" "Restart=on-failure" \
        "StateDirectory=ferry" "LimitMEMLOCK=infinity" "NoNewPrivileges=yes" "ProtectSystem=strict" \
        "ProtectHome=yes" "PrivateTmp=yes" "ReadWritePaths=-/dev/hugepages" "DevicePolicy=closed" \
        "DeviceAllow=/dev/vfio/vfio rw" "DeviceAllow=char-vfio rw"; do
    check "unit: $line" has_setting "$line" || true
done

# The example config: strip // and /* */ comments outside strings, then parse and look inside.
check_example() {
    python3 - "$EXAMPLE" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
out, i, n, in_str = [], 0, len(text), False
while i < n:
    c = text[i]
    if in_str:
        out.append(c)
        if c == '\\':
            out.append(text[i + 1]); i += 1
        elif c == '"':
            in_str = False
    elif c == '"':
        in_str = True; out.append(c)
    elif text.startswith('//', i):
        while i < n and text[i] != '\n': i += 1
        continue
    elif text.startswith('/*', i):
        i = text.index('*/', i) + 2
        continue
    else:
        out.append(c)
    i += 1
cfg = json.loads(''.join(out))
problems = []
m = cfg.get('management', {})
if not (m.get('enabled', True) and 'port' in m and 'token_file' in m):
    problems.append('management needs enabled, port and token_file')
addresses = {l['address'] for l in cfg.get('listeners', [])}
if len(addresses) < 2: problems.append('listeners on two addresses')
backends = {ns['backend'] for s in cfg.get('subsystems', []) for ns in s.get('namespaces', [])}
for b in ('pcie', 'file', 'ram'):
    if b not in backends: problems.append('no %s namespace' % b)
if not any(s.get('hosts') for s in cfg.get('subsystems', [])): problems.append('no allowed hosts')
for p in problems: print('ferry.example.json:', p)
sys.exit(1 if problems else 0)
PY
}
check "deploy/ferry.example.json parses (comments stripped) and has management, 2 listeners, pcie/file/ram namespaces, hosts" \
    check_example || true

summary
