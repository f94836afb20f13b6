#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, combined broker+controller) for development
# and for the integration tests.  No Docker, no tarball download: the broker's jars are
# resolved from Maven Central with Maven (deploy/local/kafka-pom.xml) into a cache outside
# the git tree.
#
#   kafka.sh fetch            resolve Kafka $KAFKA_VERSION into the cache (once)
#   kafka.sh up               start a broker on 127.0.0.1:$KAFKA_PORT, wait until it serves
#   kafka.sh down [--purge]   stop it (SIGTERM, then SIGKILL after 20 s); --purge removes its data
#   kafka.sh status           print state; exit 0 if running, 3 if not
#   kafka.sh logs             print the tail of the broker log
#
# Environment:
#   KAFKA_VERSION          Kafka version (default 3.9.2; 4.x works too, e.g. 4.0.0)
#   KAFKA_PORT             client (PLAINTEXT) port (default 9092)
#   KAFKA_CONTROLLER_PORT  controller port (default KAFKA_PORT+1 if free, else any free port)
#   NC_CACHE_DIR           jar cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/noticecast)
#   NC_VAR_DIR             runtime data root (default <repo>/var); the broker lives in
#                          $NC_VAR_DIR/kafka-$KAFKA_PORT (properties, data, pid, log)
#   KAFKA_START_TIMEOUT    seconds `up` waits for the broker (default 60)
#   KAFKA_HEAP_OPTS        JVM heap (default "-Xmx512m -Xms256m")
#   KAFKA_AUTO_CREATE_TOPICS  auto.create.topics.enable (default false: use `noticecast topics create`)
#
# For a secured broker or one node of a cluster (the test harness uses these):
#   KAFKA_NODE_ID          node.id (default 1)
#   KAFKA_QUORUM_VOTERS    controller.quorum.voters (default NODE_ID@127.0.0.1:CONTROLLER_PORT)
#   KAFKA_CLUSTER_ID       cluster id given to the storage format (default: a random one);
#                          every node of one cluster must be formatted with the same id
#   KAFKA_EXTRA_PROPS      a file appended to the generated server.properties: its keys override
#                          the defaults (listeners, security, replication factors, authorizer)
#   KAFKA_FORMAT_ARGS      more arguments for the storage format, split at blanks, e.g.
#                          "--add-scram SCRAM-SHA-512=[name=admin,password=...]" (KRaft SCRAM
#                          users are created when the storage is formatted)
#   KAFKA_READY            how `up` decides the broker serves: kcat (a metadata request over
#                          PLAINTEXT; the default when kcat exists and no KAFKA_EXTRA_PROPS is
#                          given) or log (the server logged that it started)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

KAFKA_VERSION=${KAFKA_VERSION:-3.9.2}
KAFKA_MAJOR=${KAFKA_VERSION%%.*}
CACHE_ROOT=${NC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noticecast}
KAFKA_HOME=$CACHE_ROOT/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs
MARKER=$KAFKA_HOME/.fetched
KAFKA_PORT=${KAFKA_PORT:-9092}
VAR_ROOT=${NC_VAR_DIR:-$REPO/var}
DATA=$VAR_ROOT/kafka-$KAFKA_PORT
PIDFILE=$DATA/kafka.pid
LOGFILE=$DATA/kafka.log
PROPS=$DATA/server.properties
START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}
NODE_ID=${KAFKA_NODE_ID:-1}
EXTRA_PROPS=${KAFKA_EXTRA_PROPS:-}
if [[ -z ${KAFKA_READY:-} ]]; then
	if [[ -z $EXTRA_PROPS ]] && command -v kcat >/dev/null; then KAFKA_READY=kcat; else KAFKA_READY=log; fi
fi

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*"; }

case $KAFKA_PORT in '' | *[!0-9]*) die "KAFKA_PORT must be a number, got '$KAFKA_PORT'" ;; esac
case $KAFKA_MAJOR in 3 | 4) ;; *) die "unsupported KAFKA_VERSION '$KAFKA_VERSION' (3.x or 4.x)" ;; esac
case $NODE_ID in '' | *[!0-9]*) die "KAFKA_NODE_ID must be a number, got '$NODE_ID'" ;; esac
case $KAFKA_READY in kcat | log) ;; *) die "KAFKA_READY must be kcat or log, got '$KAFKA_READY'" ;; esac
[[ -z $EXTRA_PROPS || -r $EXTRA_PROPS ]] || die "KAFKA_EXTRA_PROPS: cannot read '$EXTRA_PROPS'"

