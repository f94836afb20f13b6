#!/usr/bin/env bash
# make bench, webhook part: noticecast-webhooks against wrk and a bare libcurl loop, in one run,
# on the same machine, against the same HTTP sink (README.md "Benchmarks").
#
#   sink      nginx on 127.0.0.1:<free port>, worker_processes 1 (one core, not
#             pinned), `return 204`, access_log off, keepalive_requests 10,000,000;
#             requests counted with stub_status (/status, not counted itself).
#   body      the daemon's own payload for a `standard` partner, {"type","timestamp","data"},
#             for ~1 KiB notices from gen_notices.py; the same size and the same headers
#             (webhook-id, -timestamp, -signature, Content-Type, User-Agent) for all three.
#   wrk       wrk -t1 -c<CONNS> -d10s, POST  -> req/s
#   libcurl   curl_loop.c: <CONNS> easy handles on one multi handle, keep-alive,
#             N x 20 requests  -> req/s; then two such loops at once with half the handles
#             and requests each (every core busy, no Kafka): libcurl's ceiling on this machine
#   daemon    N notices published first (one transaction), then noticecast-webhooks started
#             with 20 partners x max_in_flight (= CONNS connections); time from its
#             "started with 20 partners" log line until nginx has served N x 20 requests.
#             Checked afterwards: duplicates at the sink, delivery events on
#             <prefix>deliveries, committed offsets, warnings in its log.
#   latency   the daemon with one partner, a Python receiver; 1,000 urgent notices published
#             one at a time with the CLI; arrival - publish command returned: p50/p90/p99/max.
#
# A private Kafka broker and nginx are started on free loopback ports and stopped afterwards
# (trap); every wait is bounded.  Environment:
#   BENCH_WH_NOTICES (10000)  BENCH_WH_IN_FLIGHT (3: 20 x 3 = 60 connections)
#   BENCH_WH_WRK_SECONDS (10)  BENCH_WH_LATENCY_NOTICES (1000)  BENCH_WH_LATENCY_SECONDS (150)
#   BENCH_WH_PERF=1   also `perf record -e cpu-clock --call-graph dwarf` the daemon during the
#                     delivery run and print its top symbols, self and inclusive (perturbs the
#                     figures: use it in a separate run)
#   BENCH_WH_SKIP_LATENCY=1   skip the latency part
#   NC_BIN_DIR (build)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BINDIR=${NC_BIN_DIR:-$REPO/build}
CLI=$BINDIR/noticecast
DAEMON=$BINDIR/noticecast-webhooks
N=${BENCH_WH_NOTICES:-10000}
PARTNERS=20
INFLIGHT=${BENCH_WH_IN_FLIGHT:-3}
CONNS=$((PARTNERS * INFLIGHT))
TOTAL=$((N * PARTNERS))
WRK_SECONDS=${BENCH_WH_WRK_SECONDS:-10}
LAT_COUNT=${BENCH_WH_LATENCY_NOTICES:-1000}
LAT_SECONDS=${BENCH_WH_LATENCY_SECONDS:-150}
PERF=${BENCH_WH_PERF:-0}

BENCH_NAME=webhooks
BENCH_KEEP=${BENCH_WH_KEEP:-0}
# shellcheck source=lib.sh
. "$HERE/lib.sh"

"$REPO/deploy/local/install-deps.sh" --bench >/dev/null
for b in "$CLI" "$DAEMON"; do [[ -x $b ]] || die "$b not built (make first)"; done

bench_init noticecast-bench-wh
bench_cleanup_hook() {
	if [[ -f $WORK/latency-daemon.pid ]]; then stop_pid "$(cat "$WORK/latency-daemon.pid")" 5; fi
}
# Snapshots of the binaries: a rebuild during the run must not change (or remove) them.
mkdir "$WORK/bin"
cp "$CLI" "$DAEMON" "$WORK/bin/"
CLI=$WORK/bin/noticecast
DAEMON=$WORK/bin/noticecast-webhooks

# --- the bare libcurl loop ----------------------------------------------------------------------
# shellcheck disable=SC2046 # pkg-config prints several words, one per flag
cc -O2 -Wall -o "$WORK/curl_loop" "$HERE/curl_loop.c" $(pkg-config --cflags --libs libcurl)

