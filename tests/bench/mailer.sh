#!/usr/bin/env bash
# make bench, mailer part: noticecast-mailer against Postfix's smtp-source, in one run, on the
# same machine, against the same smtp-sink (README.md "Benchmarks").
#
#   sink        smtp-sink -c on 127.0.0.1:<free port> (one process for the whole run); its
#               running counter (one "mesg=N" per message accepted) is read by
#               mailer_helper.py sinkmon, which timestamps it; every rate below is
#               (messages) / (time of the last - time of the first message at the sink).
#   subscribers BENCH_MAILER_SUBSCRIBERS (100,000), all daily, lang en, tz UTC, the same send_at,
#               every category and region; produced straight to <prefix>subscribers with
#               confluent_kafka in one transaction, byte for byte what `noticecast subscribers
#               import` writes (same JSON, key, headers): the CLI's import takes ~40 s for
#               100,000 rows on this machine (its duplicate check is quadratic).
#   notices     5 notices of ~1 KiB (gen_notices.py, English), `noticecast publish`, one
#               transaction, before the daemon starts.
#   message     the digest's size is taken from `noticecast-mailer --preview` of one subscriber.
#   reference   smtp-source -s 16 -d -l <digest size - 100> -m <N>: 16 sessions, connection
#               reuse; -l is the body, smtp-source adds ~100 bytes of headers.  Run before and
#               after the daemon runs; the ratio uses their mean.
#   daemon      for each BENCH_MAILER_SESSIONS (16 4): its own topic prefix, subscribers and
#               notices; noticecast-mailer with [smtp] sessions = S, batch = 500, started with
#               --clock-offset so that its planner reaches the subscribers' send minute
#               BENCH_MAILER_LEAD (12) seconds after the process starts.  Checked afterwards:
#               the sink's count is exactly N (none lost, none repeated), the delivery events
#               on <prefix>deliveries (N mail.sent, N distinct subscribers and Message-IDs), the
#               committed offsets of the senders group, warnings in the daemon's log, exit on
#               SIGTERM.
#   memory      BENCH_MAILER_MEM_SUBSCRIBERS (1,000,000) subscribers produced to a third prefix;
#               the daemon started alone; VmRSS/VmHWM from /proc once its log says "view
#               loaded: N subscribers", and again BENCH_MAILER_MEM_AFTER (10) seconds later;
#               the loading is followed on /metrics and given up after BENCH_MAILER_MEM_TIMEOUT
#               (240) seconds.
#
# A private Kafka broker and smtp-sink run on free loopback ports and are stopped at exit (trap);
# every wait is bounded.  The binaries are copied first (build/ may be rebuilt meanwhile).
#   BENCH_MAILER_PERF=1   perf record -e cpu-clock --call-graph dwarf the daemon during the
#                         first send and print its top symbols (perturbs the figures)
#   BENCH_MAILER_SKIP_MEMORY=1   skip the memory phase
#   BENCH_MAILER_DAEMON_ARGS="-X key=value ..."   extra daemon options (diagnosis only)
#   BENCH_MAILER_KEEP=1   keep the work directory    NC_BIN_DIR (build)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BINDIR=${NC_BIN_DIR:-$REPO/build}
N=${BENCH_MAILER_SUBSCRIBERS:-100000}
NMEM=${BENCH_MAILER_MEM_SUBSCRIBERS:-1000000}
SESSIONS=${BENCH_MAILER_SESSIONS:-16 4}
BATCH=${BENCH_MAILER_BATCH:-500}
LEAD=${BENCH_MAILER_LEAD:-12}
MEM_AFTER=${BENCH_MAILER_MEM_AFTER:-10}
MEM_TIMEOUT=${BENCH_MAILER_MEM_TIMEOUT:-240}
PERF=${BENCH_MAILER_PERF:-0}
read -r -a DAEMON_ARGS <<<"${BENCH_MAILER_DAEMON_ARGS:-}"
NOTICES=5
PATH=$PATH:/usr/sbin

BENCH_NAME=mailer
BENCH_KEEP=${BENCH_MAILER_KEEP:-0}
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for b in noticecast noticecast-mailer; do [[ -x $BINDIR/$b ]] || die "$BINDIR/$b not built (make first)"; done
python3 -c 'import confluent_kafka' 2>/dev/null || die "python3-confluent-kafka is needed (deploy/local/install-deps.sh)"

