"""Issue 8, item 3: SIGTERM while a hanging partner has a backlog.

Three partners: healthy (204), failing (503 always: DLQ after its retries) and hanging (never
answers within its 4 s timeout, 2 at a time, so it holds a backlog of queued deliveries).  Once
the healthy partner has every notice and the failing one's deliveries are all in the DLQ, the
daemon gets SIGTERM (shutdown_timeout = 10 s) and is started again.

Before the fix it exited after the timeout plus the flush, with the hanging partner's jobs
abandoned, so no notice offset was committed past them: after the restart the healthy partner
got the notices again and the failing partner's deliveries went through their retries into
the DLQ a second time.  Now the hanging partner's jobs are parked in the retry tier (one record
each, same attempt and webhook-id) and the notice offsets are committed.

Counted: the exit time and status, the healthy partner's duplicates and the failing partner's
duplicate DLQ entries after the restart, the hanging partner's parked jobs (one per notice at
most, none lost) and that a parked delivery comes again with its webhook-id."""

import signal
import time
from collections import Counter

import pytest

from webhook_receiver import Always, Hang
from webhooks_support import *  # noqa: F401,F403

pytestmark = pytest.mark.faults

N = 150
SHUTDOWN_S = 10


def test_sigterm_with_a_hanging_partner_parks_its_backlog(wh, record_property):
    wh.webhooks.update(retry_schedule="1s, 1s", shutdown_timeout=f"{SHUTDOWN_S}s")
    rx = wh.receiver()
    for pid, b, opts in (("healthy", Always(204), {}), ("failing", Always(503), {}),
                         ("hanging", Hang(120), {"timeout_ms": 4000, "max_in_flight": 2})):
        p = wh.partner(pid, rx.url(f"/{pid}"), **opts)
        rx.route(f"/{pid}", b, secrets=p.secrets)
    d = wh.start()

    notices = [notice(("news", "press", "alerts")[i % 3], f"Backlog {i}") for i in range(N)]
    wh.publish(notices)
    ids = {n["id"] for n in notices}
    rx.wait_for_ids("/healthy", ids, extra=wh.logs)
    wh.wait_dlq("failing", ids)
    healthy_before = len(rx.delivered("/healthy"))
    dlq_before = len(wh.dlq("failing"))
    hanging_before = rx.count("/hanging")

    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    try:
        rc = d.proc.wait(SHUTDOWN_S + 30)
    except Exception:  # noqa: BLE001 (figure first)
        rc = None
    stop_s = time.monotonic() - t0
    hanging_stopped = rx.count("/hanging")

    d2 = wh.start()
    # whatever the restart repeats comes within seconds (the notices are read again at once,
    # the failing partner's retries take ~3 s): watch for 20 s
    time.sleep(20)
    healthy_dups = len(rx.delivered("/healthy")) - healthy_before
    per_notice = Counter(m.key for m in wh.dlq("failing"))
    dlq_dups = sum(c - 1 for c in per_notice.values())

    events = [e for e in wh.delivery_events() if e.get("partner") == "hanging"]
    parked = Counter(e["notice_id"] for e in events
                     if e["outcome"] == "deferred" and (e.get("error") or "").startswith("daemon stopping"))
    after = rx.snapshot("/hanging")[hanging_stopped:]
    print(f"\nSIGTERM with {N} notices, hanging partner {hanging_before} requests: rc {rc} after "
          f"{stop_s:.1f} s (shutdown_timeout {SHUTDOWN_S} s); after the restart: healthy partner "
          f"duplicates {healthy_dups}, failing partner DLQ entries {sum(per_notice.values())} for "
          f"{len(per_notice)} notices ({dlq_dups} duplicates; {dlq_before} before the stop); "
          f"hanging partner parked {sum(parked.values())} deliveries, {len(after)} requests since")
    record_property("sigterm_seconds", round(stop_s, 1))
    record_property("healthy_duplicates", healthy_dups)
    record_property("failing_dlq_duplicates", dlq_dups)
    record_property("hanging_parked", sum(parked.values()))

    assert rc == 0, d.tail()
    assert stop_s <= SHUTDOWN_S + 5, f"SIGTERM took {stop_s:.1f} s"
    assert healthy_dups == 0, f"healthy partner got {healthy_dups} duplicates\n{wh.logs()}"
    assert dlq_dups == 0, f"{dlq_dups} duplicate DLQ entries of the failing partner"
    assert set(per_notice) == ids
    # the hanging partner's backlog: parked once each, nothing lost
    assert parked and max(parked.values()) == 1, parked.most_common(3)
    assert len(parked) >= N - 10, f"only {len(parked)} of the hanging partner's deliveries parked"
    # a parked delivery is tried again after the restart, with its webhook-id
    wids = {r.webhook_id for r in rx.snapshot("/hanging")[:hanging_stopped]}
    assert after, "no parked delivery was tried again after the restart"
    assert all(r.notice_id in ids for r in after)
    parked_wids = {e["webhook_id"] for e in events if e["notice_id"] in parked}
    stray = {r.notice_id for r in after if r.webhook_id not in parked_wids | wids}
    assert not stray, (f"requests after the restart for deliveries neither parked nor tried: "
                       f"{[(e['notice_id'][:8], e['attempt'], e['outcome'], e.get('error')) for e in events if e['notice_id'] in stray]}"
                       f"\n{[r.describe() for r in after if r.notice_id in stray]}")
    assert d2.terminate(timeout=SHUTDOWN_S + 30) == 0, d2.tail()
