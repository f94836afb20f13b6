"""Issue 8, item 2: records read again after a restart are not added to the DLQ a second time.

The daemon quarantines poison records (invalid input), a partner's 400s and a partner's
exhausted retries (through the retry tiers); once everything is committed it is stopped, the
group's committed offsets of the notice topics *and* of the retry tiers are moved back to the
start (what a crash before a commit, or a rebalance, does to a range of records), and it is
started again: every record is read and handled again, so the partners get duplicates (at
least once; printed), but the DLQ must not get a single second entry: its writes are keyed by
stage/chain topic/partition/offset/partner (noticecast-dlq-key).

A replay (`noticecast dlq replay`) of a partner's entry whose delivery fails again is a new
chain, so it does get its own new entry (checked too)."""

import time

import pytest

from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403

pytestmark = pytest.mark.faults

POISON = [b"not JSON {", b'{"id":"x","category":"news"}']


def dlq_counts(wh) -> dict:
    out = {}
    for m in wh.dlq():
        k = (m.key, m.headers.get("noticecast-dlq-partner"), m.headers.get("noticecast-dlq-reason"))
        out[k] = out.get(k, 0) + 1
    return out


def test_dlq_entries_are_not_repeated_after_reading_again(wh_factory, record_property):
    wh = wh_factory(partitions=2)
    wh.webhooks.update(retry_schedule="1s, 1s")
    rx = wh.receiver()
    for pid, b in (("ok", Always(204)), ("reject", Always(400)), ("down", Always(503))):
        p = wh.partner(pid, rx.url(f"/{pid}"))
        rx.route(f"/{pid}", b, secrets=p.secrets)
    d = wh.start()

    notices = [notice("news" if i % 2 else "press", f"Twice {i}") for i in range(10)]
    wh.publish(notices)
    ids = {n["id"] for n in notices}
    bad = []
    for i, v in enumerate(POISON):
        key = f"poison-{i}"
        wh.produce_raw(wh.topic("news"), v, key=key, headers=PUBLISHED_HEADERS)
        bad.append(key)
    rx.wait_for_ids("/ok", ids, extra=wh.logs)
    wh.wait_dlq("reject", ids)
    wh.wait_dlq("down", ids)
    wh.wait_dlq(None, set(bad))
    wh.wait_all_committed()
    first = dlq_counts(wh)
    n_first = sum(first.values())
    assert d.terminate() == 0, d.tail()

    tiers = retry_topics(wh.bootstrap, wh.prefix)
    assert tiers, "no retry tier topics"
    reset = reset_group_offsets(wh.bootstrap, wh.group, wh.cli_cfg.notice_topics + tiers)
    ok_before = len(rx.delivered("/ok"))
    down_before = rx.count("/down")

    d2 = wh.start()
    # everything is handled again (the healthy partner's deliveries are known as delivered
    # from <prefix>deliveries and not sent again), partner down's chains (notices and the
    # retry records read again) run to their end
    wh.wait_all_committed()
    # the retry tiers are read to their end too: the committed offsets pass every record
    wait_for(lambda: rx.count("/down") >= down_before + 3 * len(ids), 90,
             "partner down's attempts of the second round", 0.5, wh.logs)
    wait_for(lambda: tiers_committed(wh, tiers), 90, "the retry tiers committed to their end", 0.5,
             wh.logs)
    time.sleep(5)  # the last chains of partner down end (1 s + 1 s, jitter) after their attempts
    second = dlq_counts(wh)
    n_second = sum(second.values())
    repeated = {k: v for k, v in second.items() if v > 1}
    print(f"\nDLQ entries: {n_first} after the first run, {n_second} after reading "
          f"{reset} partitions again ({n_second - n_first} added, {len(repeated)} keys twice); "
          f"healthy partner duplicates {len(rx.delivered('/ok')) - ok_before}")
    record_property("dlq_first", n_first)
    record_property("dlq_second", n_second)
    assert n_first == 2 * len(ids) + len(bad), first
    assert n_second == n_first, f"DLQ entries added when records were read again: {repeated}"
    # (issue 8, item 7: a delivery recorded as delivered is not sent again)
    assert len(rx.delivered("/ok")) == ok_before, rx.summary("/ok")

    # a replay of one of down's entries, failing again, is a new failure: a new entry
    target = notices[0]["id"]
    cp = wh.cli("dlq", "replay", "--id", target, "--partner", "down")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    wait_for(lambda: sum(v for (k, p, r), v in dlq_counts(wh).items() if k == target and p == "down") == 2,
             60, "a second DLQ entry of the replayed, failing delivery", 0.5, wh.logs)
    assert d2.terminate() == 0, d2.tail()


def tiers_committed(wh, tiers) -> bool:
    from confluent_kafka import Consumer, TopicPartition
    from conftest import watermarks
    c = Consumer({"bootstrap.servers": wh.bootstrap, "group.id": wh.group, "enable.auto.commit": False})
    try:
        tps = []
        for t in tiers:
            for p, (lo, hi) in watermarks(wh.bootstrap, t).items():
                if hi > lo:
                    tps.append((TopicPartition(t, p), hi))
        got = c.committed([tp for tp, _ in tps], timeout=15)
        return all(g.offset >= hi for g, (_, hi) in zip(got, tps))
    finally:
        c.close()
