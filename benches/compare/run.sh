#!/usr/bin/env bash
# Osprey, Prosody and ejabberd side by side on this machine: every scenario
# of the load generator (benches/loadgen) against each server, REPEATS
# times, then a markdown table of medians and ratios. See README.md.
#
#   benches/compare/run.sh                         # all, default sizes
#   REPEATS=1 TARGETS="osprey prosody" SCENARIOS="chat" benches/compare/run.sh
#
# Targets: osprey (default instrumentation: Prometheus + log handlers and
# the metrics/admin HTTP listener, scraped every SCRAPE_INTERVAL s),
# osprey-bare (no handler, no HTTP listener, RUST_LOG=warn), prosody,
# ejabberd; and, for before/after comparisons of Osprey itself (not in the
# default TARGETS): osprey-base (the binary OSPREY_BASE_BIN, e.g. a build
# of an older commit, configured as osprey, with its own data directory)
# and osprey-sm (osprey, with the generator enabling stream management on
# every session: --stream-management --sm-ack-every SM_ACK_EVERY) and
# osprey-mam (osprey with message archiving on, its shipped default: every
# chat message written to both users' archives). The other Osprey targets
# run without archiving, as Prosody and ejabberd do here. Each
# server is pinned to SERVER_CPU, the generator to LOAD_CPU.
# Results: RESULTS/<target>.<scenario>.<repeat>.json (+ .txt summaries),
# RESULTS/env.txt, RESULTS/table.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=servers.sh
source "$HERE/servers.sh"

: "${REPEATS:=3}"
: "${TARGETS:=osprey osprey-bare prosody ejabberd}"
: "${SCENARIOS:=idle idle-tls chat chat-rate mixed login login-sha256}"
# Scenarios that start on a freshly started server: idle measures RSS
# growth, and a server's state after thousands of logins and logouts can
# change what follows (Prosody's message rate drops ~3x after 3000).
: "${FRESH:=idle idle-tls chat}"
: "${SERVER_CPU:=0}"
: "${LOAD_CPU:=1}"
# 1: repeat k starts with the k-th target (rotating the order), so that no
# target always runs first or right after the same other one.
: "${ROTATE:=0}"
# osprey-base: the Osprey binary to compare against (required with it).
: "${OSPREY_BASE_BIN:=}"
# osprey-sm: the generator's ack interval (stanzas per <a/>).
: "${SM_ACK_EVERY:=8}"
# SCRAM-SHA-1: the one SCRAM all three offer (Prosody and ejabberd, as
# configured here, keep SHA-1 keys only; Osprey offers SHA-256 too).
# login-sha256 logs in with SCRAM-SHA-256: Osprey as it is, ejabberd
# restarted with auth_scram_hash: sha256 and SHA-256 accounts (its own
# directory), Prosody skipped (it stores SHA-1 keys).
: "${MECH:=scram-sha-1}"
: "${LOGIN_USERS:=2000}"
: "${LOGIN_FOR:=4}"
: "${LOGIN_CONCURRENCY:=50}"
: "${IDLE_USERS:=8000}"
: "${IDLE_TLS_USERS:=2000}"
: "${IDLE_CONCURRENCY:=50}"
: "${IDLE_HOLD:=2}"
: "${CHAT_PAIRS:=50}"
: "${CHAT_DURATION:=6}"
: "${CHAT_WINDOW:=16}"
: "${CHAT_RATE:=5000}"
: "${MIXED_USERS:=600}"
: "${MIXED_DURATION:=12}"
: "${MIXED_RAMP:=4}"
: "${MIXED_INTERVAL:=3}"
: "${MIXED_CONTACTS:=20}"
: "${SCRAPE_INTERVAL:=15}"
: "${WORK:=/tmp/osprey-compare}"
: "${RESULTS:=$WORK/results/$(date +%Y%m%d-%H%M%S)}"
: "${OSPREY_C2S_PORT:=35222}"
: "${OSPREY_TLS_PORT:=35223}"
: "${OSPREY_HTTP_PORT:=35280}"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

max() {
	local m=0 v
	for v in "$@"; do ((v > m)) && m=$v; done
	echo "$m"
}
NACCOUNTS=$(max "$LOGIN_USERS" "$IDLE_USERS" "$IDLE_TLS_USERS" $((CHAT_PAIRS * 2)) "$MIXED_USERS")