# --- Kafka, topics, notices ---------------------------------------------------------------------
kafka_start
read -r NPORT < <(free_ports 1) # for nginx; the broker holds its own ports by now
cat >"$WORK/cli.conf" <<CONF
[noticecast]
topic_prefix = bench.
categories = news
[kafka]
bootstrap.servers = $BROKERS
[topics]
partitions = 3
[producer]
timeout_ms = 120000
CONF
timeout 60 "$CLI" -C "$WORK/cli.conf" topics create >/dev/null

secret() { # file
	printf 'whsec_%s\n' "$(head -c 32 /dev/urandom | base64 -w0)" >"$1"
	chmod 600 "$1"
}
cp "$WORK/cli.conf" "$WORK/wh.conf"
cat >>"$WORK/wh.conf" <<CONF
[webhooks]
group_id = bench-webhooks
listen =
retry_schedule = 1s, 2s
max_pending = 100000
CONF
for ((i = 1; i <= PARTNERS; i++)); do
	id=$(printf 'p%02d' "$i")
	secret "$WORK/$id.secret"
	cat >>"$WORK/wh.conf" <<CONF
[partner.$id]
url = http://127.0.0.1:$NPORT/$id
secret_file = $WORK/$id.secret
max_in_flight = $INFLIGHT
timeout_ms = 10000
CONF
done

python3 "$HERE/gen_notices.py" "$N" 1024 >"$WORK/notices.ndjson"
timeout 120 "$CLI" -C "$WORK/cli.conf" -q publish -n "$WORK/notices.ndjson" >"$WORK/normalised.ndjson"
read -r BODY_AVG BODY_LEN < <(python3 "$HERE/wh_helper.py" body "$WORK/normalised.ndjson" "$WORK/body.json")
say "publishing $N notices (before the daemon starts)"
timeout 300 "$CLI" -C "$WORK/cli.conf" -q publish "$WORK/notices.ndjson" >"$WORK/published.tsv"
published=$(wc -l <"$WORK/published.tsv")
[[ $published -eq $N ]] || die "published $published of $N notices"

# --- the sink ------------------------------------------------------------------------------------
mkdir -p "$WORK/nginx/tmp"
NGINX_USER=
[[ $(id -u) -eq 0 ]] && NGINX_USER="user root;"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
$NGINX_USER
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NPORT backlog=4096;
        location / { return 204; }
        location = /status { stub_status; }
    }
}
CONF
nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$NPORT" 10 || die "nginx did not start: $(cat "$WORK/nginx/error.log")"
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)

# --- same headers as the daemon sends, same sizes -------------------------------------------------
VERSION=$("$DAEMON" -V | awk 'NR==1 {print $2}')
HID="msg_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
HTS=$(date +%s)
HSIG="v1,$(head -c 32 /dev/urandom | base64 -w0)"
URL=http://127.0.0.1:$NPORT/p01

