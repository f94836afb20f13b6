"""Batches: all-or-nothing in one transaction; validation errors name file:line: field;
--dry-run and validate produce nothing."""

import json
import re
import uuid

import pytest

from conftest import EX_DATAERR, EX_OK, describe, expect_rc, parse_published


def ndjson(objs):
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)


def json_array_one_per_line(objs):
    # one object per line, so line N+1 holds objs[N] whatever way the CLI counts lines
    return "[\n" + ",\n".join(json.dumps(o, ensure_ascii=False) for o in objs) + "\n]\n"


GOOD = [
    {"category": "news", "title": {"en": "N1", "es": "N1 es"}, "regions": ["PE"]},
    {"category": "press", "title": "P1", "priority": "urgent"},
    {"category": "news", "title": "N2", "body": "Body of N2."},
    {"category": "alerts", "title": "A1", "regions": ["BR", "PE"]},
    {"category": "press", "title": "P2", "id": str(uuid.uuid4())},
]


def all_prefix_messages(consume_prefix, cfg, isolation="read_committed"):
    return consume_prefix(cfg, isolation=isolation)


@pytest.mark.parametrize("fmt", ["array", "ndjson"])
def test_good_batch_is_one_transaction(fmt, tmp_path, make_config, topics, run_cli, consume, high_watermarks):
    # one partition per topic, so several notices share a partition and the count of
    # transaction markers tells one transaction from several
    cfg = topics(make_config(tmp_path, topics={"partitions": 1}))
    f = tmp_path / ("batch.json" if fmt == "array" else "batch.ndjson")
    f.write_text(json_array_one_per_line(GOOD) if fmt == "array" else ndjson(GOOD))
    cp = expect_rc(run_cli("publish", f, config=cfg), EX_OK)
    rows = parse_published(cp.stdout)
    assert len(rows) == len(GOOD), describe(cp)
    assert len({r["id"] for r in rows}) == len(GOOD)
    assert GOOD[4]["id"] in {r["id"] for r in rows}

    seen = {}
    for cat in ("news", "press", "alerts", "tenders"):
        for m in consume(cfg.topic(cat)):
            seen[m.key] = (cat, m)
    assert set(seen) == {r["id"] for r in rows}, "read_committed consumer does not see the whole batch"
    for r in rows:
        cat, m = seen[r["id"]]
        assert r["topic"] == cfg.topic(cat) == m.topic
        assert (r["partition"], r["offset"]) == (m.partition, m.offset)
    assert sorted(m.json()["title"].get("en") for _, m in seen.values()) == ["A1", "N1", "N2", "P1", "P2"]

    # One transaction => exactly one commit marker per partition written to: high watermark
    # == records + 1 (fresh topics).  One transaction per notice would leave one marker each.
    for cat in ("news", "press", "alerts"):
        counts = {}
        for _, m in seen.values():
            if m.topic == cfg.topic(cat):
                counts[m.partition] = counts.get(m.partition, 0) + 1
        for p, hi in high_watermarks(cfg.topic(cat)).items():
            want = counts[p] + 1 if p in counts else 0
            assert hi == want, (f"{cfg.topic(cat)}[{p}]: high watermark {hi}, {counts.get(p, 0)} records: "
                                f"expected a single transaction commit marker")


@pytest.mark.parametrize("fmt", ["array", "ndjson"])
def test_bad_batch_unknown_category_publishes_nothing(fmt, cfg, tmp_path, run_cli, consume_prefix):
    objs = [GOOD[0], GOOD[1], {"category": "sports", "title": "Cup final"}, GOOD[3]]
    name = "batch.json" if fmt == "array" else "batch.ndjson"
    f = tmp_path / name
    f.write_text(json_array_one_per_line(objs) if fmt == "array" else ndjson(objs))
    line = 4 if fmt == "array" else 3
    cp = expect_rc(run_cli("publish", f, config=cfg), EX_DATAERR)
    assert re.search(rf"{re.escape(name)}:{line}: category\b", cp.stderr), describe(cp)
    assert parse_published(cp.stdout) == [], "printed published lines for a rejected batch"
    assert all_prefix_messages(consume_prefix, cfg) == []