# smtp-sink / smtp-source come with Debian's postfix (installed without starting an MTA)
"$REPO/deploy/local/install-deps.sh" --bench >/dev/null
bench_init noticecast-bench-mailer

# Snapshots of the binaries and templates: a rebuild during the run must not change them.
mkdir "$WORK/bin"
cp "$BINDIR/noticecast" "$BINDIR/noticecast-mailer" "$WORK/bin/"
cp -r "$REPO/config/templates" "$WORK/templates"
CLI=$WORK/bin/noticecast
DAEMON=$WORK/bin/noticecast-mailer
HELPER=$HERE/mailer_helper.py
cp "$HELPER" "$WORK/mailer_helper.py"
HELPER=$WORK/mailer_helper.py

wait_log() { # file pattern seconds [pid]: 0 when the pattern appears
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		if [[ -n ${4:-} ]] && ! kill -0 "$4" 2>/dev/null; then return 1; fi
		sleep 0.1
	done
	return 1
}
now() { date +%s.%N; }
cat /proc/loadavg >"$WORK/load.start"
say "load average at start: $(cut -d' ' -f1-3 "$WORK/load.start") ($(nproc) cores)"

# ---- Kafka ----------------------------------------------------------------------------------------
kafka_start
read -r SPORT < <(free_ports 1) # for smtp-sink; the broker holds its own ports by now

# ---- the sink -------------------------------------------------------------------------------------
SINK_USER=()
[[ $(id -u) -eq 0 ]] && SINK_USER=(-u nobody) # smtp-sink refuses to keep root privileges
mkfifo "$WORK/sink.fifo"
: >"$WORK/sink.samples"
python3 "$HELPER" sinkmon "$WORK/sink.samples" <"$WORK/sink.fifo" &
PIDS+=($!)
smtp-sink "${SINK_USER[@]}" -c "127.0.0.1:$SPORT" 256 >"$WORK/sink.fifo" 2>"$WORK/sink.err" &
SINK_PID=$!
PIDS+=("$SINK_PID")
wait_port "$SPORT" 10 || die "smtp-sink did not start: $(cat "$WORK/sink.err")"
sink_count() { tail -n 1 "$WORK/sink.samples" | awk '{print $2}'; }

# ---- configuration per topic prefix -----------------------------------------------------------------
head -c 48 /dev/urandom | base64 -w0 >"$WORK/unsubscribe.secret"
chmod 600 "$WORK/unsubscribe.secret"
write_conf() { # prefix sessions [listen] -> $WORK/<prefix>cli.conf, $WORK/<prefix>mailer.conf
	local p=$1 s=$2 listen=${3:-}
	cat >"$WORK/${p}cli.conf" <<CONF
[noticecast]
topic_prefix = $p
categories = news
languages = en, es, pt, ko
default_language = en
default_timezone = UTC
[kafka]
bootstrap.servers = $BROKERS
[topics]
partitions = 3
[producer]
timeout_ms = 120000
CONF
	cp "$WORK/${p}cli.conf" "$WORK/${p}mailer.conf"
	cat >>"$WORK/${p}mailer.conf" <<CONF
[mailer]
group_id = ${p}mailer
listen = $listen
public_listen =
from_name = Ministry of the Interior
from_address = notices@mois.example.go.kr
list_id = notices.mois.example.go.kr
unsubscribe_url = https://notices.mois.example.go.kr/unsubscribe
unsubscribe_mailto = unsubscribe@mois.example.go.kr
unsubscribe_secret_file = $WORK/unsubscribe.secret
templates = $WORK/templates
message_id_domain = mois.example.go.kr
[smtp]
host = 127.0.0.1
port = $SPORT
starttls = off
sessions = $s
batch = $BATCH
CONF
}

python3 "$HERE/gen_notices.py" "$NOTICES" 1024 >"$WORK/notices.ndjson"
NOTICE_AVG=$(awk '{s += length($0)} END {printf "%d", s / NR}' "$WORK/notices.ndjson")

