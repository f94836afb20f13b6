"""Broker unreachable: publish fails with 69 within a bound, and nothing of it ever appears."""

import json
import time
import uuid

from conftest import (EX_OK, EX_UNAVAILABLE, consume_all, create_topics, describe, expect_rc,
                      free_port, parse_published, write_config)

TIMEOUT_MS = 5000
SLACK_S = 30  # a bound on hanging, not a performance assertion


def notice_file(tmp_path, nid, category="news"):
    f = tmp_path / f"{nid}.json"
    f.write_text(json.dumps({"id": nid, "category": category, "title": "During the outage"}))
    return f


def test_publish_while_broker_stopped_fails_and_leaves_nothing(own_kafka, tmp_path, run_cli):
    cfg = write_config(tmp_path / "nc.conf", own_kafka.bootstrap, producer={"timeout_ms": TIMEOUT_MS})
    create_topics(own_kafka.bootstrap, cfg)
    own_kafka.down()  # same data dir kept

    nid = str(uuid.uuid4())
    t0 = time.monotonic()
    cp = run_cli("publish", notice_file(tmp_path, nid), config=cfg, timeout=TIMEOUT_MS / 1000 + SLACK_S + 30)
    elapsed = time.monotonic() - t0
    expect_rc(cp, EX_UNAVAILABLE)
    assert elapsed < TIMEOUT_MS / 1000 + SLACK_S, f"publish took {elapsed:.1f}s with timeout_ms={TIMEOUT_MS}"
    assert cp.stderr.strip(), "no error message on stderr"
    assert parse_published(cp.stdout) == [], describe(cp)

    own_kafka.up()  # the same broker, same data
    # the topics survived the restart, so reading them is meaningful
    for t in cfg.all_topics:
        for m in consume_all(own_kafka.bootstrap, t, "read_committed"):
            assert m.key != nid, f"notice {nid} from the failed publish is visible on {t}"

    # and the broker is really usable again: a new publish lands
    nid2 = str(uuid.uuid4())
    cp = expect_rc(run_cli("publish", notice_file(tmp_path, nid2), config=cfg), EX_OK)
    got = consume_all(own_kafka.bootstrap, cfg.topic("news"), "read_committed")
    assert [m.key for m in got] == [nid2], describe(cp)


def test_publish_to_port_with_no_listener_fails_fast(tmp_path, run_cli):
    port = free_port()  # nothing listens there
    cfg = write_config(tmp_path / "nc.conf", f"127.0.0.1:{port}", producer={"timeout_ms": TIMEOUT_MS})
    t0 = time.monotonic()
    cp = run_cli("publish", notice_file(tmp_path, str(uuid.uuid4())), config=cfg,
                 timeout=TIMEOUT_MS / 1000 + SLACK_S + 30)
    elapsed = time.monotonic() - t0
    expect_rc(cp, EX_UNAVAILABLE)
    assert elapsed < TIMEOUT_MS / 1000 + SLACK_S, f"publish took {elapsed:.1f}s with timeout_ms={TIMEOUT_MS}"
    assert parse_published(cp.stdout) == [], describe(cp)


def test_withdraw_with_no_broker_fails(tmp_path, run_cli):
    port = free_port()
    cfg = write_config(tmp_path / "nc.conf", f"127.0.0.1:{port}", producer={"timeout_ms": TIMEOUT_MS})
    t0 = time.monotonic()
    cp = run_cli("withdraw", str(uuid.uuid4()), "--category", "news", "--reason", "x", config=cfg,
                 timeout=TIMEOUT_MS / 1000 + SLACK_S + 30)
    expect_rc(cp, EX_UNAVAILABLE)
    assert time.monotonic() - t0 < TIMEOUT_MS / 1000 + SLACK_S
