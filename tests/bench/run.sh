#!/usr/bin/env bash
# make bench: noticecast against the reference tools, in one run, on the same machine.
#
#   publish: `noticecast publish` of N notices (~1 KiB, NDJSON, one transaction) versus
#            `kcat -P` of the same normalised messages (same keys and values) to the same
#            broker.  Both measured as wall-clock time of the whole command.
#
# A private broker is started on free ports and stopped afterwards.  BENCH_NOTICES overrides N.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${NC_BIN_DIR:-$REPO/build}/noticecast
N=${BENCH_NOTICES:-100000}
BENCH_NAME=publish
BENCH_KEEP=0
# shellcheck source=lib.sh
. "$HERE/lib.sh"

bench_init noticecast-bench
kafka_start
PORT=$KPORT
cat >"$WORK/bench.conf" <<CONF
[noticecast]
topic_prefix = bench.
[kafka]
bootstrap.servers = 127.0.0.1:$PORT
[topics]
partitions = 3
[producer]
timeout_ms = 120000
CONF
"$BIN" -C "$WORK/bench.conf" topics create >/dev/null

python3 "$HERE/gen_notices.py" "$N" 1024 >"$WORK/notices.ndjson"
# kcat gets exactly the bytes noticecast produces: key<TAB>normalised JSON.
"$BIN" -C "$WORK/bench.conf" publish -n "$WORK/notices.ndjson" |
	python3 -c 'import sys,json
for l in sys.stdin:
    print(json.loads(l)["id"] + "\t" + l.rstrip("\n"))' >"$WORK/kcat.tsv"
avg=$(awk -F'\t' '{s+=length($2)} END {printf "%d", s/NR}' "$WORK/kcat.tsv")
# kcat's topic: a second prefix gives an identical empty topic with the same partitions.
sed 's/^topic_prefix = bench\./topic_prefix = benchkcat./' "$WORK/bench.conf" >"$WORK/kcat.conf"
"$BIN" -C "$WORK/kcat.conf" topics create >/dev/null

now() { date +%s.%N; }
# Warm-up: one transaction each, so broker-side coordinator loading is not measured.
"$BIN" -C "$WORK/bench.conf" publish --title warmup --category news >/dev/null 2>&1

t0=$(now)
"$BIN" -C "$WORK/bench.conf" -q publish "$WORK/notices.ndjson" >"$WORK/published.tsv"
t1=$(now)
kcat -P -b "127.0.0.1:$PORT" -t benchkcat.notices.news -K $'\t' -l "$WORK/kcat.tsv"
t2=$(now)
published=$(wc -l <"$WORK/published.tsv")
[[ $published -eq $N ]] || die "noticecast published $published of $N"

python3 - "$N" "$avg" "$t0" "$t1" "$t2" <<'PY'
import sys
n, avg = int(sys.argv[1]), int(sys.argv[2])
t0, t1, t2 = map(float, sys.argv[3:])
nc, kc = n / (t1 - t0), n / (t2 - t1)
print(f"publish: {n} notices, {avg} bytes average value, one broker on loopback")
print(f"  noticecast publish (validate + 1 transaction): {t1-t0:7.2f} s  {nc:9.0f} msg/s")
print(f"  kcat -P (same keys and values, same broker)   : {t2-t1:7.2f} s  {kc:9.0f} msg/s")
print(f"  ratio noticecast / kcat: {nc/kc:.2f}  (target >= 0.80)")
PY
