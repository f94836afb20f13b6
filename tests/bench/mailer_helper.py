#!/usr/bin/env python3
"""Helpers for tests/bench/mailer.sh (the mailer part of `make bench`).

  sinkmon SAMPLES              read `smtp-sink -c` output on stdin ("sess=N quit=N mesg=N\\r" per
                               event) and append "<unix time> <messages>" to SAMPLES whenever the
                               count changed; reads at most every 5 ms (a pipe read per message
                               would cost the machine more CPU than the count is worth)
  wait --samples F --base B --target N --timeout S [--settle S] [--pid P] [--cpu PID]...
                               wait until the sink has counted B + N messages; print JSON: first
                               and last message times, the count after --settle seconds (extras =
                               duplicates), the longest stall, messages per second, and the CPU
                               seconds each --cpu process (and the whole machine) used between
                               the first and the last message.  Gives up after --timeout seconds
                               or when --pid exits.
  subs --brokers B --topic T --count N --send-at HH:MM [--tz UTC] [--lang en] [--domain D]
                               produce N subscriber records, exactly as `noticecast subscribers
                               import` writes them (same JSON, same key = lower-cased email, same
                               headers), in one transaction; print JSON with the time taken
  events --brokers B --topic T  read the delivery events (to the end); print a JSON summary
  committed --brokers B --group G --topic T
                               committed offsets of group G on T against the high watermarks
  memwatch --pid P --log F --t0 T --timeout S [--after S]
                               follow a starting daemon until its log says "view loaded": its
                               subscribers gauge (/metrics) and RSS every second; then RSS, VmHWM
                               at that moment and --after seconds later, as JSON
  status PID                   VmRSS / VmHWM of PID in KiB, as JSON
"""
import argparse
import json
import os
import re
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime + stime of PID (all threads) in seconds, None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "VmSize", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


# ---- sinkmon ----------------------------------------------------------------------------------

def cmd_sinkmon(a):
    pat = re.compile(rb"mesg=(\d+)")
    fd = sys.stdin.fileno()
    last, tail = -1, b""
    with open(a.samples, "a", buffering=1) as out:
        out.write(f"{time.time():.6f} 0\n")
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            t = time.time()
            buf = tail + b
            ms = pat.findall(buf)
            tail = buf[-64:]
            if ms:
                n = int(ms[-1])
                if n != last:
                    out.write(f"{t:.6f} {n}\n")
                    last = n
            time.sleep(0.005)


# ---- wait -------------------------------------------------------------------------------------

def read_samples(path, pos, acc):
    with open(path) as f:
        f.seek(pos)
        data = f.read()
    end = data.rfind("\n")
    if end < 0:
        return pos
    for line in data[:end].splitlines():
        t, n = line.split()
        acc.append((float(t), int(n)))
    return pos + len(data[:end + 1].encode())


def cmd_wait(a):
    samples, pos = [], 0
    deadline = time.time() + a.timeout
    goal = a.base + a.target
    t_first = t_last = None
    cpu0 = cpu1 = None
    m0 = m1 = None
    end = "timeout"
    seen = 0
    while time.time() < deadline:
        k = len(samples)
        pos = read_samples(a.samples, pos, samples)
        for t, n in samples[k:]:
            if t_first is None and n > a.base:
                t_first = t
                cpu0 = {p: proc_cpu(p) for p in a.cpu}
                m0 = machine_cpu()
            if t_last is None and n >= goal:
                t_last = t
                cpu1 = {p: proc_cpu(p) for p in a.cpu}
                m1 = machine_cpu()
            seen = max(seen, n)
        if t_last is not None:
            end = "done"
            break
        if a.pid and not os.path.exists(f"/proc/{a.pid}"):
            end = "daemon exited"
            break
        time.sleep(0.02)
    # after the last expected message: anything more is a duplicate
    if end == "done" and a.settle > 0:
        time.sleep(a.settle)
    pos = read_samples(a.samples, pos, samples)
    final = max([n for _, n in samples] or [0])
    mine = [(t, n) for t, n in samples if n > a.base]
    stall, prev = 0.0, t_first
    for t, n in mine:
        if t_last is not None and t > t_last:
            break
        if prev is not None:
            stall = max(stall, t - prev)
        prev = t
    per_s = []
    if t_first is not None:
        k, last = 1, a.base
        for t, n in mine:
            while t - t_first >= k:
                per_s.append(last - a.base - sum(per_s))
                k += 1
            last = n
        per_s.append(last - a.base - sum(per_s))
    cpu = {}
    if cpu0 and cpu1:
        for p in a.cpu:
            if cpu0.get(p) is not None and cpu1.get(p) is not None:
                cpu[p] = round(cpu1[p] - cpu0[p], 3)
    mach = None
    if m0 and m1:
        busy, total = m1[0] - m0[0], m1[1] - m0[1]
        mach = {"busy_s": round(busy / CLK_TCK, 3), "total_s": round(total / CLK_TCK, 3)}
    json.dump({"end": end, "base": a.base, "target": a.target, "t_first": t_first,
               "t_last": t_last, "count": final - a.base, "extra": final - goal if end == "done" else None,
               "reached": seen - a.base, "longest_stall": round(stall, 3), "per_second": per_s,
               "cpu": cpu, "machine": mach}, sys.stdout)
    print()


