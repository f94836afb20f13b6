"""Issue 8, item 7: the broker is away for longer than the group session timeout.

2,000 notices to two partners; once a quarter of the deliveries are made, the test's own broker
is stopped for 25 s (session.timeout.ms = 10 s here; the issue had ~80 s against the default
45 s) and started again on the same data.  While it is away the partners keep answering, so the
deliveries go on, but their events (and so the offsets) cannot be written; the session
expires, the partitions are revoked and, when the broker is back, assigned again from the last
committed offsets.  Before the fix every notice after that commit was sent again (the issue:
1,638 of 2,000 to every partner).  Now the daemon remembers what it delivered (and reads back
what <prefix>deliveries records as delivered), records the events once the broker is back, and
does not send a (notice, partner) again that it knows delivered.

Target: duplicates <= the deliveries in flight when the outage began; counted and printed."""

import time

import pytest

from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403
from webhooks_support import WebhooksEnv

pytestmark = pytest.mark.faults

N = 2000
OUTAGE_S = 25
SESSION = ("-X", "session.timeout.ms=10000", "-X", "heartbeat.interval.ms=1000")


def test_broker_outage_longer_than_the_session(own_kafka, tmp_path, nc_bin, daemon_bin,
                                               record_property):
    (tmp_path / "own").mkdir()
    wh = WebhooksEnv(tmp_path / "own", own_kafka.bootstrap, nc_bin, daemon_bin, partitions=3)
    try:
        run(wh, own_kafka, record_property)
    finally:
        wh.close()


def run(wh, broker, record_property):
    rxs = {}
    for pid in ("alpha", "beta"):
        rx = wh.receiver(pid)
        p = wh.partner(pid, rx.url("/hook"), max_in_flight=2)
        # ~100 requests/s per partner: 2,000 take ~20 s, the outage begins mid-stream
        rx.route("/hook", Always(204, delay=0.02), secrets=p.secrets)
        rxs[pid] = rx
    d = wh.start(*SESSION)
    notices = [notice(("news", "press", "alerts")[i % 3], f"Outage {i}") for i in range(N)]
    wh.publish(notices)
    ids = {n["id"] for n in notices}

    def done():
        return sum(len(rx.delivered_ids("/hook")) for rx in rxs.values())

    wait_for(lambda: done() >= N // 2, 120, "a quarter of the deliveries before the outage", 0.05,
             wh.logs)
    queued = metric_value(d.metrics(), "noticecast_webhook_in_flight") or 0
    # HTTP requests in progress: at most max_in_flight per partner
    in_flight = 2 * len(rxs)
    at_stop = done()
    t0 = time.monotonic()
    broker.down()
    time.sleep(OUTAGE_S)
    during = done() - at_stop
    broker.up()
    outage = time.monotonic() - t0

    for rx in rxs.values():
        rx.wait_for_ids("/hook", ids, timeout=180, extra=wh.logs)
    wh.wait_all_committed(timeout=180)
    time.sleep(3)
    dups = {pid: sum(1 for r in rx.snapshot("/hook") if r.ok) - len(rx.delivered_ids("/hook"))
            for pid, rx in rxs.items()}
    total = sum(dups.values())
    revoked = d.log().count("revoked")
    print(f"\nbroker away {outage:.0f} s (session 10 s) after {at_stop} of {2 * N} deliveries "
          f"({in_flight} requests in flight at most, {queued:.0f} queued or running), {during} made while it was away; duplicates after: "
          f"{dups} (total {total}); partitions revoked {revoked} time(s)")
    record_property("duplicates", total)
    record_property("in_flight_at_outage", in_flight)
    record_property("delivered_during_outage", during)
    assert revoked >= 1, "the session did not expire: nothing was tested\n" + d.tail()
    assert total <= in_flight, (f"{total} duplicates after the outage, {in_flight:.0f} deliveries "
                                f"were in flight when it began")
    assert d.alive()
    assert d.terminate() == 0, d.tail()