# Subscribers and notices of one prefix; the send minute M (UTC) is 3 minutes ahead: the daemon
# is started later with --clock-offset so that its planner reaches M after LEAD seconds.
prepare() { # prefix sessions count -> $WORK/<prefix>minute
	local p=$1 s=$2 count=$3 m hhmm
	write_conf "$p" "$s"
	timeout 60 "$CLI" -C "$WORK/${p}cli.conf" topics create >/dev/null
	m=$(($(date +%s) / 60 + 3))
	hhmm=$(date -u -d "@$((m * 60))" +%H:%M)
	echo "$m" >"$WORK/${p}minute"
	timeout 300 python3 "$HELPER" subs --brokers "$BROKERS" --topic "${p}subscribers" \
		--count "$count" --send-at "$hhmm" >"$WORK/${p}subs.json" ||
		die "producing subscribers: $(cat "$WORK/${p}subs.json")"
	timeout 60 "$CLI" -C "$WORK/${p}cli.conf" -q publish "$WORK/notices.ndjson" >"$WORK/${p}published.tsv"
	[[ $(wc -l <"$WORK/${p}published.tsv") -eq $NOTICES ]] || die "publishing the notices failed"
}

# ---- smtp-source ------------------------------------------------------------------------------------
reference() { # name length
	local base
	base=$(sink_count)
	python3 "$HELPER" wait --samples "$WORK/sink.samples" --base "$base" --target "$N" \
		--timeout 180 --settle 1 --cpu "$SINK_PID" >"$WORK/ref-$1.json" &
	local w=$!
	PIDS+=("$w")
	say "smtp-source -s 16 -d -l $2 -m $N (load $(cut -d' ' -f1-3 /proc/loadavg))"
	local t0 t1
	t0=$(now)
	timeout 180 smtp-source -s 16 -d -l "$2" -m "$N" "127.0.0.1:$SPORT" >"$WORK/ref-$1.out" 2>&1 ||
		say "smtp-source exited $?: $(tail -3 "$WORK/ref-$1.out")"
	t1=$(now)
	echo "$t0 $t1" >"$WORK/ref-$1.wall"
	wait "$w" || true
	forget "$w"
}

# ---- one daemon run ---------------------------------------------------------------------------------
run_daemon() { # prefix sessions
	local p=$1 s=$2 m off t_spawn base dpid w
	m=$(cat "$WORK/${p}minute")
	cat /proc/loadavg >"$WORK/${p}load"
	base=$(sink_count)
	t_spawn=$(now)
	off=$(python3 -c "print(f'{$m * 60 - $t_spawn - $LEAD:.3f}')")
	python3 -c "import sys; sys.exit(0 if $off > 0 else 1)" ||
		die "setup took too long: the send minute is already less than $LEAD s away"
	say "noticecast-mailer, $s sessions, batch $BATCH: $N digests due in $LEAD s (clock offset $off s; load $(cut -d' ' -f1-3 /proc/loadavg))"
	"$DAEMON" -C "$WORK/${p}mailer.conf" "${DAEMON_ARGS[@]}" --clock-offset "$off" >"$WORK/${p}daemon.log" 2>&1 &
	dpid=$!
	PIDS+=("$dpid")
	python3 "$HELPER" wait --samples "$WORK/sink.samples" --base "$base" --target "$N" \
		--timeout $((LEAD + 240)) --settle 3 --pid "$dpid" --cpu "$dpid" --cpu "$SINK_PID" \
		--cpu "$KAFKA_PID" >"$WORK/${p}watch.json" &
	w=$!
	PIDS+=("$w")
	if [[ $PERF == 1 && -z ${PERF_DONE:-} ]]; then
		PERF_DONE=1
		# from the plan's commit (the jobs are then readable) to the last message
		if wait_log "$WORK/${p}daemon.log" 'digests* planned for minute' $((LEAD + 60)) "$dpid"; then
			perf_start "$dpid" "$WORK/perf.data" 199 8192
		fi
	fi
	wait "$w" || die "mailer_helper.py wait failed"
	forget "$w"
	perf_stop
	python3 "$HELPER" status "$dpid" >"$WORK/${p}status.json"
	local t_term t_stopped
	t_term=$(now)
	stop_daemon "$dpid"
	t_stopped=$(now)
	echo "$t_spawn $off $t_term $t_stopped $DEXIT $dpid" >"$WORK/${p}times"
	timeout 120 python3 "$HELPER" events --brokers "$BROKERS" --topic "${p}deliveries" \
		>"$WORK/${p}events.json" || echo '{}' >"$WORK/${p}events.json"
	timeout 60 python3 "$HELPER" committed --brokers "$BROKERS" --group "${p}mailer.senders" \
		--topic "${p}mailer.jobs" >"$WORK/${p}committed.json" 2>/dev/null || echo '[]' >"$WORK/${p}committed.json"
	grep -E 'level=(warn|error|fatal)' "$WORK/${p}daemon.log" >"$WORK/${p}warnings" || true
}

