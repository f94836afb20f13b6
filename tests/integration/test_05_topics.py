"""topics create: idempotent; partitions from the config; subscribers topic compacted."""

from confluent_kafka.admin import ConfigResource, ResourceType

from conftest import EX_OK, admin_for, describe, expect_rc


def test_topics_create_twice(tmp_path, make_config, run_cli, bootstrap):
    cfg = make_config(tmp_path, topics={"partitions": 2})
    cp1 = expect_rc(run_cli("topics", "create", config=cfg), EX_OK)
    cp2 = expect_rc(run_cli("topics", "create", config=cfg), EX_OK)

    admin = admin_for(bootstrap)
    md = admin.list_topics(timeout=10)
    mine = sorted(t for t in md.topics if t.startswith(cfg.prefix))
    for t in cfg.all_topics:
        assert t in md.topics, f"{t} missing; have {mine}" + describe(cp1) + describe(cp2)
        assert len(md.topics[t].partitions) == 2, f"{t}: {len(md.topics[t].partitions)} partitions"

    res = ConfigResource(ResourceType.TOPIC, cfg.subscribers_topic)
    conf = admin.describe_configs([res])[res].result(timeout=10)
    assert conf["cleanup.policy"].value == "compact"

    for t in cfg.notice_topics:
        r = ConfigResource(ResourceType.TOPIC, t)
        c = admin.describe_configs([r])[r].result(timeout=10)
        assert "compact" not in c["cleanup.policy"].value, f"{t} must not be compacted"


def test_topics_create_then_publish(tmp_path, make_config, run_cli, consume):
    cfg = make_config(tmp_path, noticecast={"categories": "news, weather"})
    expect_rc(run_cli("topics", "create", config=cfg), EX_OK)
    expect_rc(run_cli("publish", "--title", "Rain", "--body", "Rain today.", "--category", "weather",
                      config=cfg), EX_OK)
    msgs = consume(cfg.topic("weather"))
    assert len(msgs) == 1 and msgs[0].json()["title"] == {"en": "Rain"}
