"""Fault: a relay that limits the messages per SMTP connection (issue 8, item 1).

Office 365 and many ISP relays accept a few messages per connection, then answer "421 4.3.2"
to the next MAIL FROM and close.  Here the relay stores 3 messages per connection and answers
421 to the 4th MAIL FROM; 200 immediate subscribers get one notice, with `sessions = 4`,
`batch = 50` and `retry_schedule = 2s, 2s, 4s, 8s`.

Measured on the code before the fix: 68 sent, 132 permanently `mail.failed` ("attempt":5,
"code":421): each 421 charged an attempt to every message of the batch still unsent, also to
those never tried.  Expected: a 421 closes the session and the rest of the batch goes on in a
new session, uncharged: all 200 arrive exactly once, every job ends `mail.sent`, none failed.
"""

import pytest

from mailer_support import *  # noqa: F401,F403

pytestmark = pytest.mark.faults

N = 200
PER_CONNECTION = 3


def test_relay_limiting_messages_per_connection_loses_nothing(ml, record_property):
    env = ml
    env.mailer["retry_schedule"] = "2s, 2s, 4s, 8s"
    env.smtp_cfg.update(sessions=4, batch=50)
    subs = [f"reader{i:03d}@example.org" for i in range(N)]
    env.import_subscribers([{"email": a, "lang": "en", "frequency": "immediate"} for a in subs])
    env.smtp.close_after(PER_CONNECTION)
    d = env.start()
    conns0 = env.smtp.connections
    n = notice("news", "Relay session limit")
    env.publish([n])

    # Every job gets a final outcome (sent, or failed once its retries are used up).
    jobs, events = env.wait_settled(min_jobs=N, timeout=240)
    final = {}
    for e in events:
        final[e["message_id"]] = e  # topic order per key; one job = one subscriber here
    sent = [e for e in final.values() if e["type"] == "mail.sent"]
    failed = [e for e in final.values() if e["type"] == "mail.failed"]
    received = env.inbox()
    per_rcpt = {}
    for m in received:
        per_rcpt[m.to] = per_rcpt.get(m.to, 0) + 1
    duplicates = sum(c - 1 for c in per_rcpt.values())
    conns = env.smtp.connections - conns0
    max_attempt = max((e["attempt"] for e in sent), default=0)
    print(f"\n{N} jobs: {len(sent)} mail.sent, {len(failed)} mail.failed; {len(per_rcpt)} "
          f"distinct recipients received, {duplicates} duplicate(s); {conns} SMTP connections "
          f"({PER_CONNECTION} messages each at most); highest attempt of a sent job: {max_attempt}")
    if failed:
        print(f"first failed event: {failed[0]}")
    record_property("sent", len(sent))
    record_property("failed", len(failed))
    record_property("connections", conns)
    assert len(jobs) == N, f"{len(jobs)} jobs planned"
    assert not failed, f"{len(failed)} job(s) failed permanently, e.g. {failed[:2]}"
    assert len(sent) == N and set(per_rcpt) == set(subs), \
        f"{len(sent)} sent, {len(set(subs) - set(per_rcpt))} subscriber(s) got nothing"
    assert duplicates == 0, f"{duplicates} duplicate(s): a 421 before MAIL FROM stores nothing"
    # A 421 is about the session: no message that the relay took in a later session was
    # charged an attempt for the sessions that closed before reaching it.
    assert max_attempt == 1, [e for e in sent if e["attempt"] > 1][:3]
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()
