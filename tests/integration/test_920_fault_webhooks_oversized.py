"""Issue 8, item 1: a notice-topic record of ~1 MB (1,000,294 bytes, the topic allowing 2 MB).

It is not a valid notice (its body is far over the limit), so it goes to the DLQ; a copy of it
would be refused ("Message size too large"), so it must be quarantined as a *reference*
(topic, partition, offset, size, reason, a bounded prefix).  Before the fix the daemon retried
the copy forever inside its main loop (sleep() under the produce): nothing was delivered to
any partner after it, SIGTERM was ignored, and the same after a restart.

Counted: notices before and after the big record delivered to every partner, DLQ entries for
its key (one, a reference), the SIGTERM exit status and time, and after a restart a further
notice delivered and still one DLQ entry."""

import base64
import json
import os
import signal
import time
import uuid

import pytest

from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403
from conftest import describe

pytestmark = pytest.mark.faults

BIG = 1_000_294
SHUTDOWN_S = 10


def big_value(nid: str) -> bytes:
    n = notice("news", "Oversized", nid=nid)
    n["body"] = {"en": ""}
    n["body"]["en"] = "x" * (BIG - len(json.dumps(n)))
    v = json.dumps(n).encode()
    assert len(v) == BIG
    return v


def wait_quietly(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.5)
    return pred()


def test_oversized_record_is_quarantined_as_a_reference(wh_factory, record_property):
    wh = wh_factory(partitions=1)  # one partition: a stuck record holds back all after it
    topic = wh.topic("news")
    set_topic_config(wh.bootstrap, topic, {"max.message.bytes": 2_000_000})
    rx = wh.receiver()
    paths = ("/pe", "/br")
    for path in paths:
        p = wh.partner(path[1:], rx.url(path))
        rx.route(path, Always(204), secrets=p.secrets)
    d = wh.start()

    before = [notice("news", f"Before {i}") for i in range(3)]
    wh.publish(before)
    big_id = str(uuid.uuid4())
    part, off = produce_large(wh.bootstrap, topic, big_id, big_value(big_id), PUBLISHED_HEADERS)
    after = [notice("alerts", f"Other topic {i}") for i in range(2)] + \
        [notice("news", f"After {i}") for i in range(3)]
    wh.publish(after)
    ids = {n["id"] for n in before + after}
    after_ids = {n["id"] for n in after}

    def all_delivered():
        return all(ids <= rx.delivered_ids(path) for path in paths)

    wait_quietly(all_delivered, 90)
    got_after = {path: len(after_ids & rx.delivered_ids(path)) for path in paths}
    wait_quietly(lambda: [m for m in wh.dlq() if m.key == big_id], 30)
    dlq = [m for m in wh.dlq() if m.key == big_id]
    health = d.get("/healthz")[0]

    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    try:
        rc = d.proc.wait(SHUTDOWN_S + 15)
    except Exception:  # noqa: BLE001 (figure first, assert below)
        rc = None
    stop_s = time.monotonic() - t0

    print(f"\nbig record {topic}[{part}]@{off}, {BIG} bytes: after it, delivered "
          f"{got_after} of {len(after_ids)} per partner; DLQ entries for it: {len(dlq)} "
          f"(reference: {[m.headers.get('noticecast-dlq-reference') for m in dlq]}, "
          f"value bytes {[len(m.value or b'') for m in dlq]}); /healthz {health}; "
          f"SIGTERM -> rc {rc} after {stop_s:.1f} s")
    record_property("delivered_after_big", str(got_after))
    record_property("dlq_entries", len(dlq))
    record_property("sigterm_rc", str(rc))
    record_property("sigterm_seconds", round(stop_s, 1))

    assert all(v == len(after_ids) for v in got_after.values()), \
        f"notices after the big record not delivered: {got_after}\n{wh.logs()}"
    assert len(dlq) == 1, f"DLQ entries for the big record: {len(dlq)}\n{wh.logs()}"
    h = dlq[0].headers
    assert h.get("noticecast-dlq-reference") == "1", h
    assert h.get("noticecast-dlq-size") == str(BIG), h
    assert h.get("noticecast-dlq-source-topic") == topic, h
    assert h.get("noticecast-dlq-source-partition") == str(part), h
    assert h.get("noticecast-dlq-source-offset") == str(off), h
    assert h.get("noticecast-dlq-stage") == "webhooks", h
    assert "invalid notice" in (h.get("noticecast-dlq-reason") or ""), h
    ref = json.loads(dlq[0].value)
    assert ref["type"] == "noticecast.dlq.reference" and ref["size"] == BIG, ref
    assert (ref["topic"], ref["partition"], ref["offset"]) == (topic, part, off), ref
    assert ref["prefix"].startswith('{"id": "' + big_id) and len(ref["prefix"]) <= 1024, ref["prefix"][:80]
    assert len(dlq[0].value) < 8192
    assert rc == 0, d.tail()
    assert stop_s <= SHUTDOWN_S + 5, f"SIGTERM took {stop_s:.1f} s"

    # a restart: the big record is settled, nothing is quarantined twice, deliveries go on
    d2 = wh.start()
    n = notice("news", "After the restart")
    wh.publish([n])
    for path in paths:
        rx.wait_for_ids(path, {n["id"]}, extra=wh.logs)
    wh.wait_all_committed()
    dlq = [m for m in wh.dlq() if m.key == big_id]
    print(f"after a restart: DLQ entries for the big record {len(dlq)}")
    assert len(dlq) == 1, [m.headers for m in dlq]
    assert d2.get("/healthz")[0] == 200
    # a reference is not replayable: its JSON must not be republished as a notice
    cp = wh.cli("dlq", "replay", "--id", big_id)
    print(f"dlq replay of the reference: exit {cp.returncode}; {cp.stderr.strip()}")
    assert "not replayable" in cp.stderr and "replayed" not in cp.stdout, describe(cp)
    assert d2.terminate() == 0, d2.tail()


