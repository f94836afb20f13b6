"""Issue 8, item 4: SIGHUP must not reset a partner's rate limiter.

A partner with rate_limit = 10 and a backlog of 300 notices (30 s of work at its rate) while
the daemon gets a SIGHUP every 0.2 s for 8 s.  Before the fix every reload refilled the token
bucket, so each HUP bought a burst of 10 more requests (issue: rate_limit = 100 and 100 HUPs
gave 1,495 requests in one second).  The bucket size is the daemon's choice up to R, so no
1-second window may see more than 2R requests (as in test_21), reloads or not.

Counted: the busiest 1-second window at the receiver, and the requests during the HUPs."""

import signal
import time

import pytest

from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403

pytestmark = pytest.mark.faults

RATE = 10
N = 300
HUPS = 40


def test_sighup_keeps_the_rate_limit(wh, record_property):
    rx = wh.receiver()
    p = wh.partner("limited", rx.url("/limited"), rate_limit=RATE, max_in_flight=8)
    rx.route("/limited", Always(204), secrets=p.secrets)
    d = wh.start()

    wh.publish([notice("news", f"Paced {i}") for i in range(N)])
    rx.wait_count("/limited", 2 * RATE, ok=None, timeout=60, extra=wh.logs)  # the bucket is spent
    t0 = time.monotonic()
    for _ in range(HUPS):
        d.signal(signal.SIGHUP)
        time.sleep(0.2)
    t1 = time.monotonic()
    time.sleep(1.0)
    times = [r.arrived for r in rx.snapshot("/limited")]
    during = sum(1 for t in times if t0 <= t < t1)
    busiest = busiest_second(times)
    print(f"\nrate_limit = {RATE}/s, {HUPS} SIGHUPs over {t1 - t0:.1f} s: {during} requests meanwhile "
          f"({during / (t1 - t0):.1f}/s), busiest 1-second window {busiest}")
    record_property("busiest_second", busiest)
    record_property("requests_during_hups", during)
    assert d.alive(), d.tail()
    assert busiest <= 2 * RATE, f"rate_limit = {RATE}: {busiest} requests in one second with SIGHUPs"
    assert during <= (t1 - t0) * RATE + 2 * RATE, f"{during} requests in {t1 - t0:.1f} s"
    assert d.terminate() == 0, d.tail()
