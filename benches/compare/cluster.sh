#!/usr/bin/env bash
# Osprey as a 2-node cluster: CPU per message and latency of same-node
# against cross-node delivery. See README.md ("Cluster").
#
#   benches/compare/cluster.sh
#   REPEATS=3 DURATION=10 benches/compare/cluster.sh
#
# Starts its own nats-server on a free port and a fresh PostgreSQL database
# (psql -h 127.0.0.1 -U postgres), populates the accounts once, then starts
# two Osprey nodes ([cluster] node = "n1"/"n2", heartbeat 1 s, node_timeout
# 3 s, as tests/e2e/cluster.rs) sharing that database, BOTH pinned to
# SERVER_CPU (core 0: the two nodes share one core, and nats-server runs
# there too), the generator on LOAD_CPU (core 1). Then REPEATS times,
# interleaved (the order of the two modes alternates from one repeat to the
# next):
#   same:  chat with both users of every pair on node 1 (node 2 idle);
#   cross: chat with user 2k-1 on node 1 and user 2k on node 2, so that
#          every message (both directions) crosses nodes over NATS;
# each at the maximum rate (window WINDOW per direction) and at RATE msgs/s.
# The generator reads the CPU time of node 1, node 2 and nats-server
# (three --server-pid); "CPU per message" is the two nodes' sum, NATS is
# shown beside it. MAM is off, as in run.sh; no instrumentation handler and
# no HTTP listener (RUST_LOG=warn), as run.sh's osprey-bare.
# Results: RESULTS/<mode>-<max|rate>.<repeat>.json (+ .txt), RESULTS/env.txt,
# RESULTS/table.md. Everything it started is stopped, and the database
# dropped, on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

: "${REPEATS:=5}"
: "${PAIRS:=50}"
: "${DURATION:=6}"
: "${WINDOW:=16}"
: "${RATE:=5000}"
# Which runs: max (the maximum rate) and/or rate (RATE msgs/s).
: "${KINDS:=max rate}"
: "${MECH:=scram-sha-1}"
: "${SERVER_CPU:=0}"
: "${LOAD_CPU:=1}"
# nats-server's core (by default the nodes' one, so that the generator's
# core stays the generator's).
: "${NATS_CPU:=$SERVER_CPU}"
: "${NODE1_PORT:=36222}"
: "${NODE2_PORT:=36322}"
: "${WORK:=/tmp/osprey-cluster}"
: "${RESULTS:=$WORK/results/$(date +%Y%m%d-%H%M%S)}"
: "${PGHOST:=127.0.0.1}"
: "${PGUSER:=postgres}"
# 0: use the binaries already in BIN_DIR (no cargo build).
: "${BUILD:=1}"
# Where osprey and osprey-load are taken from (another build's, to
# compare two versions: BUILD=0 BIN_DIR=/path/to/them).
: "${BIN_DIR:=$ROOT/target/release}"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

OSPREY="$WORK/bin/osprey"
LOAD="$WORK/bin/osprey-load"
DB="osprey_cluster_bench_$$"
NATS_PID=""
NATS_PORT=""
declare -A NODE_PID=()
FAILED_RUNS=()