# ---- subscribers ------------------------------------------------------------------------------

def cmd_subs(a):
    from confluent_kafka import KafkaException, Producer

    p = Producer({"bootstrap.servers": a.brokers, "enable.idempotence": True, "acks": "all",
                  "transactional.id": f"bench-subs-{os.getpid()}-{time.time_ns()}",
                  "transaction.timeout.ms": 600000, "linger.ms": 20,
                  "batch.size": 1000000, "queue.buffering.max.messages": 1000000,
                  "queue.buffering.max.kbytes": 1048576, "message.max.bytes": 2000000,
                  "log_level": 3})  # not the "coordinator load in progress: retrying" notice
    headers = [("content-type", b"application/json"), ("noticecast-schema", b"1"),
               ("noticecast-event", b"subscriber.updated")]
    t0 = time.time()
    p.init_transactions(60)
    p.begin_transaction()
    ms = int(time.time() * 1000)
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
    ts += f".{ms % 1000:03d}Z" if ms % 1000 else "Z"
    # The CLI's record: nc_subscriber_normalise() then json_dumps(JSON_COMPACT), keys in this order.
    tmpl = ('{"id":"%s","email":"%s","name":"%s","lang":"' + a.lang + '","categories":[],'
            '"regions":[],"frequency":"daily","tz":"' + a.tz + '","send_at":"' + a.send_at +
            '","updated_at":"' + ts + '"}')
    produce = p.produce
    for i in range(a.count):
        email = f"{a.local}{i:07d}@{a.domain}"
        v = tmpl % (email, email, f"Subscriber {i}")
        while True:
            try:
                produce(a.topic, key=email, value=v, headers=headers)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10000 == 0:
            p.poll(0)
    t1 = time.time()
    try:
        p.commit_transaction(600)
    except KafkaException as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(1)
    t2 = time.time()
    print(json.dumps({"count": a.count, "seconds": round(t2 - t0, 2),
                      "produce_s": round(t1 - t0, 2), "commit_s": round(t2 - t1, 2),
                      "example": json.loads(tmpl % ("x@y", "x@y", "n"))}))


# ---- events -----------------------------------------------------------------------------------

def eof_consumer(brokers, topic, group=None):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": brokers, "group.id": group or f"bench-read-{os.getpid()}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, -2) for p in parts])  # OFFSET_BEGINNING
    return c, parts


def cmd_events(a):
    c, parts = eof_consumer(a.brokers, a.topic)
    left, deadline = set(parts), time.time() + a.timeout
    types, sent_subs, sent_ids, dup_ids, bad, codes = {}, set(), set(), 0, 0, {}
    n = 0
    while left and time.time() < deadline:
        for m in c.consume(10000, 1.0):
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    left.discard(m.partition())
                continue
            n += 1
            try:
                ev = json.loads(m.value())
            except ValueError:
                bad += 1
                continue
            t = ev.get("type", "?")
            types[t] = types.get(t, 0) + 1
            if t == "mail.sent":
                sent_subs.add(ev.get("subscriber"))
                mid = ev.get("message_id")
                if mid in sent_ids:
                    dup_ids += 1
                sent_ids.add(mid)
            else:
                key = f"{t} {ev.get('code')} {ev.get('text', '')[:80]}"
                codes[key] = codes.get(key, 0) + 1
    c.close()
    print(json.dumps({"events": n, "types": types, "sent_distinct_subscribers": len(sent_subs),
                      "sent_distinct_message_ids": len(sent_ids), "sent_repeated_message_ids": dup_ids,
                      "not_json": bad, "other": dict(list(codes.items())[:5]),
                      "complete": not left}))


