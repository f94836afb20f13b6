#!/usr/bin/env python3
"""End-to-end latency of noticecast-webhooks (part of tests/bench/webhooks.sh).

  latency.py --cli BIN --daemon BIN --conf-template FILE --workdir DIR
             [--count 1000] [--max-seconds 150]

Starts a webhook receiver (ThreadingHTTPServer on 127.0.0.1, a free port) that records the
arrival time (time.monotonic) and the notice id of every request; writes DIR/latency.conf from
the template (every "@URL@" replaced by the receiver's URL); starts the daemon with it (log in
DIR/latency-daemon.log, pid in DIR/latency-daemon.pid); waits for a warm-up notice to arrive
(group join, partition assignment); then publishes COUNT urgent notices one at a time with
`noticecast publish --title ... --category news --priority urgent`.

For each notice: latency = arrival at the receiver - the moment the publish command returned.
A webhook that arrives before the command returned counts 0 (and is reported as "early").
Publishing stops after MAX_SECONDS even if COUNT is not reached (reported).  The daemon gets
SIGTERM at the end (SIGKILL 20 s later if it has not stopped).

Prints one JSON object: sent, received, early, missing, duplicates, p50/p90/p99/max (ms),
publish_ms_median (how long one publish command takes), daemon_exit.
"""
import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

arrivals = {}  # notice id -> first arrival (monotonic)
dups = 0
lock = threading.Lock()
got = threading.Condition(lock)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real partner

    def do_POST(self):
        global dups
        t = time.monotonic()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        try:
            nid = json.loads(body)["data"]["id"]
        except (ValueError, KeyError, TypeError):
            nid = None
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if nid is None:
            return
        with got:
            if nid in arrivals:
                dups += 1
            else:
                arrivals[nid] = t
            got.notify_all()

    def log_message(self, *a):
        pass


def wait_for(nid, timeout):
    deadline = time.monotonic() + timeout
    with got:
        while nid not in arrivals:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            got.wait(left)
    return True


def pct(sorted_v, p):
    if not sorted_v:
        return float("nan")
    # nearest rank
    k = max(0, min(len(sorted_v) - 1, math.ceil(p / 100.0 * len(sorted_v)) - 1))
    return sorted_v[k]


def publish(cli, conf, title, timeout=30):
    r = subprocess.run([cli, "-C", conf, "-q", "publish", "--title", title, "--category", "news",
                        "--priority", "urgent"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, text=True)
    t = time.monotonic()
    if r.returncode != 0:
        raise RuntimeError(f"publish exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout.split("\t", 1)[0].strip(), t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--conf-template", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--max-seconds", type=float, default=150)
    args = ap.parse_args()

    # SIGTERM (from the bench's trap) -> normal exit through the finally blocks.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    conf = os.path.join(args.workdir, "latency.conf")
    with open(args.conf_template) as f:
        text = f.read().replace("@URL@", url)
    with open(conf, "w") as f:
        f.write(text)

    log = open(os.path.join(args.workdir, "latency-daemon.log"), "w")
    daemon = subprocess.Popen([args.daemon, "-C", conf], stdout=log, stderr=log)
    pidfile = os.path.join(args.workdir, "latency-daemon.pid")
    with open(pidfile, "w") as f:
        f.write(str(daemon.pid))
    result = {}
    try:
        wid, _ = publish(args.cli, conf, "warm-up")
        if not wait_for(wid, 90):
            raise RuntimeError("the warm-up notice did not arrive within 90 s")
        returned = {}
        pub_ms = []
        t_end = time.monotonic() + args.max_seconds
        for i in range(args.count):
            if time.monotonic() > t_end:
                break
            t0 = time.monotonic()
            nid, t = publish(args.cli, conf, f"Urgent notice {i}: road closure")
            pub_ms.append((t - t0) * 1000)
            returned[nid] = t
        # stragglers: at most 10 s
        deadline = time.monotonic() + 10
        with got:
            while any(n not in arrivals for n in returned) and time.monotonic() < deadline:
                got.wait(0.1)
            lat, early, missing = [], 0, 0
            for nid, t in returned.items():
                a = arrivals.get(nid)
                if a is None:
                    missing += 1
                    continue
                if a < t:
                    early += 1
                lat.append(max(0.0, a - t) * 1000)
        lat.sort()
        pub_ms.sort()
        result = {"sent": len(returned), "received": len(lat), "early": early,
                  "missing": missing, "duplicates": dups,
                  "p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
                  "max": lat[-1] if lat else float("nan"),
                  "publish_ms_median": pct(pub_ms, 50)}
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        result["daemon_exit"] = daemon.returncode
        os.unlink(pidfile)  # reaped: the bench's trap must not signal a recycled pid
        srv.shutdown()
        log.close()
        print(json.dumps(result))


if __name__ == "__main__":
    main()