psql_admin() { psql -h "$PGHOST" -U "$PGUSER" -d postgres -v ON_ERROR_STOP=1 -qAt -c "$1"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port NAME PID PORT LOG
wait_port() {
	local i
	for ((i = 0; i < 300; i++)); do
		port_open "$3" && return 0
		kill -0 "$2" 2>/dev/null || die "$1 exited (see $4)"
		sleep 0.1
	done
	die "$1 did not listen on $3 within 30 s (see $4)"
}

stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local n
	for n in "${!NODE_PID[@]}"; do stop_pid "${NODE_PID[$n]}"; done
	stop_pid "$NATS_PID"
	psql_admin "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}

build() {
	if [ "$BUILD" = 1 ]; then
		log "building osprey and osprey-load (release)"
		(cd "$ROOT" && cargo build --release -p osprey-gateway --bin osprey &&
			cargo build --release -p osprey-loadgen) >&2
	fi
	mkdir -p "$WORK/bin"
	# Copies: a rebuild in the shared target directory cannot swap them mid-run.
	cp "$BIN_DIR/osprey" "$BIN_DIR/osprey-load" "$WORK/bin/"
}

# node_config NAME PORT: writes and prints the node's configuration file.
node_config() {
	local name=$1 port=$2 f="$WORK/$1.toml"
	mkdir -p "$WORK/$name"
	cat >"$f" <<EOF
# benches/compare/cluster.sh: cluster node $name.
[general]
hosts = ["localhost"]
data_dir = "$WORK/$name"

# No HTTP listener and no [instrumentation.*] section: every handler off.
[listen]
http = []

[[listen.c2s]]
address = "127.0.0.1"
port = $port
tls.mode = "none"
allow_plain_auth_without_tls = true
max_connections_per_address = 100000
shaper = "none"
max_stanza_rate = 0

# BENCH: no archiving, as in run.sh.
[modules.mam]
enabled = false

[storage]
url = "postgres://$PGUSER@$PGHOST:5432/$DB"

[cluster]
node = "$name"
nats = ["nats://127.0.0.1:$NATS_PORT"]
heartbeat = 1
node_timeout = 3
EOF
	echo "$f"
}

start_nats() {
	NATS_PORT=$(free_port)
	taskset -c "$NATS_CPU" nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 </dev/null &
	NATS_PID=$!
	wait_port nats-server "$NATS_PID" "$NATS_PORT" "$WORK/nats.log"
	log "nats-server pid $NATS_PID on 127.0.0.1:$NATS_PORT, cpu $NATS_CPU"
}

# start_node NAME PORT
start_node() {
	local name=$1 port=$2 cfg pid
	cfg=$(node_config "$name" "$port")
	! port_open "$port" || die "port $port is already in use (another server running?)"
	(
		ulimit -n "$(ulimit -Hn)"
		export RUST_LOG=warn
		cd "$WORK" && exec taskset -c "$SERVER_CPU" "$OSPREY" --config "$cfg" serve \
			>"$WORK/$name.log" 2>&1 </dev/null
	) &
	pid=$!
	NODE_PID[$name]=$pid
	wait_port "osprey $name" "$pid" "$port" "$WORK/$name.log"
	log "osprey node $name pid $pid on 127.0.0.1:$port, cpu $SERVER_CPU"
}

# run_chat MODE KIND REPEAT: KIND max|rate.
run_chat() {
	local mode=$1 kind=$2 rep=$3 out args=()
	out="$RESULTS/$mode-$kind.$rep"
	case $kind in
	max) args+=(--window "$WINDOW") ;;
	rate) args+=(--rate "$RATE") ;;
	esac
	[ "$mode" = cross ] && args+=(--peer-port "$NODE2_PORT")
	log "$mode-$kind (repeat $rep/$REPEATS)"
	if taskset -c "$LOAD_CPU" "$LOAD" chat --label "$mode-$kind" --mech "$MECH" \
		--port "$NODE1_PORT" --pairs "$PAIRS" --duration "$DURATION" "${args[@]}" \
		--server-pid "${NODE_PID[n1]}" --server-pid "${NODE_PID[n2]}" --server-pid "$NATS_PID" \
		--json >"$out.json" 2>"$out.txt"; then
		sed 's/^/    /' "$out.txt" >&2
	else
		log "FAILED: $mode-$kind (repeat $rep); see $out.txt"
		sed 's/^/    /' "$out.txt" >&2
		rm -f "$out.json"
		FAILED_RUNS+=("$mode-$kind.$rep")
	fi
}