# ---- throughput -------------------------------------------------------------------------------------
FIRST=
for s in $SESSIONS; do
	p=bench$s.
	say "preparing $p: $N subscribers, $NOTICES notices"
	prepare "$p" "$s" "$N"
	if [[ -z $FIRST ]]; then
		FIRST=$p
		# The digest as it will be sent (the preview's Message-ID and Date differ by a few bytes).
		m=$(cat "$WORK/${p}minute")
		off=$((m * 60 - $(date +%s)))
		timeout 120 "$DAEMON" -C "$WORK/${p}mailer.conf" --clock-offset "$off" \
			--preview sub0000001@example.org >"$WORK/digest.eml" 2>"$WORK/preview.err" ||
			die "--preview failed: $(cat "$WORK/preview.err")"
		SIZE=$(wc -c <"$WORK/digest.eml")
		((SIZE > 0)) || die "--preview printed no message: $(cat "$WORK/preview.err")"
		LEN=$((SIZE > 200 ? SIZE - 100 : SIZE))
		reference before "$LEN"
	fi
	run_daemon "$p" "$s"
done
reference after "$LEN"

# ---- memory -----------------------------------------------------------------------------------------
# The daemon alone with NMEM subscribers (no notices: nothing to send).  It listens on a free port
# so that /metrics shows how far the loading got.
if [[ ${BENCH_MAILER_SKIP_MEMORY:-0} != 1 ]]; then
	p=benchmem.
	write_conf "$p" 4 127.0.0.1:0
	timeout 60 "$CLI" -C "$WORK/${p}cli.conf" topics create >/dev/null
	say "memory: producing $NMEM subscribers"
	timeout 600 python3 "$HELPER" subs --brokers "$BROKERS" --topic "${p}subscribers" \
		--count "$NMEM" --send-at 03:33 >"$WORK/mem-subs.json" ||
		die "producing subscribers: $(cat "$WORK/mem-subs.json")"
	cat /proc/loadavg >"$WORK/mem.load"
	say "memory: starting noticecast-mailer, waiting at most ${MEM_TIMEOUT}s for the view (load $(cut -d' ' -f1-3 /proc/loadavg))"
	t0=$(now)
	"$DAEMON" -C "$WORK/${p}mailer.conf" "${DAEMON_ARGS[@]}" >"$WORK/mem-daemon.log" 2>&1 &
	dpid=$!
	PIDS+=("$dpid")
	python3 "$HELPER" memwatch --pid "$dpid" --log "$WORK/mem-daemon.log" --t0 "$t0" \
		--timeout "$MEM_TIMEOUT" --after "$MEM_AFTER" >"$WORK/mem.json" || echo '{}' >"$WORK/mem.json"
	tt=$(now)
	stop_daemon "$dpid"
	ts=$(now)
	echo "$t0 $tt $ts $DEXIT" >"$WORK/mem.times"
	grep -E 'level=(warn|error|fatal)' "$WORK/mem-daemon.log" >"$WORK/mem.warnings" || true
fi

# ---- report -----------------------------------------------------------------------------------------
cat /proc/loadavg >"$WORK/load.end"
# shellcheck disable=SC2086 # SESSIONS is a list: one argument per session count
python3 - "$WORK" "$N" "$NMEM" "$NOTICES" "$NOTICE_AVG" "${SIZE:-0}" "${LEN:-0}" "$BATCH" "$SINK_PID" \
	"$KAFKA_PID" "$MEM_AFTER" $SESSIONS <<'PY'