# --- helpers -----------------------------------------------------------------------------------

# true if something accepts TCP connections on 127.0.0.1:$1
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running_pid() {
	local pid
	[[ -f $PIDFILE ]] || return 1
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# guard against a recycled pid
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
	echo "$pid"
}

java_opts() {
	local heap opts
	read -ra heap <<<"$HEAP_OPTS" # several JVM options in one variable
	opts=("${heap[@]}" -Djava.awt.headless=true -Dkafka.logs.dir="$DATA/logs")
	if [[ $KAFKA_MAJOR -ge 4 ]]; then
		opts+=("-Dlog4j2.configurationFile=$HERE/log4j2.properties")
	else
		opts+=("-Dlog4j.configuration=file:$HERE/log4j.properties")
	fi
	printf '%s\n' "${opts[@]}"
}

# --- fetch -------------------------------------------------------------------------------------

cmd_fetch() {
	if [[ -f $MARKER ]] && compgen -G "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
		say "Kafka $KAFKA_VERSION already fetched in $LIBS"
		return 0
	fi
	command -v mvn >/dev/null || die "mvn (Maven) is required to fetch Kafka"
	command -v java >/dev/null || die "java is required"
	mkdir -p "$KAFKA_HOME"
	# serialise concurrent fetches of the same version (the lock fd exists only for this call)
	fetch_locked 9>"$KAFKA_HOME/.lock"
}

