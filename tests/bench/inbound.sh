#!/usr/bin/env bash
# Inbound-mail benchmark (README "Benchmarks"): how fast `noticecast inbound` takes DSNs through
# a private Postfix's pipe(8) transport, against Postfix delivering the same DSNs to a pipe
# running `/bin/true` (Postfix's own cost: qmgr, pipe, one fork+exec per message), in one run.
#
#   1. baseline   the pipe runs /bin/true;
#   2. served     the pipe runs noticecast-inbound, which hands each mail to one
#                 `noticecast inbound --serve` (started here, writing to a private broker) and
#                 exits with its answer once Kafka acknowledged the event: the deployment
#                 docs/inbound.md recommends;
#   3. direct     the pipe runs `noticecast inbound` itself, a process and a Kafka connection
#                 per mail (BENCH_INBOUND_DIRECT messages, default 400; 0 = skip).
#
#   warm-up   BENCH_INBOUND_WARMUP (default 1000) mails through the server first, not measured:
#             a broker just started spends twice the CPU per request until its JIT has run
#   N         BENCH_INBOUND_MESSAGES (default 3000) messages, each a ~3 KB multipart/report DSN
#             (tests/integration/inbound/gmail-dsn-5.1.1.eml, filled in with a real VERP
#             address) from <> to bounces+<token>@bounces.test: one pipe run per message
#             (inbound_destination_recipient_limit = 1)
#   sessions  BENCH_INBOUND_SESSIONS (default 8) parallel SMTP sessions inject them
#   pipe      BENCH_INBOUND_CONCURRENCY (default 32): inbound_destination_concurrency_limit,
#             the parallel pipe runs; BENCH_INBOUND_PROCESS_LIMIT (default: the concurrency)
#             the pipe service's master.cf process limit
#   main.cf   BENCH_INBOUND_MAIN_CF="name=value ...": more main.cf settings
#   sweep     BENCH_INBOUND_SWEEP="1 2 4 8 16": the /bin/true run at each of these
#             concurrencies instead (to choose the setting)
#
# Measured: the messages are injected with the pipe transport held (defer_transports), then
# released at once (postfix reload, postqueue -f): from the release to the last
# "relay=inbound ... status=sent" in the instance's maillog.  Injection (smtpd, cleanup) is
# the same for every command and is not timed: it alone is slower than the pipe.  Every
# message must be delivered (none deferred, bounced or left), and for noticecast every event
# must be on the deliveries topic: else the script fails.  The pipe runs as nobody.  Postfix
# runs from tests/integration/postfix.py (its own config/queue/data dirs under the work dir,
# smtpd on a free 127.0.0.1 port) and is stopped at exit, by its master's pid if need be;
# /etc/postfix and the system's instance are never touched.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
N=${BENCH_INBOUND_MESSAGES:-3000}
N_WARM=${BENCH_INBOUND_WARMUP:-1000}
SESSIONS=${BENCH_INBOUND_SESSIONS:-8}
CONC=${BENCH_INBOUND_CONCURRENCY:-32}
PROCS=${BENCH_INBOUND_PROCESS_LIMIT:-}
SWEEP=${BENCH_INBOUND_SWEEP:-}
N_DIRECT=${BENCH_INBOUND_DIRECT:-400}
BIN_DIR=${NC_BIN_DIR:-$REPO/build}
PIPE_USER=nobody
TIMEOUT=${BENCH_INBOUND_TIMEOUT:-600}
MAIN_CF=${BENCH_INBOUND_MAIN_CF:-}
PATH=$PATH:/usr/sbin
BENCH_NAME=inbound
BENCH_KEEP=${BENCH_KEEP:-0}
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[[ $(id -u) -eq 0 ]] || die "needs root (postfix -c ... start runs the master as root)"
command -v postfix >/dev/null || die "no postfix (deploy/local/install-deps.sh --bench installs it)"
# The work dir is also the instances' base: the pipe user must be able to traverse it.
bench_init noticecast-inbound-bench
chmod 755 "$WORK"

BASES=()
bench_cleanup_hook() { # every instance this script started, by its own master.pid
	local b
	for b in "${BASES[@]}"; do
		python3 "$REPO/tests/integration/postfix.py" stop --base "$b" >/dev/null 2>&1 || true
	done
}