import json, os, re, sys
from datetime import datetime

work = sys.argv[1]
n, nmem, notices, notice_avg, size, length, batch = map(int, sys.argv[2:9])
sink, kafka, mem_after = sys.argv[9], sys.argv[10], sys.argv[11]
sessions = sys.argv[12:]
P = lambda name: os.path.join(work, name)
rd = lambda name: open(P(name)).read() if os.path.exists(P(name)) else ""
js = lambda name, d=None: json.loads(rd(name)) if rd(name).strip() else d
load = lambda name: " ".join(rd(name).split()[:3])

def log_ts(name, pattern):
    for line in rd(name).splitlines():
        if re.search(pattern, line):
            m = re.match(r"ts=(\S+)", line)
            if m:
                return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=__import__("datetime").timezone.utc).timestamp(), line
    return None, None

def rate(w):
    if w and w.get("end") == "done" and w["t_last"] > w["t_first"]:
        return (n - 1) / (w["t_last"] - w["t_first"])  # n messages, n - 1 intervals
    return None

print(f"mailer: {n} subscribers, daily digest of {notices} notices (~{notice_avg} bytes of JSON each, "
      f"English), {size}-byte messages, smtp-sink on loopback")
print(f"  load average: at start {load('load.start')}, at the end {load('load.end')} "
      f"({os.cpu_count()} cores; other work on this machine skews every figure)")
refs = {}
for name in ("before", "after"):
    w = js(f"ref-{name}.json", {})
    r = rate(w)
    wall = rd(f"ref-{name}.wall").split()
    if r:
        refs[name] = r
        c = w.get("cpu", {}).get(sink)
        span = w["t_last"] - w["t_first"]
        print(f"  smtp-source -s 16 -d -l {length} ({name:6}): {r:8.0f} msg/s  "
              f"({span:.2f} s first -> last; smtp-sink {c / span:.0%} of a core)"
              + (f"; extra at the sink: {w['extra']}" if w.get("extra") else ""))
    else:
        print(f"  smtp-source ({name}): FAILED: {w.get('end')}, {w.get('reached')} of {n}; "
              f"{rd(f'ref-{name}.out')[-300:]}")