# Copies of the release binaries, taken right after the build, so that a
# rebuild in the shared target directory cannot swap them mid-run.
OSPREY="$WORK/bin/osprey"
# A copy of OSPREY_BASE_BIN (named osprey too: target_pid checks the name).
OSPREY_BASE="$WORK/bin/base/osprey"
LOAD="$WORK/bin/osprey-load"
ODIR="$WORK/osprey"
PDIR="$WORK/prosody"
EDIR="$WORK/ejabberd"
# The ejabberd directory in use (login-sha256 switches to "$EDIR-sha256").
EJ_DIR="$EDIR"

###########################################################################
# Osprey
###########################################################################

# osprey_bin VARIANT / osprey_data VARIANT: the binary and the data
# directory of a variant. osprey-base has its own data directory: another
# version's database migrations may not be this one's.
osprey_bin() { if [ "$1" = osprey-base ]; then echo "$OSPREY_BASE"; else echo "$OSPREY"; fi; }
osprey_data() { if [ "$1" = osprey-base ]; then echo "$ODIR/data-base"; else echo "$ODIR/data"; fi; }

# osprey_config VARIANT: the configuration file of a variant.
osprey_config() {
	local variant=$1 f="$ODIR/$1.toml"
	{
		cat <<EOF
# benches/compare/run.sh: Osprey, variant "$variant".
[general]
hosts = ["localhost"]
data_dir = "$(osprey_data "$variant")"

EOF
		if [ "$variant" = osprey-bare ]; then
			printf '# No HTTP listener and no [instrumentation.*] section: every handler off.\n'
			printf '[listen]\nhttp = []\n\n'
		fi
		cat <<EOF
[[listen.c2s]]
address = "127.0.0.1"
port = $OSPREY_C2S_PORT
tls.mode = "none"
allow_plain_auth_without_tls = true
# Every benchmark session comes from 127.0.0.1 and sends at full speed:
# the per-address cap and the input shapers would measure themselves.
max_connections_per_address = 100000
shaper = "none"
max_stanza_rate = 0

[[listen.c2s]]
address = "127.0.0.1"
port = $OSPREY_TLS_PORT
tls.mode = "starttls"
# The same RSA-2048 self-signed certificate kind as Prosody's and ejabberd's.
tls.certfile = "$ODIR/certs/localhost.crt"
tls.keyfile = "$ODIR/certs/localhost.key"
max_connections_per_address = 100000
shaper = "none"
max_stanza_rate = 0

EOF
		# Archiving (on by default) is off like Prosody's and ejabberd's,
		# except in osprey-mam; osprey-base may predate the module.
		if [ "$variant" != osprey-mam ] && [ "$variant" != osprey-base ]; then
			printf '# BENCH: no archiving, as the other servers here.\n[modules.mam]\nenabled = false\n\n'
		fi
		if [ "$variant" != osprey-bare ]; then
			cat <<EOF
# The built-in defaults' instrumentation: metrics/admin listener,
# Prometheus and log handlers (level info).
[[listen.http]]
address = "127.0.0.1"
port = $OSPREY_HTTP_PORT
handlers = ["metrics", "admin"]

[instrumentation.prometheus]
[instrumentation.log]
EOF
		fi
	} >"$f"
	echo "$f"
}

# osprey_prepare [VARIANT]: accounts in the variant's data directory.
osprey_prepare() {
	local variant=${1:-osprey} cfg
	mkdir -p "$(osprey_data "$variant")"
	_srv_cert "$ODIR/certs" >/dev/null
	cfg=$(osprey_config "$variant")
	"$(osprey_bin "$variant")" --config "$cfg" account populate --prefix user \
		--count "$NACCOUNTS" --password password >&2
}