def test_dlq_copy_refused_by_the_broker_becomes_a_reference(wh_factory, record_property):
    """The same when it is the brokers that refuse the copy (the DLQ topic takes at most
    20,000 bytes per record; a partner rejects a valid 60 KB notice with 400): the DLQ entry is
    a reference, the daemon goes on, and the notice's offset is committed."""
    wh = wh_factory(partitions=1)
    set_topic_config(wh.bootstrap, wh.dlq_topic, {"max.message.bytes": 20_000})
    rx = wh.receiver()
    for pid, b in (("ok", Always(204)), ("reject", Always(400))):
        p = wh.partner(pid, rx.url(f"/{pid}"))
        rx.route(f"/{pid}", b, secrets=p.secrets)
    d = wh.start()
    # random text: the producer compresses (lz4), and the limit is on the compressed batch
    body = base64.b64encode(os.urandom(45_000)).decode()
    n = notice("news", "Sixty kilobytes", body={"en": body})
    after = notice("news", "Small one after it")
    rows = wh.publish([n, after])
    rx.wait_for_ids("/ok", {n["id"], after["id"]}, extra=wh.logs)
    wait_quietly(lambda: {n["id"], after["id"]} <= {m.key for m in wh.dlq("reject")}, 60)
    dlq = {m.key: m for m in wh.dlq("reject")}
    print(f"\nDLQ entries of partner reject: {len(dlq)} of 2 "
          f"(reference: {[m.headers.get('noticecast-dlq-reference') for m in dlq.values()]})")
    record_property("refused_copy_entries", len(dlq))
    assert n["id"] in dlq and after["id"] in dlq, f"{list(dlq)}\n{wh.logs()}"
    big = dlq[n["id"]]
    assert big.headers.get("noticecast-dlq-reference") == "1", big.headers
    assert big.headers.get("noticecast-dlq-partner") == "reject", big.headers
    assert "refused" in big.headers.get("noticecast-dlq-reason", ""), big.headers
    assert json.loads(big.value)["offset"] == rows[0]["offset"]
    # (the small one may share the refused batch, and then be a reference too: either form is
    # a complete quarantine record)
    wh.wait_all_committed()
    assert d.terminate() == 0, d.tail()
