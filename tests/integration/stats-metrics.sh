#!/bin/bash
# tests/integration/stats-metrics.sh: the management API's counters against real I/O. ferryd
# (two reactors, a config file with one subsystem of two RAM namespaces) serves ferry-perf
# runs; GET /api/v1/stats and GET /metrics must count exactly the commands and bytes ferry-perf
# did; /metrics must parse strictly with prometheus_client's parser (python3-prometheus-client);
# the status page (GET /) loaded in headless Chromium while ferry-perf runs must show non-zero
# live IOPS for the namespace. Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source=../lab/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lab/lib.sh"

PORT=${PORT:-4446}
NQN=nqn.2026-11.io.ferry:stats
PERF=$BUILD/bin/ferry-perf
PY=/usr/bin/python3  # Debian's: python3-prometheus-client is installed for it
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-int.stats.XXXXXX")
trap 'lab_cleanup >/dev/null 2>&1 || true' EXIT
cat > "$WORK/ferryd.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": $PORT } ],
  "subsystems": [
    { "nqn": "$NQN", "allow_any_host": true,
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "64MiB" },
                      { "nsid": 2, "backend": "ram", "size": "16MiB", "block_size": 512 } ] }
  ],
  "management": { "port": 0, "token_file": "$WORK/api-token" }
}
JSON

API=""
TOKEN=""
api_get() {  # api_get PATH OUTFILE [curl args]: authenticated GET, fails on a non-2xx answer
    local path=$1 out=$2; shift 2
    curl -sS --fail-with-body --max-time 10 -H "Authorization: Bearer $TOKEN" -o "$out" "$@" "$API$path"
}
find_api() {  # the REST port from ferryd's log line "ferryd: REST API on http://ADDR:PORT (token file ...)"
    local url
    url=$(grep -o 'REST API on http://[^ ]*' "$WORK/ferryd.log" | head -n 1 | sed 's/^REST API on //') || true
    [ -n "$url" ] || { echo "no 'REST API on' line in $WORK/ferryd.log"; return 1; }
    API=$url
    TOKEN=$(cat "$WORK/api-token") || return 1
    echo "REST API at $API"
}
perf_json() {  # perf_json OUT ARGS...: a ferry-perf run whose exact counts go to OUT
    local out=$1; shift
    "$PERF" -p "$PORT" -n "$NQN" --json "$out" "$@" > "$out.log" 2>&1 || { cat "$out.log"; return 1; }
}

# Compares GET /api/v1/stats with the ferry-perf runs: commands, bytes, errors, latency counts.
check_stats_json() {
    "$PY" - "$WORK/stats.json" "$NQN" "$WORK/p1.json" 4096 "$WORK/p2.json" 131072 <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
nqn = sys.argv[2]
runs = {1: (json.load(open(sys.argv[3])), int(sys.argv[4])), 2: (json.load(open(sys.argv[5])), int(sys.argv[6]))}
sub = [s for s in stats["subsystems"] if s["nqn"] == nqn]
assert len(sub) == 1, f"subsystem {nqn} not in {[s['nqn'] for s in stats['subsystems']]}"
sub = sub[0]
bad = []
def expect(what, got, want):
    if got != want: bad.append(f"{what}: {got}, expected {want}")
total_cmds = total_rd = total_wr = 0
for nsid, (perf, bs) in runs.items():
    ns = [n for n in sub["namespaces"] if n["nsid"] == nsid][0]
    expect(f"nsid {nsid} reads", ns["reads"], perf["reads"])
    expect(f"nsid {nsid} writes", ns["writes"], perf["writes"])
    expect(f"nsid {nsid} others", ns["others"], 0)
    expect(f"nsid {nsid} bytes_read", ns["bytes_read"], perf["reads"] * bs)
    expect(f"nsid {nsid} bytes_written", ns["bytes_written"], perf["writes"] * bs)
    expect(f"nsid {nsid} errors", ns["errors"], 0)
    expect(f"nsid {nsid} latency count", ns["latency"]["count"], perf["reads"] + perf["writes"])
    expect(f"nsid {nsid} latency buckets", sum(ns["latency"]["buckets"]), perf["reads"] + perf["writes"])
    total_cmds += perf["reads"] + perf["writes"]
    total_rd += perf["reads"] * bs
    total_wr += perf["writes"] * bs
    print(f"nsid {nsid}: {ns['reads']} reads, {ns['writes']} writes, {ns['bytes_read']} B read, "
          f"{ns['bytes_written']} B written (ferry-perf: {perf['reads']} reads, {perf['writes']} writes of {bs} B)")
expect("subsystem commands", sub["commands"], total_cmds)
expect("subsystem bytes_read", sub["bytes_read"], total_rd)
expect("subsystem bytes_written", sub["bytes_written"], total_wr)
expect("reactors", len(stats["reactors"]), 2)
if not any(r["busy_ns"] > 0 for r in stats["reactors"]): bad.append("no reactor was ever busy")
if bad:
    print("\n".join(bad)); sys.exit(1)
PY
}

