"""All three programs against a broker whose client listener offers only SASL_SSL with
SCRAM-SHA-512 (secure_kafka.py: a throwaway CA, the broker's certificate, SCRAM users created
when the KRaft storage is formatted).  The password comes from sasl.password_file; no output,
log (-v), `-n` / validate run or /metrics text shows it.  A wrong password and an untrusted CA
are refused: the CLI exits 69 naming the cause, the daemons log it and stay not-ready."""

from __future__ import annotations

import pytest

import secure_kafka
from secure_support import *  # noqa: F401,F403


@pytest.fixture(scope="module")
def sk(tmp_path_factory):
    with secure_kafka.running(tmp_path_factory.mktemp("sasl-ssl"), "sasl_ssl") as broker:
        yield broker


def test_config_holds_no_password(sk, worlds):
    w = worlds()
    text = w.cfg.path.read_text()
    assert "sasl.password_file" in text and "security.protocol = SASL_SSL" in text
    assert sk.users["app"] not in text


def test_cli_webhooks_and_mailer_work(sk, worlds):
    if scram_broken(sk):
        # Kafka 4 with a librdkafka before 2.6.1 (Debian 12 has 2.0.2): the right password is
        # refused too; the programs must say why.
        w = worlds(timeout_ms=8000)
        check_cli_refused(w, r"librdkafka before 2\.6\.1 cannot authenticate with SCRAM")
        check_daemons_refused(w, r"librdkafka before 2\.6\.1 cannot authenticate with SCRAM")
        return
    check_all_three_work(worlds())


def _wrong_password(sk, w_tmp):
    wrong = "not-the-password-" + sk.users["app"][-6:][::-1]
    pw = secret_file(w_tmp / "wrong.password", wrong + "\n")
    return dict(sk.kafka_section("app"), **{"sasl.password_file": str(pw)}), wrong


def test_wrong_password_cli(sk, worlds, tmp_path):
    kafka, wrong = _wrong_password(sk, tmp_path)
    w = worlds(kafka=kafka, timeout_ms=8000)
    check_cli_refused(w, r"SASL authentication failed", [wrong])


def test_wrong_password_daemons(sk, worlds, tmp_path):
    kafka, wrong = _wrong_password(sk, tmp_path)
    w = worlds(kafka=kafka, timeout_ms=8000)
    check_daemons_refused(w, r"SASL authentication failed", [wrong])


def test_untrusted_ca(sk, worlds, tmp_path):
    other = secure_kafka.Pki(tmp_path / "other-ca", "some other CA")
    w = worlds(kafka=dict(sk.kafka_section("app"), **{"ssl.ca.location": str(other.ca)}),
               timeout_ms=8000)
    check_cli_refused(w, r"the broker's certificate is not trusted \(ssl\.ca\.location\)")
    check_daemons_refused(w, r"the broker's certificate is not trusted")