ref = sum(refs.values()) / len(refs) if refs else None
for s in sessions:
    p = f"bench{s}."
    w = js(f"{p}watch.json", {})
    r = rate(w)
    times = rd(f"{p}times").split()
    t_spawn, off = float(times[0]), float(times[1])
    t_term, t_stop, dexit, dpid = float(times[2]), float(times[3]), times[4], times[5]
    if r:
        span = w["t_last"] - w["t_first"]
        ratio = f"ratio {r / ref:.2f} (target >= 0.5)" if ref else "no reference"
        print(f"  noticecast-mailer ({s:>2} sessions)  : {r:8.0f} msg/s   {ratio}   "
              f"({span:.2f} s first -> last)")
    else:
        print(f"  noticecast-mailer ({s:>2} sessions)  : DID NOT FINISH ({w.get('end')}): "
              f"{w.get('reached')} of {n} messages at the sink")
    tl, _ = log_ts(f"{p}daemon.log", r"view loaded")
    tp, pline = log_ts(f"{p}daemon.log", r"\d+ digests? planned for minute")
    due = float(rd(f"{p}minute")) * 60 - off  # real time at which the planner's clock hits M
    parts = []
    if tl:
        parts.append(f"start -> view loaded {tl - t_spawn:.2f} s")
    if tp:
        parts.append(f"send minute due -> plan committed {tp - due:+.2f} s")
        if w.get("t_first"):
            parts.append(f"plan committed -> first message {w['t_first'] - tp:.2f} s")
    print("      " + "; ".join(parts) + (f"  [{pline.split('msg=')[-1]}]" if pline else ""))
    cpu, mach = w.get("cpu", {}), w.get("machine")
    if r and cpu:
        span = w["t_last"] - w["t_first"]
        d = [cpu.get(k, float("nan")) for k in (dpid, sink, kafka)]
        st = js(f"{p}status.json", {})
        other = ""
        if mach:
            ours = sum(v for v in d if v == v)
            other = (f"; whole machine {mach['busy_s'] / span:.2f} of {os.cpu_count()} cores busy, "
                     f"{max(0.0, mach['busy_s'] - ours) / span:.2f} cores by other processes")
        print(f"      CPU first -> last: daemon {d[0]:.2f} s ({d[0] / span:.0%} of a core, "
              f"{n / d[0]:.0f} msg per CPU-second), smtp-sink {d[1] / span:.0%}, Kafka "
              f"{d[2] / span:.0%}{other}; daemon RSS {st.get('VmRSS', 0) / 1024:.0f} MiB "
              f"(HWM {st.get('VmHWM', 0) / 1024:.0f} MiB), {st.get('Threads')} threads")
    ps = w.get("per_second", [])
    if ps:
        print(f"      messages per second at the sink: {ps}")
    ev = js(f"{p}events.json", {})
    cm = js(f"{p}committed.json", [])
    # committed = high watermark - 1: the last record of each partition is the commit marker of
    # the planner's transaction
    behind = sum(max(0, c["high"] - 1 - max(c["committed"], 0)) for c in cm) if cm else None
    print(f"      checks: sink counted {w.get('count')} (expected exactly {n}; extra after "
          f"3 s: {w.get('extra')}); longest gap between messages {w.get('longest_stall')} s")
    print(f"              delivery events {ev.get('types')}, {ev.get('sent_distinct_subscribers')} "
          f"distinct subscribers, {ev.get('sent_distinct_message_ids')} distinct Message-IDs"
          + (f", other: {ev.get('other')}" if ev.get("other") else ""))
    print(f"              jobs not committed by {p}mailer.senders: {behind} "
          f"((partition, committed, high watermark): "
          f"{[(c['partition'], c['committed'], c['high']) for c in cm]}); "
          f"SIGTERM -> exit {t_stop - t_term:.2f} s, status {dexit}; load before: {load(p + 'load')}")
    warn = rd(f"{p}warnings").splitlines()
    print(f"              warnings/errors in its log: {len(warn)}")
    for l in warn[:6]:
        print("                " + l[:220])

mt = rd("mem.times").split()
if mt:
    t0, tt, ts, mexit = float(mt[0]), float(mt[1]), float(mt[2]), mt[3]
    subs, mw = js("mem-subs.json", {}), js("mem.json", {})
    at, after = mw.get("at_load", {}), mw.get("after", {})
    mib = lambda kb: f"{(kb or 0) / 1024:.0f}"
    if mw.get("loaded_after") is not None:
        print(f"memory: {nmem:,} subscribers loaded in {mw['loaded_after']:.1f} s (process start -> "
              f"\"{mw['line'].split('msg=')[-1].strip(chr(34))}\"; {mw.get('cpu_s') or 0:.1f} CPU-s), "
              f"RSS {mib(at.get('VmRSS'))} MiB (VmHWM {mib(at.get('VmHWM'))} MiB) (target <= 512 MiB)")
        print(f"        {mem_after} s later: RSS {mib(after.get('VmRSS'))} MiB, VmHWM "
              f"{mib(after.get('VmHWM'))} MiB, {after.get('Threads')} threads")
    else:
        last = (mw.get("samples") or [[None, None, None]])[-1]
        print(f"memory: the view was NOT loaded after {tt - t0:.0f} s: {last[1]} of {nmem:,} "
              f"subscribers (/metrics), RSS {mib(at.get('VmRSS'))} MiB (VmHWM {mib(at.get('VmHWM'))} MiB)")
    sm = mw.get("samples") or []
    if sm:
        step = max(1, len(sm) // 12)
        print("        loading (s since start, subscribers in the view, RSS MiB): " +
              ", ".join(f"({t:.0f}, {g}, {mib(r)})" for t, g, r in sm[::step]))
    print(f"        producing the records took {subs.get('seconds')} s; SIGTERM -> exit {ts - tt:.2f} s, "
          f"status {mexit}; load before: {load('mem.load')}")
    warn = rd("mem.warnings").splitlines()
    print(f"        warnings/errors in its log: {len(warn)}")
    for l in warn[:6]:
        print("          " + l[:220])
PY
perf_summary "$WORK/perf.data" "the first daemon run, plan committed -> last message" 3