@pytest.mark.parametrize("fmt", ["array", "ndjson"])
def test_bad_batch_crlf_in_title_publishes_nothing(fmt, cfg, tmp_path, run_cli, consume_prefix):
    objs = [GOOD[0], GOOD[1], GOOD[2], {"category": "news", "title": {"en": "Evil\r\nBcc: x@y"}}, GOOD[3]]
    name = "batch.json" if fmt == "array" else "batch.ndjson"
    f = tmp_path / name
    f.write_text(json_array_one_per_line(objs) if fmt == "array" else ndjson(objs))
    line = 5 if fmt == "array" else 4
    cp = expect_rc(run_cli("publish", f, config=cfg), EX_DATAERR)
    assert re.search(rf"{re.escape(name)}:{line}: title\b", cp.stderr), describe(cp)
    assert all_prefix_messages(consume_prefix, cfg) == []


def big_batch(n):
    """N notices of ~1 KiB: over 1 MiB, so the CLI parses the file in two halves."""
    body = "Cooperation forum with officials from Lima, Arequipa and Sao Paulo. " * 14
    return [{"category": ("news", "press")[i % 2], "title": f"Notice {i}", "body": body,
             "regions": ["PE"]} for i in range(n)]


def test_big_batch_errors_name_their_lines_in_both_halves(cfg, tmp_path, run_cli, consume_prefix):
    objs = big_batch(1600)
    objs[100] = {"category": "news", "title": {"en": "Early\nbreak"}}          # first half
    objs[1500] = {"category": "sports", "title": "Late"}                       # second half
    objs[1550]["id"] = objs[1200]["id"] = str(uuid.uuid4())                    # a duplicate
    f = tmp_path / "big.ndjson"
    f.write_text(ndjson(objs))
    assert f.stat().st_size > (1 << 20)
    cp = expect_rc(run_cli("publish", f, config=cfg), EX_DATAERR)
    errors = [l for l in cp.stderr.splitlines() if l.startswith(str(f))]
    # every error, in file order, with the right line: as if read by one thread
    assert [l.split(": ")[0] + ": " + l.split(": ")[1] for l in errors] == [
        f"{f}:101: title.en", f"{f}:1501: category", f"{f}:1551: id"], describe(cp)
    assert f"is also used at {f}:1201" in errors[2]
    assert all_prefix_messages(consume_prefix, cfg) == []


def test_big_batch_is_published_whole_and_in_order(cfg, tmp_path, run_cli, consume_prefix):
    objs = big_batch(1600)
    f = tmp_path / "big.ndjson"
    f.write_text(ndjson(objs))
    cp = expect_rc(run_cli("publish", f, config=cfg), EX_OK)
    rows = parse_published(cp.stdout)
    assert len(rows) == 1600, describe(cp)
    got = {m.key: m.json()["title"]["en"] for m in all_prefix_messages(consume_prefix, cfg)}
    # printed in input order, each id read back with its own title
    assert [got[r["id"]] for r in rows] == [f"Notice {i}" for i in range(1600)]


def test_bad_notice_in_second_file_publishes_nothing_from_first(cfg, tmp_path, run_cli, consume_prefix):
    a = tmp_path / "a.ndjson"
    a.write_text(ndjson(GOOD[:2]))
    b = tmp_path / "b.ndjson"
    b.write_text(ndjson([GOOD[2], {"category": "news", "title": "x", "colour": "red"}]))
    cp = expect_rc(run_cli("publish", a, b, config=cfg), EX_DATAERR)
    assert re.search(r"b\.ndjson:2: colour\b", cp.stderr), describe(cp)
    assert all_prefix_messages(consume_prefix, cfg) == []


