# shellcheck shell=bash
# Prosody and ejabberd for the Osprey side-by-side benchmark.
#
#   source benches/compare/servers.sh
#   install_servers                        # apt packages, idempotent
#   prosody_start  DIR CPUS NACCOUNTS      # e.g. /tmp/bench/prosody 0 10000
#   prosody_pid    DIR                     # prints the lua5.4 PID
#   prosody_stop   DIR
#   ejabberd_start DIR CPUS NACCOUNTS      # e.g. /tmp/bench/ejabberd 0 10000
#   ejabberd_pid   DIR                     # prints the beam.smp PID
#   ejabberd_stop  DIR
#
# Accounts user1..userN@localhost, password "password", are created by the
# start functions (see README.md). Every function returns non-zero with a
# message on stderr when something is wrong; run the caller with `set -e`
# (or test the status) to stop on failure. Being a library meant to be
# sourced, it never calls `exit` itself and sets no shell options; it works
# with and without `set -e` (run.sh uses `set -euo pipefail`).
#
# Ports (override with the environment before calling *_start):
#   PROSODY_C2S_PORT=15222  PROSODY_TLS_PORT=15223 (STARTTLS)
#   EJABBERD_C2S_PORT=25222 EJABBERD_TLS_PORT=25223 (STARTTLS)
#   EJABBERD_DIST_PORT=25299 (Erlang distribution, loopback, for ejabberdctl)

BENCH_COMPARE_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${PROSODY_C2S_PORT:=15222}"
: "${PROSODY_TLS_PORT:=15223}"
: "${EJABBERD_C2S_PORT:=25222}"
: "${EJABBERD_TLS_PORT:=25223}"
: "${EJABBERD_DIST_PORT:=25299}"
# PBKDF2 iterations of the stored SCRAM keys (Osprey's and ejabberd's
# default; Prosody's default is 10000, changed in the config).
: "${BENCH_SCRAM_ITERATIONS:=4096}"
# The one SCRAM hash ejabberd stores (auth_scram_hash): sha (it then offers
# SCRAM-SHA-1) or sha256 (SCRAM-SHA-256). Accounts are remade on a change.
: "${EJABBERD_SCRAM_HASH:=sha}"
# 1: TCP_NODELAY on the servers' client sockets (Osprey sets it); 0: each
# server's own default (both leave Nagle on).
: "${BENCH_NODELAY:=1}"
# Seconds to wait for a server to accept connections / to exit.
: "${BENCH_START_TIMEOUT:=60}"
: "${BENCH_STOP_TIMEOUT:=30}"

# What an account stamp file holds: the accounts a run directory has.
# make_accounts.py gives all accounts one salt (see there); the word
# "shared-salt" makes directories filled by older versions be refilled.
_srv_stamp() { echo "$1 $BENCH_SCRAM_ITERATIONS shared-salt $EJABBERD_SCRAM_HASH"; }

_srv_err() { echo "servers.sh: ERROR: $*" >&2; return 1; }
_srv_log() { echo "servers.sh: $*" >&2; }

# _srv_port_open PORT: true if 127.0.0.1:PORT accepts a TCP connection.
_srv_port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# _srv_wait_port NAME PID PORT LOGFILE: wait until PORT accepts, while PID lives.
_srv_wait_port() {
	local name=$1 pid=$2 port=$3 log=$4 i
	for ((i = 0; i < BENCH_START_TIMEOUT * 10; i++)); do
		if _srv_port_open "$port"; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			[ -f "$log" ] && tail -n 30 "$log" >&2
			_srv_err "$name exited before listening on 127.0.0.1:$port (log: $log)"
			return 1
		fi
		sleep 0.1
	done
	[ -f "$log" ] && tail -n 30 "$log" >&2
	_srv_err "$name not listening on 127.0.0.1:$port after ${BENCH_START_TIMEOUT}s (log: $log)"
}

# _srv_wait_exit PID SECONDS: true once PID is gone.
_srv_wait_exit() {
	local pid=$1 i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	! kill -0 "$pid" 2>/dev/null
}