SCRAPER=""
osprey_start() {
	local variant=$1 cfg pid port
	cfg=$(osprey_config "$variant")
	osprey_stop
	# A server left over from elsewhere would answer instead of this one.
	for port in "$OSPREY_C2S_PORT" "$OSPREY_TLS_PORT"; do
		! _srv_port_open "$port" || die "port $port is already in use (another server running?)"
	done
	(
		_srv_nofile
		# osprey-bare: the process log at warn, as Prosody and ejabberd log.
		[ "$variant" = osprey-bare ] && export RUST_LOG=warn
		cd "$ODIR" && exec taskset -c "$SERVER_CPU" "$(osprey_bin "$variant")" --config "$cfg" serve \
			>"$ODIR/$variant.log" 2>&1 </dev/null
	) &
	pid=$!
	echo "$pid" >"$ODIR/run.pid"
	_srv_wait_port osprey "$pid" "$OSPREY_C2S_PORT" "$ODIR/$variant.log" || return 1
	_srv_wait_port osprey "$pid" "$OSPREY_TLS_PORT" "$ODIR/$variant.log" || return 1
	if [ "$variant" != osprey-bare ] && [ "$SCRAPE_INTERVAL" -gt 0 ]; then
		# What a Prometheus server would do; on the generator's core, in
		# bash alone (no curl to start each time), so the scraper's own
		# cost barely touches the generator's measurements.
		(
			while sleep "$SCRAPE_INTERVAL"; do
				exec 3<>"/dev/tcp/127.0.0.1/$OSPREY_HTTP_PORT" || continue
				printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
				while IFS= read -r -u 3 _; do :; done
				exec 3<&-
			done
		) &
		SCRAPER=$!
		taskset -pc "$LOAD_CPU" "$SCRAPER" >/dev/null
	fi
	log "osprey ($variant) pid $pid on 127.0.0.1:$OSPREY_C2S_PORT (plain) and :$OSPREY_TLS_PORT (STARTTLS), cpu $SERVER_CPU"
}

osprey_stop() {
	if [ -n "$SCRAPER" ]; then
		kill "$SCRAPER" 2>/dev/null || true
		wait "$SCRAPER" 2>/dev/null || true
		SCRAPER=""
	fi
	local pid
	pid=$(_srv_pid_of "$ODIR/run.pid" osprey) || return 0
	_srv_kill "$pid" osprey
	rm -f "$ODIR/run.pid"
}

###########################################################################
# One interface over the four targets
###########################################################################

# The server (and its accounts) a target runs on.
server_of() { case $1 in osprey | osprey-bare | osprey-sm | osprey-mam) echo osprey ;; *) echo "$1" ;; esac; }

# Extra generator options of a target.
target_load_args() {
	case $1 in
	osprey-sm) echo "--stream-management --sm-ack-every $SM_ACK_EVERY" ;;
	esac
}

target_start() {
	case $1 in
	osprey | osprey-bare | osprey-base | osprey-sm | osprey-mam) osprey_start "$1" ;;
	prosody) prosody_start "$PDIR" "$SERVER_CPU" "$NACCOUNTS" ;;
	ejabberd) ejabberd_start "$EJ_DIR" "$SERVER_CPU" "$NACCOUNTS" ;;
	*) die "unknown target $1" ;;
	esac
}

target_stop() {
	case $1 in
	osprey | osprey-bare | osprey-base | osprey-sm | osprey-mam) osprey_stop ;;
	prosody) prosody_stop "$PDIR" ;;
	ejabberd) ejabberd_stop "$EJ_DIR" ;;
	esac
}

target_pid() {
	case $1 in
	osprey | osprey-bare | osprey-base | osprey-sm | osprey-mam) _srv_pid_of "$ODIR/run.pid" osprey ;;
	prosody) prosody_pid "$PDIR" ;;
	ejabberd) ejabberd_pid "$EJ_DIR" ;;
	esac
}

# target_port TARGET plain|tls
target_port() {
	case $1:$2 in
	osprey*:plain) echo "$OSPREY_C2S_PORT" ;;
	osprey*:tls) echo "$OSPREY_TLS_PORT" ;;
	prosody:plain) echo "$PROSODY_C2S_PORT" ;;
	prosody:tls) echo "$PROSODY_TLS_PORT" ;;
	ejabberd:plain) echo "$EJABBERD_C2S_PORT" ;;
	ejabberd:tls) echo "$EJABBERD_TLS_PORT" ;;
	esac
}

FAILED_RUNS=()

# load TARGET NAME REPEAT SCENARIO ARGS...: one generator run; the JSON
# report to RESULTS/TARGET.NAME.REPEAT.json, the summary next to it.
load() {
	local target=$1 name=$2 rep=$3 scenario=$4 pid out extra
	shift 4
	pid=$(target_pid "$target") || die "$target is not running"
	out="$RESULTS/$target.$name.$rep"
	read -r -a extra <<<"$(target_load_args "$target")"
	if taskset -c "$LOAD_CPU" "$LOAD" "$scenario" --label "$target" --mech "${LOAD_MECH:-$MECH}" \
		--server-pid "$pid" "$@" "${extra[@]}" --json >"$out.json" 2>"$out.txt"; then
		sed 's/^/    /' "$out.txt" >&2
	else
		log "FAILED: $target $name (repeat $rep); see $out.txt"
		sed 's/^/    /' "$out.txt" >&2
		rm -f "$out.json"
		FAILED_RUNS+=("$target.$name.$rep")
	fi
}