@pytest.mark.parametrize("bad,field", [
    ({"category": "news", "title": "x", "colour": "red"}, "colour"),            # unknown field
    ({"category": "news"}, "title"),                                            # missing title
    ({"category": "news", "title": {"xx": "t"}}, "title"),                      # unconfigured language
    ({"category": "news", "title": "t", "priority": "high"}, "priority"),
    ({"category": "news", "title": "t", "regions": ["Peru"]}, "regions"),
    ({"category": "news", "title": "t", "published_at": "yesterday"}, "published_at"),
    ({"category": "news", "title": "t", "url": "javascript:alert(1)"}, "url"),
])
def test_validate_rejects_bad_notice(bad, field, cfg, tmp_path, run_cli):
    f = tmp_path / "bad.ndjson"
    f.write_text(ndjson([GOOD[0], bad]))
    cp = expect_rc(run_cli("validate", f, config=cfg), EX_DATAERR)
    assert re.search(rf"bad\.ndjson:2: {re.escape(field)}\b", cp.stderr), describe(cp)


def test_validate_json_syntax_error_names_line(cfg, tmp_path, run_cli):
    f = tmp_path / "broken.json"
    f.write_text('{\n  "category": "news",\n  "title": "x",,\n}\n')
    cp = expect_rc(run_cli("validate", f, config=cfg), EX_DATAERR)
    assert re.search(r"broken\.json:3:", cp.stderr), describe(cp)


@pytest.mark.parametrize("after", ["next record", "end of file"])
def test_validate_ndjson_incomplete_line_names_that_line(after, cfg, tmp_path, run_cli):
    # NDJSON: each line is one value, so an unclosed object is the fault of its own line
    # (line 3), not of the line where the parser noticed (the next record, or the end).
    f = tmp_path / "cut.ndjson"
    rest = ndjson(GOOD[3:4]) if after == "next record" else ""
    f.write_text(ndjson(GOOD[:2]) + '{"category": "news", "title": "x",\n' + rest)
    cp = expect_rc(run_cli("validate", f, config=cfg), EX_DATAERR)
    assert re.search(r"cut\.ndjson:3: invalid JSON: ", cp.stderr), describe(cp)


def test_validate_good_files(cfg, tmp_path, run_cli, consume_prefix, high_watermarks):
    a = tmp_path / "good.json"
    a.write_text(json_array_one_per_line(GOOD))
    b = tmp_path / "good.ndjson"
    b.write_text(ndjson(GOOD))
    c = tmp_path / "single.json"
    c.write_text(json.dumps(GOOD[0], indent=2))
    expect_rc(run_cli("validate", a, b, c, config=cfg), EX_OK)
    for t in cfg.all_topics:
        assert set(high_watermarks(t).values()) == {0}, f"validate wrote to {t}"


def test_validate_bad_file_exit_65(cfg, tmp_path, run_cli):
    f = tmp_path / "v.ndjson"
    f.write_text(ndjson([GOOD[0], GOOD[1], {"category": "news", "title": "bad\ttab\nnl"}]))
    cp = expect_rc(run_cli("validate", f, config=cfg), EX_DATAERR)
    assert re.search(r"v\.ndjson:3: title\b", cp.stderr), describe(cp)


@pytest.mark.parametrize("flag", ["-n", "--dry-run"])
def test_dry_run_prints_normalised_and_produces_nothing(flag, cfg, tmp_path, run_cli, high_watermarks):
    f = tmp_path / "d.ndjson"
    f.write_text(ndjson(GOOD[:3]))
    cp = expect_rc(run_cli("publish", flag, f, config=cfg), EX_OK)
    lines = [line for line in cp.stdout.splitlines() if line.strip()]
    assert len(lines) == 3, describe(cp)
    docs = [json.loads(line) for line in lines]
    for d, src in zip(docs, GOOD[:3]):
        assert d["category"] == src["category"]
        assert isinstance(d["id"], str) and uuid.UUID(d["id"])
        assert isinstance(d["published_at"], str) and d["published_at"]
        want_title = src["title"] if isinstance(src["title"], dict) else {"en": src["title"]}
        assert d["title"] == want_title
    assert docs[2]["body"] == {"en": "Body of N2."}
    for t in cfg.all_topics:
        assert set(high_watermarks(t).values()) == {0}, f"dry run wrote to {t}"