# run_load LABEL N CONCURRENCY ARGV...: one instance, N messages; sets RESULT (one line).  Not
# in a $(...) subshell, and waited for in the background: SIGINT/SIGTERM stop it at once.
run_load() {
	local label=$1 n=$2 conc=$3 pid
	shift 3
	BASES+=("$WORK/$label")
	say "$label: $n messages, pipe concurrency $conc, command: $*"
	python3 - "$REPO" "$WORK/$label" "$n" "$SESSIONS" "$conc" "${PROCS:-$conc}" "$PIPE_USER" \
		"$TIMEOUT" "$MAIN_CF" "$SECRET" "$@" >"$WORK/$label.result" <<'PY' &
import re, smtplib, sys, threading, time
from pathlib import Path

repo, base, n, sessions, conc, procs, user, timeout, main_cf, secret = sys.argv[1:11]
argv = sys.argv[11:]
n, sessions, conc, procs, timeout = int(n), int(sessions), int(conc), int(procs), float(timeout)
sys.path.insert(0, f"{repo}/tests/integration")
from postfix import PrivatePostfix  # noqa: E402
from inbound_support import secret_key, verp_address  # noqa: E402

key = secret_key(Path(secret))

sample = (Path(repo) / "tests/integration/inbound/gmail-dsn-5.1.1.eml").read_text()
date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
pad = "X-Bench-Padding: " + "x" * 60 + "\n"

def rcpt(i: int) -> str:  # each DSN to the real VERP address of one message
    return verp_address(key, "bounces@bounces.test", f"reader{i}@example.test",
                        f"<notice-{i}@news.example.test>")


def message(i: int) -> bytes:
    verp = rcpt(i)
    text = (sample.replace("${VERP}", verp).replace("${RCPT}", f"reader{i}@example.test")
            .replace("${MESSAGE_ID}", f"<notice-{i}@news.example.test>")
            .replace("${FROM}", "news@news.example.test").replace("${DATE}", date))
    head, body = text.split("\n\n", 1)
    while len(head) + len(body) < 3000:  # ~3 KB, the size of a provider's DSN
        head += "\n" + pad.rstrip("\n")
    return (head + "\n\n" + body).replace("\r\n", "\n").replace("\n", "\r\n").encode()

msgs = [message(i) for i in range(n)]
extra = dict(kv.split("=", 1) for kv in main_cf.split())
extra["defer_transports"] = "inbound"  # held until every message is in the queue
pf = PrivatePostfix(base, bounce_domain="bounces.test", pipe_argv=argv, pipe_user=user,
                    pipe_concurrency=conc, pipe_process_limit=procs, main_cf_extra=extra)
pf.start()
try:
    errors = []

    def inject(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", pf.port, local_hostname="bench.test", timeout=60) as s:
                for i in range(k, n, sessions):
                    s.sendmail("", [rcpt(i)], msgs[i])
        except Exception as e:  # reported below, the run fails
            errors.append(repr(e))

    rx_sent = re.compile(rb"relay=inbound,.* status=sent ")
    rx_deferred = re.compile(rb"relay=inbound,.* status=deferred ")
    rx_bounced = re.compile(rb"status=bounced ")
    ti = time.monotonic()
    threads = [threading.Thread(target=inject, args=(k,)) for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_injected = time.monotonic()
    if errors:
        sys.exit(f"injection failed: {errors[:3]}")
    pf.wait_for(lambda: len(pf.queue()) >= n, timeout, what=f"{n} messages queued")
    # Release: from here on every pipe delivery is counted.
    offset = pf.log_file.stat().st_size
    pf.postconf("-e", "defer_transports=")
    pf._postfix("reload")
    t0 = time.monotonic()
    pf.flush()
    sent = deferred = bounced = 0
    last = t0
    while True:
        with open(pf.log_file, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1
        offset += cut
        for line in chunk[:cut].splitlines():
            if rx_sent.search(line):
                sent += 1
                last = time.monotonic()
            elif rx_deferred.search(line):
                deferred += 1
            elif rx_bounced.search(line):
                bounced += 1
        if sent + bounced >= n or time.monotonic() - t0 > timeout:
            break
        time.sleep(0.05)
    t1 = last if sent else time.monotonic()
    if sent == n:
        pf.wait_queue_empty(timeout=30)
    left = len(pf.queue())
    secs = t1 - t0
    print(f"label={Path(base).name} messages={n} sent={sent} deferred={deferred} "
          f"bounced={bounced} queued={left} complete={int(sent == n and not left)} "
          f"seconds={secs:.3f} msg_per_s={sent / secs:.1f} "
          f"inject_s={t_injected - ti:.3f} concurrency={conc} process_limit={procs} "
          f"sessions={sessions}")
finally:
    pf.stop()
PY
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || die "$label: the load run failed (status $?)"
	forget "$pid"
	RESULT=$(<"$WORK/$label.result")
}

echo "inbound.sh: $N DSN-sized messages over $SESSIONS SMTP sessions, $(nproc) cores," \
	"postfix $(postconf -dh mail_version)" >&2
# The secret the VERP addresses are made with; nobody (the pipe user) reads it in `direct`.
SECRET=$WORK/unsubscribe.key
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$SECRET"
chown nobody "$SECRET"
chmod 600 "$SECRET"
if [[ -n $SWEEP ]]; then
	for c in $SWEEP; do
		run_load "true-c$c" "$N" "$c" /bin/true
		echo "$RESULT"
	done
	exit 0
fi
INCOMPLETE=0
check_line() { # result line: warn when not every message was delivered
	[[ $1 == *" complete=1 "* ]] && return 0
	say "not every message was delivered (deferred / bounced / still queued): $1"
	INCOMPLETE=1
}
[[ -x $BIN_DIR/noticecast && -x $BIN_DIR/noticecast-inbound ]] || make -C "$REPO" >/dev/null
# What nobody runs: copies, as the checkout may be in a directory it cannot enter.
install -m 0755 "$BIN_DIR/noticecast" "$BIN_DIR/noticecast-inbound" "$WORK/"
kafka_start
cat >"$WORK/nc.conf" <<CONF
[noticecast]
topic_prefix = bench.
[kafka]
bootstrap.servers = $BROKERS
[topics]
partitions = 3
[producer]
timeout_ms = 30000
[mailer]
from_address = news@news.example.test
envelope_from = bounces@bounces.test
unsubscribe_secret_file = $SECRET
CONF
chown nobody "$WORK/nc.conf"
chmod 600 "$WORK/nc.conf"
"$WORK/noticecast" -C "$WORK/nc.conf" topics create >/dev/null
events() { # the records on bench.deliveries
	python3 - "$BROKERS" <<'PY'
import sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "bench-count"})
md = c.list_topics("bench.deliveries", timeout=30).topics["bench.deliveries"]
print(sum(c.get_watermark_offsets(TopicPartition("bench.deliveries", p), timeout=30)[1]
          for p in md.partitions))
c.close()
PY
}
"$WORK/noticecast" -C "$WORK/nc.conf" inbound --serve "$WORK/inbound.sock" --socket-mode 0666 \
	2>"$WORK/serve.log" &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
for _ in $(seq 100); do [[ -S $WORK/inbound.sock ]] && break; sleep 0.1; done
[[ -S $WORK/inbound.sock ]] || die "noticecast inbound --serve did not start: $(cat "$WORK/serve.log")"

cpu() { # pid: its user+system CPU so far, in clock ticks
	awk '{print $14 + $15}' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)
# shellcheck disable=SC2016 # ${original_recipient} is pipe(8)'s macro, not the shell's
CLIENT=("$WORK/noticecast-inbound" -s "$WORK/inbound.sock" --recipient '${original_recipient}')
warm=0
if ((N_WARM > 0)); then
	run_load warmup "$N_WARM" "$CONC" "${CLIENT[@]}"
	say "warm-up: $RESULT"
	warm=$(events)
fi
b0=$(cpu "$KAFKA_PID")
run_load baseline "$N" "$CONC" /bin/true
b1=$(cpu "$KAFKA_PID")
base_line="$RESULT broker_cpu_ms_per_mail=$(((b1 - b0) * 1000000 / hz / N))e-3"
echo "$base_line"
check_line "$base_line"
s0=$(cpu "$SERVE_PID") k0=$(cpu "$KAFKA_PID")
run_load served "$N" "$CONC" "${CLIENT[@]}"
s1=$(cpu "$SERVE_PID") k1=$(cpu "$KAFKA_PID")
served_line="$RESULT server_cpu_ms_per_mail=$(((s1 - s0) * 1000000 / hz / N))e-3 broker_cpu_ms_per_mail=$(((k1 - k0) * 1000000 / hz / N))e-3"
echo "$served_line"
check_line "$served_line"
after_served=$(events)
[[ $after_served -eq $((warm + N)) ]] ||
	die "served: $((after_served - warm)) events on bench.deliveries, not $N"
direct_line=
if ((N_DIRECT > 0)); then
	# shellcheck disable=SC2016 # pipe(8)'s macro
	run_load direct "$N_DIRECT" "$CONC" "$WORK/noticecast" -C "$WORK/nc.conf" inbound \
		--recipient '${original_recipient}'
	direct_line=$RESULT
	echo "$direct_line"
	check_line "$direct_line"
	total=$(events)
	[[ $total -eq $((after_served + N_DIRECT)) ]] ||
		die "direct: $((total - after_served)) events, not $N_DIRECT"
fi
stop_pid "$SERVE_PID"
forget "$SERVE_PID"
python3 - "$base_line" "$served_line" "$direct_line" <<'PY'
import sys

lines = [dict(kv.split("=", 1) for kv in line.split()) for line in sys.argv[1:] if line]
base = float(lines[0]["msg_per_s"])
names = {"baseline": "pipe to /bin/true (Postfix's own cost)",
         "served": "noticecast-inbound + inbound --serve",
         "direct": "noticecast inbound, a process per mail"}
print(f"Postfix pipe(8) deliveries of ~3 KB DSNs from a held queue, concurrency "
      f"{lines[0]['concurrency']}")
print(f"{'':42} {'messages':>8} {'seconds':>8} {'msg/s':>8} {'x /bin/true':>11}")
for d in lines:
    r = float(d["msg_per_s"])
    print(f"{names[d['label']]:42} {d['messages']:>8} {float(d['seconds']):>8.2f} {r:>8.0f} "
          f"{r / base:>11.2f}")
served = lines[1]
print(f"CPU per mail while served: the server {float(served['server_cpu_ms_per_mail']):.2f} ms, "
      f"the broker {float(served['broker_cpu_ms_per_mail']):.2f} ms (during the /bin/true run, "
      f"with nothing to write: {float(lines[0]['broker_cpu_ms_per_mail']):.2f} ms)")
PY
((INCOMPLETE == 0)) || die "incomplete run: the figures above do not count every message"