run_scenario() {
	local target=$1 name=$2 rep=$3 plain tls
	plain=$(target_port "$target" plain)
	tls=$(target_port "$target" tls)
	log "$target: $name (repeat $rep/$REPEATS)"
	case $name in
	login) load "$target" "$name" "$rep" login --port "$plain" \
		--users "$LOGIN_USERS" --login-for "$LOGIN_FOR" --concurrency "$LOGIN_CONCURRENCY" ;;
	login-sha256)
		case $target in
		prosody)
			log "prosody: login-sha256 skipped (SHA-1 keys only)"
			return 0
			;;
		ejabberd)
			target_stop ejabberd
			EJ_DIR="$EDIR-sha256"
			EJABBERD_SCRAM_HASH=sha256 target_start ejabberd
			;;
		esac
		LOAD_MECH=scram-sha-256 load "$target" "$name" "$rep" login --port "$plain" \
			--users "$LOGIN_USERS" --login-for "$LOGIN_FOR" --concurrency "$LOGIN_CONCURRENCY"
		if [ "$target" = ejabberd ]; then
			target_stop ejabberd
			EJ_DIR="$EDIR"
			target_start ejabberd
		fi
		;;
	idle) load "$target" "$name" "$rep" idle --port "$plain" \
		--users "$IDLE_USERS" --concurrency "$IDLE_CONCURRENCY" --duration "$IDLE_HOLD" ;;
	idle-tls) load "$target" "$name" "$rep" idle --port "$tls" --tls starttls \
		--users "$IDLE_TLS_USERS" --concurrency "$IDLE_CONCURRENCY" --duration "$IDLE_HOLD" ;;
	chat) load "$target" "$name" "$rep" chat --port "$plain" \
		--pairs "$CHAT_PAIRS" --duration "$CHAT_DURATION" --window "$CHAT_WINDOW" ;;
	chat-rate) load "$target" "$name" "$rep" chat --port "$plain" \
		--pairs "$CHAT_PAIRS" --duration "$CHAT_DURATION" --rate "$CHAT_RATE" ;;
	mixed) load "$target" "$name" "$rep" mixed --port "$plain" \
		--users "$MIXED_USERS" --duration "$MIXED_DURATION" --ramp "$MIXED_RAMP" \
		--interval "$MIXED_INTERVAL" --contacts "$MIXED_CONTACTS" ;;
	*) die "unknown scenario $name" ;;
	esac
}

# Adds every user's contacts to its roster (only writes the first time),
# so that the measured mixed runs all find complete rosters. Users arrive
# at 100/s (Prosody writes a whole roster file per roster set); a pass in
# which a login failed is run again, up to 3 times.
prepare_rosters() {
	local target=$1 port ramp pass out
	port=$(target_port "$target" plain)
	ramp=$(((MIXED_USERS + 99) / 100))
	for pass in 1 2 3; do
		log "$target: roster preparation for $MIXED_USERS users ($MIXED_CONTACTS contacts), pass $pass"
		out="$RESULTS/$target.prepare$pass"
		taskset -c "$LOAD_CPU" "$LOAD" mixed --label "$target-prepare" --mech "$MECH" \
			--port "$port" --users "$MIXED_USERS" --contacts "$MIXED_CONTACTS" \
			--duration $((ramp + 4)) --ramp "$ramp" --interval 100000 --json \
			>"$out.json" 2>"$out.txt" ||
			die "roster preparation failed on $target (see $out.txt)"
		if python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["result"]["mixed"]; sys.exit(m["login_failed"] + m["dropped"] > 0)' "$out.json"; then
			rm -f "$out.json"
			return 0
		fi
		rm -f "$out.json"
	done
	die "roster preparation on $target: logins still failing after 3 passes (see $RESULTS/$target.prepare3.txt)"
}

build() {
	log "building osprey and osprey-load (release)"
	(cd "$ROOT" && cargo build --release --bin osprey --bin osprey-load) >&2
	mkdir -p "$WORK/bin"
	cp "$ROOT/target/release/osprey" "$ROOT/target/release/osprey-load" "$WORK/bin/"
	if has_target osprey-base; then
		[ -x "$OSPREY_BASE_BIN" ] ||
			die "target osprey-base needs OSPREY_BASE_BIN, an Osprey binary (got '$OSPREY_BASE_BIN')"
		mkdir -p "$(dirname "$OSPREY_BASE")"
		cp "$OSPREY_BASE_BIN" "$OSPREY_BASE"
	fi
}

