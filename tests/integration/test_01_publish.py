"""publish: one notice from a file, stdin or flags, read back with confluent_kafka."""

import json
import uuid
from datetime import datetime, timedelta, timezone

from conftest import EX_OK, describe, expect_rc, parse_published

HEADERS = {
    "content-type": "application/json",
    "noticecast-schema": "1",
    "noticecast-event": "notice.published",
}


def ts(s: str) -> datetime:
    d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    assert d.tzinfo is not None, f"published_at without offset: {s!r}"
    return d


def assert_published_headers(msg):
    for k, v in HEADERS.items():
        assert msg.headers.get(k) == v, f"header {k}: got {msg.headers.get(k)!r}, want {v!r} (all: {msg.headers})"


def only_message(consume, cfg, category):
    """The single message on notices.<category>; every other notice topic must be empty."""
    msgs = consume(cfg.topic(category))
    assert len(msgs) == 1, f"expected 1 message on {cfg.topic(category)}, got {msgs}"
    for other in cfg.categories:
        if other != category:
            assert consume(cfg.topic(other)) == [], f"unexpected message on {cfg.topic(other)}"
    return msgs[0]


def test_publish_file_is_read_back_with_topic_key_value_headers(cfg, tmp_path, run_cli, consume):
    notice = {
        "category": "news",
        "published_at": "2017-06-20T09:00:00+09:00",
        "priority": "normal",
        "regions": ["PE", "BR"],
        "title": {"en": "Visa waiver extended", "es": "Exención de visado ampliada"},
        "summary": {"en": "Short stays stay visa-free."},
        "body": {"en": "First paragraph.\n\nSecond paragraph."},
        "url": "https://example.gov/notices/1",
        "source": "Ministry of the Interior",
    }
    f = tmp_path / "notice.json"
    f.write_text(json.dumps(notice, ensure_ascii=False, indent=2))

    cp = expect_rc(run_cli("publish", f, config=cfg), EX_OK)
    rows = parse_published(cp.stdout)
    assert len(rows) == 1, describe(cp)
    row = rows[0]
    assert row["topic"] == cfg.topic("news")

    msg = only_message(consume, cfg, "news")
    assert msg.key == row["id"]
    assert (msg.partition, msg.offset) == (row["partition"], row["offset"])
    assert_published_headers(msg)

    v = msg.json()
    assert v["id"] == row["id"]
    assert uuid.UUID(v["id"])  # a UUID
    assert v["category"] == "news"
    assert ts(v["published_at"]) == ts(notice["published_at"])
    for k in ("priority", "regions", "title", "summary", "body", "url", "source"):
        assert v[k] == notice[k], f"field {k}: {v.get(k)!r} != {notice[k]!r}"


def test_publish_assigns_uuidv7_and_published_at(cfg, tmp_path, run_cli, consume):
    before = datetime.now(timezone.utc)
    f = tmp_path / "n.json"
    f.write_text(json.dumps({"category": "alerts", "title": "Storm warning"}))
    cp = expect_rc(run_cli("publish", f, config=cfg), EX_OK)
    row = parse_published(cp.stdout)[0]

    msg = only_message(consume, cfg, "alerts")
    v = msg.json()
    assert msg.key == row["id"] == v["id"]
    assert uuid.UUID(v["id"]).version == 7, f"id {v['id']} is not a UUIDv7"
    # a plain string title means the default language (en)
    assert v["title"] == {"en": "Storm warning"}
    pub = ts(v["published_at"])
    assert before - timedelta(seconds=5) <= pub <= datetime.now(timezone.utc) + timedelta(seconds=5), pub


def test_publish_keeps_given_id(cfg, tmp_path, run_cli, consume):
    given = str(uuid.uuid4())
    f = tmp_path / "n.json"
    f.write_text(json.dumps({"id": given, "category": "press", "title": {"pt": "Comunicado"}}))
    cp = expect_rc(run_cli("publish", f, config=cfg), EX_OK)
    assert parse_published(cp.stdout)[0]["id"] == given
    msg = only_message(consume, cfg, "press")
    assert msg.key == given and msg.json()["id"] == given
    assert msg.json()["title"] == {"pt": "Comunicado"}


def test_publish_from_stdin(cfg, run_cli, consume):
    cp = expect_rc(run_cli("publish", "-", config=cfg,
                           input=json.dumps({"category": "tenders", "title": "Bridge repair tender"})), EX_OK)
    row = parse_published(cp.stdout)[0]
    assert row["topic"] == cfg.topic("tenders")
    msg = only_message(consume, cfg, "tenders")
    assert msg.key == row["id"]
    assert msg.json()["title"] == {"en": "Bridge repair tender"}


def test_publish_json_output(cfg, tmp_path, run_cli, consume):
    f = tmp_path / "two.ndjson"
    f.write_text(
        json.dumps({"category": "news", "title": "One"}) + "\n"
        + json.dumps({"category": "press", "title": "Two"}) + "\n"
    )
    cp = expect_rc(run_cli("publish", "--json", f, config=cfg), EX_OK)
    lines = [line for line in cp.stdout.splitlines() if line.strip()]
    assert len(lines) == 2, describe(cp)
    outs = [json.loads(line) for line in lines]
    for o in outs:
        assert {"id", "topic", "partition", "offset"} <= set(o), o
        assert isinstance(o["partition"], int) and isinstance(o["offset"], int)
    by_id = {o["id"]: o for o in outs}
    got = consume(cfg.topic("news")) + consume(cfg.topic("press"))
    assert len(got) == 2
    for m in got:
        o = by_id[m.key]
        assert (o["topic"], o["partition"], o["offset"]) == (m.topic, m.partition, m.offset)
    assert {by_id[m.key]["topic"] for m in got} == {cfg.topic("news"), cfg.topic("press")}


def test_publish_flags_form(cfg, run_cli, consume):
    cp = expect_rc(run_cli(
        "publish", "--title", "T", "--body", "B", "--category", "news",
        "--region", "PE", "--region", "BR", "--lang", "es", "--priority", "urgent",
        "--url", "https://x", "--summary", "S", config=cfg), EX_OK)
    rows = parse_published(cp.stdout)
    assert len(rows) == 1, describe(cp)
    msg = only_message(consume, cfg, "news")
    assert msg.key == rows[0]["id"]
    assert_published_headers(msg)
    v = msg.json()
    assert v["title"] == {"es": "T"}
    assert v["body"] == {"es": "B"}
    assert v["summary"] == {"es": "S"}
    assert v["category"] == "news"
    assert v["regions"] == ["PE", "BR"]
    assert v["priority"] == "urgent"
    assert v["url"] == "https://x"
    assert ts(v["published_at"])


def test_publish_flags_body_file(cfg, tmp_path, run_cli, consume):
    body = "Paragraph one.\n\nParagraph two, with ñ and 한국어.\n"
    bf = tmp_path / "body.txt"
    bf.write_text(body, encoding="utf-8")
    expect_rc(run_cli("publish", "--title", "Hello", "--body-file", bf, "--category", "press",
                      config=cfg), EX_OK)
    v = only_message(consume, cfg, "press").json()
    assert v["title"] == {"en": "Hello"}
    # trailing newline handling is the CLI's choice; the text itself must survive intact
    assert v["body"]["en"].rstrip("\n") == body.rstrip("\n")
