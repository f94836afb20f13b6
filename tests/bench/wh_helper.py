#!/usr/bin/env python3
"""Helpers for the webhook benchmark (tests/bench/webhooks.sh).

  wh_helper.py body NORMALISED.ndjson OUT
      Wraps each normalised notice the way noticecast-webhooks does for a `standard` partner
      ({"type","timestamp","data"}, compact JSON, UTF-8) and writes the one closest to the
      average size to OUT.  Prints "<average bytes> <bytes of OUT>".

  wh_helper.py watch --status URL --log FILE --pid PID --target N --timeout S [--settle S]
                     [--cpu PID]...
      Counts the requests nginx serves (stub_status, minus the status requests themselves)
      from now on, until N more have been served (or S seconds pass, or PID exits).  Takes the
      daemon's start time from the ts= field of its "started with" log line.  Prints JSON:
      t_started, t_first, t_done (wall clock), served, extra (requests that arrived within
      --settle seconds after N: duplicates), longest_stall (seconds without progress between
      the first and the last request), "samples" (progress every 0.5 s) and, for each
      --cpu PID, the CPU seconds (user+sys) it used from the first to the last request and
      its peak RSS (VmHWM, kB) at the last request.

  wh_helper.py events
      Reads delivery events (one JSON per line, stdin) and prints a JSON summary: count per
      outcome, distinct (notice_id, partner) pairs delivered.

  wh_helper.py committed --brokers B --group G --topic T
      Prints JSON: committed offset vs high watermark for each partition of T.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import sys
import time
import urllib.parse


def cmd_body(args):
    sizes, bodies = [], []
    ts = "2017-06-20T00:00:00.123Z"  # the daemon's timestamp: RFC 3339 UTC with milliseconds
    with open(args.normalised, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            data = json.loads(line)
            body = json.dumps({"type": "notice.published", "timestamp": ts, "data": data},
                              ensure_ascii=False, separators=(",", ":")).encode()
            sizes.append(len(body))
            bodies.append(body)
    avg = sum(sizes) / len(sizes)
    best = min(bodies, key=lambda b: abs(len(b) - avg))
    with open(args.out, "wb") as f:
        f.write(best)
    print(f"{avg:.0f} {len(best)}")


STUB_RE = re.compile(rb"\s(\d+)\s+(\d+)\s+(\d+)\s")


class Status:
    """Reads nginx stub_status over one keep-alive connection; counts its own requests."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = u.hostname, u.port, u.path
        self.conn = None
        self.polls = 0

    def requests(self):
        for _ in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                self.conn.request("GET", self.path)
                body = self.conn.getresponse().read()
                self.polls += 1
                m = STUB_RE.search(body)
                return int(m.group(3))
            except (OSError, http.client.HTTPException):
                self.conn = None
        raise SystemExit("wh_helper: cannot read nginx stub_status at %s:%s%s"
                         % (self.host, self.port, self.path))


def log_started(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if "started with" in line:
                    m = re.search(r"ts=(\S+)Z", line)
                    if m:
                        dt = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                        return dt.replace(tzinfo=datetime.timezone.utc).timestamp()
                    return time.time()
    except FileNotFoundError:
        pass
    return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by the shell) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def peak_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def cmd_watch(args):
    cpu0, cpu1, hwm = {}, {}, {}
    st = Status(args.status)
    base = st.requests()
    base_polls = st.polls

    def served():
        v = st.requests()
        return v - base - (st.polls - base_polls)

    t_started = t_first = t_done = None
    deadline = time.time() + args.timeout
    last_n, last_change = 0, None
    longest_stall = 0.0
    samples, next_sample = [], time.time()
    n = 0
    why = "timeout"
    while time.time() < deadline:
        now = time.time()
        if t_started is None:
            t_started = log_started(args.log)
        n = served()
        if n > 0 and t_first is None:
            t_first = now
            last_change = now
            cpu0 = {p: cpu_seconds(p) for p in args.cpu}
        if n != last_n:
            if last_change is not None:
                longest_stall = max(longest_stall, now - last_change)
            last_change, last_n = now, n
        if now >= next_sample:
            samples.append([round(now, 3), n])
            next_sample = now + 0.5
        if n >= args.target:
            t_done = now
            cpu1 = {p: cpu_seconds(p) for p in args.cpu}
            hwm = {str(p): peak_rss_kb(p) for p in args.cpu}
            why = "target"
            break
        if not alive(args.pid):
            why = "daemon exited"
            break
        time.sleep(0.005)
    extra = 0
    if t_done is not None and args.settle > 0:
        time.sleep(args.settle)
        extra = served() - args.target
    if t_started is None:
        t_started = log_started(args.log)
    print(json.dumps({"t_started": t_started, "t_first": t_first, "t_done": t_done,
                      "served": n, "extra": extra, "longest_stall": round(longest_stall, 3),
                      "end": why, "samples": samples,
                      "cpu": {str(p): (round(cpu1[p] - cpu0[p], 2)
                                       if cpu0.get(p) is not None and cpu1.get(p) is not None
                                       else None) for p in args.cpu},
                      "peak_rss_kb": hwm}))


def cmd_events(args):
    outcomes, pairs, bad = {}, set(), 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            bad += 1
            continue
        o = ev.get("outcome")
        outcomes[o] = outcomes.get(o, 0) + 1
        if o == "delivered":
            pairs.add((ev.get("notice_id"), ev.get("partner")))
    print(json.dumps({"outcomes": outcomes, "delivered_distinct": len(pairs),
                      "unparsable": bad}))


def cmd_committed(args):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": args.brokers, "group.id": args.group,
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(args.topic, timeout=10)
        parts = [TopicPartition(args.topic, p) for p in sorted(md.topics[args.topic].partitions)]
        committed = c.committed(parts, timeout=10)
        out = []
        for tp in committed:
            lo, hi = c.get_watermark_offsets(TopicPartition(args.topic, tp.partition),
                                             timeout=10)
            out.append({"partition": tp.partition, "committed": tp.offset, "high": hi})
    finally:
        c.close()
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("body")
    b.add_argument("normalised")
    b.add_argument("out")
    w = sub.add_parser("watch")
    w.add_argument("--status", required=True)
    w.add_argument("--log", required=True)
    w.add_argument("--pid", type=int, required=True)
    w.add_argument("--target", type=int, required=True)
    w.add_argument("--timeout", type=float, required=True)
    w.add_argument("--settle", type=float, default=0)
    w.add_argument("--cpu", type=int, action="append", default=[])
    sub.add_parser("events")
    c = sub.add_parser("committed")
    c.add_argument("--brokers", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--topic", required=True)
    args = ap.parse_args()
    {"body": cmd_body, "watch": cmd_watch, "events": cmd_events,
     "committed": cmd_committed}[args.cmd](args)


if __name__ == "__main__":
    main()