def cmd_committed(a):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": a.brokers, "group.id": a.group,
                  "enable.auto.commit": False})
    md = c.list_topics(a.topic, timeout=10)
    tps = [TopicPartition(a.topic, p) for p in md.topics[a.topic].partitions]
    out = []
    for tp in c.committed(tps, timeout=10):
        lo, hi = c.get_watermark_offsets(TopicPartition(a.topic, tp.partition), timeout=10)
        out.append({"partition": tp.partition, "committed": tp.offset, "high": hi})
    c.close()
    print(json.dumps(out))


def cmd_memwatch(a):
    """Follows a starting daemon: its subscribers gauge (/metrics) and RSS every second until
    its log says "view loaded", then the same again --after seconds later."""
    import urllib.request

    t0, url, samples, loaded, line = a.t0, None, [], None, None
    deadline = t0 + a.timeout

    def gauge():
        if not url:
            return None
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                for l in r.read().decode().splitlines():
                    if l.startswith("noticecast_mail_subscribers "):
                        return int(float(l.split()[1]))
        except OSError:
            return None
        return None

    while time.time() < deadline and os.path.exists(f"/proc/{a.pid}"):
        try:
            log = open(a.log).read()
        except OSError:
            log = ""
        if not url:
            m = re.search(r'msg="http listening" addr=(\S+)', log)
            if m:
                url = f"http://{m.group(1)}/metrics"
        m = re.search(r".*view loaded: (\d+) subscribers.*", log)
        if m:
            loaded = time.time()
            line = m.group(0)
            break
        st = proc_status(a.pid)
        samples.append((round(time.time() - t0, 1), gauge(), st.get("VmRSS")))
        time.sleep(1)
    out = {"loaded_after": round(loaded - t0, 2) if loaded else None, "line": line,
           "samples": samples, "cpu_s": proc_cpu(a.pid)}
    out["at_load"] = proc_status(a.pid)
    if loaded:
        time.sleep(a.after)
    out["after"] = proc_status(a.pid)
    out["after_gauge"] = gauge()
    print(json.dumps(out))


def cmd_status(a):
    print(json.dumps(proc_status(a.pid)))


def main():
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest="cmd", required=True)
    s = sp.add_parser("sinkmon")
    s.add_argument("samples")
    s = sp.add_parser("wait")
    s.add_argument("--samples", required=True)
    s.add_argument("--base", type=int, required=True)
    s.add_argument("--target", type=int, required=True)
    s.add_argument("--timeout", type=float, required=True)
    s.add_argument("--settle", type=float, default=0)
    s.add_argument("--pid", type=int)
    s.add_argument("--cpu", type=int, action="append", default=[])
    s = sp.add_parser("subs")
    s.add_argument("--brokers", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--send-at", required=True)
    s.add_argument("--tz", default="UTC")
    s.add_argument("--lang", default="en")
    s.add_argument("--local", default="sub")
    s.add_argument("--domain", default="example.org")
    s = sp.add_parser("events")
    s.add_argument("--brokers", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--timeout", type=float, default=120)
    s = sp.add_parser("committed")
    s.add_argument("--brokers", required=True)
    s.add_argument("--group", required=True)
    s.add_argument("--topic", required=True)
    s = sp.add_parser("memwatch")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--t0", type=float, required=True)
    s.add_argument("--timeout", type=float, required=True)
    s.add_argument("--after", type=float, default=10)
    s = sp.add_parser("status")
    s.add_argument("pid", type=int)
    a = ap.parse_args()
    {"sinkmon": cmd_sinkmon, "wait": cmd_wait, "subs": cmd_subs, "events": cmd_events,
     "committed": cmd_committed, "memwatch": cmd_memwatch, "status": cmd_status}[a.cmd](a)


if __name__ == "__main__":
    main()