# Parses GET /metrics strictly and compares it with the same runs.
check_metrics() {
    "$PY" - "$WORK/metrics.txt" "$NQN" "$WORK/p1.json" 4096 "$WORK/p2.json" 131072 <<'PY'
import json, re, sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
nqn = sys.argv[2]
runs = {1: (json.load(open(sys.argv[3])), int(sys.argv[4])), 2: (json.load(open(sys.argv[5])), int(sys.argv[6]))}
bad = []
# Strict: every line is a comment or a sample of a family declared just before it by HELP and TYPE.
declared, current, seen = {}, None, set()
for line in text.splitlines():
    m = re.match(r"# (HELP|TYPE) (\S+) (.*)$", line)
    if m:
        if m.group(1) == "TYPE":
            if m.group(2) in declared: bad.append(f"TYPE twice: {line}")
            declared[m.group(2)] = m.group(3)
        current = m.group(2)
        continue
    name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
    ok = name == current or (declared.get(current) == "histogram" and name in
                             (current + "_bucket", current + "_sum", current + "_count"))
    if not ok: bad.append(f"sample outside its family ({current}): {line}")
    key = line.rsplit(" ", 1)[0]
    if key in seen: bad.append(f"sample twice: {key}")
    seen.add(key)
if not text.endswith("\n"): bad.append("no final line feed")
families = {f.name: f for f in text_string_to_metric_families(text)}  # raises on a malformed line
def value(family, sample, **labels):
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    bad.append(f"no sample {sample}{labels}")
    return None
def expect(what, got, want):
    if got != want: bad.append(f"{what}: {got}, expected {want}")
for fam, typ in (("ferry_namespace_commands", "counter"), ("ferry_namespace_latency_seconds", "histogram"),
                 ("ferry_reactor_busy_seconds", "counter"), ("ferry_reactor_connections", "gauge")):
    if fam not in families: bad.append(f"family {fam} missing")
    elif families[fam].type != typ: bad.append(f"{fam} is a {families[fam].type}, expected {typ}")
for nsid, (perf, bs) in runs.items():
    l = {"subsystem": nqn, "nsid": str(nsid)}
    expect(f"nsid {nsid} read commands", value("ferry_namespace_commands", "ferry_namespace_commands_total", op="read", **l), perf["reads"])
    expect(f"nsid {nsid} write commands", value("ferry_namespace_commands", "ferry_namespace_commands_total", op="write", **l), perf["writes"])
    expect(f"nsid {nsid} bytes read", value("ferry_namespace_read_bytes", "ferry_namespace_read_bytes_total", **l), perf["reads"] * bs)
    expect(f"nsid {nsid} bytes written", value("ferry_namespace_written_bytes", "ferry_namespace_written_bytes_total", **l), perf["writes"] * bs)
    n = perf["reads"] + perf["writes"]
    expect(f"nsid {nsid} latency count", value("ferry_namespace_latency_seconds", "ferry_namespace_latency_seconds_count", **l), n)
    expect(f"nsid {nsid} latency +Inf bucket", value("ferry_namespace_latency_seconds", "ferry_namespace_latency_seconds_bucket", le="+Inf", **l), n)
    buckets = [(float(s.labels["le"]), s.value) for s in families["ferry_namespace_latency_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["subsystem"] == nqn and s.labels["nsid"] == str(nsid)]
    if [v for _, v in buckets] != sorted(v for _, v in buckets): bad.append(f"nsid {nsid}: buckets not cumulative")
    if [b for b, _ in buckets] != sorted(b for b, _ in buckets): bad.append(f"nsid {nsid}: bucket bounds not ascending")
print(f"/metrics: {len(families)} families, {sum(len(f.samples) for f in families.values())} samples")
if bad:
    print("\n".join(bad)); sys.exit(1)
PY
}

# The status page's live IOPS cell for NSID 1, from Chromium's dumped DOM.
check_page_iops() {
    "$PY" - "$WORK/page.html" "$NQN" <<'PY'
import html, re, sys
dom = open(sys.argv[1]).read()
nqn = html.escape(sys.argv[2])
m = re.search(r'<td class="num iops" data-subsystem="' + re.escape(nqn) + r'" data-nsid="1" data-value="([^"]*)">([^<]*)<', dom)
if not m:
    print("no live IOPS cell for NSID 1 in the page; state:", re.findall(r'id="state"[^>]*>([^<]*)', dom))
    sys.exit(1)
print(f"status page: NSID 1 at {m.group(2)} IOPS (data-value {m.group(1)})")
sys.exit(0 if m.group(1) and float(m.group(1)) > 0 else 1)
PY
}

# The subsystem section (from /api/v1/subsystems): the NQN, and ferry-perf's controller with
# its I/O queue.
check_page_subsystems() {
    "$PY" - "$WORK/page.html" "$NQN" <<'PY'
import html, re, sys
dom = open(sys.argv[1]).read()
m = re.search(r'<div id="subsystems">(.*?)</section>', dom, re.S)
section = m.group(1) if m else ""
ok = f"<h3>{html.escape(sys.argv[2])}</h3>" in section and re.search(r"q1 \(depth \d+, reactor \d+\)", section)
if not ok: print("subsystem section:", re.sub(r"<[^>]+>", " ", section)[:600])
sys.exit(0 if ok else 1)
PY
}

if check "ferryd starts (2 reactors, REST API on an ephemeral port)" start_ferryd "$WORK/ferryd.json" "$WORK/ferryd.log" --cpus 0,1 &&
        check "REST API port and token file" find_api; then
    check "ferry-perf --verify rw 4k qd16 on NSID 1" perf_json "$WORK/p1.json" --nsid 1 --rw rw --bs 4k --qd 16 -t 2 --verify || true
    check "ferry-perf rw 128k qd4 2 queues (R2T) on NSID 2 (512 B LBAs)" perf_json "$WORK/p2.json" --nsid 2 --rw rw --bs 128k --qd 4 --queues 2 -t 1 || true
    if check "GET /api/v1/stats" api_get /api/v1/stats "$WORK/stats.json"; then
        check "stats: commands, bytes and latency counts equal ferry-perf's" check_stats_json || true
    fi
    if check "GET /metrics (text/plain; version=0.0.4)" api_get /metrics "$WORK/metrics.txt" -D "$WORK/metrics.headers"; then
        check "metrics Content-Type" grep -qi '^content-type: text/plain; version=0.0.4' "$WORK/metrics.headers" || true
        check "metrics parse strictly and equal ferry-perf's counts" check_metrics || true
    fi
    # The status page under load: ferry-perf runs 10 s; Chromium loads the page 1 s in and
    # runs it for 6 s of virtual time (a stats poll per second; real fetches).
    "$PERF" -p "$PORT" -n "$NQN" --nsid 1 --rw randread --bs 4k --qd 8 -t 10 > "$WORK/p3.log" 2>&1 &
    perf_pid=$!
    sleep 1
    check "status page loads in headless Chromium" timeout 60 chromium --headless --no-sandbox --disable-gpu \
        --user-data-dir="$WORK/chromium" --virtual-time-budget=6000 --dump-dom "$API/#token=$TOKEN" \
        > "$WORK/page.html" 2> "$WORK/chromium.log" || true
    check "status page shows live non-zero IOPS for NSID 1" check_page_iops || true
    check "status page lists the subsystem and the connected host's I/O queue" check_page_subsystems || true
    check "ferry-perf under the page completed" wait "$perf_pid" || { cat "$WORK/p3.log"; true; }
    check "ferryd stops cleanly" stop_ferryd || true
fi
echo "ferryd log: $WORK/ferryd.log"
summary
