"""Several noticecast-webhooks processes in one consumer group split the partitions, and one
of them killed with SIGKILL mid-stream loses nothing: the survivor takes over its partitions
and resends what it had not committed (same webhook-id)."""

import re

from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403

N = 600
# a dead member holds its partitions until its session times out: keep that short
FAST_REJOIN = ("-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000")


def assigned(daemon) -> int:
    """Partitions in the last assignment the daemon logged."""
    found = re.findall(r'msg="assigned (\d+) partitions?"', daemon.log())
    return int(found[-1]) if found else 0


def test_two_daemons_split_work_and_one_dies(wh_factory):
    wh = wh_factory(partitions=4)
    rx = wh.receiver("rx")
    p = wh.partner("agency", rx.url("/hook"), max_in_flight=2)
    rx.route("/hook", Always(204, delay=0.005), secrets=p.secrets)

    a = wh.start(*FAST_REJOIN)
    b = wh.start(*FAST_REJOIN, write=False)
    # both are members: the partitions (4 per notice topic, x4 categories, + retry tiers)
    # are split between them, so neither holds all of them
    wait_for(lambda: assigned(a) > 0 and assigned(b) > 0, 60,
             "both daemons to get partitions", extra=lambda: wh.logs())
    total = assigned(a) + assigned(b)
    assert 0 < assigned(a) < total and 0 < assigned(b) < total, wh.logs()

    notices = [notice(("news", "press", "tenders", "alerts")[i % 4], f"Group {i}")
               for i in range(N)]
    ids = {n["id"] for n in notices}
    wh.publish(notices)
    wait_for(lambda: len(rx.delivered_ids("/hook")) >= N // 3, 120,
             "a third of the notices delivered before the kill", 0.005)
    b.kill9()
    rx.wait_for_ids("/hook", ids, timeout=180, extra=lambda: wh.logs())
    wh.wait_all_committed(timeout=120)

    reqs = [r for r in rx.snapshot("/hook") if r.ok]
    by_notice = {}
    for r in reqs:
        by_notice.setdefault(r.notice_id, set()).add(r.webhook_id)
    assert set(by_notice) == ids
    assert all(len(w) == 1 for w in by_notice.values()), "copies with different webhook-ids"
    print(f"\ntwo daemons, one killed: {N} notices, {len(reqs) - N} duplicate(s)")
    assert a.terminate() == 0, a.tail()