# _srv_kill PID NAME: SIGTERM, wait, SIGKILL if needed.
_srv_kill() {
	local pid=$1 name=$2
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	_srv_wait_exit "$pid" "$BENCH_STOP_TIMEOUT" && return 0
	_srv_log "$name (pid $pid) ignored SIGTERM for ${BENCH_STOP_TIMEOUT}s, sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	_srv_wait_exit "$pid" 5 || _srv_err "$name (pid $pid) still running after SIGKILL"
}

# _srv_pid_of PIDFILE COMM: print the PID in PIDFILE if it is alive and its
# command name is COMM.
_srv_pid_of() {
	local pidfile=$1 comm=$2 pid
	[ -s "$pidfile" ] || return 1
	pid=$(tr -dc '0-9' 2>/dev/null <"$pidfile")
	[ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
	[ "$(cat "/proc/$pid/comm")" = "$comm" ] || return 1
	echo "$pid"
}

# _srv_render TEMPLATE OUT VAR=VALUE...: replace @VAR@ by VALUE.
_srv_render() {
	local in=$1 out=$2 kv script=()
	shift 2
	for kv in "$@"; do
		script+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
	done
	sed "${script[@]}" "$in" >"$out.tmp" && mv "$out.tmp" "$out" ||
		_srv_err "cannot write $out"
}

# _srv_cert DIR: self-signed cert for "localhost" (kept if present).
# Writes DIR/localhost.crt, DIR/localhost.key and DIR/localhost.pem (both).
_srv_cert() {
	local d=$1
	mkdir -p "$d" || return 1
	if [ ! -s "$d/localhost.crt" ] || [ ! -s "$d/localhost.key" ]; then
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
			-subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
			-keyout "$d/localhost.key" -out "$d/localhost.crt" >/dev/null 2>&1 ||
			_srv_err "openssl could not create a certificate in $d" || return 1
	fi
	cat "$d/localhost.crt" "$d/localhost.key" >"$d/localhost.pem"
	chmod 600 "$d/localhost.key" "$d/localhost.pem"
}

# _srv_nofile: raise the open-file limit of the current (sub)shell as far as
# allowed (the server needs one descriptor per client connection).
_srv_nofile() {
	# Raising the hard limit needs CAP_SYS_RESOURCE; without it this
	# fails, which must not stop a caller running with `set -e`.
	ulimit -Hn 1048576 2>/dev/null || true
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 20000 ] ||
		_srv_log "warning: open-file limit is only $(ulimit -n)"
	return 0
}