fetch_locked() {
	flock 9
	if [[ -f $MARKER ]]; then
		say "Kafka $KAFKA_VERSION already fetched in $LIBS"
		return 0
	fi
	say "fetching Apache Kafka $KAFKA_VERSION (kafka_2.13 + runtime deps) with Maven into $LIBS"
	local tmp=$KAFKA_HOME/libs.tmp
	rm -rf "$tmp" "$LIBS"
	# run from a scratch dir so Maven leaves nothing (target/) in the source tree
	(cd "$KAFKA_HOME" && mvn -q -B -Dstyle.color=never -f "$HERE/kafka-pom.xml" \
		-Dkafka.version="$KAFKA_VERSION" -Dkafka.major="$KAFKA_MAJOR" \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp") \
		>"$KAFKA_HOME/mvn.log" 2>&1 || {
		cat "$KAFKA_HOME/mvn.log" >&2
		die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
	}
	[[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after Maven run"
	mv "$tmp" "$LIBS"
	echo "$KAFKA_VERSION" >"$MARKER"
	say "Kafka $KAFKA_VERSION ready: $(find "$LIBS" -mindepth 1 -maxdepth 1 | wc -l) jars"
}

# --- up ----------------------------------------------------------------------------------------

write_props() {
	local cport=$1
	cat >"$PROPS" <<EOF
# generated by deploy/local/kafka.sh (Kafka $KAFKA_VERSION) -- edits are overwritten on 'up'
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=${KAFKA_QUORUM_VOTERS:-$NODE_ID@127.0.0.1:$cport}
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=${KAFKA_AUTO_CREATE_TOPICS:-false}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.cleaner.dedupe.buffer.size=16777216
EOF
	if [[ -n $EXTRA_PROPS ]]; then
		# java.util.Properties keeps the last value of a repeated key
		{
			echo "# ---- from $EXTRA_PROPS"
			cat "$EXTRA_PROPS"
		} >>"$PROPS"
	fi
}

cmd_up() {
	local pid cport
	if pid=$(running_pid); then
		say "Kafka already running on 127.0.0.1:$KAFKA_PORT (pid $pid, data $DATA)"
		return 0
	fi
	port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is in use by another process"
	[[ -f $MARKER ]] || cmd_fetch
	mkdir -p "$DATA"

	# controller port: explicit, else the one this data dir used before, else PORT+1, else any
	if [[ -n ${KAFKA_CONTROLLER_PORT:-} ]]; then
		cport=$KAFKA_CONTROLLER_PORT
	elif [[ -f $DATA/controller.port ]]; then
		cport=$(cat "$DATA/controller.port")
	elif ((KAFKA_PORT < 65535)) && ! port_open $((KAFKA_PORT + 1)); then
		cport=$((KAFKA_PORT + 1))
	else
		cport=$(free_port)
	fi
	port_open "$cport" && die "controller port $cport is in use by another process"
	echo "$cport" >"$DATA/controller.port"

	if [[ -f $DATA/kafka.version && $(cat "$DATA/kafka.version") != "$KAFKA_VERSION" ]]; then
		say "warning: $DATA was formatted by Kafka $(cat "$DATA/kafka.version"), starting $KAFKA_VERSION"
	fi
	write_props "$cport"

	local opts
	mapfile -t opts < <(java_opts)
	if [[ ! -f $DATA/data/meta.properties ]]; then
		local cid fargs
		cid=${KAFKA_CLUSTER_ID:-}
		[[ -n $cid ]] || cid=$(java "${opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
		[[ -n $cid ]] || die "could not generate a cluster id"
		read -ra fargs <<<"${KAFKA_FORMAT_ARGS:-}"
		java "${opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format -t "$cid" -c "$PROPS" "${fargs[@]}" \
			>"$DATA/format.log" 2>&1 || {
			cat "$DATA/format.log" >&2
			die "storage format failed"
		}
		echo "$KAFKA_VERSION" >"$DATA/kafka.version"
	fi

	echo "==== $(date -Is) starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (controller $cport)" >>"$LOGFILE"
	# setsid: the broker must not share the caller's process group / terminal signals
	setsid java "${opts[@]}" -cp "$LIBS/*" kafka.Kafka "$PROPS" >>"$LOGFILE" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$PIDFILE"

	local deadline=$((SECONDS + START_TIMEOUT))
	while :; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$PIDFILE"
			echo "---- last lines of $LOGFILE" >&2
			tail -n 40 "$LOGFILE" >&2
			die "Kafka exited during startup"
		fi
		if broker_ready; then
			say "Kafka $KAFKA_VERSION up on 127.0.0.1:$KAFKA_PORT (pid $pid, controller port $cport, data $DATA)"
			return 0
		fi
		if ((SECONDS >= deadline)); then
			echo "---- last lines of $LOGFILE" >&2
			tail -n 40 "$LOGFILE" >&2
			die "Kafka not ready on 127.0.0.1:$KAFKA_PORT after ${START_TIMEOUT}s (still running as pid $pid; 'kafka.sh down' stops it)"
		fi
		sleep 0.5
	done
}

# The broker serves when a metadata request lists brokers (kcat), or when the port accepts
# connections and the server logged that it started since the last start marker (a secured
# listener does not answer kcat's PLAINTEXT request).
broker_ready() {
	port_open "$KAFKA_PORT" || return 1
	if [[ $KAFKA_READY == kcat ]]; then
		kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 2>/dev/null | grep -q ' brokers:'
	else
		awk '/^==== .* starting Kafka/ { up = 0 } /Kafka Server started/ { up = 1 } END { exit !up }' "$LOGFILE"
	fi
}

# --- down / status ------------------------------------------------------------------------------

cmd_down() {
	local purge=0 pid
	for a in "$@"; do
		case $a in
		--purge) purge=1 ;;
		*) die "down: unknown option '$a'" ;;
		esac
	done
	if pid=$(running_pid); then
		kill -TERM "$pid" 2>/dev/null || true
		local i
		for ((i = 0; i < 40; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "Kafka (pid $pid) did not stop within 20 s, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 20; i++)); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.25
			done
		fi
		say "Kafka on port $KAFKA_PORT stopped"
	else
		say "Kafka on port $KAFKA_PORT is not running"
	fi
	rm -f "$PIDFILE"
	if ((purge)); then
		rm -rf "$DATA"
		say "removed $DATA"
	fi
}

cmd_status() {
	local pid
	if pid=$(running_pid); then
		local v='?'
		[[ -f $DATA/kafka.version ]] && v=$(cat "$DATA/kafka.version")
		echo "running: Kafka $v on 127.0.0.1:$KAFKA_PORT, pid $pid, controller port $(cat "$DATA/controller.port" 2>/dev/null || echo ?), data $DATA"
		return 0
	fi
	echo "not running (port $KAFKA_PORT, data $DATA)"
	if [[ -f $MARKER ]]; then
		echo "Kafka $KAFKA_VERSION fetched in $LIBS"
	else
		echo "Kafka $KAFKA_VERSION not fetched (run: $0 fetch)"
	fi
	return 3
}

cmd_logs() {
	[[ -f $LOGFILE ]] || die "no log file $LOGFILE"
	tail -n "${1:-100}" "$LOGFILE"
}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
fetch) cmd_fetch ;;
up | start) cmd_up ;;
down | stop) cmd_down "$@" ;;
status) cmd_status ;;
logs) cmd_logs "$@" ;;
-h | --help | help) usage ;;
*)
	usage >&2
	exit 64
	;;
esac
