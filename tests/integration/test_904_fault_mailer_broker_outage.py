"""Fault: the broker goes away for longer than the group session timeout (issue 8, item 4).

500 immediate subscribers, one notice; a relay that takes 50 ms per message (2 sessions of 20),
so sending is under way when the test's own broker is stopped (once 60 messages arrived); it
stays down for 30 s, five times the session timeout the daemon runs with (6 s), then comes
back on the same data.  The mailer keeps sending the jobs it has fetched while the broker is
away; their outcome events cannot be written yet, their offsets cannot be committed, and the
consumer loses its partitions.  After the rejoin the jobs partitions are read again from the
last commit.

Expected: every subscriber gets the message; a job read again whose message was sent (and
recorded) meanwhile is not sent a second time: duplicates <= what was in flight when the
outage began (at most sessions x batch = 40 here).  Every job ends with a mail.sent event.
The number of duplicates is printed.  Measured on the code before the fix: 500 jobs, 1,000
messages received: all 500 sent a second time after the rejoin (440 of them had been sent
while the broker was away).
"""

import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from mailer_support import *  # noqa: F401,F403
from mailer_support import MailerEnv

pytestmark = pytest.mark.faults

N = 500
SESSIONS, BATCH = 2, 20
OUTAGE = 30


def test_broker_outage_does_not_resend(own_kafka, tmp_path, nc_bin, mailer_bin, record_property):
    (tmp_path / "env").mkdir()
    env = MailerEnv(tmp_path / "env", own_kafka.bootstrap, nc_bin, mailer_bin)
    try:
        run(env, own_kafka, record_property)
    finally:
        env.close()


def run(env, broker, record_property):
    env.mailer["retry_schedule"] = "1s, 2s, 5s, 10s, 10s, 10s, 10s, 10s"
    env.smtp_cfg.update(sessions=SESSIONS, batch=BATCH)
    subs = [f"reader{i:03d}@example.org" for i in range(N)]
    env.import_subscribers([{"email": a, "lang": "en", "frequency": "immediate"} for a in subs])
    srv = env.smtp
    srv.slow(0.05)
    d = env.start(*FAST_REJOIN)
    env.publish([notice("news", "Outage bulletin")])

    wait_for(lambda: srv.count() >= 60, MAIL_TIMEOUT, "60 messages before the outage", 0.01,
             lambda: f"{srv.count()} messages\n{env.logs(15)}")
    at_stop = srv.count()
    t0 = time.monotonic()
    broker.down()
    while time.monotonic() - t0 < OUTAGE:
        time.sleep(0.5)
    during = srv.count() - at_stop
    broker.up()
    back = time.monotonic() - t0
    print(f"\nbroker stopped after {at_stop} messages, back after {back:.0f} s; "
          f"{during} messages sent while it was away")
    assert d.alive(), d.tail()

    env.wait_mail(lambda ib: len({m.to for m in ib}) >= N, timeout=240,
                  what=f"the message to all {N} subscribers", interval=0.5)
    jobs, events = env.wait_settled(min_jobs=N, timeout=180)
    # every job's offset committed: nothing more is going to be read again and sent
    group = f"{env.group}.senders"
    ends = {}
    for m in env.messages(env.jobs_topic):
        ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
    last = {}

    def all_committed():
        c = Consumer({"bootstrap.servers": env.bootstrap, "group.id": group,
                      "enable.auto.commit": False})
        try:
            got = c.committed([TopicPartition(env.jobs_topic, p) for p in ends], timeout=10)
            last.update({tp.partition: tp.offset for tp in got})
        finally:
            c.close()
        return all(last.get(p, -1) >= hi for p, hi in ends.items())

    wait_for(all_committed, 180, "every job's offset committed", 1.0,
             lambda: f"committed {last}, ends {ends}\n{env.logs(20)}")
    time.sleep(2)

    per = {}
    for m in env.inbox():
        per[m.to] = per.get(m.to, 0) + 1
    total = sum(per.values())
    duplicates = total - N
    in_flight = SESSIONS * BATCH
    not_sent = [e for e in events if e["type"] != "mail.sent"]
    sent_ids = {e["message_id"] for e in events if e["type"] == "mail.sent"}
    print(f"{len(jobs)} jobs; {total} messages received for {N} subscribers -> {duplicates} "
          f"duplicate(s) (bound: {in_flight}, the messages in SMTP sessions at once); "
          f"{len(events)} delivery events, {len(not_sent)} not mail.sent")
    record_property("duplicates", duplicates)
    record_property("sent_during_outage", during)
    assert len(jobs) == N, f"{len(jobs)} jobs planned"
    assert set(per) == set(subs)
    assert {j["message_id"] for j in jobs} <= sent_ids, "jobs without a mail.sent event"
    assert duplicates <= in_flight, (
        f"{duplicates} messages sent twice after a {OUTAGE} s broker outage (bound {in_flight})"
        f"\n{env.logs(20)}")
    assert d.terminate() == 0, d.tail()
