#!/usr/bin/env bash
# Inbound-mail benchmark (skeleton): how fast a private Postfix instance delivers N DSN-sized
# messages to its pipe(8) transport, first with `/bin/true` as the command (Postfix's own cost:
# smtpd, cleanup, qmgr, pipe, one fork+exec per message), then, if BENCH_INBOUND_CMD is set,
# with that command (`noticecast inbound`) under the same load; prints both rates and their
# ratio.
#
#   N         BENCH_INBOUND_MESSAGES (default 2000) messages, each a ~3 KB multipart/report DSN
#             (tests/integration/inbound/gmail-dsn-5.1.1.eml, filled in) from <> to
#             bounces+<i>@bounces.test: one pipe run per message
#             (inbound_destination_recipient_limit = 1)
#   sessions  BENCH_INBOUND_SESSIONS (default 8) parallel SMTP sessions inject them
#   pipe      BENCH_INBOUND_CONCURRENCY (default 16): inbound_destination_concurrency_limit,
#             the parallel pipe runs; BENCH_INBOUND_PROCESS_LIMIT (default: the concurrency)
#             the pipe service's master.cf process limit
#   main.cf   BENCH_INBOUND_MAIN_CF="name=value ...": more main.cf settings (in_flow_delay=0s...)
#   sweep     BENCH_INBOUND_SWEEP="1 2 4 8 16": the /bin/true run at each of these
#             concurrencies instead (to choose the setting)
#   command   BENCH_INBOUND_CMD, one string split on white space (pipe(8) argv has none), with
#             the pipe macros left for Postfix, e.g.
#               BENCH_INBOUND_CMD='/work/main/build/noticecast -c /tmp/nc.conf inbound
#                 --recipient ${original_recipient}'
#             run as BENCH_INBOUND_USER (default nobody; pipe(8) refuses root), which must be
#             able to read the binary and its config and secrets.
#
# Measured: from the first injection to the last "relay=inbound ... status=sent" in the
# instance's maillog (the queue is then checked empty).  A message the command defers (exit 75)
# or bounces is counted and reported; the run gives up after BENCH_INBOUND_TIMEOUT seconds
# (default 600).  Postfix runs from tests/integration/postfix.py (its own config/queue/data
# dirs under the work dir, smtpd on a free 127.0.0.1 port) and is stopped at exit, by its
# master's pid if need be; /etc/postfix and the system's instance are never touched.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
N=${BENCH_INBOUND_MESSAGES:-2000}
SESSIONS=${BENCH_INBOUND_SESSIONS:-8}
CONC=${BENCH_INBOUND_CONCURRENCY:-16}
PROCS=${BENCH_INBOUND_PROCESS_LIMIT:-}
SWEEP=${BENCH_INBOUND_SWEEP:-}
CMD=${BENCH_INBOUND_CMD:-}
PIPE_USER=${BENCH_INBOUND_USER:-nobody}
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

# run_load LABEL CONCURRENCY ARGV...: one instance, N messages; sets RESULT (one line).  Not
# in a $(...) subshell, and waited for in the background: SIGINT/SIGTERM stop it at once.
run_load() {
	local label=$1 conc=$2 pid
	shift 2
	BASES+=("$WORK/$label")
	say "$label: $N messages, pipe concurrency $conc, command: $*"
	python3 - "$REPO" "$WORK/$label" "$N" "$SESSIONS" "$conc" "${PROCS:-$conc}" "$PIPE_USER" \
		"$TIMEOUT" "$MAIN_CF" "$@" >"$WORK/$label.result" <<'PY' &
import re, smtplib, sys, threading, time
from pathlib import Path

repo, base, n, sessions, conc, procs, user, timeout, main_cf = sys.argv[1:10]
argv = sys.argv[10:]
n, sessions, conc, procs, timeout = int(n), int(sessions), int(conc), int(procs), float(timeout)
sys.path.insert(0, f"{repo}/tests/integration")
from postfix import PrivatePostfix  # noqa: E402

sample = (Path(repo) / "tests/integration/inbound/gmail-dsn-5.1.1.eml").read_text()
date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
pad = "X-Bench-Padding: " + "x" * 60 + "\n"

def message(i: int) -> bytes:
    verp = f"bounces+{i}@bounces.test"
    text = (sample.replace("${VERP}", verp).replace("${RCPT}", f"reader{i}@example.test")
            .replace("${MESSAGE_ID}", f"<notice-{i}@news.example.test>")
            .replace("${FROM}", "news@news.example.test").replace("${DATE}", date))
    head, body = text.split("\n\n", 1)
    while len(head) + len(body) < 3000:  # ~3 KB, the size of a provider's DSN
        head += "\n" + pad.rstrip("\n")
    return (head + "\n\n" + body).replace("\r\n", "\n").replace("\n", "\r\n").encode()

msgs = [message(i) for i in range(n)]
pf = PrivatePostfix(base, bounce_domain="bounces.test", pipe_argv=argv, pipe_user=user,
                    pipe_concurrency=conc, pipe_process_limit=procs,
                    main_cf_extra=dict(kv.split("=", 1) for kv in main_cf.split()))
pf.start()
try:
    errors = []

    def inject(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", pf.port, local_hostname="bench.test", timeout=60) as s:
                for i in range(k, n, sessions):
                    s.sendmail("", [f"bounces+{i}@bounces.test"], msgs[i])
        except Exception as e:  # reported below, the run fails
            errors.append(repr(e))

    rx_sent = re.compile(rb"relay=inbound,.* status=sent ")
    rx_deferred = re.compile(rb"relay=inbound,.* status=deferred ")
    rx_bounced = re.compile(rb"status=bounced ")
    t0 = time.monotonic()
    threads = [threading.Thread(target=inject, args=(k,)) for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_injected = time.monotonic()
    if errors:
        sys.exit(f"injection failed: {errors[:3]}")
    sent = deferred = bounced = 0
    offset, last = 0, t0
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
          f"inject_s={t_injected - t0:.3f} concurrency={conc} process_limit={procs} "
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
if [[ -n $SWEEP ]]; then
	for c in $SWEEP; do
		run_load "true-c$c" "$c" /bin/true
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
run_load baseline "$CONC" /bin/true
base_line=$RESULT
echo "$base_line"
check_line "$base_line"
if [[ -n $CMD ]]; then
	read -ra cmd_argv <<<"$CMD"
	run_load command "$CONC" "${cmd_argv[@]}"
	cmd_line=$RESULT
	echo "$cmd_line"
	check_line "$cmd_line"
	python3 - "$base_line" "$cmd_line" <<'PY'
import sys

base, cmd = (dict(kv.split("=", 1) for kv in line.split()) for line in sys.argv[1:3])
b, c = float(base["msg_per_s"]), float(cmd["msg_per_s"])
print(f"pipe to /bin/true: {b:.0f} msg/s; pipe to the command: {c:.0f} msg/s; "
      f"command / true: {c / b:.3f}")
PY
fi
((INCOMPLETE == 0)) || die "incomplete run: the figures above do not count every message"