# has_target T: whether T is one of TARGETS.
has_target() { case " $TARGETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# The targets of repeat REP, in order (rotated by REP - 1 with ROTATE=1).
targets_of_repeat() {
	local rep=$1 list i n
	read -r -a list <<<"$TARGETS"
	n=${#list[@]}
	for ((i = 0; i < n; i++)); do
		if [ "$ROTATE" = 1 ]; then
			echo "${list[$(((i + rep - 1) % n))]}"
		else
			echo "${list[$i]}"
		fi
	done
}

cleanup() {
	local t
	for t in osprey prosody ejabberd; do target_stop "$t" >/dev/null 2>&1 || true; done
	ejabberd_stop "$EDIR-sha256" >/dev/null 2>&1 || true
}

###########################################################################
# Main
###########################################################################

main() {
	mkdir -p "$RESULTS"
	ulimit -n "$(ulimit -Hn)"
	(("$(ulimit -n)" > IDLE_USERS + 100)) ||
		die "open-file limit $(ulimit -n) is too low for IDLE_USERS=$IDLE_USERS"
	build
	# Prosody and ejabberd only when they are compared.
	if has_target prosody || has_target ejabberd; then install_servers; fi
	trap cleanup EXIT

	{
		echo "date: $(date -u +%FT%TZ)"
		echo "host: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
		echo "osprey: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (+ working tree)"
		if has_target osprey-base; then
			echo "osprey-base: $OSPREY_BASE_BIN ($("$OSPREY_BASE" --version 2>/dev/null || echo '?'))"
		fi
		if has_target osprey-sm; then echo "osprey-sm: generator $(target_load_args osprey-sm)"; fi
		if has_target prosody; then echo "prosody: $(dpkg-query -W -f='${Version}' prosody)"; fi
		if has_target ejabberd; then echo "ejabberd: $(dpkg-query -W -f='${Version}' ejabberd)"; fi
		echo "server cpu: $SERVER_CPU, generator cpu: $LOAD_CPU, repeats: $REPEATS, rotate: $ROTATE, mech: $MECH"
		echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes share this machine)"
		for v in TARGETS SCENARIOS FRESH LOGIN_USERS LOGIN_FOR LOGIN_CONCURRENCY IDLE_USERS \
			IDLE_TLS_USERS IDLE_CONCURRENCY IDLE_HOLD CHAT_PAIRS CHAT_DURATION CHAT_WINDOW \
			CHAT_RATE MIXED_USERS MIXED_DURATION MIXED_RAMP MIXED_INTERVAL MIXED_CONTACTS \
			SCRAPE_INTERVAL; do
			echo "$v=${!v}"
		done
	} >"$RESULTS/env.txt"
	cat "$RESULTS/env.txt" >&2

	# Accounts (and, for mixed, rosters) once per server.
	local t done_servers=" " s
	for t in $TARGETS; do
		s=$(server_of "$t")
		case $done_servers in *" $s "*) continue ;; esac
		done_servers+="$s "
		case $s in osprey | osprey-base) osprey_prepare "$t" ;; esac
		target_start "$t"
		case " $SCENARIOS " in *" mixed "*) prepare_rosters "$t" ;; esac
		target_stop "$t"
	done

	local rep name fresh
	for ((rep = 1; rep <= REPEATS; rep++)); do
		for t in $(targets_of_repeat "$rep"); do
			target_start "$t"
			fresh=1
			for name in $SCENARIOS; do
				case " $FRESH " in *" $name "*) if [ "$fresh" = 0 ]; then
					target_stop "$t"
					target_start "$t"
				fi ;;
				esac
				run_scenario "$t" "$name" "$rep"
				fresh=0
			done
			target_stop "$t"
		done
	done

	echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/env.txt"
	python3 "$HERE/table.py" "$RESULTS" >"$RESULTS/table.md"
	cat "$RESULTS/table.md"
	log "results in $RESULTS"
	if [ ${#FAILED_RUNS[@]} -gt 0 ]; then
		log "failed runs: ${FAILED_RUNS[*]}"
		exit 1
	fi
}

# Sourced (idle_scaling.sh): functions and settings only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	main "$@"
fi
