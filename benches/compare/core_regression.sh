#!/usr/bin/env bash
# Osprey against an older Osprey, and with stream management on: run.sh's
# `chat` (maximum rate) and `idle` scenarios for three targets, REPEATS
# interleaved repeats (each repeat runs every target in turn, the order
# rotating from one repeat to the next), then a table of medians, ratios
# and spreads, and the verdicts of the regression goals:
#
#   osprey ÷ osprey-base, server CPU per chat message   ≤ 1.05
#   osprey ÷ osprey-base, RSS per idle session           ≤ 1.05
#   osprey-sm ÷ osprey, server CPU per chat message      ≤ 1.15
#
# Targets (see run.sh): osprey-base = the binary OSPREY_BASE_BIN (or one
# built here from BASE_COMMIT), osprey = this tree, osprey-sm = this tree
# with the generator enabling stream management with resume on every
# session and acking every SM_ACK_EVERY [8] stanzas. All three with
# Osprey's default instrumentation (as run.sh's `osprey`), each on a
# freshly started server per scenario. No Prosody or ejabberd.
#
#   OSPREY_BASE_BIN=/tmp/osprey-base-target/release/osprey benches/compare/core_regression.sh
#   BASE_COMMIT=06e2024 benches/compare/core_regression.sh      # builds the base first
#   REPEATS=9 CHAT_DURATION=10 OSPREY_BASE_BIN=… benches/compare/core_regression.sh
#
# Every run.sh setting applies (CHAT_PAIRS, CHAT_DURATION, CHAT_WINDOW,
# IDLE_USERS, IDLE_HOLD, SERVER_CPU, LOAD_CPU, WORK, …). Results in
# RESULTS (default WORK/results/core-regression-<date>): run.sh's files,
# and core.md, the table printed at the end.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
: "${WORK:=/tmp/osprey-compare}"
: "${REPEATS:=5}"
: "${ROTATE:=1}"
: "${SM_ACK_EVERY:=8}"
: "${RESULTS:=$WORK/results/core-regression-$(date +%Y%m%d-%H%M%S)}"
: "${BASE_COMMIT:=}"
: "${OSPREY_BASE_BIN:=}"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# BASE_COMMIT: a release build of that commit in a temporary git worktree
# (its own target directory, so the main tree's build is untouched).
if [ -z "$OSPREY_BASE_BIN" ]; then
	[ -n "$BASE_COMMIT" ] || die "set OSPREY_BASE_BIN (an Osprey binary) or BASE_COMMIT (a commit to build)"
	src="$WORK/base-src"
	target_dir="$WORK/base-target"
	log "building osprey at $BASE_COMMIT in a worktree ($src)"
	git -C "$ROOT" worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
	git -C "$ROOT" worktree add --detach "$src" "$BASE_COMMIT" >&2
	(cd "$src" && CARGO_TARGET_DIR="$target_dir" cargo build --release -p osprey-gateway) >&2 || {
		git -C "$ROOT" worktree remove --force "$src"
		die "the build of $BASE_COMMIT failed"
	}
	git -C "$ROOT" worktree remove --force "$src"
	OSPREY_BASE_BIN="$target_dir/release/osprey"
fi
[ -x "$OSPREY_BASE_BIN" ] || die "OSPREY_BASE_BIN=$OSPREY_BASE_BIN is not an executable"

mkdir -p "$RESULTS"
status=0
TARGETS="osprey-base osprey osprey-sm" SCENARIOS="${CORE_SCENARIOS:-chat idle}" FRESH="chat idle" \
	REPEATS="$REPEATS" ROTATE="$ROTATE" SM_ACK_EVERY="$SM_ACK_EVERY" WORK="$WORK" \
	RESULTS="$RESULTS" OSPREY_BASE_BIN="$OSPREY_BASE_BIN" \
	"$HERE/run.sh" >/dev/null || status=$?
[ -n "$(ls "$RESULTS"/*.json 2>/dev/null)" ] || die "no results in $RESULTS (run.sh exit status $status)"

{
	echo "Medians of $REPEATS interleaved repeats (order rotated: ROTATE=$ROTATE). ↑ higher is better, ↓ lower is better."
	echo
	python3 "$HERE/table.py" "$RESULTS" --ratios osprey/osprey-base osprey-sm/osprey --runs \
		--metrics "chat max rate: delivered" "chat max rate: server CPU" \
		"chat max rate: latency p50" "RSS per idle session" "generator CPU"
	echo
	python3 - "$RESULTS" <<'PY'
import glob, json, os, re, statistics, sys

runs = {}  # (target, scenario) -> {repeat: report}
for p in glob.glob(os.path.join(sys.argv[1], "*.json")):
    m = re.match(r"(.+)\.(chat|idle)\.(\d+)\.json$", os.path.basename(p))
    if m:
        runs.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = json.load(open(p))

def values(target, scen, get):
    out = {}
    for rep, r in runs.get((target, scen), {}).items():
        v = get(r)
        if v is not None:
            out[rep] = v
    return out

def median(target, scen, get):
    vals = list(values(target, scen, get).values())
    return statistics.median(vals) if vals else None

def paired(a, b, scen, get):
    """The median of the per-repeat ratios a/b (a check on drift)."""
    va, vb = values(a, scen, get), values(b, scen, get)
    ratios = [va[k] / vb[k] for k in va if k in vb and vb[k]]
    return statistics.median(ratios) if ratios else None

cpu = lambda r: r["result"]["chat"]["cpu_s_per_1k"] and r["result"]["chat"]["cpu_s_per_1k"] * 1000
kib = lambda r: r["result"]["idle"]["rss_per_session_bytes"] and r["result"]["idle"]["rss_per_session_bytes"] / 1024
goals = [
    ("chat: server CPU per message, osprey ÷ osprey-base", "osprey", "osprey-base", "chat", cpu, 1.05, "µs"),
    ("idle: RSS per session, osprey ÷ osprey-base", "osprey", "osprey-base", "idle", kib, 1.05, "KiB"),
    ("chat: server CPU per message, osprey-sm ÷ osprey", "osprey-sm", "osprey", "chat", cpu, 1.15, "µs"),
]
print("| goal | limit | medians | ratio of the medians | verdict | median of the per-repeat ratios |")
print("|---|--:|--:|--:|---|--:|")
for name, a, b, scen, get, limit, unit in goals:
    va, vb = median(a, scen, get), median(b, scen, get)
    if va is None or vb is None or not vb:
        print(f"| {name} | ≤ {limit:.2f} | – | – | not measured | – |")
        continue
    ratio = va / vb
    verdict = "met" if ratio <= limit else "**not met**"
    p = paired(a, b, scen, get)
    pr = f"{p:.3f}" if p is not None else "–"
    print(f"| {name} | ≤ {limit:.2f} | {va:.3g} vs {vb:.3g} {unit} | {ratio:.3f} | {verdict} | {pr} |")
lost = sum(r["result"]["chat"].get("lost", 0)
           for (t, s), rs in runs.items() if s == "chat" for r in rs.values())
print()
print("The verdict is on the ratio of the medians; the per-repeat ratios pair the runs")
print("of one repeat (run close together in time), a check on drift over the run.")
print()
print(f"Lost messages over all chat runs: {lost} (must be 0).")
PY
} >"$RESULTS/core.md"
cat "$RESULTS/core.md"
log "results in $RESULTS"
[ "$status" = 0 ] || log "run.sh reported failed runs (exit status $status): see $RESULTS/*.txt"
exit "$status"
