#!/usr/bin/env bash
# What Osprey's default instrumentation costs: the same binary with its
# default handlers (run.sh's `osprey`: the metric store behind /metrics,
# the admin API and `osprey top`, the log handler at info, the HTTP
# listener scraped every SCRAPE_INTERVAL s) against none (`osprey-bare`),
# run.sh's `chat` (maximum rate) and `chat-rate` (fixed rate) scenarios,
# REPEATS interleaved repeats (the order rotating from one repeat to the
# next), each on a freshly started server. Then a table of medians, the
# per-repeat ratios' median and range, and the verdict on the goal:
#
#   osprey ÷ osprey-bare, server CPU per message at the maximum rate ≤ 1.03
#   osprey-bare ÷ osprey, delivered messages per second (max rate)   ≤ 1.03
#
#   benches/compare/instrumentation.sh                 # 10 repeats
#   REPEATS=12 CHAT_DURATION=10 benches/compare/instrumentation.sh
#
# Every run.sh setting applies. Results in RESULTS (default
# WORK/results/instrumentation-<date>): run.sh's files, and cost.md, the
# table printed at the end.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${WORK:=/tmp/osprey-compare}"
: "${REPEATS:=10}"
: "${ROTATE:=1}"
: "${RESULTS:=$WORK/results/instrumentation-$(date +%Y%m%d-%H%M%S)}"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

mkdir -p "$RESULTS"
status=0
TARGETS="osprey osprey-bare" SCENARIOS="${COST_SCENARIOS:-chat chat-rate}" FRESH="chat chat-rate" \
	REPEATS="$REPEATS" ROTATE="$ROTATE" WORK="$WORK" RESULTS="$RESULTS" \
	"$HERE/run.sh" >/dev/null || status=$?
[ -n "$(ls "$RESULTS"/*.json 2>/dev/null)" ] || {
	log "ERROR: no results in $RESULTS (run.sh exit status $status)"
	exit 1
}

python3 - "$RESULTS" "$REPEATS" <<'PY' | tee "$RESULTS/cost.md"
import glob, json, os, re, statistics, sys

results, repeats = sys.argv[1], sys.argv[2]
runs = {}  # (target, scenario) -> {repeat: chat result}
for p in glob.glob(os.path.join(results, "*.json")):
    m = re.match(r"(osprey|osprey-bare)\.(chat|chat-rate)\.(\d+)\.json$", os.path.basename(p))
    if m:
        runs.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = json.load(open(p))["result"]["chat"]

def values(target, scen, get):
    return {k: get(r) for k, r in runs.get((target, scen), {}).items() if get(r)}

cpu = lambda r: r.get("cpu_s_per_1k") and r["cpu_s_per_1k"] * 1000
rate = lambda r: r.get("delivered_per_s")
p99 = lambda r: r.get("latency", {}).get("p99_ms")

rows = [
    ("max rate: server CPU per message (µs)", "chat", cpu, False, 1.03),
    ("max rate: delivered messages/s", "chat", rate, True, 1.03),
    ("5,000 msgs/s: server CPU per message (µs)", "chat-rate", cpu, False, None),
    ("5,000 msgs/s: latency p99 (ms)", "chat-rate", p99, False, None),
]
print(f"Default instrumentation (osprey) against none (osprey-bare), {repeats} interleaved repeats.")
print("Cost is osprey ÷ osprey-bare for CPU and latency, osprey-bare ÷ osprey for throughput (> 1: instrumentation costs).")
print()
print("| measure | osprey (median, range) | osprey-bare (median, range) | cost, ratio of the medians | per-repeat cost: median (range) | goal |")
print("|---|--:|--:|--:|--:|---|")
verdicts = []
for name, scen, get, higher_better, limit in rows:
    a, b = values("osprey", scen, get), values("osprey-bare", scen, get)
    if not a or not b:
        print(f"| {name} | – | – | – | – | not measured |")
        if limit:
            verdicts.append(False)
        continue
    ma, mb = statistics.median(a.values()), statistics.median(b.values())
    cost = mb / ma if higher_better else ma / mb
    per = [(b[k] / a[k] if higher_better else a[k] / b[k]) for k in a if k in b]
    fmt = lambda v: f"{v:.3g}"
    goal = "–"
    if limit:
        ok = cost <= limit
        verdicts.append(ok)
        goal = f"≤ {limit:.2f}: " + ("met" if ok else "**not met**")
    print(f"| {name} | {fmt(ma)} ({fmt(min(a.values()))}–{fmt(max(a.values()))}) "
          f"| {fmt(mb)} ({fmt(min(b.values()))}–{fmt(max(b.values()))}) | {cost:.3f} "
          f"| {statistics.median(per):.3f} ({min(per):.3f}–{max(per):.3f}) | {goal} |")
lost = sum(r.get("lost", 0) for rs in runs.values() for r in rs.values())
print()
print(f"Lost messages over all runs: {lost} (must be 0).")
PY
log "results in $RESULTS"
[ "$status" = 0 ] || log "run.sh reported failed runs (exit status $status): see $RESULTS/*.txt"
exit "$status"
