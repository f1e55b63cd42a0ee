#!/usr/bin/env bash
# Osprey's cost as rosters grow: for each roster size C (ascending), a
# freshly started server (default instrumentation) pinned to SERVER_CPU,
# one `osprey-load mixed` pass that fills every roster up to C contacts,
# then a measured pass over the same users: the roster get's round trip,
# login latency, server CPU and RSS. Uses run.sh's functions.
#
#   benches/compare/roster_scaling.sh
#   ROSTER_SIZES="0 50" ROSTER_USERS=200 benches/compare/roster_scaling.sh
#
# Contacts are each user's neighbours by index (`osprey-load mixed`), so a
# larger C is a superset of a smaller one: ascending sizes leave exactly C
# items in every roster when it is measured. Items are added with roster
# sets (subscription none): presence is not fanned out to them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${ROSTER_SIZES:=0 20 100 300}"
: "${ROSTER_USERS:=400}"
: "${ROSTER_DURATION:=10}"
: "${ROSTER_RAMP:=4}"
: "${ROSTER_INTERVAL:=3}"
: "${RESULTS:=/tmp/osprey-compare/results/roster-scaling-$(date +%Y%m%d-%H%M%S)}"
# shellcheck source=run.sh
source "$HERE/run.sh"

mkdir -p "$RESULTS"
build
trap cleanup EXIT
osprey_prepare
for c in $ROSTER_SIZES; do
	osprey_start osprey
	port=$(target_port osprey plain)
	log "osprey: rosters up to $c contacts for $ROSTER_USERS users"
	taskset -c "$LOAD_CPU" "$LOAD" mixed --label fill --mech "$MECH" --port "$port" \
		--users "$ROSTER_USERS" --contacts "$c" --duration $((ROSTER_RAMP + 6)) \
		--ramp "$ROSTER_RAMP" --interval 100000 >"$RESULTS/fill-$c.txt" 2>&1 ||
		die "filling the rosters failed (see $RESULTS/fill-$c.txt)"
	osprey_stop
	osprey_start osprey
	log "osprey: measured mixed pass, $c contacts"
	load osprey "roster-$c" 1 mixed --port "$port" --users "$ROSTER_USERS" --contacts "$c" \
		--duration "$ROSTER_DURATION" --ramp "$ROSTER_RAMP" --interval "$ROSTER_INTERVAL"
	osprey_stop
done

python3 - "$RESULTS" <<'PY'
import glob, json, os, re, sys
rows = []
for p in glob.glob(os.path.join(sys.argv[1], "*.json")):
    m = re.match(r"osprey\.roster-(\d+)\.1\.json$", os.path.basename(p))
    if not m:
        continue
    r = json.load(open(p))
    x, s = r["result"]["mixed"], r["server"]
    rows.append((int(m.group(1)), x, s))
print("| contacts | roster get p50 (ms) | roster get p99 (ms) | login p50 (ms) | msgs delivered | lost | server CPU (s) | RSS after (MiB) |")
print("|--:|--:|--:|--:|--:|--:|--:|--:|")
for c, x, s in sorted(rows, key=lambda t: t[0]):
    rl, ll = x["roster_latency"], x["login_latency"]
    print(f"| {c} | {rl['p50_ms']:.3f} | {rl['p99_ms']:.3f} | {ll['p50_ms']:.3f} | "
          f"{x['delivered']:,} | {x['lost']} | {s['cpu_seconds']:.2f} | {s['rss_after_bytes'] / 1048576:.1f} |")
PY
