"""Global options, usage and config errors, exit codes."""

import json
import re

from conftest import (EX_CONFIG, EX_DATAERR, EX_OK, EX_USAGE, describe, expect_rc, free_port,
                      parse_published)


def test_help_exits_0_with_usage_on_stdout(run_cli):
    cp = expect_rc(run_cli("-h"), EX_OK)
    assert re.search(r"usage", cp.stdout, re.I), describe(cp)
    for sub in ("publish", "validate", "withdraw", "subscribers", "topics"):
        assert sub in cp.stdout


def test_version_mentions_librdkafka(run_cli):
    cp = expect_rc(run_cli("-V"), EX_OK)
    assert "noticecast" in cp.stdout.lower()
    assert "librdkafka" in cp.stdout.lower(), describe(cp)


def test_unknown_subcommand_is_usage_error(cfg, run_cli):
    cp = expect_rc(run_cli("frobnicate", config=cfg), EX_USAGE)
    assert cp.stderr.strip()


def test_no_subcommand_is_usage_error(cfg, run_cli):
    expect_rc(run_cli(config=cfg), EX_USAGE)


def test_bad_flag_is_usage_error(cfg, tmp_path, run_cli):
    expect_rc(run_cli("--no-such-flag", "validate", config=cfg), EX_USAGE)
    expect_rc(run_cli("publish", "--no-such-flag", config=cfg), EX_USAGE)
    expect_rc(run_cli("publish", "--priority", "urgent", "--title", "t", "--body", "b",
                      "--category", "news", "--bogus", config=cfg), EX_USAGE)


def test_missing_config_file_is_config_error(tmp_path, run_cli):
    cp = expect_rc(run_cli("topics", "create", config=tmp_path / "nope.conf"), EX_CONFIG)
    assert "nope.conf" in cp.stderr


def test_unknown_config_key_names_file_and_line(tmp_path, make_config, run_cli):
    cfg = make_config(tmp_path, name="bad.conf", noticecast={"colour_scheme": "blue"})
    lines = cfg.path.read_text().splitlines()
    lineno = next(i + 1 for i, ln in enumerate(lines) if ln.startswith("colour_scheme"))
    cp = expect_rc(run_cli("topics", "create", config=cfg), EX_CONFIG)
    assert re.search(rf"bad\.conf:{lineno}:", cp.stderr), describe(cp)


def test_bad_librdkafka_property_is_config_error(tmp_path, make_config, run_cli):
    cfg = make_config(tmp_path, kafka={"no.such.librdkafka.property": "1"})
    cp = expect_rc(run_cli("topics", "create", config=cfg), EX_CONFIG)
    assert "no.such.librdkafka.property" in cp.stderr, describe(cp)


def test_global_options_after_subcommand(cfg, tmp_path, run_cli):
    f = tmp_path / "n.json"
    f.write_text(json.dumps({"category": "news", "title": "t"}))
    expect_rc(run_cli("validate", f, "-C", cfg.path), EX_OK)


def test_b_overrides_config_bootstrap(tmp_path, make_config, topics, run_cli, consume, bootstrap):
    dead = f"127.0.0.1:{free_port()}"
    cfg = topics(make_config(tmp_path, bootstrap_servers=dead, producer={"timeout_ms": 5000}),
                 bootstrap_servers=bootstrap)
    cp = expect_rc(run_cli("-b", bootstrap, "publish", "--title", "t", "--body", "b", "--category", "news",
                           config=cfg), EX_OK)
    rows = parse_published(cp.stdout)
    assert [m.key for m in consume(cfg.topic("news"))] == [rows[0]["id"]]


def test_X_property_reaches_librdkafka(cfg, run_cli):
    # an invalid value for a real property must be rejected as a config error
    cp = run_cli("-X", "acks=maybe", "topics", "create", config=cfg)
    assert cp.returncode == EX_CONFIG, describe(cp)
    assert "acks" in cp.stderr


def test_validate_missing_input_file(cfg, tmp_path, run_cli):
    cp = run_cli("validate", tmp_path / "absent.json", config=cfg)
    assert cp.returncode in (EX_DATAERR, 66), describe(cp)  # 66 = EX_NOINPUT
    assert "absent.json" in cp.stderr
