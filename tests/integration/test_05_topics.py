"""topics create: every topic the programs use, with the partitions, cleanup policy and
retention of its kind from the configuration; idempotent (existing topics reported `exists`
and left as they are); `topics list` prints them all."""

from confluent_kafka.admin import ConfigResource, ResourceType

from conftest import EX_CONFIG, EX_OK, admin_for, describe, expect_rc

DAY_MS = 24 * 3600 * 1000


def topic_configs(admin, topics: list) -> dict:
    """{topic: {config name: value}} as the broker describes them."""
    res = {t: ConfigResource(ResourceType.TOPIC, t) for t in topics}
    futs = admin.describe_configs(list(res.values()))
    return {t: {k: v.value for k, v in futs[r].result(timeout=30).items()} for t, r in res.items()}


def listed(cp) -> dict:
    """`topics list` output: {topic: (partitions, policy, retention)}."""
    rows = [line.split("\t") for line in cp.stdout.splitlines()]
    assert all(len(r) == 4 for r in rows), describe(cp)
    return {r[0]: (int(r[1]), r[2], r[3]) for r in rows}


def test_topics_create_every_kind_twice(tmp_path, make_config, run_cli, bootstrap):
    cfg = make_config(tmp_path, topics={"partitions": 2, "notices_partitions": 4,
                                        "notices_retention": "10d", "deliveries_retention": "36h",
                                        "dlq_partitions": 1, "webhooks_retry_retention": "2d",
                                        "mailer_jobs_partitions": 5},
                      webhooks={"retry_schedule": "10s, 10s, 2m"})
    p = cfg.prefix
    want = {  # topic: (partitions, cleanup.policy, retention.ms or None for compacted)
        **{t: (4, "delete", 10 * DAY_MS) for t in cfg.notice_topics},
        f"{p}subscribers": (2, "compact", None),
        f"{p}dlq": (1, "delete", -1),
        f"{p}deliveries": (2, "delete", 36 * 3600 * 1000),
        f"{p}webhooks.retry.10s": (2, "delete", 2 * DAY_MS),
        f"{p}webhooks.retry.2m": (2, "delete", 2 * DAY_MS),
        f"{p}mailer.plan": (1, "compact", None),
        f"{p}mailer.jobs": (5, "delete", 7 * DAY_MS),
    }
    lst = listed(expect_rc(run_cli("topics", "list", config=cfg), EX_OK))
    assert set(lst) == set(want), f"topics list: {sorted(lst)}"
    assert lst[f"{p}dlq"] == (1, "delete", "forever") and lst[f"{p}mailer.plan"] == (1, "compact", "-")
    assert lst[f"{p}deliveries"] == (2, "delete", "36h") and lst[cfg.topic("news")][2] == "10d"

    cp1 = expect_rc(run_cli("topics", "create", config=cfg), EX_OK)
    assert sorted(cp1.stdout.splitlines()) == sorted(f"created\t{t}" for t in want), describe(cp1)

    admin = admin_for(bootstrap)
    md = admin.list_topics(timeout=10)
    mine = sorted(t for t in md.topics if t.startswith(p))
    assert mine == sorted(want), f"on the broker: {mine}" + describe(cp1)
    confs = topic_configs(admin, mine)
    for t, (parts, policy, retention) in want.items():
        assert len(md.topics[t].partitions) == parts, f"{t}: {len(md.topics[t].partitions)} partitions"
        assert confs[t]["cleanup.policy"] == policy, f"{t}: {confs[t]['cleanup.policy']}"
        if retention is not None:
            assert int(confs[t]["retention.ms"]) == retention, f"{t}: retention.ms {confs[t]['retention.ms']}"
    # Tombstones of unsubscribes stay readable 7 days (longer than any confirmation link).
    assert int(confs[f"{p}subscribers"]["delete.retention.ms"]) == 7 * 86400 * 1000, \
        confs[f"{p}subscribers"]["delete.retention.ms"]

    # Twice: every topic exists, nothing is changed (even with other settings in the file).
    cfg2 = make_config(tmp_path, prefix=p, topics={"partitions": 6, "deliveries_retention": "1d"},
                       webhooks={"retry_schedule": "10s, 10s, 2m"})
    cp2 = expect_rc(run_cli("topics", "create", config=cfg2), EX_OK)
    assert sorted(cp2.stdout.splitlines()) == sorted(f"exists\t{t}" for t in want), describe(cp2)
    md = admin.list_topics(timeout=10)
    assert all(len(md.topics[t].partitions) == want[t][0] for t in want)
    assert int(topic_configs(admin, [f"{p}deliveries"])[f"{p}deliveries"]["retention.ms"]) == 36 * 3600 * 1000


def test_topics_bad_retention_names_file_line_key(tmp_path, make_config, run_cli):
    cfg = make_config(tmp_path, topics={"deliveries_retention": "a while"})
    cp = expect_rc(run_cli("topics", "create", config=cfg), EX_CONFIG)
    line = next(i for i, ln in enumerate(cfg.path.read_text().splitlines(), 1)
                if ln.startswith("deliveries_retention"))
    assert f"{cfg.path}:{line}: topics.deliveries_retention: 'a while'" in cp.stderr, describe(cp)
    assert cp.stdout == ""


def test_topics_help_names_every_kind(run_cli):
    cp = expect_rc(run_cli("topics", "-h"), EX_OK)
    for kind in ("notices.", "subscribers", "dlq", "deliveries", "webhooks.retry.", "mailer.plan",
                 "mailer.jobs", "_retention", "_partitions"):
        assert kind in cp.stdout, f"{kind} not in `topics -h`" + describe(cp)


def test_topics_create_then_publish(tmp_path, make_config, run_cli, consume):
    cfg = make_config(tmp_path, noticecast={"categories": "news, weather"})
    expect_rc(run_cli("topics", "create", config=cfg), EX_OK)
    expect_rc(run_cli("publish", "--title", "Rain", "--body", "Rain today.", "--category", "weather",
                      config=cfg), EX_OK)
    msgs = consume(cfg.topic("weather"))
    assert len(msgs) == 1 and msgs[0].json()["title"] == {"en": "Rain"}
