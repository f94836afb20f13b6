"""kill -9 mid-stream: nothing is lost, duplicates carry the same webhook-id.

1,000 notices to 3 partners (3,000 deliveries); the daemon is killed with SIGKILL three times
while delivering (once 20 %, 50 % and 80 % of the (notice, partner) pairs have arrived) and
restarted each time.  At the end every pair has arrived at least once, all the copies of a pair
carry one webhook-id, and the number of duplicates is printed and recorded, per restart too
(how many depends on how often offsets are committed against how fast deliveries go, so it is
reported, not asserted).
"""

from collections import defaultdict

from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403

N = 1000
KILL_AT = (600, 1500, 2400)  # distinct (notice, partner) pairs delivered, of 3 * N
# a dead member holds its partitions until its session times out: keep that short, so each
# restart resumes quickly (a bound on waiting, nothing is asserted about it)
FAST_REJOIN = ("-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000")


def test_kill_9_during_delivery_loses_nothing(wh, record_property):
    partners = {"alpha": "standard", "beta": "cloudevents", "gamma": "standard"}
    rxs = {}
    for pid, fmt in partners.items():
        rx = wh.receiver(pid)
        # 10 ms per request: the 3,000 deliveries take a few seconds, kills land mid-stream
        p = wh.partner(pid, rx.url("/hook"), format=fmt, max_in_flight=4)
        rx.route("/hook", Always(204, delay=0.01), secrets=p.secrets)
        rxs[pid] = rx
    wh.partners["gamma"].options["categories"] = "news, press"

    def total():
        return sum(rx.count("/hook") for rx in rxs.values())

    def pairs_done():
        return sum(len(rx.delivered_ids("/hook")) for rx in rxs.values())

    def status():
        return (f"requests {total()}, distinct pairs delivered {pairs_done()}/{3 * N}\n"
                + "\n".join(rx.summary("/hook", last=3) for rx in rxs.values()) + "\n" + wh.logs())

    d = wh.start(*FAST_REJOIN)
    notices = [notice("news" if i % 2 else "press", f"Bulk {i}") for i in range(N)]
    wh.publish(notices)
    ids = {n["id"] for n in notices}

    kills = []  # (requests, distinct pairs delivered) at each kill
    marks = []  # per receiver: number of requests it had at each kill
    for threshold in KILL_AT:
        wait_for(lambda: pairs_done() >= threshold, 180,
                 f"{threshold} distinct deliveries before kill -9 #{len(kills) + 1}", 0.005, status)
        d.kill9()
        kills.append((total(), pairs_done()))
        marks.append({pid: rx.count("/hook") for pid, rx in rxs.items()})
        assert kills[-1][1] < 3 * N, f"every delivery was done before kill -9 #{len(kills)}: nothing was tested"
        # not waiting for /readyz: the next kill comes at the next threshold
        d = wh.start(*FAST_REJOIN, ready=False)

    for pid, rx in rxs.items():
        rx.wait_for_ids("/hook", ids, timeout=240, extra=status)
    wh.wait_all_committed(timeout=120)

    duplicates = 0
    for pid, rx in rxs.items():
        reqs = rx.snapshot("/hook")
        assert all(r.verified for r in reqs), f"{pid}: unverified signatures"
        wids = defaultdict(set)
        copies = defaultdict(int)
        for r in reqs:
            assert r.event == "notice.published", r.describe()
            wids[r.notice_id].add(r.webhook_id)
            if r.ok:
                copies[r.notice_id] += 1
        assert set(copies) == ids, f"{pid}: {len(ids - set(copies))} notice(s) never delivered"
        split = {k: v for k, v in wids.items() if len(v) != 1}
        assert not split, f"{pid}: copies of one notice with different webhook-ids: {list(split.items())[:5]}"
        assert all(WEBHOOK_ID_RE.match(next(iter(v))) for v in wids.values())
        # the same notice gets the same webhook-id after every restart, so distinct notices differ
        assert len({next(iter(v)) for v in wids.values()}) == N, f"{pid}: webhook-ids collide"
        duplicates += sum(c - 1 for c in copies.values())

    # per restart: how many deliveries made before the kill were made again after it
    redone = []
    for k, mark in enumerate(marks):
        n = 0
        for pid, rx in rxs.items():
            reqs = rx.snapshot("/hook")
            before = {r.notice_id for r in reqs[:mark[pid]] if r.ok}
            end = marks[k + 1][pid] if k + 1 < len(marks) else len(reqs)
            n += sum(1 for r in reqs[mark[pid]:end] if r.ok and r.notice_id in before)
        redone.append(n)

    print(f"\nkill -9 x{len(kills)} at (requests, distinct pairs delivered) = {kills}; "
          f"redone after each restart: {redone}; {3 * N} deliveries, {duplicates} duplicate(s)")
    record_property("webhook_deliveries", 3 * N)
    record_property("webhook_duplicates", duplicates)
    record_property("webhook_redone_per_restart", str(redone))
    record_property("webhook_kills", str(kills))

    assert wh.dlq() == [], "healthy partners, yet DLQ records: " + str([(m.key, m.headers) for m in wh.dlq()][:5])
    assert d.terminate() == 0, d.tail()
