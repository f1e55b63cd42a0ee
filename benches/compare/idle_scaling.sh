#!/usr/bin/env bash
# Osprey's resident memory per idle session at several N: for each target
# (default instrumentation, and bare), TLS mode and N, a freshly started
# server pinned to SERVER_CPU, `osprey-load idle` on LOAD_CPU, and the
# server's (RSS after − RSS before) / N. Uses run.sh's functions.
#
#   benches/compare/idle_scaling.sh
#   SCALING_NS="1000 10000" SCALING_TLS=none benches/compare/idle_scaling.sh
#
# Each session is a file descriptor in the server and in the generator:
# N must stay below `ulimit -Hn` (minus ~100), which only a process with
# CAP_SYS_RESOURCE can raise.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${SCALING_NS:=1000 10000 19000}"
: "${SCALING_TARGETS:=osprey osprey-bare}"
: "${SCALING_TLS:=none starttls}"
: "${IDLE_HOLD:=5}"
: "${IDLE_CONCURRENCY:=100}"
largest=0
for n in $SCALING_NS; do ((n > largest)) && largest=$n; done
IDLE_USERS=$largest
: "${RESULTS:=/tmp/osprey-compare/results/idle-scaling-$(date +%Y%m%d-%H%M%S)}"
# shellcheck source=run.sh
source "$HERE/run.sh"

mkdir -p "$RESULTS"
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < largest + 100)); then
	die "N=$largest needs more than $(ulimit -n) open files (ulimit -Hn is $(ulimit -Hn))"
fi
build
trap cleanup EXIT
osprey_prepare
for target in $SCALING_TARGETS; do
	for tls in $SCALING_TLS; do
		for n in $SCALING_NS; do
			osprey_start "$target"
			port=$(target_port "$target" "$([ "$tls" = none ] && echo plain || echo tls)")
			log "$target: idle, $n sessions, tls $tls"
			load "$target" "idle-$tls-$n" 1 idle --port "$port" --tls "$tls" \
				--users "$n" --concurrency "$IDLE_CONCURRENCY" --duration "$IDLE_HOLD"
			osprey_stop
		done
	done
done

python3 - "$RESULTS" <<'PY'
import glob, json, os, re, sys
rows = {}
for p in glob.glob(os.path.join(sys.argv[1], "*.json")):
    m = re.match(r"(.+)\.idle-(\w+)-(\d+)\.1\.json$", os.path.basename(p))
    if not m:
        continue
    r = json.load(open(p))
    i, s = r["result"]["idle"], r["server"]
    rows[(m.group(1), m.group(2), int(m.group(3)))] = (
        i["online"], (i["rss_per_session_bytes"] or 0) / 1024,
        s["rss_before_bytes"] / 1048576, s["rss_after_bytes"] / 1048576, i["login_s"])
print("| target | TLS | N | online | RSS before (MiB) | RSS after (MiB) | KiB per session | login time (s) |")
print("|---|---|--:|--:|--:|--:|--:|--:|")
for (t, tls, n), (on, kib, before, after, login) in sorted(rows.items()):
    print(f"| {t} | {tls} | {n:,} | {on:,} | {before:.1f} | {after:.1f} | {kib:.1f} | {login:.1f} |")
PY
