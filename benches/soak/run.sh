#!/usr/bin/env bash
# Soak Osprey: build release, start `osprey serve` on a fresh temporary
# data directory (plaintext c2s listener on 127.0.0.1, port 0), create the
# accounts, run osprey-soak against it with the given options, stop the
# server with SIGTERM.
#
#   benches/soak/run.sh --sessions 5000 --rate 500 --churn 5 --duration 600 --attack
#
# Every option goes to osprey-soak (see `osprey-soak --help`); --sessions,
# --first, --prefix, --password and --domain are also read here, to create
# the accounts (sessions + 2: the attacks use the last two). The server's
# PID and port are filled in. Environment:
#   SOAK_DIR=DIR     use DIR (kept) instead of a temporary directory
#   SOAK_TOML=TEXT   extra TOML appended to the server's configuration
#                    (e.g. $'[[listen.c2s]]...' is not allowed twice; use it
#                    for [general]/[auth] keys such as max_offline_messages)
#   SOAK_C2S_TOML=TEXT  extra keys for the c2s listener (e.g. max_queue_bytes = 262144)
#   SOAK_JSON=FILE   JSON lines output (default: target/soak/soak-DATE.jsonl)
#   NO_BUILD=1       use the binaries already in target/release
#   SERVER_CPUS, SOAK_CPUS  taskset CPU lists for the server and the generator
# Exit status: osprey-soak's (0 ok, 1 lost/duplicated messages, 2 bad
# options, 3 aborted: the server died or hung), or 4 if the server could
# not be started or did not stop on SIGTERM.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OSPREY=$TARGET/release/osprey
SOAK=$TARGET/release/osprey-soak

die() {
	echo "run.sh: $*" >&2
	exit 4
}

# The options that decide which accounts exist.
sessions=1000 first=1 prefix=user password=password domain=localhost
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	a=${args[i]} v=${args[i + 1]:-}
	case $a in
	--sessions) sessions=$v ;;
	--first) first=$v ;;
	--prefix) prefix=$v ;;
	--password) password=$v ;;
	--domain) domain=$v ;;
	--sessions=*) sessions=${a#*=} ;;
	--first=*) first=${a#*=} ;;
	--prefix=*) prefix=${a#*=} ;;
	--password=*) password=${a#*=} ;;
	--domain=*) domain=${a#*=} ;;
	--host | --host=* | --port | --port=* | --server-pid | --server-pid=*)
		die "$a is set by run.sh (it starts the server itself)"
		;;
	esac
done
[[ $sessions =~ ^[0-9]+$ ]] || die "--sessions must be a number"

if [ -z "${NO_BUILD:-}" ]; then
	(cd "$ROOT" && cargo build --release -p osprey-gateway --bin osprey -p osprey-soak --bin osprey-soak)
fi
[ -x "$OSPREY" ] && [ -x "$SOAK" ] || die "missing $OSPREY or $SOAK"

# Open files: as many as this process may have (each session is one
# descriptor in the server and one here).
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ]; then
	nr_open=$(cat /proc/sys/fs/nr_open 2>/dev/null || echo "$hard")
	ulimit -Hn "$nr_open" 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((sessions + 200))
if [ "$(ulimit -n)" != unlimited ] && (($(ulimit -n) < need)); then
	echo "run.sh: warning: open-file limit $(ulimit -n) is below $need (sessions + 200); logins will fail" >&2
fi

if [ -n "${SOAK_DIR:-}" ]; then
	DIR=$SOAK_DIR
	mkdir -p "$DIR"
	KEEP=1
else
	DIR=$(mktemp -d "${TMPDIR:-/tmp}/osprey-soak.XXXXXX")
	KEEP=
fi
CFG=$DIR/osprey.toml
LOG=$DIR/server.log
JSON=${SOAK_JSON:-$TARGET/soak/soak-$(date +%Y%m%d-%H%M%S).jsonl}
mkdir -p "$(dirname "$JSON")"
rm -f "$DIR/listeners.json"

cat >"$CFG" <<EOF
[general]
hosts = ["$domain"]
data_dir = "$DIR"
shutdown_timeout = 10

[[listen.c2s]]
address = "127.0.0.1"
port = 0
tls.mode = "none"
allow_plain_auth_without_tls = true
${SOAK_C2S_TOML:-}

[[listen.http]]
address = "127.0.0.1"
port = 0
handlers = ["metrics", "admin"]

# The built-in defaults' instrumentation, as in production.
[instrumentation.prometheus]
[instrumentation.log]
level = "info"

${SOAK_TOML:-}
EOF

echo "run.sh: creating $((sessions + 2)) accounts ${prefix}${first}..${prefix}$((first + sessions + 1))@$domain" >&2
"$OSPREY" --config "$CFG" account populate --count "$((sessions + 2))" --first "$first" \
	--prefix "$prefix" --password "$password" --host "$domain" >&2

SERVER=""
stop_server() {
	[ -n "$SERVER" ] || return 0
	local pid=$SERVER i
	SERVER=""
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "run.sh: the server did not stop within 30 s of SIGTERM: killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			return 1
		fi
	fi
	local status=0
	wait "$pid" 2>/dev/null || status=$?
	echo "run.sh: server exited with status $status" >&2
	return 0
}
cleanup() {
	stop_server || true
	if [ -z "$KEEP" ]; then
		rm -rf "$DIR"
	else
		echo "run.sh: kept $DIR (config, server.log, database)" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpus() { if [ -n "${1:-}" ]; then echo taskset -c "$1"; fi; }

# shellcheck disable=SC2046
$(cpus "${SERVER_CPUS:-}") "$OSPREY" --config "$CFG" serve >"$LOG" 2>&1 </dev/null &
SERVER=$!

port=""
for ((i = 0; i < 600; i++)); do
	if [ -s "$DIR/listeners.json" ]; then
		# Pretty-printed JSON: {"c2s": ["127.0.0.1:PORT"], "http": [...]}.
		port=$(tr -d ' \n\t' <"$DIR/listeners.json" |
			sed -n 's/.*"c2s":\["127\.0\.0\.1:\([0-9]*\)".*/\1/p')
		[ -n "$port" ] && break
	fi
	if ! kill -0 "$SERVER" 2>/dev/null; then
		tail -n 30 "$LOG" >&2
		die "the server exited before listening (log above)"
	fi
	sleep 0.1
done
[ -n "$port" ] || die "no c2s listener in $DIR/listeners.json after 60 s"
echo "run.sh: osprey pid $SERVER on 127.0.0.1:$port (plaintext), data in $DIR, open files $(ulimit -n)" >&2

status=0
# shellcheck disable=SC2046
$(cpus "${SOAK_CPUS:-}") "$SOAK" --host 127.0.0.1 --port "$port" --server-pid "$SERVER" \
	--json "$JSON" "$@" || status=$?

if ! kill -0 "$SERVER" 2>/dev/null; then
	echo "run.sh: the server is not running any more; the end of its log ($LOG):" >&2
	tail -n 20 "$LOG" >&2
	KEEP=1
elif ! stop_server; then
	KEEP=1
	((status != 0)) || status=4
fi
if ((status != 0)); then
	KEEP=1
fi
echo "run.sh: JSON lines in $JSON" >&2
exit "$status"
