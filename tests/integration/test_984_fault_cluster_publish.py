"""Issue 11: `noticecast publish` against a three-node cluster (replication factor 3,
min.insync.replicas 2) with nodes down.

  * one node killed (kill -9, and the publish started at once, while the metadata still names
    it as a leader): the transaction commits with two in-sync replicas: exit 0, and every notice
    of the batch is readable (read_committed) exactly once;
  * two nodes killed: exit 69 within its timeout, nothing on stdout; once both are back, nothing
    of that publish is visible to read_committed readers, while a publish made then is.

The batch has 9 notices, so that some land on the partitions the killed node led.
"""

import json
import time
import uuid

import pytest

from conftest import (EX_OK, EX_UNAVAILABLE, consume_all, describe, expect_rc, parse_published,
                      write_config)
from kafka_cluster import kafka_cluster  # noqa: F401 (fixture)

pytestmark = pytest.mark.faults

TIMEOUT_MS = 15000
SLACK_S = 30  # a bound on hanging, not a performance assertion


def batch(tmp_path, tag, n=9):
    ids = [str(uuid.uuid4()) for _ in range(n)]
    f = tmp_path / f"{tag}.ndjson"
    f.write_text("".join(json.dumps({"id": i, "category": "news", "title": f"{tag} {k}"}) + "\n"
                         for k, i in enumerate(ids)))
    return f, ids


def publish_batch(run_cli, cfg, tmp_path, tag, n=9):
    """`noticecast publish` of a fresh batch: (CompletedProcess, ids, seconds it took)."""
    f, ids = batch(tmp_path, tag, n)
    t0 = time.monotonic()
    cp = run_cli("publish", f, config=cfg, timeout=TIMEOUT_MS / 1000 + SLACK_S + 30)
    return cp, ids, time.monotonic() - t0


def keys(bootstrap, topic):
    return [m.key for m in consume_all(bootstrap, topic, "read_committed", timeout=60)]


def test_publish_with_nodes_down(kafka_cluster, tmp_path, run_cli, record_property):
    c = kafka_cluster
    cfg = write_config(tmp_path / "nc.conf", c.bootstrap, topics={"replication_factor": 3},
                       producer={"timeout_ms": TIMEOUT_MS})
    expect_rc(run_cli("topics", "create", config=cfg), EX_OK)
    c.wait_isr(cfg.all_topics)
    topic = cfg.topic("news")
    md = c.metadata().topics[topic]
    assert all(len(p.replicas) == 3 for p in md.partitions.values()), md.partitions

    # -- one node down: commits --
    victim, led = c.busiest_leader([topic])
    c.kill9(victim)
    # A publish right after the kill could still be sent to the dead node's transaction
    # coordinator until the controller fences it (seen once: init_transactions timed out,
    # exit 69, nothing published, which is right but not what this step checks).
    c.wait_fenced(victim)
    cp, ids, one_s = publish_batch(run_cli, cfg, tmp_path, "one-down")
    expect_rc(cp, EX_OK)
    rows = parse_published(cp.stdout)
    assert sorted(r["id"] for r in rows) == sorted(ids), describe(cp)
    on_victim = sum(1 for r in rows if (topic, r["partition"]) in led)
    got = keys(c.bootstrap, topic)
    assert sorted(got) == sorted(ids), f"read_committed with node {victim} down: {got}"
    c.start(victim)
    c.wait_isr([topic])

    # -- two nodes down: 69, nothing visible --
    down = [n for n in (1, 2, 3) if n != victim][:2]
    for n in down:
        c.kill9(n)
    cp, ids2, two_s = publish_batch(run_cli, cfg, tmp_path, "two-down")
    expect_rc(cp, EX_UNAVAILABLE)
    assert two_s < TIMEOUT_MS / 1000 + SLACK_S, f"publish took {two_s:.1f}s with timeout_ms={TIMEOUT_MS}"
    assert parse_published(cp.stdout) == [] and cp.stderr.strip(), describe(cp)
    err = cp.stderr.strip().splitlines()[-1]
    c._parallel(c.start, down)
    back_t0 = time.monotonic()
    c.wait_isr()

    # a publish made now becomes visible once the failed one's transaction (if the broker
    # kept any of it) is aborted: then the read of the failed ids below is meaningful
    cp3, ids3, _ = publish_batch(run_cli, cfg, tmp_path, "after", n=1)
    expect_rc(cp3, EX_OK)
    seen = []

    def after_visible():
        seen[:] = keys(c.bootstrap, topic)
        return set(ids3) <= set(seen)

    deadline = time.monotonic() + 90
    while not after_visible():
        assert time.monotonic() < deadline, f"the publish after the restart is not visible: {seen}"
        time.sleep(1)
    visible_s = time.monotonic() - back_t0
    leaked = []
    for t in cfg.all_topics:
        leaked += [k for k in keys(c.bootstrap, t) if k in ids2]
    text = (f"one node (node {victim}, leader of {len(led)} of {len(md.partitions)} partitions) "
            f"killed: exit 0 in {one_s:.1f} s, {on_victim} of {len(ids)} notices on its former "
            f"partitions, each read once; two killed: exit {cp.returncode} in {two_s:.1f} s "
            f"({err!r}); after the restart, a new publish visible in {visible_s:.0f} s, "
            f"{len(leaked)} of the failed publish's notices visible")
    print("\n" + text)
    record_property("figures", text)
    assert sorted(seen) == sorted(ids + ids3), f"{text}\n{seen}"
    assert not leaked, text
