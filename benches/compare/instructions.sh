#!/usr/bin/env bash
# Instructions per chat message, counted by valgrind's callgrind: a figure
# that moves far less with the machine's noise (the same binary and load
# give about the same count whatever else runs: within a few per cent, as
# batching still depends on timing), for comparing two Osprey builds
# where run.sh's CPU per message spreads by 15-40 %.
#
#   benches/compare/instructions.sh BIN [BIN…]
#   SM=1 benches/compare/instructions.sh BIN        # stream management on
#   BARE=1 benches/compare/instructions.sh BIN      # no handler, no HTTP listener
#
# Each BIN is started under callgrind with instrumentation off; the load
# generator logs PAIRS pairs in and sends RATE messages/s for WINDOW+25 s;
# instrumentation is on for WINDOW s in the middle only (logins excluded).
# Messages in the window are the calls to `rewrite_from_to` (the sender's
# stamp, once per routed message, in every Osprey since the first). User
# space only: the kernel's share (about half of run.sh's CPU figure) is not
# counted. Instructions are not time: a diagnostic beside run.sh, not a
# replacement. Needs valgrind and a release build of benches/loadgen.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
: "${RATE:=4000}"
: "${WINDOW:=10}"
: "${PAIRS:=20}"
: "${PORT:=35322}"
: "${SM:=0}"
: "${BARE:=0}"
: "${WORK:=/tmp/osprey-instructions}"
LOAD="${LOAD:-$ROOT/target/release/osprey-load}"

command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$LOAD" ] || { echo "build the generator first: cargo build --release -p osprey-loadgen" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN…]" >&2; exit 1; }

extra=()
[ "$SM" = 1 ] && extra=(--stream-management --sm-ack-every 8)

# calls FILE PATTERN: calls to functions matching PATTERN in a callgrind file.
calls() {
	python3 - "$1" "$2" <<'PY'
import re, sys
names, cfn, total = {}, None, 0
for line in open(sys.argv[1]):
    m = re.match(r'(c?fn)=\((\d+)\)(?: (.*))?', line)
    if m:
        kind, ident, name = m.groups()
        if name:
            names[ident] = name
        if kind == 'cfn':
            cfn = names.get(ident)
        continue
    m = re.match(r'calls=(\d+)', line)
    if m and cfn and re.search(sys.argv[2], cfn):
        total += int(m.group(1))
print(total)
PY
}

n=0
for bin in "$@"; do
	n=$((n + 1))
	dir="$WORK/$n"
	rm -rf "$dir"
	mkdir -p "$dir/data"
	cat >"$dir/osprey.toml" <<EOF
[general]
hosts = ["localhost"]
data_dir = "$dir/data"

[[listen.c2s]]
address = "127.0.0.1"
port = $PORT
tls.mode = "none"
allow_plain_auth_without_tls = true
max_connections_per_address = 100000
shaper = "none"
max_stanza_rate = 0

EOF
	if [ "$BARE" = 1 ]; then
		printf '[listen]\nhttp = []\n' >>"$dir/osprey.toml"
	else
		cat >>"$dir/osprey.toml" <<EOF
[[listen.http]]
address = "127.0.0.1"
port = $((PORT + 1))
handlers = ["metrics", "admin"]

[instrumentation.prometheus]
[instrumentation.log]
EOF
	fi
	"$bin" --config "$dir/osprey.toml" account populate --prefix user --count $((PAIRS * 2)) \
		--password password >/dev/null 2>&1
	valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out" \
		"$bin" --config "$dir/osprey.toml" serve >"$dir/server.log" 2>&1 &
	pid=$!
	for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done
	"$LOAD" chat --label "$n" --port "$PORT" --pairs "$PAIRS" --duration $((WINDOW + 25)) \
		--rate "$RATE" "${extra[@]}" >"$dir/load.txt" 2>&1 &
	load=$!
	sleep 20
	callgrind_control -i on "$pid" >/dev/null 2>&1
	sleep "$WINDOW"
	callgrind_control -i off "$pid" >/dev/null 2>&1
	wait "$load" || { echo "the generator failed: $dir/load.txt" >&2; kill "$pid"; exit 1; }
	kill -INT "$pid"
	wait "$pid" 2>/dev/null || true
	total=$(awk '/^totals:/ {print $2}' "$dir/callgrind.out")
	msgs=$(calls "$dir/callgrind.out" 'rewrite_from_to$')
	python3 -c "print(f'{\"$bin\"}: {$total:,} instructions, {$msgs:,} messages, {$total/$msgs:,.0f} per message')"
done
