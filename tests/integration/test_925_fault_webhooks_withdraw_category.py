"""Issue 8, item 5: a notice.withdrawn for an id never published is not forwarded, and a notice
whose category does not match its topic is quarantined, not delivered.

Two partners (all categories; news only).  Forwarded: the withdrawal of a published notice
(also after a restart: the daemon learns the published ids from the notice topics again).
Quarantined (DLQ, reason) and sent to nobody: a withdrawal of an id never published, a
withdrawal naming another category than the notice's, a valid press notice produced onto the
news topic, and a withdrawal whose category is not its topic's.  Notices after them still go
out.  Counted: what each partner received of the bad ones, and the DLQ entries."""

import json
import uuid
from datetime import datetime, timezone

import pytest

from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403

pytestmark = pytest.mark.faults

WITHDRAWN = [("content-type", b"application/json"), ("noticecast-schema", b"1"),
             ("noticecast-event", b"notice.withdrawn")]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def test_unknown_withdrawals_and_wrong_categories_are_quarantined(wh, record_property):
    rx = wh.receiver()
    paths = ("/all", "/news")
    for path, opts in (("/all", {}), ("/news", {"categories": "news"})):
        p = wh.partner(path[1:], rx.url(path), **opts)
        rx.route(path, Always(204), secrets=p.secrets)
    d = wh.start()
    news = wh.topic("news")

    a = notice("news", "Published then withdrawn")
    wh.publish([a])
    for path in paths:
        rx.wait_for_ids(path, {a["id"]}, extra=wh.logs)
    wh.withdraw(a["id"], "news")

    never = str(uuid.uuid4())
    wh.withdraw(never, "news", reason="Never published")
    wh.withdraw(a["id"], "press", reason="Wrong category")  # A was published as news
    wrong = notice("press", "Press notice on the news topic")
    wrong["published_at"] = now_iso()
    wh.produce_raw(news, json.dumps(wrong).encode(), key=wrong["id"], headers=PUBLISHED_HEADERS)
    wrong_wd = {"type": "notice.withdrawn", "id": a["id"], "category": "press",
                "withdrawn_at": now_iso(), "reason": "on the news topic"}
    wd_key = f"{a['id']}-wd"
    wh.produce_raw(news, json.dumps(wrong_wd).encode(), key=wd_key, headers=WITHDRAWN)

    later = notice("news", "Later notice")
    wh.publish([later])
    for path in paths:
        rx.wait_for_keys(path, {(a["id"], "notice.withdrawn"), (later["id"], "notice.published")},
                         extra=wh.logs)
    bad_keys = {never, a["id"], wrong["id"], wd_key}
    try:
        wait_for(lambda: len([m for m in wh.dlq() if m.key in bad_keys]) >= 4, 30, "4 DLQ entries")
    except AssertionError:
        pass
    wh.wait_all_committed()

    def received(path):
        got = rx.snapshot(path)
        return {"never": sum(1 for r in got if r.notice_id == never),
                "wrong_category_notice": sum(1 for r in got if r.notice_id == wrong["id"]),
                "withdrawn_twice": sum(1 for r in got if r.key == (a["id"], "notice.withdrawn")) - 1}

    got = {path: received(path) for path in paths}
    dlq = [m for m in wh.dlq() if m.key in bad_keys]
    reasons = sorted(m.headers.get("noticecast-dlq-reason", "") for m in dlq)
    print(f"\nreceived of the bad records: {got}; DLQ entries {len(dlq)}: {reasons}")
    record_property("received_bad", json.dumps(got))
    record_property("dlq_entries", len(dlq))

    for path in paths:
        assert got[path] == {"never": 0, "wrong_category_notice": 0, "withdrawn_twice": 0}, got
    assert len(dlq) == 4, reasons
    assert sum("no such notice" in r for r in reasons) == 2, reasons  # never + wrong category
    assert sum("does not match topic" in r for r in reasons) == 2, reasons
    assert all("noticecast-dlq-partner" not in m.headers for m in dlq)

    # after a restart the published ids are known again: the withdrawal of a notice published
    # before it is still forwarded (a second withdrawal of A would be the same webhook, which
    # was delivered: not sent again)
    assert d.terminate() == 0, d.tail()
    wh.start()
    wh.withdraw(later["id"], "news", reason="Withdrawn after the restart")
    for path in paths:
        rx.wait_for_keys(path, {(later["id"], "notice.withdrawn")}, extra=wh.logs)
    assert sum(1 for r in rx.delivered("/all") if r.key == (a["id"], "notice.withdrawn")) == 1
