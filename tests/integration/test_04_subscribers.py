"""subscribers add / list / remove / import on the compacted <prefix>subscribers topic."""

import json
import re

from conftest import EX_DATAERR, EX_OK, describe, expect_rc

CSV_HEADER = "email,name,lang,categories,regions,frequency,tz,send_at\n"


def list_emails(run_cli, cfg):
    cp = expect_rc(run_cli("subscribers", "list", config=cfg), EX_OK)
    return [line.split("\t")[0].lower() for line in cp.stdout.splitlines() if line.strip()]


def list_json(run_cli, cfg):
    cp = expect_rc(run_cli("subscribers", "list", "--json", config=cfg), EX_OK)
    return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]


def latest_by_key(msgs):
    out = {}
    for m in sorted(msgs, key=lambda m: (m.partition, m.offset)):
        out[m.key] = m
    return out


def test_add_then_list(cfg, run_cli, consume):
    expect_rc(run_cli(
        "subscribers", "add", "--email", "Ana.Quispe@Example.PE", "--name", "Ana Quispe",
        "--lang", "es", "--category", "news", "--category", "alerts", "--region", "PE",
        "--frequency", "daily", "--tz", "America/Lima", "--send-at", "07:30", config=cfg), EX_OK)

    assert list_emails(run_cli, cfg) == ["ana.quispe@example.pe"]

    msgs = consume(cfg.subscribers_topic)
    assert len(msgs) == 1
    m = msgs[0]
    assert m.key == "ana.quispe@example.pe", "key must be the lower-cased email"
    v = m.json()
    assert v["email"].lower() == "ana.quispe@example.pe"
    assert v["name"] == "Ana Quispe"
    assert v["lang"] == "es"
    assert v["categories"] == ["news", "alerts"]
    assert v["regions"] == ["PE"]
    assert v["frequency"] == "daily"
    assert v["tz"] == "America/Lima"
    assert v["send_at"] == "07:30"
    assert v["id"] and v["updated_at"]

    js = list_json(run_cli, cfg)
    assert len(js) == 1 and js[0]["email"].lower() == "ana.quispe@example.pe"
    assert js[0]["frequency"] == "daily" and js[0]["categories"] == ["news", "alerts"]


def test_add_minimal_uses_config_defaults(cfg, run_cli, consume):
    expect_rc(run_cli("subscribers", "add", "--email", "min@example.org", config=cfg), EX_OK)
    v = consume(cfg.subscribers_topic)[0].json()
    assert v["lang"] == "en"
    assert v["tz"] == "UTC"


def test_add_again_updates_not_duplicates(cfg, run_cli):
    expect_rc(run_cli("subscribers", "add", "--email", "bo@example.org", "--frequency", "daily",
                      config=cfg), EX_OK)
    expect_rc(run_cli("subscribers", "add", "--email", "BO@example.org", "--frequency", "weekly",
                      config=cfg), EX_OK)
    js = list_json(run_cli, cfg)
    assert len(js) == 1, js
    assert js[0]["frequency"] == "weekly"


def test_add_rejects_bad_input(cfg, run_cli, consume):
    for args, field in [
        (["--email", "not-an-email"], "email"),
        (["--email", "x@example.org", "--frequency", "hourly"], "frequency"),
        (["--email", "x@example.org", "--category", "sports"], "category"),
        (["--email", "x@example.org", "--tz", "Mars/Olympus"], "tz"),
        (["--email", "x@example.org", "--send-at", "25:00"], "send"),
    ]:
        cp = run_cli("subscribers", "add", *args, config=cfg)
        assert cp.returncode == EX_DATAERR, f"{args}" + describe(cp)
        assert field in cp.stderr, f"stderr does not name {field!r}" + describe(cp)
    assert consume(cfg.subscribers_topic) == []


def test_remove_writes_tombstone(cfg, run_cli, consume):
    for e in ("keep@example.org", "gone@example.org"):
        expect_rc(run_cli("subscribers", "add", "--email", e, config=cfg), EX_OK)
    assert sorted(list_emails(run_cli, cfg)) == ["gone@example.org", "keep@example.org"]

    expect_rc(run_cli("subscribers", "remove", "--email", "Gone@Example.org", config=cfg), EX_OK)

    last = latest_by_key(consume(cfg.subscribers_topic))
    assert last["gone@example.org"].value is None, "remove must write a tombstone (null value)"
    assert last["keep@example.org"].value is not None
    assert list_emails(run_cli, cfg) == ["keep@example.org"]


def test_import_good_csv(cfg, tmp_path, run_cli, consume):
    f = tmp_path / "subs.csv"
    f.write_text(
        CSV_HEADER
        + "ana@example.pe,Ana,es,news;alerts,PE,daily,America/Lima,07:30\n"
        + "joao@example.br,\"Silva, João\",pt,press,BR;PE,weekly,America/Sao_Paulo,08:00\n"
        + "kim@example.kr,Kim,ko,,,immediate,Asia/Seoul,\n",
        encoding="utf-8",
    )
    cp = expect_rc(run_cli("subscribers", "import", f, config=cfg), EX_OK)

    assert sorted(list_emails(run_cli, cfg)) == ["ana@example.pe", "joao@example.br", "kim@example.kr"], describe(cp)
    vals = {k: m.json() for k, m in latest_by_key(consume(cfg.subscribers_topic)).items()}
    assert set(vals) == {"ana@example.pe", "joao@example.br", "kim@example.kr"}
    assert vals["ana@example.pe"]["categories"] == ["news", "alerts"]
    assert vals["ana@example.pe"]["regions"] == ["PE"]
    assert vals["ana@example.pe"]["send_at"] == "07:30"
    assert vals["joao@example.br"]["name"] == "Silva, João"
    assert vals["joao@example.br"]["regions"] == ["BR", "PE"]
    assert vals["joao@example.br"]["frequency"] == "weekly"
    assert vals["kim@example.kr"]["lang"] == "ko"
    assert vals["kim@example.kr"]["frequency"] == "immediate"


def test_import_csv_with_bad_row_writes_nothing(cfg, tmp_path, run_cli, consume):
    f = tmp_path / "file.csv"
    f.write_text(
        CSV_HEADER
        + "ok1@example.org,One,en,news,,daily,UTC,09:00\n"
        + "ok2@example.org,Two,en,news,,hourly,UTC,09:00\n"   # line 3: bad frequency
        + "ok3@example.org,Three,en,news,,weekly,UTC,09:00\n"
    )
    cp = expect_rc(run_cli("subscribers", "import", f, config=cfg), EX_DATAERR)
    assert re.search(r"file\.csv:3: frequency:", cp.stderr), describe(cp)
    assert consume(cfg.subscribers_topic) == []
    assert list_emails(run_cli, cfg) == []


def test_import_csv_bad_header(cfg, tmp_path, run_cli, consume):
    f = tmp_path / "h.csv"
    f.write_text("mail,name\nx@example.org,X\n")
    cp = expect_rc(run_cli("subscribers", "import", f, config=cfg), EX_DATAERR)
    assert re.search(r"h\.csv:1:", cp.stderr), describe(cp)
    assert consume(cfg.subscribers_topic) == []
