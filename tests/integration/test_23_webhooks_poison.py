"""Poison messages on a notice topic go to the DLQ with the reason; the good ones around them are
delivered; the daemon goes on.  Everything is on one partition, so a bad record that stopped
the consumer would hold back every good one after it."""

import json
import uuid

from confluent_kafka import Producer

from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403

PUBLISHED = [("noticecast-event", b"notice.published"), ("content-type", b"application/json"),
             ("noticecast-schema", b"1")]


def test_poison_messages_are_quarantined(wh_factory):
    wh = wh_factory(partitions=1)
    rx = wh.receiver()
    p = wh.partner("sink", rx.url("/sink"))
    rx.route("/sink", Always(204), secrets=p.secrets)
    d = wh.start()
    topic = wh.topic("news")

    good, bad = [], {}  # bad: key -> (partition, offset, value, what the reason must mention)

    def publish_good(i):
        n = notice("news", f"Good {i}")
        wh.publish([n])
        good.append(n["id"])

    def produce_bad(value, headers, must=None):
        key = str(uuid.uuid4())
        part, off = wh.produce_raw(topic, value, key=key, headers=headers)
        bad[key] = (part, off, value, must)

    valid = json.dumps(notice("news", "Valid JSON but no event header")).encode()
    publish_good(1)
    produce_bad(b"this is {not JSON", PUBLISHED, "invalid JSON")
    publish_good(2)
    produce_bad(json.dumps({"category": "news", "colour": "blue"}).encode(), PUBLISHED)  # wrong schema
    produce_bad(b'{"id":"' + str(uuid.uuid4()).encode() + b'","category":"news","title":"caf\xe9 \xff"}',
                PUBLISHED)  # invalid UTF-8
    publish_good(3)
    produce_bad(valid, [("content-type", b"application/json")], "noticecast-event")  # no event header
    produce_bad(valid, [("noticecast-event", b"notice.exploded")], "noticecast-event")  # unknown event
    produce_bad(json.dumps({"type": "notice.withdrawn", "category": "news"}).encode(),
                [("noticecast-event", b"notice.withdrawn")])  # withdrawal without an id
    produce_bad(None, PUBLISHED)  # a tombstone on a notice topic

    # a valid notice in an aborted transaction must never be delivered (read_committed)
    aborted = notice("news", "Aborted")
    tp = Producer({"bootstrap.servers": wh.bootstrap, "transactional.id": f"poison-{uuid.uuid4().hex}"})
    tp.init_transactions(30)
    tp.begin_transaction()
    tp.produce(topic, json.dumps(aborted).encode(), key=aborted["id"], headers=PUBLISHED)
    tp.flush(30)
    tp.abort_transaction(30)

    publish_good(4)

    rx.wait_for_ids("/sink", set(good), extra=wh.logs)
    wh.wait_dlq(None, set(bad))
    wh.wait_all_committed()

    assert d.alive(), "the daemon died on poison input\n" + d.tail()
    got = [r.notice_id for r in rx.delivered("/sink")]
    assert sorted(got) == sorted(good), f"delivered {got}, expected exactly {good}"
    assert aborted["id"] not in got

    dlq = wh.dlq()
    assert sorted(m.key for m in dlq) == sorted(bad), (
        f"DLQ keys {[m.key for m in dlq]}; expected exactly the {len(bad)} bad records")
    for m in dlq:
        part, off, value, must = bad[m.key]
        h = m.headers
        reason = h.get("noticecast-dlq-reason") or ""
        assert reason.strip(), f"no reason for {m.key}: {h}"
        if must:
            assert must in reason, f"reason {reason!r} should mention {must!r}"
        assert h.get("noticecast-dlq-stage") == "webhooks", h
        assert h.get("noticecast-dlq-source-topic") == topic, h
        assert h.get("noticecast-dlq-source-partition") == str(part), h
        assert h.get("noticecast-dlq-source-offset") == str(off), h
        rfc3339(h.get("noticecast-dlq-time"))
        assert "noticecast-dlq-partner" not in h, f"not a partner failure, yet {h}"
        if value is None:  # a tombstone has no bytes: kept as null or as an empty value
            assert not m.value, f"DLQ value of the tombstone {m.key}: {m.value!r}"
        else:
            assert m.value == value, f"DLQ value of {m.key} is not the original bytes: {m.value!r} vs {value!r}"

    st, text = d.get("/healthz")
    assert st == 200, text
    assert d.terminate() == 0, d.tail()
