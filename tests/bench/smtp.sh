#!/usr/bin/env bash
# SMTP micro-benchmark: ml_smtp_send_session (libesmtp) against Postfix's smtp-source, both
# sending to the same smtp-sink on loopback, in one run on the same machine (README.md
# "Benchmarks").
#
#   1. libesmtp WITHOUT TCP_NODELAY, 1 thread: the delayed-ACK pitfall (~40 ms per message),
#      so only BENCH_SMTP_SLOW messages (default 200);
#   2. WITH TCP_NODELAY (our connect() hook), 1 / 4 / 16 threads, BENCH_SMTP_MESSAGES
#      messages (default 20000) in sessions of BENCH_SMTP_PER_SESSION (default 500);
#   3. smtp-source -s 16 -d -l BODY -m N: 16 parallel sessions, many messages per session.
# Messages: BENCH_SMTP_BODY body bytes (default 2048, as smtp-source -l) plus ~250 bytes of
# headers.  Prints msg/s, each figure's ratio to smtp-source, and how many sockets got
# TCP_NODELAY (one per session: the proof that the hook ran).
#
# Needs smtp-sink and smtp-source (Debian package postfix): installed if missing by
# deploy/local/install-deps.sh --bench, which starts no postfix service.  SMTP_BENCH=path uses an
# already built smtp_bench; otherwise it is compiled into a temp dir.  Everything stays on
# 127.0.0.1, every loop is bounded by its message count, and the sink is stopped at exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
N=${BENCH_SMTP_MESSAGES:-20000}
N_SLOW=${BENCH_SMTP_SLOW:-200}
PER=${BENCH_SMTP_PER_SESSION:-500}
BODY=${BENCH_SMTP_BODY:-2048}
PATH=$PATH:/usr/sbin
BENCH_NAME=smtp
BENCH_KEEP=0
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# smtp-sink / smtp-source come with Debian's postfix (installed without starting an MTA)
"$REPO/deploy/local/install-deps.sh" --bench >/dev/null
bench_init noticecast-smtp-bench

# ---- the benchmark program ----------------------------------------------------------------------
BENCH=${SMTP_BENCH:-}
if [[ -z $BENCH ]]; then
	[[ -f $REPO/build/libnoticecast.a ]] || make -C "$REPO" build/libnoticecast.a >/dev/null
	BENCH=$WORK/smtp_bench
	# shellcheck disable=SC2046 # pkg-config output is meant to be split
	cc -std=c11 -D_GNU_SOURCE -O2 -I"$REPO/common" -I"$REPO/consumer/mailer" -o "$BENCH" \
		"$REPO/consumer/mailer/smtp.c" "$REPO/consumer/mailer/nodelay.c" \
		"$HERE/smtp_bench.c" "$REPO/build/libnoticecast.a" \
		$(pkg-config --cflags --libs libesmtp-1.0 libssl libcrypto) -ldl -lpthread
fi

# ---- the sink -------------------------------------------------------------------------------------
read -r PORT < <(free_ports 1)
SINK_ARGS=()
[[ $(id -u) -eq 0 ]] && SINK_ARGS=(-u nobody) # smtp-sink refuses to keep root privileges
smtp-sink "${SINK_ARGS[@]}" "127.0.0.1:$PORT" 256 >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
PIDS+=("$SINK_PID")
wait_port "$PORT" 5 || die "smtp-sink did not start: $(cat "$WORK/sink.log")"

now() { date +%s.%N; }
bench() { "$BENCH" -p "$PORT" -l "$BODY" -s "$PER" "$@"; }

echo "smtp.sh: smtp-sink on 127.0.0.1:$PORT, $(nproc) cores, body $BODY bytes" >&2
slow=$(bench -n "$N_SLOW" -t 1 -N)
t1=$(bench -n "$N" -t 1)
t4=$(bench -n "$N" -t 4)
t16=$(bench -n "$N" -t 16)
s0=$(now)
smtp-source -s 16 -d -l "$BODY" -m "$N" "127.0.0.1:$PORT"
s1=$(now)

python3 - "$N" "$s0" "$s1" "$slow" "$t1" "$t4" "$t16" <<'PY'
import sys

n, s0, s1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
runs = [dict(kv.split("=", 1) for kv in line.split()) for line in sys.argv[4:]]
ref = n / (s1 - s0)
names = ["libesmtp, no TCP_NODELAY, 1 thread", "libesmtp + TCP_NODELAY, 1 thread",
         "libesmtp + TCP_NODELAY, 4 threads", "libesmtp + TCP_NODELAY, 16 threads"]
print(f"SMTP to smtp-sink, {runs[0]['message_bytes']}-byte messages, "
      f"{runs[1]['per_session']} per session (libesmtp {runs[0]['libesmtp']})")
print(f"{'':38} {'messages':>8} {'seconds':>8} {'msg/s':>9} {'x smtp-source':>13}  "
      f"sockets with TCP_NODELAY")
for name, r in zip(names, runs):
    rate = float(r["msg_per_s"])
    print(f"{name:38} {r['messages']:>8} {float(r['seconds']):8.2f} {rate:9.0f} "
          f"{rate / ref:13.3f}  {r['nodelay_sockets']}")
print(f"{'smtp-source -s 16 -d':38} {n:>8} {s1 - s0:8.2f} {ref:9.0f} {1:13.3f}")
slow, fast = float(runs[0]["msg_per_s"]), float(runs[1]["msg_per_s"])
print(f"TCP_NODELAY speed-up, 1 thread: x{fast / slow:.0f}")
PY