_srv_check_args() {
	local fn=$1 dir=$2 cpus=$3 n=$4
	[ -n "$dir" ] || _srv_err "$fn: DIR missing" || return 1
	case $dir in /*) ;; *) _srv_err "$fn: DIR must be absolute: $dir" || return 1 ;; esac
	[ -n "$cpus" ] || _srv_err "$fn: CPUS missing (e.g. 0)" || return 1
	[[ "$n" =~ ^[0-9]+$ ]] || _srv_err "$fn: NACCOUNTS must be a number: '$n'" || return 1
	taskset -c "$cpus" true 2>/dev/null || _srv_err "$fn: invalid CPU list '$cpus'" || return 1
}

###########################################################################
# Installation
###########################################################################

# install_servers: install prosody and ejabberd (and the tools used here)
# from Debian's packages; afterwards make sure no daemon started by the
# packages' maintainer scripts is running. Idempotent.
install_servers() {
	local pkgs=(prosody ejabberd openssl python3 util-linux procps) missing=() p rc=0
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		_srv_log "installing ${missing[*]}"
		# No systemd here: invoke-rc.d would start the daemons through
		# their init scripts on the default ports. A policy-rc.d that
		# answers 101 ("action forbidden") stops that; ours is removed again.
		local own_policy=0
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\n# temporary, benches/compare/servers.sh\nexit 101\n' >/usr/sbin/policy-rc.d &&
				chmod 755 /usr/sbin/policy-rc.d && own_policy=1
		fi
		export DEBIAN_FRONTEND=noninteractive
		if ! apt-get install -y "${missing[@]}" >/tmp/servers-sh-apt.log 2>&1; then
			apt-get update >>/tmp/servers-sh-apt.log 2>&1
			apt-get install -y "${missing[@]}" >>/tmp/servers-sh-apt.log 2>&1 || rc=1
		fi
		if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
		if [ "$rc" != 0 ]; then
			tail -n 30 /tmp/servers-sh-apt.log >&2
			_srv_err "apt-get install ${missing[*]} failed (see /tmp/servers-sh-apt.log)"
			return 1
		fi
	fi
	_srv_stop_system_daemons
}

# Stop Prosody/ejabberd instances started by the packages (default config,
# default ports), should a maintainer script or an earlier boot have
# started them. Benchmark instances (pid files under their DIR) are not
# touched.
_srv_stop_system_daemons() {
	local pid
	if pid=$(_srv_pid_of /run/prosody/prosody.pid lua5.4); then
		_srv_log "stopping the system Prosody (pid $pid)"
		/etc/init.d/prosody stop >/dev/null 2>&1 || true
		_srv_kill "$pid" prosody || return 1
	fi
	if pid=$(_srv_pid_of /run/ejabberd/ejabberd.pid beam.smp); then
		_srv_log "stopping the system ejabberd (pid $pid)"
		/etc/init.d/ejabberd stop >/dev/null 2>&1 || true
		_srv_kill "$pid" ejabberd || return 1
	fi
	return 0
}

###########################################################################
# Prosody
###########################################################################

# prosody_accounts DIR N: write user1..userN@localhost (password "password")
# straight into Prosody's internal storage (DIR/data/localhost/accounts).
# Prosody must not be running. Skipped when DIR already holds exactly N
# accounts made by this function with the same iteration count.
prosody_accounts() {
	local dir=$1 n=$2 stamp
	stamp="$dir/data/.bench-accounts"
	if [ "$(cat "$stamp" 2>/dev/null)" = "$(_srv_stamp "$n")" ]; then
		return 0
	fi
	mkdir -p "$dir/data" || return 1
	python3 "$BENCH_COMPARE_HOME/make_accounts.py" prosody "$dir/data" "$n" \
		--iterations "$BENCH_SCRAM_ITERATIONS" ||
		_srv_err "prosody_accounts: make_accounts.py failed" || return 1
	echo "$(_srv_stamp "$n")" >"$stamp"
}

# prosody_start DIR CPUS NACCOUNTS
prosody_start() {
	local dir=$1 cpus=$2 n=$3 pid
	_srv_check_args prosody_start "$dir" "$cpus" "$n" || return 1
	command -v prosody >/dev/null || _srv_err "prosody not installed (run install_servers)" || return 1
	prosody_stop "$dir" || return 1
	for pid in "$PROSODY_C2S_PORT" "$PROSODY_TLS_PORT"; do
		! _srv_port_open "$pid" || _srv_err "port $pid already in use" || return 1
	done
	mkdir -p "$dir/data" "$dir/certs" || return 1
	_srv_render "$BENCH_COMPARE_HOME/prosody.cfg.lua.in" "$dir/prosody.cfg.lua" \
		DIR="$dir" C2S_PORT="$PROSODY_C2S_PORT" TLS_PORT="$PROSODY_TLS_PORT" \
		ITERATIONS="$BENCH_SCRAM_ITERATIONS" \
		NAGLE="$([ "$BENCH_NODELAY" = 1 ] && echo false || echo true)" || return 1
	_srv_cert "$dir/certs" || return 1
	prosody_accounts "$dir" "$n" || return 1
	chown -R prosody:prosody "$dir" || return 1
	rm -f "$dir/prosody.pid"
	# taskset, setpriv and env all exec, so $! is the lua5.4 process.
	(
		_srv_nofile
		cd "$dir" &&
			exec nohup taskset -c "$cpus" \
				setpriv --reuid=prosody --regid=prosody --init-groups \
				/usr/bin/prosody --config "$dir/prosody.cfg.lua" -F \
				>"$dir/stdout.log" 2>&1 </dev/null
	) &
	pid=$!
	echo "$pid" >"$dir/run.pid"
	_srv_wait_port prosody "$pid" "$PROSODY_C2S_PORT" "$dir/prosody.log" || {
		tail -n 20 "$dir/stdout.log" >&2
		prosody_stop "$dir"
		return 1
	}
	_srv_wait_port prosody "$pid" "$PROSODY_TLS_PORT" "$dir/prosody.log" || {
		prosody_stop "$dir"
		return 1
	}
	_srv_log "prosody $(dpkg-query -W -f='${Version}' prosody) pid $pid on 127.0.0.1:$PROSODY_C2S_PORT (plain) and :$PROSODY_TLS_PORT (STARTTLS), cpus $cpus, $n accounts"
}

# prosody_pid DIR: print the PID of the Prosody (lua5.4) process.
prosody_pid() {
	local dir=$1
	_srv_pid_of "$dir/run.pid" lua5.4 ||
		_srv_pid_of "$dir/prosody.pid" lua5.4 ||
		_srv_err "prosody_pid: no running Prosody for $dir"
}

# prosody_stop DIR: stop the Prosody started from DIR (no-op if none).
prosody_stop() {
	local dir=$1 pid
	[ -n "$dir" ] || _srv_err "prosody_stop: DIR missing" || return 1
	pid=$(_srv_pid_of "$dir/run.pid" lua5.4 || _srv_pid_of "$dir/prosody.pid" lua5.4) || {
		rm -f "$dir/run.pid"
		return 0
	}
	_srv_kill "$pid" prosody || return 1
	rm -f "$dir/run.pid" "$dir/prosody.pid"
}

###########################################################################
# ejabberd
###########################################################################

# _ejctl DIR ARGS...: ejabberdctl for the instance in DIR, run directly as
# the ejabberd user (so ejabberdctl does not `su`, and the Erlang cookie is
# ~ejabberd/.erlang.cookie for the server and the control client alike).
_ejctl() {
	local dir=$1
	shift
	env HOME=/var/lib/ejabberd \
		setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
		/usr/sbin/ejabberdctl --config-dir "$dir" --config "$dir/ejabberd.yml" \
		--ctl-config "$dir/ejabberdctl.cfg" --spool "$dir/database" \
		--logs "$dir/logs" "$@"
}

# ejabberd_accounts DIR N: load user1..userN@localhost (password
# "password", SCRAM-SHA-1 hashed) into the running ejabberd's Mnesia with
# one `ejabberdctl load` of a generated Mnesia text file. Skipped when DIR
# already holds exactly those N accounts (Mnesia persists in DIR/database).
ejabberd_accounts() {
	local dir=$1 n=$2 stamp file out
	stamp="$dir/database/.bench-accounts"
	if [ "$(cat "$stamp" 2>/dev/null)" = "$(_srv_stamp "$n")" ]; then
		return 0
	fi
	file="$dir/accounts.mnesia.txt"
	python3 "$BENCH_COMPARE_HOME/make_accounts.py" ejabberd "$file" "$n" \
		--iterations "$BENCH_SCRAM_ITERATIONS" --hash "$EJABBERD_SCRAM_HASH" ||
		_srv_err "ejabberd_accounts: make_accounts.py failed" || return 1
	chown ejabberd:ejabberd "$file"
	out=$(_ejctl "$dir" load "$file" 2>&1) ||
		_srv_err "ejabberd_accounts: ejabberdctl load failed: $out" || return 1
	rm -f "$file"
	echo "$(_srv_stamp "$n")" >"$stamp"
	chown ejabberd:ejabberd "$stamp"
}

# ejabberd_start DIR CPUS NACCOUNTS
ejabberd_start() {
	local dir=$1 cpus=$2 n=$3 pid="" p i
	_srv_check_args ejabberd_start "$dir" "$cpus" "$n" || return 1
	[ -x /usr/sbin/ejabberdctl ] || _srv_err "ejabberd not installed (run install_servers)" || return 1
	ejabberd_stop "$dir" || return 1
	for p in "$EJABBERD_C2S_PORT" "$EJABBERD_TLS_PORT" "$EJABBERD_DIST_PORT"; do
		! _srv_port_open "$p" || _srv_err "port $p already in use" || return 1
	done
	# Mnesia persists in DIR/database; unless it holds exactly the wanted
	# accounts (stamp written by ejabberd_accounts) start from an empty one.
	if [ "$(cat "$dir/database/.bench-accounts" 2>/dev/null)" != "$(_srv_stamp "$n")" ]; then
		rm -rf "$dir/database"
	fi
	mkdir -p "$dir/database" "$dir/logs" "$dir/modules.d" "$dir/certs" || return 1
	_srv_render "$BENCH_COMPARE_HOME/ejabberd.yml.in" "$dir/ejabberd.yml" \
		DIR="$dir" C2S_PORT="$EJABBERD_C2S_PORT" TLS_PORT="$EJABBERD_TLS_PORT" \
		SCRAM_HASH="$EJABBERD_SCRAM_HASH" || return 1
	_srv_render "$BENCH_COMPARE_HOME/ejabberdctl.cfg.in" "$dir/ejabberdctl.cfg" \
		DIR="$dir" DIST_PORT="$EJABBERD_DIST_PORT" \
		NODELAY_OPT="$([ "$BENCH_NODELAY" = 1 ] && echo '-kernel inet_default_listen_options [{nodelay,true}]')" || return 1
	cp /etc/ejabberd/inetrc "$dir/inetrc" || return 1
	_srv_cert "$dir/certs" || return 1
	cp "$dir/certs/localhost.pem" "$dir/cert.pem"
	chown -R ejabberd:ejabberd "$dir" || return 1
	rm -f "$dir/ejabberd.pid"
	(
		_srv_nofile
		cd "$dir" &&
			exec nohup taskset -c "$cpus" env HOME=/var/lib/ejabberd \
				setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
				/usr/sbin/ejabberdctl --config-dir "$dir" --config "$dir/ejabberd.yml" \
				--ctl-config "$dir/ejabberdctl.cfg" --spool "$dir/database" \
				--logs "$dir/logs" foreground \
				>"$dir/logs/stdout.log" 2>&1 </dev/null
	) &
	p=$!
	echo "$p" >"$dir/run.pid"
	# ejabberd writes the beam.smp PID to EJABBERD_PID_PATH early on.
	for ((i = 0; i < BENCH_START_TIMEOUT * 10; i++)); do
		pid=$(_srv_pid_of "$dir/ejabberd.pid" beam.smp) && break
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$pid" ]; then
		tail -n 30 "$dir/logs/stdout.log" "$dir/logs/ejabberd.log" >&2 2>/dev/null
		ejabberd_stop "$dir"
		_srv_err "ejabberd did not start (logs in $dir/logs)"
		return 1
	fi
	for p in "$EJABBERD_C2S_PORT" "$EJABBERD_TLS_PORT"; do
		_srv_wait_port ejabberd "$pid" "$p" "$dir/logs/ejabberd.log" || {
			tail -n 20 "$dir/logs/stdout.log" >&2
			ejabberd_stop "$dir"
			return 1
		}
	done
	_ejctl "$dir" started >/dev/null 2>&1 || {
		ejabberd_stop "$dir"
		_srv_err "ejabberd (pid $pid) does not answer ejabberdctl"
		return 1
	}
	ejabberd_accounts "$dir" "$n" || {
		ejabberd_stop "$dir"
		return 1
	}
	_srv_log "ejabberd $(dpkg-query -W -f='${Version}' ejabberd) beam.smp pid $pid on 127.0.0.1:$EJABBERD_C2S_PORT (plain) and :$EJABBERD_TLS_PORT (STARTTLS), cpus $cpus, $n accounts"
}

# ejabberd_pid DIR: print the PID of ejabberd's beam.smp.
ejabberd_pid() {
	local dir=$1
	_srv_pid_of "$dir/ejabberd.pid" beam.smp ||
		_srv_err "ejabberd_pid: no running ejabberd for $dir"
}

# ejabberd_stop DIR: stop the ejabberd started from DIR (no-op if none).
ejabberd_stop() {
	local dir=$1 pid wrapper
	[ -n "$dir" ] || _srv_err "ejabberd_stop: DIR missing" || return 1
	wrapper=$(tr -dc '0-9' 2>/dev/null <"$dir/run.pid" || true)
	if pid=$(_srv_pid_of "$dir/ejabberd.pid" beam.smp); then
		_ejctl "$dir" stop >/dev/null 2>&1 || true
		_srv_wait_exit "$pid" "$BENCH_STOP_TIMEOUT" || _srv_kill "$pid" ejabberd || return 1
	fi
	# The shell wrapper (ejabberdctl foreground) ends with beam.smp.
	if [ -n "$wrapper" ] && kill -0 "$wrapper" 2>/dev/null; then
		_srv_wait_exit "$wrapper" 5 || _srv_kill "$wrapper" ejabberdctl || return 1
	fi
	rm -f "$dir/run.pid" "$dir/ejabberd.pid"
}
