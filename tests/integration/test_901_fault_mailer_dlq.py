"""Fault: a job whose retries are used up must not be only an event (issue 8, item 1).

One of three immediate subscribers has a mailbox that answers "452 4.2.2" to every RCPT TO
(over quota); `retry_schedule = 1s, 1s`, so its job fails for good at the third attempt.
Expected: a `mail.failed` event and a DLQ entry on <prefix>dlq (key = the subscriber, value =
the job as consumed, `noticecast-dlq-stage: mailer`, the reason with the SMTP reply,
`noticecast-dlq-replay-topic` = <prefix>mailer.jobs), listed by `noticecast dlq list`; the job's
offset is committed (it was settled once both records were acknowledged).  Once the mailbox
accepts mail again, `noticecast dlq replay --id <subscriber>` republishes the job and the
message arrives, with the job's Message-ID.

Measured on the code before the fix: the mail.failed event, and no DLQ entry at all (nothing
to replay).
"""

import json

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import describe
from mailer_support import *  # noqa: F401,F403

pytestmark = pytest.mark.faults

OK_SUBS = ["fine1@example.org", "fine2@example.org"]
STUCK = "full-mailbox@example.org"


def committed(env, group: str, topic: str) -> dict:
    c = Consumer({"bootstrap.servers": env.bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        return {tp.partition: tp.offset for tp in c.committed(parts, timeout=10)}
    finally:
        c.close()


def test_exhausted_job_goes_to_dlq_and_replays(ml, record_property):
    env = ml
    env.mailer["retry_schedule"] = "1s, 1s"
    for a in OK_SUBS + [STUCK]:
        env.add_subscriber(a, lang="en", frequency="immediate")
    env.smtp.tempfail_rcpt(STUCK)
    d = env.start()
    n = notice("news", "Quota notice")
    env.publish([n])

    env.wait_mail(lambda ib: {m.to for m in ib} >= set(OK_SUBS), what="the two healthy mailboxes")
    jobs, events = env.wait_settled(min_jobs=3)
    failed = [e for e in events if e["type"] == "mail.failed"]
    assert [e["subscriber"] for e in failed] == [STUCK], events
    assert failed[0]["code"] == 452 and failed[0]["attempt"] == 3, failed[0]
    job = next(j for j in jobs if j["subscriber"] == STUCK)

    # The DLQ entry (produced with the event; wait a little for it, bounded).
    entries = []

    def dlq_entries():
        nonlocal entries
        entries = [m for m in env.dlq() if m.headers.get("noticecast-dlq-stage") == "mailer"]
        return entries

    try:
        wait_for(dlq_entries, 30, "a DLQ entry for the failed job", 0.5)
    finally:
        print(f"\nmail.failed events: {len(failed)}; mailer DLQ entries: {len(entries)}")
        record_property("dlq_entries", len(entries))
    assert len(entries) == 1, entries
    e = entries[0]
    h = e.headers
    print(f"DLQ entry: key {e.key}, headers { {k: v for k, v in h.items()} }")
    assert e.key == STUCK, e.key
    assert json.loads(e.value) == job, (e.value, job)
    assert h.get("noticecast-dlq-replay-topic") == env.jobs_topic, h
    assert h.get("noticecast-dlq-source-topic") == env.jobs_topic, h
    assert "452" in h.get("noticecast-dlq-reason", "") and "3 attempts" in h["noticecast-dlq-reason"], h

    cp = env.cli("dlq", "list", "--json")
    assert cp.returncode == 0, describe(cp)
    listed = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
    assert [x["key"] for x in listed if x.get("stage") == "mailer"] == [STUCK], listed

    # Settled: the sender group's committed offsets are past every job (the jobs topic is
    # written in transactions: its end offsets count the commit markers too).
    ends = {}
    for m in env.messages(env.jobs_topic):
        ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
    group = f"{env.group}.senders"
    last = {}

    def all_committed():
        nonlocal last
        last = committed(env, group, env.jobs_topic)
        return all(last.get(p, -1) >= hi for p, hi in ends.items() if hi > 0)

    wait_for(all_committed, 30, "the jobs' offsets to be committed", 0.5,
             lambda: f"committed {last}, ends {ends}")

    # The mailbox has room again: replay the entry, the message arrives.
    env.smtp.untempfail_rcpt()
    cp = env.cli("dlq", "replay", "--id", STUCK)
    assert cp.returncode == 0, describe(cp)
    assert env.jobs_topic in cp.stdout, describe(cp)
    got = env.wait_mail(lambda ib: [m for m in ib if m.to == STUCK], what=f"the replayed job's message to {STUCK}")
    assert got[0].bare_id == job["message_id"], (got[0].message_id, job["message_id"])

    def sent_after_replay():
        return [x for x in env.events() if x["subscriber"] == STUCK and x["type"] == "mail.sent"]

    wait_for(sent_after_replay, MAIL_TIMEOUT, f"a mail.sent event for {STUCK}", 0.5)
    print(f"replayed: {len(got)} message(s) to {STUCK}, Message-ID {got[0].message_id}")
    assert len(env.mail_for(STUCK)) == 1
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()