cat >"$WORK/post.lua" <<LUA
local f = assert(io.open("$WORK/body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["User-Agent"] = "noticecast/$VERSION"
wrk.headers["Accept"] = "*/*"
wrk.headers["webhook-id"] = "$HID"
wrk.headers["webhook-timestamp"] = "$HTS"
wrk.headers["webhook-signature"] = "$HSIG"
wrk.headers["Content-Type"] = "application/json"
LUA

say "wrk -t1 -c$CONNS -d${WRK_SECONDS}s"
timeout $((WRK_SECONDS + 30)) wrk -t1 -c"$CONNS" -d"${WRK_SECONDS}s" -s "$WORK/post.lua" "$URL" >"$WORK/wrk.out"
WRK_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")
[[ -n $WRK_RPS ]] || die "wrk: $(cat "$WORK/wrk.out")"
if grep -q 'Non-2xx\|Socket errors' "$WORK/wrk.out"; then
	say "wrk reported errors:"
	grep 'Non-2xx\|Socket errors' "$WORK/wrk.out" >&2
fi

say "bare libcurl multi loop, $CONNS handles, $TOTAL requests"
"$WORK/curl_loop" "$URL" "$WORK/body.json" "$CONNS" "$TOTAL" 120 \
	"User-Agent: noticecast/$VERSION" "webhook-id: $HID" "webhook-timestamp: $HTS" \
	"webhook-signature: $HSIG" "Content-Type: application/json" >"$WORK/curl.out" ||
	die "curl_loop: $(cat "$WORK/curl.out")"
CURL_RPS=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' "$WORK/curl.out")
CURL_CPU=$(sed -n 's/.*cpu=\([0-9.]*\).*/\1/p' "$WORK/curl.out")
# The ceiling of libcurl on this machine: two loops at once (every core busy), half each.
say "bare libcurl, 2 processes x $((CONNS / 2)) handles, $TOTAL requests in all"
CURL2_PIDS=()
for k in 1 2; do
	"$WORK/curl_loop" "$URL" "$WORK/body.json" $((CONNS / 2)) $((TOTAL / 2)) 120 \
		"User-Agent: noticecast/$VERSION" "webhook-id: $HID" "webhook-timestamp: $HTS" \
		"webhook-signature: $HSIG" "Content-Type: application/json" >"$WORK/curl2.$k.out" &
	CURL2_PIDS+=($!)
done
for pid in "${CURL2_PIDS[@]}"; do
	wait "$pid" || die "curl_loop (2 processes): $(cat "$WORK"/curl2.*.out)"
done
CURL2_S=$(cat "$WORK"/curl2.*.out | sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' | sort -n | tail -1)
cat /proc/loadavg >"$WORK/load.before-daemon"

# --- noticecast-webhooks ---------------------------------------------------------------------------
say "noticecast-webhooks: $N notices x $PARTNERS partners"
T_SPAWN=$(date +%s.%N)
"$DAEMON" -C "$WORK/wh.conf" >"$WORK/daemon.log" 2>&1 &
DPID=$!
PIDS+=("$DPID")
python3 "$HERE/wh_helper.py" watch --status "http://127.0.0.1:$NPORT/status" \
	--log "$WORK/daemon.log" --pid "$DPID" --target "$TOTAL" --timeout 180 --settle 2 \
	--cpu "$DPID" --cpu "$NGINX_WORKER" --cpu "$KAFKA_PID" >"$WORK/watch.json" &
WPID=$!
PIDS+=("$WPID")
if [[ $PERF == 1 ]]; then
	# Attach once the daemon has said "started": its librdkafka threads exist by then.
	for ((i = 0; i < 300; i++)); do
		grep -q 'started with' "$WORK/daemon.log" && break
		sleep 0.1
	done
	perf_start "$DPID" "$WORK/perf.data" 499 16384
fi
wait "$WPID" || die "wh_helper.py watch failed"
forget "$WPID"
perf_stop
T_TERM=$(date +%s.%N)
stop_daemon "$DPID"
T_STOPPED=$(date +%s.%N)

timeout 120 kcat -C -b "$BROKERS" -t bench.deliveries -o beginning -e -q -f '%s\n' |
	python3 "$HERE/wh_helper.py" events >"$WORK/events.json" || echo '{}' >"$WORK/events.json"
python3 "$HERE/wh_helper.py" committed --brokers "$BROKERS" --group bench-webhooks \
	--topic bench.notices.news >"$WORK/committed.json" 2>/dev/null || echo '[]' >"$WORK/committed.json"
# what "everything committed" means: last published offset + 1 on each partition (the high
# watermark is one more: the transaction's commit marker)
awk -F'\t' '{ if (!($3 in m) || $4 > m[$3]) m[$3] = $4 } END { for (p in m) print p, m[p] + 1 }' \
	"$WORK/published.tsv" >"$WORK/published.ends"
grep -E 'level=(warn|error|fatal)' "$WORK/daemon.log" >"$WORK/daemon.warnings" || true

# --- latency ---------------------------------------------------------------------------------------
echo '{}' >"$WORK/latency.json"
if [[ ${BENCH_WH_SKIP_LATENCY:-0} != 1 ]]; then
	say "latency: $LAT_COUNT urgent notices, one at a time (at most ${LAT_SECONDS}s)"
	sed 's/^topic_prefix = bench\./topic_prefix = benchlat./' "$WORK/cli.conf" >"$WORK/lat-cli.conf"
	timeout 60 "$CLI" -C "$WORK/lat-cli.conf" topics create >/dev/null
	secret "$WORK/lat.secret"
	cp "$WORK/lat-cli.conf" "$WORK/lat.template"
	cat >>"$WORK/lat.template" <<CONF
[webhooks]
group_id = bench-latency
listen =
retry_schedule = 1s, 2s
[partner.lat]
url = @URL@
secret_file = $WORK/lat.secret
max_in_flight = 4
timeout_ms = 10000
CONF
	timeout $((LAT_SECONDS + 180)) python3 "$HERE/latency.py" --cli "$CLI" --daemon "$DAEMON" \
		--conf-template "$WORK/lat.template" --workdir "$WORK" --count "$LAT_COUNT" \
		--max-seconds "$LAT_SECONDS" >"$WORK/latency.json" &
	LPID=$!
	PIDS+=("$LPID")
	wait "$LPID" || say "latency.py exited $?"
	forget "$LPID"
	grep -E 'level=(warn|error|fatal)' "$WORK/latency-daemon.log" >"$WORK/latency.warnings" || true
fi

# --- report ----------------------------------------------------------------------------------------
python3 - "$WORK" "$N" "$PARTNERS" "$INFLIGHT" "$BODY_LEN" "$BODY_AVG" "$WRK_RPS" "$CURL_RPS" \
	"$T_SPAWN" "$T_TERM" "$T_STOPPED" "$DEXIT" "$WRK_SECONDS" "$DPID" "$NGINX_WORKER" \
	"$CURL_CPU" "$KAFKA_PID" "$CURL2_S" <<'PY'
import json, os, sys
work = sys.argv[1]
n, partners, inflight, body_len, body_avg = map(int, sys.argv[2:7])
wrk, curl = float(sys.argv[7]), float(sys.argv[8])
t_spawn, t_term, t_stopped = map(float, sys.argv[9:12])
dexit, wrk_s, dpid, ngx, curl_cpu, kpid, curl2_s = sys.argv[12:19]
total, conns = n * partners, partners * inflight
w = json.load(open(os.path.join(work, "watch.json")))
ev = json.load(open(os.path.join(work, "events.json")))
cm = json.load(open(os.path.join(work, "committed.json")))
lat = json.load(open(os.path.join(work, "latency.json")))
rd = lambda name: open(os.path.join(work, name)).read() if os.path.exists(os.path.join(work, name)) else ""

print(f"webhooks: {n} notices x {partners} partners = {total} deliveries, body {body_len} bytes "
      f"(average {body_avg}), {conns} connections "
      f"({partners} partners x max_in_flight {inflight}; wrk and libcurl use {conns} too)")
print(f"  sink: nginx 1 worker process (not pinned), return 204, access_log off, stub_status count")
print(f"  wrk -t1 -c{conns} -d{wrk_s}s (same sink, same body)   : {wrk:9.0f} req/s")
print(f"  bare libcurl multi, {conns} handles           : {curl:9.0f} req/s")
curl2 = total / float(curl2_s) if float(curl2_s or 0) > 0 else float("nan")
print(f"  bare libcurl, 2 processes x {conns // 2} handles   : {curl2:9.0f} req/s  "
      f"({curl2 / wrk:.2f} x wrk: what libcurl alone reaches with every core, no Kafka)")
if w.get("t_done") and w.get("t_started"):
    dur = w["t_done"] - w["t_started"]
    rate = total / dur
    steady = total / (w["t_done"] - w["t_first"]) if w["t_done"] > w["t_first"] else float("nan")
    print(f"  noticecast-webhooks                      : {rate:9.0f} deliveries/s  "
          f"({dur:.2f} s from 'started' to the {total}th request)")
    print(f"    steady state, first -> last request    : {steady:9.0f} deliveries/s  "
          f"(process start -> 'started' {w['t_started'] - t_spawn:.2f} s, "
          f"'started' -> first request {w['t_first'] - w['t_started']:.2f} s)")
    print(f"  ratio vs wrk: {rate / wrk:.2f} (target >= 0.5)   ratio vs bare libcurl: {rate / curl:.2f}"
          f"   [steady state: {steady / wrk:.2f} / {steady / curl:.2f}]")
    span = w["t_done"] - w["t_first"]
    cpu = w.get("cpu", {})
    f2 = lambda v: f"{v:.2f}" if v is not None else "?"
    dc, nc, kc = cpu.get(dpid), cpu.get(ngx), cpu.get(kpid)
    if dc is not None and span > 0:
        rss = w.get("peak_rss_kb", {}).get(dpid)
        print(f"  CPU, first -> last request ({span:.2f} s): daemon {dc:.2f} s ({dc / span:.0%} of a core, "
              f"{total / dc:.0f} deliveries per CPU-second, peak RSS "
              f"{rss / 1024 if rss else float('nan'):.0f} MiB), nginx worker {f2(nc)} s, "
              f"Kafka broker {f2(kc)} s")
        print(f"       bare libcurl used {float(curl_cpu):.2f} CPU-s for {total} requests "
              f"({total / max(float(curl_cpu), 1e-9):.0f} requests per CPU-second)")
        if nc is not None and kc is not None:
            us = [1e6 * v / total for v in (dc, nc, kc)]
            cores = os.cpu_count() or 1
            bound = cores * 1e6 / sum(us)
            print(f"  CPU per delivery: daemon {us[0]:.1f} us + nginx {us[1]:.1f} us + Kafka broker "
                  f"{us[2]:.1f} us = {sum(us):.1f} us; on {cores} cores that bounds this machine "
                  f"at {bound:.0f} deliveries/s = {bound / wrk:.2f} x wrk even if the daemon "
                  f"used every core")
else:
    print(f"  noticecast-webhooks                      : DID NOT FINISH: {w.get('served')} of "
          f"{total} requests served ({w.get('end')}); last samples {w.get('samples', [])[-5:]}")
samples = w.get("samples", [])
if samples and w.get("t_started"):
    per_s, prev, k = [], 0, 1
    for t, c in samples:
        if t - w["t_started"] >= k:
            per_s.append(c - prev)
            prev, k = c, k + 1
    print(f"  requests at the sink per second since 'started': {per_s}")
print(f"  checks: extra requests within 2 s after the {total}th: {w.get('extra')}; "
      f"longest stall {w.get('longest_stall')} s; "
      f"SIGTERM -> exit {t_stopped - t_term:.2f} s, exit status {dexit}")
outc = ev.get("outcomes", {})
print(f"          delivery events on bench.deliveries: {outc} "
      f"({ev.get('delivered_distinct')} distinct notice x partner delivered)")
ends = {}
for l in open(os.path.join(work, "published.ends")):
    p, e = l.split()
    ends[int(p)] = int(e)
behind = sum(max(0, ends.get(p["partition"], 0) - max(p["committed"], 0)) for p in cm)
print(f"          committed offsets of bench-webhooks on bench.notices.news (partition, committed, "
      f"last published + 1): {[(p['partition'], p['committed'], ends.get(p['partition'])) for p in cm]}"
      f" -> {behind} messages not committed")
print(f"          load average before the daemon run: {rd('load.before-daemon').split()[:3]} "
      f"(other work on this machine skews every figure)")
warn = rd("daemon.warnings").splitlines()
print(f"          warnings/errors in the daemon log: {len(warn)}")
for l in warn[:5]:
    print("            " + l[:200])
if lat.get("sent"):
    print(f"latency publish-returned -> webhook received, {lat['sent']} urgent notices: "
          f"p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, "
          f"max {lat['max']:.1f} ms (target p99 < 100 ms)")
    print(f"  received {lat['received']}, missing {lat['missing']}, duplicates "
          f"{lat['duplicates']}, arrived before the CLI returned (counted 0): {lat['early']}; "
          f"one publish command takes {lat['publish_ms_median']:.0f} ms (median); "
          f"daemon exit {lat.get('daemon_exit')}")
    lw = rd("latency.warnings").splitlines()
    if lw:
        print(f"  warnings/errors in the latency daemon log: {len(lw)}")
        for l in lw[:5]:
            print("    " + l[:200])
elif os.path.exists(os.path.join(work, "lat.template")):
    print(f"latency: FAILED: {lat}")
PY
perf_summary "$WORK/perf.data" "noticecast-webhooks during the delivery run" 2
