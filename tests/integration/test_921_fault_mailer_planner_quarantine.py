"""Issue 8, items 1 and 5, the mailer's planner: a notice-topic record of ~1 MB (1,000,294
bytes; the topic allows 2 MB) is quarantined as a DLQ *reference* instead of being dropped (a
copy would be refused), and a notice whose category is not its topic's is quarantined instead
of being mailed to the topic's subscribers.  A good notice after them is still mailed.

Counted: DLQ entries of stage mailer for each bad record (and whether the big one is a
reference), messages received for the mismatched notice, and the good notice's message."""

import json
from datetime import datetime, timezone

import pytest

from mailer_support import *  # noqa: F401,F403
from webhooks_support import produce_large, set_topic_config

pytestmark = pytest.mark.faults

BIG = 1_000_294


def test_planner_quarantines_oversized_and_mismatched(ml, record_property):
    env = ml
    sub = env.add_subscriber("lector@example.pe", name="Lector", lang="en", frequency="immediate")
    # a daily subscriber of the press category: the mismatched press notice must not reach
    # their digest either (the view leaves it out), while a real press notice does
    env.add_subscriber("prensa@example.pe", name="Prensa", lang="en", frequency="daily",
                       categories=["press"])
    topic = env.topic("news")
    set_topic_config(env.bootstrap, topic, {"max.message.bytes": 2_000_000})
    d = env.start()

    big = notice("news", "Oversized")
    big["published_at"] = "2026-01-01T00:00:00Z"
    big["body"] = {"en": ""}
    big["body"]["en"] = "x" * (BIG - len(json.dumps(big)))
    value = json.dumps(big).encode()
    assert len(value) == BIG
    big_part, big_off = produce_large(env.bootstrap, topic, big["id"], value, PUBLISHED_HEADERS)

    wrong = notice("press", "Press notice on the news topic")
    wrong["published_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    env.produce_raw(topic, json.dumps(wrong).encode(), key=wrong["id"], headers=PUBLISHED_HEADERS)

    good = notice("news", "Good notice after them")
    env.publish([good])
    env.publish([notice("press", "Real press notice")])
    env.wait_mail(lambda ib: any("Good notice after them" in m.subject for m in ib),
                  what="the good notice's email")

    def entries():
        return [m for m in env.dlq() if m.headers.get("noticecast-dlq-stage") == "mailer"]

    try:
        wait_for(lambda: {big["id"], wrong["id"]} <= {m.key for m in entries()}, 30,
                 "DLQ entries of both bad records")
    except AssertionError:
        pass
    dlq = entries()
    big_dlq = [m for m in dlq if m.key == big["id"]]
    wrong_dlq = [m for m in dlq if m.key == wrong["id"]]
    wrong_mail = [m for m in env.inbox() if "Press notice on the news topic" in m.subject]
    cp = env.run_daemon("--preview", "prensa@example.pe")
    digest = cp.stdout.decode(errors="replace")
    in_digest = "Press notice on the news topic" in digest
    print(f"press digest preview (exit {cp.returncode}): real press notice in it: "
          f"{'Real press notice' in digest}; mismatched notice in it: {in_digest}")
    record_property("mismatch_in_digest", in_digest)
    print(f"\nmailer planner: DLQ entries for the {BIG}-byte record {len(big_dlq)} (reference: "
          f"{[m.headers.get('noticecast-dlq-reference') for m in big_dlq]}); for the press notice "
          f"on the news topic {len(wrong_dlq)}, emails of it {len(wrong_mail)}")
    record_property("big_dlq_entries", len(big_dlq))
    record_property("mismatch_dlq_entries", len(wrong_dlq))
    record_property("mismatch_emails", len(wrong_mail))

    assert len(big_dlq) == 1, f"the oversized record was not quarantined\n{env.logs()}"
    h = big_dlq[0].headers
    assert h.get("noticecast-dlq-reference") == "1" and h.get("noticecast-dlq-size") == str(BIG), h
    assert h.get("noticecast-dlq-source-offset") == str(big_off), h
    assert h.get("noticecast-dlq-source-partition") == str(big_part), h
    ref = json.loads(big_dlq[0].value)
    assert ref["size"] == BIG and ref["offset"] == big_off and ref["topic"] == topic, ref
    assert len(wrong_dlq) == 1, f"the mismatched notice was not quarantined\n{env.logs()}"
    assert "category" in wrong_dlq[0].headers.get("noticecast-dlq-reason", ""), wrong_dlq[0].headers
    assert wrong_dlq[0].value == json.dumps(wrong).encode()
    assert not wrong_mail, [m.describe() for m in wrong_mail]
    assert cp.returncode == 0 and "Real press notice" in digest, cp.stderr.decode()[-2000:]
    assert not in_digest, "the mismatched notice is in the press subscriber's digest"
    assert sub
    assert d.alive()
    assert d.terminate() == 0, d.tail()
