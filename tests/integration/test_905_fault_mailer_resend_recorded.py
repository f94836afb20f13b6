"""Fault: jobs already recorded as delivered are sent again when their partition is read again
(issue 8, item 4: "after a rebalance a job already recorded as delivered on <prefix>deliveries
is not sent again").

One jobs partition.  A job that waits for a retry holds the committed offset back (offsets are
committed in order): the first job on the partition is for a greylisting mailbox (452 to RCPT,
retried in 60 s); the 100 jobs after it are sent and their mail.sent events recorded, but the
partition's committed offset stays before them.  The instance is then killed (kill -9) and a
new one takes the partition (here: a restart, with a fresh memory — the same path as another
instance taking over after a rebalance); it reads the partition from the committed offset.

Expected: the 100 messages recorded as sent on <prefix>deliveries are not sent again (the new
owner reads the recent mail.sent events before taking the jobs); the greylisted job is sent
once its mailbox accepts.  Measured on the code before the fix: all 100 sent a second time.
"""

import re
import time

import pytest

from mailer_support import *  # noqa: F401,F403

pytestmark = pytest.mark.faults

GREY = "greylisted@example.org"
N = 100


def test_recorded_deliveries_not_sent_again(ml_factory, record_property):
    env = ml_factory(partitions=1)
    env.mailer["retry_schedule"] = "60s"
    env.add_subscriber(GREY, lang="en", frequency="immediate", categories=["press"])
    subs = [f"reader{i:03d}@example.org" for i in range(N)]
    env.import_subscribers([{"email": a, "lang": "en", "frequency": "immediate",
                             "categories": ["news"]} for a in subs])
    env.smtp.tempfail_rcpt(GREY)
    d = env.start(*FAST_REJOIN)
    since = d.log_size()
    env.publish([notice("press", "Press notice for the greylisted mailbox")])
    d.wait_log(r"retry 1 in 60000 ms", since=since, timeout=MAIL_TIMEOUT,
               what="the first job to wait 60 s for its retry")
    env.publish([notice("news", "News notice for everyone else")])
    env.wait_mail(lambda ib: {m.to for m in ib} >= set(subs), what=f"the {N} messages")
    sent_ids = lambda: {e["message_id"] for e in env.events() if e["type"] == "mail.sent"}  # noqa: E731
    wait_for(lambda: len(sent_ids()) >= N, MAIL_TIMEOUT, f"{N} mail.sent events recorded", 0.5)
    before = env.smtp.count()
    d.kill9()

    env.smtp.untempfail_rcpt()
    d2 = env.start(*FAST_REJOIN)
    env.wait_mail(lambda ib: any(m.to == GREY for m in ib), what=f"the message to {GREY}")
    env.wait_settled(min_jobs=N + 1)
    time.sleep(3)  # anything sent a second time has arrived by now
    per = {}
    for m in env.inbox():
        per[m.to] = per.get(m.to, 0) + 1
    resent = sum(per.get(a, 0) - 1 for a in subs)
    print(f"\n{before} messages before kill -9; after the restart: {env.smtp.count() - before} more; "
          f"{resent} of the {N} recorded deliveries sent a second time; {GREY}: {per.get(GREY, 0)}")
    record_property("resent_recorded", resent)
    assert per.get(GREY) == 1
    assert resent == 0, f"{resent} messages already recorded as sent were sent again\n{d2.tail(30)}"
    assert re.search(r"msg=\"?deliveries caught up: 1\d\d Message-IDs", d2.log()), d2.tail()
    assert d2.terminate() == 0, d2.tail()
