"""[kafka] KEY_file: a librdkafka property read from a secret file (sasl.password_file), and
the secret never shown: not in any program's `-n -v` output, not in librdkafka's own
`debug=conf` dump, not in the error of a refused file (mode 0644 = exit 78, naming the file)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

from conftest import EX_CONFIG, EX_OK, describe
from config_faults import PROGRAMS, full_config, secret_file
from daemon_env import binary
from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403

PASSWORD = "Quokka-Kafka-Secret-5093-zz"


def _check_v(program, config, tmp_path, *extra):
    """PROGRAM's configuration check, at -v (debug lines too)."""
    argv = [binary(program), "-C", str(config), "-v", *extra]
    if program == "noticecast":
        n = tmp_path / "check-notice.json"
        n.write_text(json.dumps({"category": "news", "title": "Configuration check"}))
        argv += ["validate", str(n)]
    else:
        argv += ["-n"]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=60)


def _kafka(pw):
    # PLAINTEXT: librdkafka accepts sasl.password but does not use it.
    return {"security.protocol": "PLAINTEXT", "sasl.password_file": str(pw)}


def test_password_file_accepted_and_never_printed(tmp_path):
    pw = secret_file(tmp_path / "kafka-password", PASSWORD + "\n")
    cfg = full_config(tmp_path, kafka=_kafka(pw))
    assert PASSWORD not in cfg.read_text()
    for prog in PROGRAMS:
        cp = _check_v(prog, cfg, tmp_path)
        assert cp.returncode == EX_OK, f"{prog}: {describe(cp)}"
        assert PASSWORD not in cp.stdout + cp.stderr, f"{prog} printed the password"


def test_password_file_through_X(tmp_path):
    pw = secret_file(tmp_path / "kafka-password", PASSWORD + "\n")
    cfg = full_config(tmp_path, kafka={"security.protocol": "PLAINTEXT"})
    for prog in PROGRAMS:
        cp = _check_v(prog, cfg, tmp_path, "-X", f"sasl.password_file={pw}")
        assert cp.returncode == EX_OK, f"{prog}: {describe(cp)}"
        assert PASSWORD not in cp.stdout + cp.stderr, f"{prog} printed the password"


def test_librdkafka_conf_dump_against_broker_hides_it(tmp_path, make_config, run_cli):
    pw = secret_file(tmp_path / "kafka-password", PASSWORD + "\n")
    cfg = make_config(tmp_path, kafka=_kafka(pw))
    # A real client against the harness broker, with librdkafka dumping its configuration.
    cp = run_cli("-v", "-v", "-X", "debug=conf", "topics", "create", config=cfg)
    assert cp.returncode == EX_OK, describe(cp)
    assert "sasl.password" in cp.stdout + cp.stderr, "no configuration dump to check"
    assert PASSWORD not in cp.stdout + cp.stderr, describe(cp)


def test_group_readable_file_is_exit_78_naming_it(tmp_path):
    pw = secret_file(tmp_path / "kafka-password", PASSWORD + "\n", mode=0o644)
    cfg = full_config(tmp_path, kafka=_kafka(pw))
    for prog in PROGRAMS:
        cp = _check_v(prog, cfg, tmp_path)
        assert cp.returncode == EX_CONFIG, f"{prog}: {describe(cp)}"
        assert str(pw) in cp.stderr and "sasl.password_file" in cp.stderr, f"{prog}: {describe(cp)}"
        assert PASSWORD not in cp.stdout + cp.stderr, f"{prog} printed the password"


def test_webhooks_reload_rereads_the_file_and_never_logs_it(wh, tmp_path):
    """-X sasl.password_file is applied again on SIGHUP: a file turned 0644 is refused, naming
    it, and the running daemon keeps delivering; no log line and no metric holds the secret."""
    pw = secret_file(tmp_path / "kafka-password", PASSWORD + "\n")
    rx = wh.receiver()
    pe = wh.partner("pe", rx.url("/pe"))
    rx.route("/pe", Always(204), secrets=pe.secrets)
    d = wh.start("-v", "-X", "security.protocol=PLAINTEXT", "-X", f"sasl.password_file={pw}")
    n1 = notice("news", "Before the reload")
    wh.publish([n1])
    rx.wait_for_ids("/pe", {n1["id"]}, extra=wh.logs)

    os.chmod(pw, 0o644)
    offset = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload: .*sasl\.password_file: " + re.escape(str(pw)), since=offset, timeout=60,
               what="the reload refusing the 0644 file")
    assert d.alive(), d.tail()
    n2 = notice("news", "After the refused reload")
    wh.publish([n2])
    rx.wait_for_ids("/pe", {n2["id"]}, extra=wh.logs)

    os.chmod(pw, 0o600)
    offset = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload: \d+ partner", since=offset, timeout=60, what="a good reload")
    st, text = d.get("/metrics")
    assert st == 200
    assert PASSWORD not in text, "a metric holds the password"
    assert PASSWORD not in d.log(), "a log line holds the password"
