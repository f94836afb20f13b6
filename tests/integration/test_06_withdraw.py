"""withdraw: a notice.withdrawn event keyed by the notice id on its category topic."""

import json
import uuid
from datetime import datetime

from conftest import EX_OK, EX_USAGE, expect_rc, parse_published


def test_withdraw_published_notice(cfg, tmp_path, run_cli, consume):
    cp = expect_rc(run_cli("publish", "--title", "Wrong date", "--body", "x", "--category", "news",
                           config=cfg), EX_OK)
    nid = parse_published(cp.stdout)[0]["id"]

    expect_rc(run_cli("withdraw", nid, "--category", "news", "--reason", "Published in error",
                      config=cfg), EX_OK)

    msgs = consume(cfg.topic("news"))
    assert len(msgs) == 2
    w = [m for m in msgs if m.headers.get("noticecast-event") == "notice.withdrawn"]
    assert len(w) == 1, [m.headers for m in msgs]
    m = w[0]
    assert m.key == nid
    assert m.headers.get("content-type") == "application/json"
    assert m.headers.get("noticecast-schema") == "1"
    v = m.json()
    assert v["type"] == "notice.withdrawn"
    assert v["id"] == nid
    assert v["category"] == "news"
    assert v["reason"] == "Published in error"
    datetime.fromisoformat(v["withdrawn_at"].replace("Z", "+00:00"))
    # same key => same partition as the notice, so consumers see them in order
    p = [x for x in msgs if x is not m][0]
    assert p.partition == m.partition and p.offset < m.offset


def test_withdraw_needs_category(cfg, run_cli, consume):
    cp = run_cli("withdraw", str(uuid.uuid4()), config=cfg)
    expect_rc(cp, EX_USAGE)
    for t in cfg.notice_topics:
        assert consume(t) == []
