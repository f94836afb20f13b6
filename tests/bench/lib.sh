#!/usr/bin/env bash
# shellcheck disable=SC2034 # BROKERS, KAFKA_PID, DEXIT...: set here, read by the sourcing script
# Shared scaffolding of the benchmark scripts, sourced (not run) after they set REPO,
# BENCH_NAME (for messages) and BENCH_KEEP (1 = keep the work directory).  Everything a script
# starts is stopped at exit, by pid; the only broker it stops is its own.
#
#   bench_init PREFIX    WORK=$(mktemp -d /tmp/PREFIX.XXXXXX), NC_VAR_DIR under it, exit traps
#   die MSG / say MSG    "bench NAME: MSG" on stderr (die exits 1)
#   PIDS+=($!)           a process to stop at exit; `forget PID` once it has been waited for
#   stop_pid PID [S]     SIGTERM, then SIGKILL after S seconds (default 10)
#   free_ports N         N distinct free loopback ports, on one line
#   wait_port PORT S     until 127.0.0.1:PORT accepts, at most S seconds (status 1 if not)
#   kafka_start          fetches Kafka (deploy/local/kafka.sh) and starts a private broker on
#                        free ports, trying 3 times: sets KPORT KCPORT BROKERS KAFKA_PID
#   perf_start PID FILE HZ STACK / perf_stop
#                        perf record (cpu-clock, DWARF call graphs of STACK bytes: the
#                        distribution's libraries have no frame pointers) of PID into FILE
#   perf_summary DATA WHAT PCT
#                        prints a perf.data's CPU by thread and DSO, its top symbols (self)
#                        and those with >= PCT % inclusive
#   stop_daemon PID      SIGTERM, SIGKILL if still running 40 s later; sets DEXIT (its exit
#                        status, or "gone" if it had already exited)
#   bench_cleanup_hook   if the script defines it, runs first at exit

die() { echo "bench $BENCH_NAME: $*" >&2; exit 1; }
say() { echo "bench $BENCH_NAME: $(date +%T) $*" >&2; }

PIDS=()
KAFKA_TRIED=

forget() { # pid: it has exited and was reaped; never signal a recycled pid
	local i
	for i in "${!PIDS[@]}"; do [[ ${PIDS[$i]} == "$1" ]] && unset "PIDS[$i]"; done
	return 0
}

stop_pid() { # pid [seconds before SIGKILL]
	local pid=$1 t=${2:-10} i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < t * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

bench_cleanup() {
	local pid
	if declare -F bench_cleanup_hook >/dev/null; then bench_cleanup_hook || true; fi
	for pid in "${PIDS[@]}"; do stop_pid "$pid" 5; done
	wait 2>/dev/null || true
	# only our private broker (NC_VAR_DIR=$WORK/var), never one this script did not start
	if [[ -n $KAFKA_TRIED ]]; then "$REPO/deploy/local/kafka.sh" down --purge >/dev/null 2>&1 || true; fi
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}

bench_init() { # prefix
	WORK=$(mktemp -d "/tmp/$1.XXXXXX")
	export NC_VAR_DIR=$WORK/var
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

free_ports() { # n
	python3 -c 'import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

wait_port() { # port seconds
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

kafka_start() {
	local attempt
	timeout 600 "$REPO/deploy/local/kafka.sh" fetch >/dev/null
	# A port found free can be taken by someone else before the broker binds it: try 3 times.
	for attempt in 1 2 3; do
		read -r KPORT KCPORT < <(free_ports 2)
		export KAFKA_PORT=$KPORT KAFKA_CONTROLLER_PORT=$KCPORT
		KAFKA_TRIED=1
		say "starting Kafka on 127.0.0.1:$KPORT"
		if timeout 120 "$REPO/deploy/local/kafka.sh" up >"$WORK/kafka-up.log" 2>&1; then break; fi
		"$REPO/deploy/local/kafka.sh" down --purge >/dev/null 2>&1 || true
		((attempt < 3)) || die "Kafka did not start: $(tail -5 "$WORK/kafka-up.log")"
	done
	BROKERS=127.0.0.1:$KPORT
	KAFKA_PID=$(cat "$NC_VAR_DIR/kafka-$KPORT/kafka.pid")
}

perf_start() { # pid file frequency stack-bytes
	perf record -q -e cpu-clock -F "$3" --call-graph "dwarf,$4" -p "$1" -o "$2" >/dev/null 2>&1 &
	PERFPID=$!
	PIDS+=("$PERFPID")
}

perf_stop() {
	[[ -n ${PERFPID:-} ]] || return 0
	kill -INT "$PERFPID" 2>/dev/null || true
	wait "$PERFPID" 2>/dev/null || true
	forget "$PERFPID"
	PERFPID=
}

perf_summary() { # perf.data what min-inclusive-percent
	[[ -f $1 ]] || return 0
	say "perf report (DWARF unwinding takes a while)"
	echo "perf (cpu-clock, DWARF call graphs) of $2 (perf attached: those figures are perturbed)"
	echo "by thread and DSO (self):"
	perf report -i "$1" --stdio --no-children --sort comm,dso -g none --percent-limit 0.9 \
		2>/dev/null | grep -v '^#' | grep -v '^$' | head -16 || true
	echo "top symbols (self):"
	perf report -i "$1" --stdio --no-children --sort dso,symbol -g none --percent-limit 0.7 \
		2>/dev/null | grep -v '^#' | grep -v '^$' | head -30 || true
	echo "top symbols (inclusive, >= $3 %):"
	perf report -i "$1" --stdio --children --sort dso,symbol -g none --percent-limit "$3" \
		2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 || true
}

stop_daemon() { # pid
	local i
	DEXIT=gone
	if kill -TERM "$1" 2>/dev/null; then
		for ((i = 0; i < 400; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$1" 2>/dev/null && { say "daemon still running 40 s after SIGTERM: SIGKILL"; kill -KILL "$1"; }
		DEXIT=0
		wait "$1" || DEXIT=$?
	fi
	forget "$1"
}