table() {
	python3 - "$1" <<'PY'
import glob, json, os, statistics, sys

d = sys.argv[1]
runs = {}  # (mode, kind) -> {rep: values}
for f in sorted(glob.glob(os.path.join(d, "*.json"))):
    name, rep = os.path.basename(f)[:-5].rsplit(".", 1)
    mode, kind = name.split("-")
    r = json.load(open(f))
    c = r["result"]["chat"]
    each = [e["cpu_seconds"] for e in r["server"]["each"]]
    n = max(c["delivered"], 1)
    runs.setdefault((mode, kind), {})[int(rep)] = {
        "rate": c["delivered_per_s"],
        "cpu": (each[0] + each[1]) / n * 1e6,
        "n1": each[0] / n * 1e6,
        "n2": each[1] / n * 1e6,
        "nats": each[2] / n * 1e6,
        "all": sum(each) / n * 1e6,
        "p50": c["latency"]["p50_ms"],
        "p99": c["latency"]["p99_ms"],
        "lost": c["lost"],
        "unsettled": c.get("unsettled", 0),
        "settle": c.get("settle_s", 0.0),
        "gen": r["generator_cpu_s"] / max(r["elapsed_s"], 1e-9) * 100,
    }

def med(vals):
    return statistics.median(vals) if vals else float("nan")

def cell(vals, fmt):
    if not vals:
        return "–"
    m = fmt.format(med(vals))
    if len(vals) == 1:
        return m
    return f"{m} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"

cols = [
    ("delivered msgs/s", "rate", "{:.0f}"),
    ("CPU µs/msg, both nodes", "cpu", "{:.1f}"),
    ("node 1 µs/msg", "n1", "{:.1f}"),
    ("node 2 µs/msg", "n2", "{:.1f}"),
    ("nats-server µs/msg", "nats", "{:.1f}"),
    ("p50 ms", "p50", "{:.3f}"),
    ("p99 ms", "p99", "{:.3f}"),
]
kinds = [("max", "max rate"), ("rate", "fixed rate")]
print("Medians over the repeats (min–max in brackets); CPU per delivered message.\n")
print("| run | " + " | ".join(c[0] for c in cols) + " | lost | generator CPU % |")
print("|---|" + "--:|" * (len(cols) + 2))
for kind, kname in kinds:
    for mode in ("same", "cross"):
        rs = runs.get((mode, kind), {})
        v = list(rs.values())
        row = [cell([x[k] for x in v], f) for _, k, f in cols]
        lost = sum(x["lost"] for x in v)
        uns = sum(x["unsettled"] for x in v)
        lost_s = f"{lost}" + (f" ({uns} pairs unsettled)" if uns else "")
        print(f"| {mode}-node, {kname} ({len(v)} runs) | " + " | ".join(row)
              + f" | {lost_s} | {cell([x['gen'] for x in v], '{:.0f}')} |")

print("\nCross ÷ same, per repeat (cross-node run k ÷ same-node run k), median (min–max):\n")
rat = [
    ("delivered msgs/s", "rate"),
    ("CPU per message, both nodes", "cpu"),
    ("CPU per message, nodes + nats-server", "all"),
    ("p50 latency", "p50"),
    ("p99 latency", "p99"),
]
print("| ratio | " + " | ".join(k[1] for k in kinds) + " |")
print("|---|" + "--:|" * len(kinds))
ratios = {}
for label, key in rat:
    cells = []
    for kind, _ in kinds:
        s, c = runs.get(("same", kind), {}), runs.get(("cross", kind), {})
        rs = [c[k][key] / s[k][key] for k in sorted(set(s) & set(c)) if s[k][key] > 0]
        ratios[(key, kind)] = rs
        cells.append(cell(rs, "{:.2f}"))
    print(f"| {label} | " + " | ".join(cells) + " |")

cpu_r = med(ratios.get(("cpu", "max"), []) + [])
cpu_rr = med(ratios.get(("cpu", "rate"), []))
p99 = med([x["p99"] for x in runs.get(("cross", "rate"), {}).values()])
rate_c = med([x["rate"] for x in runs.get(("cross", "rate"), {}).values()])
print("\nTargets (medians):\n")
print(f"- cross-node CPU per message ≤ 2 × same-node: max rate {cpu_r:.2f}×, "
      f"fixed rate {cpu_rr:.2f}× → {'met' if max(cpu_r, cpu_rr) <= 2 else 'NOT met'}")
print(f"- cross-node p99 ≤ 2 ms at the fixed rate ({rate_c:.0f} msgs/s delivered): "
      f"{p99:.3f} ms → {'met' if p99 <= 2 else 'NOT met'}")
PY
}

main() {
	mkdir -p "$RESULTS" "$WORK"
	command -v nats-server >/dev/null || die "nats-server is not installed"
	psql_admin "SELECT 1" >/dev/null || die "no PostgreSQL at $PGUSER@$PGHOST"
	ulimit -n "$(ulimit -Hn)"
	build
	trap cleanup EXIT
	rm -rf "$WORK/n1" "$WORK/n2"
	psql_admin "CREATE DATABASE $DB" >/dev/null
	start_nats
	log "database $DB: accounts user1..user$((PAIRS * 2))"
	"$OSPREY" --config "$(node_config n1 "$NODE1_PORT")" account populate --prefix user \
		--count $((PAIRS * 2)) --password password >&2
	start_node n1 "$NODE1_PORT"
	start_node n2 "$NODE2_PORT"
	# Both nodes heartbeat every second: let each see the other.
	sleep 3

	{
		echo "date: $(date -u +%FT%TZ)"
		echo "host: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
		echo "osprey: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (+ working tree)"
		echo "nats-server: $(nats-server --version 2>&1 | head -1)"
		echo "postgresql: $(psql_admin 'SHOW server_version')"
		echo "nodes n1 (:$NODE1_PORT), n2 (:$NODE2_PORT) both on cpu $SERVER_CPU, nats-server on cpu $NATS_CPU, generator on cpu $LOAD_CPU"
		echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes share this machine)"
		for v in REPEATS PAIRS DURATION WINDOW RATE MECH; do echo "$v=${!v}"; done
	} >"$RESULTS/env.txt"
	cat "$RESULTS/env.txt" >&2

	local rep kind mode modes
	for ((rep = 1; rep <= REPEATS; rep++)); do
		if ((rep % 2)); then modes="same cross"; else modes="cross same"; fi
		for kind in $KINDS; do
			for mode in $modes; do
				run_chat "$mode" "$kind" "$rep"
			done
		done
	done
	kill -0 "${NODE_PID[n1]}" 2>/dev/null && kill -0 "${NODE_PID[n2]}" 2>/dev/null ||
		log "WARNING: a node exited during the runs (see $WORK/n1.log, $WORK/n2.log)"

	echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/env.txt"
	table "$RESULTS" | tee "$RESULTS/table.md"
	log "results in $RESULTS; node logs in $WORK/n1.log, $WORK/n2.log"
	if [ ${#FAILED_RUNS[@]} -gt 0 ]; then
		log "failed runs: ${FAILED_RUNS[*]}"
		exit 1
	fi
}

main "$@"
