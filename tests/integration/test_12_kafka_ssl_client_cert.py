"""All three programs against a broker whose client listener offers only SSL and requires a
client certificate signed by its CA (secure_kafka.py; ssl.principal.mapping.rules make
CN=app User:app).  No output, log (-v), `-n` / validate run or /metrics text shows a line of a
private key.  A missing client certificate, one from another CA and an untrusted broker CA are
refused: the CLI exits 69 naming the cause, the daemons log it and stay not-ready."""

from __future__ import annotations

import pytest

import secure_kafka
from secure_support import *  # noqa: F401,F403


@pytest.fixture(scope="module")
def sk(tmp_path_factory):
    with secure_kafka.running(tmp_path_factory.mktemp("ssl"), "ssl") as broker:
        yield broker


def test_cli_webhooks_and_mailer_work(worlds):
    check_all_three_work(worlds())


def _without_client_cert(sk) -> dict:
    kafka = sk.kafka_section("app")
    for k in ("ssl.certificate.location", "ssl.key.location"):
        kafka.pop(k)
    return kafka


def test_missing_client_cert_cli(sk, worlds):
    w = worlds(kafka=_without_client_cert(sk), timeout_ms=8000)
    check_cli_refused(w, r"the broker refused the client certificate")


def test_missing_client_cert_daemons(sk, worlds):
    w = worlds(kafka=_without_client_cert(sk), timeout_ms=8000)
    check_daemons_refused(w, r"the broker refused the client certificate")


def test_client_cert_of_another_ca(sk, worlds, tmp_path):
    rogue = secure_kafka.Pki(tmp_path / "rogue-ca", "some other CA").issue("app")
    kafka = dict(sk.kafka_section("app"), **{"ssl.certificate.location": str(rogue.cert),
                                             "ssl.key.location": str(rogue.key)})
    w = worlds(kafka=kafka, timeout_ms=8000)
    check_cli_refused(w, r"the broker refused the client certificate",
                      secure_kafka.key_lines(rogue.key))


def test_untrusted_broker_ca(sk, worlds, tmp_path):
    other = secure_kafka.Pki(tmp_path / "other-ca", "some other CA")
    w = worlds(kafka=dict(sk.kafka_section("app"), **{"ssl.ca.location": str(other.ca)}),
               timeout_ms=8000)
    check_cli_refused(w, r"the broker's certificate is not trusted \(ssl\.ca\.location\)")
