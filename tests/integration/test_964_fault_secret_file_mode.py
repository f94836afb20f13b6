"""Fault: a secret file that group or others can read was used anyway (partner webhook
secrets got a warning in the log, every other secret file not even that), so a chmod 644
left signing keys, the SMTP password or the unsubscribe key readable by every local user.

Now every secret file is refused when its mode gives group or others any access
(mode & 077, as ssh does for private keys: chmod 600 or 400), with an error naming the file
and its mode, exit 78 at start; on SIGHUP the webhook daemon keeps its current partners.
Files covered: [partner.*] secret_file and client_key, [mailer] unsubscribe_secret_file,
[smtp] password_file, and the private keys librdkafka reads ([kafka] ssl.key.location,
ssl.keystore.location, sasl.kerberos.keytab).
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from config_faults import EX_CONFIG, EX_OK, check, full_config, secret_file, summary
from webhooks_support import *  # noqa: F401,F403
from webhook_receiver import Always

pytestmark = pytest.mark.faults

LOOSE = (0o644, 0o640, 0o604)


def _cases(tmp):
    """(what, program checked, section, key, file, other keys of the section); each file is
    made here, mode 0600."""
    d = tmp / "secrets"
    d.mkdir(exist_ok=True)
    cert = d / "client.crt"
    cert.write_text("(a certificate is not secret)\n")
    kafka_key = secret_file(d / "kafka.key", "-----BEGIN PRIVATE KEY-----\nkafkakeymaterial\n")
    return [
        ("partner secret_file", "noticecast-webhooks", "partner.pe", "secret_file",
         secret_file(d / "pe.secret", make_secret() + "\n"), {}),
        ("partner client_key", "noticecast-webhooks", "partner.pe", "client_key",
         secret_file(d / "client.key", "-----BEGIN PRIVATE KEY-----\nclientkeymaterial\n"),
         {"client_cert": str(cert)}),
        ("mailer unsubscribe_secret_file", "noticecast-mailer", "mailer", "unsubscribe_secret_file",
         secret_file(d / "unsubscribe.secret", "u" * 64 + "\n"), {}),
        ("smtp password_file", "noticecast-mailer", "smtp", "password_file",
         secret_file(d / "smtp.password", "smtp-s3cret-password\n"), {"username": "noticecast"}),
    ] + [("kafka ssl.key.location", prog, "kafka", "ssl.key.location", kafka_key, {})
         for prog in ("noticecast", "noticecast-webhooks", "noticecast-mailer")]


def test_loose_secret_file_refused_at_start(tmp_path, record_property):
    figures, failures = [], []
    refused = total = 0
    for i, (what, prog, section, key, f, more) in enumerate(_cases(tmp_path)):
        path = full_config(tmp_path, name=f"secret-{i}.conf", **{section: dict(more, **{key: str(f)})})
        content = f.read_text().strip().splitlines()[-1]
        os.chmod(f, 0o600)
        cp = check(prog, path, tmp_path)
        if cp.returncode != EX_OK:
            failures.append(f"{what}/{prog}: mode 0600 refused: {cp.stderr.strip()[:300]}")
        row = [f"0600={cp.returncode}"]
        for mode in LOOSE:
            os.chmod(f, mode)
            cp = check(prog, path, tmp_path)
            total += 1
            row.append(f"{mode:04o}={cp.returncode}")
            want = f"{f}: secret file is accessible by group or others (mode {mode:04o})"
            if cp.returncode == EX_CONFIG and want in cp.stderr:
                refused += 1
            else:
                failures.append(f"{what}/{prog} mode {mode:04o}: exit {cp.returncode}, "
                                f"stderr {cp.stderr.strip()[:300]!r}\n  expected {want!r}")
            assert content not in cp.stderr + cp.stdout, f"{what}: the secret is echoed"
        os.chmod(f, 0o600)
        figures.append(f"{what} ({prog}): {' '.join(row)}")
    fig = f"{refused} of {total} loose secret files refused; " + "; ".join(figures)
    print(fig)
    record_property("secret_modes", fig)
    assert not failures, "\n".join(failures)


def test_loose_secret_file_refused_on_reload(wh, record_property):
    rx = wh.receiver()
    pe = wh.partner("pe", rx.url("/pe"))
    rx.route("/pe", Always(204), secrets=pe.secrets)
    d = wh.start()
    n1 = notice("news", "Before the reload")
    wh.publish([n1])
    rx.wait_for_ids("/pe", {n1["id"]}, extra=wh.logs)

    # a new partner whose secret file is world-readable: the reload must be refused
    br = wh.partner("br", rx.url("/br"))
    rx.route("/br", Always(204), secrets=br.secrets)
    os.chmod(br.secret_file, 0o644)
    wh.write_config()
    offset = d.log_size()
    d.signal(signal.SIGHUP)
    m = d.wait_log(r"reload[^\n]*", since=offset, timeout=60, what="the reload's log line")
    reload_line = m.group(0)
    n2 = notice("news", "After the loose reload")
    wh.publish([n2])
    rx.wait_for_ids("/pe", {n2["id"]}, extra=wh.logs)
    # br would have had n2 by now had it been taken; give it the same chance as pe
    try:
        rx.wait_for_ids("/br", {n2["id"]}, timeout=5)
    except AssertionError:
        pass
    br_loose = len(rx.snapshot("/br"))

    # the same file at 0600: the next reload takes br
    os.chmod(br.secret_file, 0o600)
    d.signal(signal.SIGHUP)
    got = False
    for i in range(10):
        n = notice("press", f"After the fixed reload {i}")
        wh.publish([n])
        try:
            rx.wait_for_ids("/br", {n["id"]}, timeout=10)
            got = True
            break
        except AssertionError:
            continue
    fig = (f"reload with br.secret at 0644: log {reload_line.strip()[:400]!r}; requests to br: "
           f"{br_loose}; after chmod 600 + SIGHUP br delivered: {got}")
    print(fig)
    record_property("secret_reload", fig)
    assert br_loose == 0, "a partner with a world-readable secret was taken on reload\n" + rx.summary("/br")
    assert re.search(re.escape(str(br.secret_file)) + r".*mode 0644", reload_line), reload_line
    assert "keeping the current configuration" in reload_line, reload_line
    assert all(r.verified for r in rx.snapshot("/pe")), rx.summary("/pe")
    assert got, "br was not taken once its secret file was 0600\n" + wh.logs()
    assert d.alive() and d.terminate() == 0, d.tail()
