"""What the secured-broker tests share (test_11_kafka_sasl_ssl.py, test_12_kafka_ssl_client_cert.py):
one world of all three programs on a broker of secure_kafka.py.

A test module provides the module-scoped fixture `sk` (a secure_kafka.SecureKafka) and imports
this module with `from secure_support import *`; the fixture `worlds` then gives
worlds(kafka=None, timeout_ms=30000) -> SecureWorld:

  * one configuration file for all three programs: [kafka] from sk.kafka_section("app")
    (or `kafka`, for a deliberately wrong one) -- never a password, only sasl.password_file;
    [webhooks] with one partner whose URL is a real WebhookReceiver; [mailer] and [smtp]
    pointing at a real SMTPTestServer; a unique topic prefix;
  * cli(...): `noticecast -C FILE -v ...`; daemon(name): the daemon at -v, stderr to a log;
    check_output(...): a program's `-n` / `validate` run; every output, log and /metrics text
    is kept, and assert_no_secret() looks for every secret in all of them (the SCRAM
    passwords, the keystore password, each base64 line of every private key);
  * read(topic): the topic read back as the broker's super user (conftest.consume_all with
    the secured client configuration).

The daemons are started only after `noticecast topics create` (with this same file, so that it
creates whatever topics the configuration implies); a daemon that still creates its own topics
finds the others there.  Every wait is bounded and fails saying what it saw.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import consume_all, describe, parse_published, unique_prefix, write_config
from daemon_env import READY_TIMEOUT, Daemon, binary, http_get, wait_for
from mailer_support import MAILER_DEFAULTS, SMTP_DEFAULTS
from smtp_server import SMTPTestServer
from webhook_receiver import Always, WebhookReceiver
from webhooks_support import PARTNER_DEFAULTS, WEBHOOKS_DEFAULTS, make_secret, notice

__all__ = ["SecureWorld", "worlds", "secret_file", "notice", "wait_for", "describe",
           "check_all_three_work", "check_cli_refused", "check_daemons_refused", "scram_broken",
           "EX_OK", "EX_UNAVAILABLE", "DAEMONS", "SUBSCRIBER"]

EX_OK, EX_UNAVAILABLE = 0, 69
DAEMONS = ("noticecast-webhooks", "noticecast-mailer")
SUBSCRIBER = "ana.quispe@example.org"


def linked_librdkafka() -> tuple:
    """The librdkafka version the programs run with, from `noticecast -V`."""
    cp = subprocess.run([binary("noticecast"), "-V"], capture_output=True, text=True, timeout=30)
    m = re.search(r"^librdkafka (\d+)\.(\d+)\.(\d+)", cp.stdout, re.M)
    assert m, describe(cp)
    return tuple(int(x) for x in m.groups())


def scram_broken(sk) -> bool:
    """librdkafka before 2.6.1 sends a SCRAM proof that Kafka 4 rejects (librdkafka#4895)."""
    return int(sk.kafka_version.split(".")[0]) >= 4 and linked_librdkafka() < (2, 6, 1)


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


class SecureWorld:
    def __init__(self, tmp: Path, sk, kafka: dict | None = None, timeout_ms: int = 30000):
        self.tmp, self.sk = Path(tmp), sk
        self.prefix = unique_prefix()
        self.kafka = dict(kafka if kafka is not None else sk.kafka_section("app"))
        self.outputs: list = []  # (what, text) of every program run
        self.daemons: list = []
        self.rx = WebhookReceiver(name="rx").start()
        self.partner_secret = make_secret()
        self.rx.route("/pe", Always(204), secrets=[self.partner_secret])
        self.smtp = SMTPTestServer().start()
        pe = secret_file(self.tmp / "pe.secret", self.partner_secret + "\n")
        ukey = secret_file(self.tmp / "unsubscribe.secret", uuid.uuid4().hex * 2 + "\n")
        tag = uuid.uuid4().hex[:10]
        sections = {
            "webhooks": dict(WEBHOOKS_DEFAULTS, group_id=f"wh-{tag}"),
            "partner.pe": dict(PARTNER_DEFAULTS, url=self.rx.url("/pe"), secret_file=str(pe)),
            "mailer": dict(MAILER_DEFAULTS, group_id=f"ml-{tag}", listen="127.0.0.1:0",
                           public_listen="127.0.0.1:0",
                           unsubscribe_url="http://127.0.0.1:9/unsubscribe",
                           unsubscribe_secret_file=str(ukey)),
            "smtp": dict(SMTP_DEFAULTS, port=self.smtp.port),
        }
        self.cfg = write_config(self.tmp / "noticecast.conf", sk.bootstrap, prefix=self.prefix,
                                kafka=self.kafka, producer={"timeout_ms": timeout_ms}, **sections)
        self._files = 0

    # -- programs --

    def file(self, name: str, text: str) -> Path:
        self._files += 1
        path = self.tmp / f"{self._files}-{name}"
        path.write_text(text)
        return path

    def notice_file(self, notices: list) -> Path:
        return self.file("notices.ndjson", "".join(json.dumps(n) + "\n" for n in notices))

    def cli_argv(self, *args) -> list:
        return [binary("noticecast"), "-C", str(self.cfg), "-v", *map(str, args)]

    def cli(self, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        cp = subprocess.run(self.cli_argv(*args), stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, errors="replace", timeout=timeout)
        self.outputs.append((" ".join(map(str, args)), cp.stdout + cp.stderr))
        return cp

    def cli_ok(self, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        cp = self.cli(*args, timeout=timeout)
        assert cp.returncode == EX_OK, describe(cp)
        return cp

    def check_output(self, program: str) -> subprocess.CompletedProcess:
        """PROGRAM's configuration check at -v: `-n` of a daemon, `validate` of the CLI."""
        if program == "noticecast":
            argv = self.cli_argv("validate", self.notice_file([notice("news", "Check")]))
        else:
            argv = [binary(program), "-C", str(self.cfg), "-v", "-n"]
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            errors="replace", timeout=60)
        self.outputs.append((f"{program} check", cp.stdout + cp.stderr))
        return cp

    def import_subscribers(self, rows: list) -> subprocess.CompletedProcess:
        cols = ["email", "name", "lang", "categories", "regions", "frequency", "tz", "send_at"]
        path = self.tmp / f"subscribers-{uuid.uuid4().hex[:6]}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in rows:
                w.writerow([r.get(c, "") for c in cols])
        return self.cli_ok("subscribers", "import", path, timeout=180)

    def publish(self, notices: list) -> list:
        cp = self.cli_ok("publish", self.notice_file(notices))
        rows = parse_published(cp.stdout)
        assert {r["id"] for r in rows} == {n["id"] for n in notices}, describe(cp)
        return rows

    def daemon(self, name: str, *args, ready: bool = True) -> Daemon:
        d = Daemon(binary(name), self.cfg.path, self.tmp / f"{name}-{len(self.daemons) + 1}.log",
                   ["-v", *args])
        self.daemons.append(d)
        if ready:
            d.wait_ready(READY_TIMEOUT)
        return d

    def metrics_text(self, d: Daemon) -> str:
        st, text = d.get("/metrics")
        assert st == 200, f"/metrics answered {st}\n{d.tail()}"
        self.outputs.append((f"{Path(d.binary).name} /metrics", text))
        return text

    def readyz(self, d: Daemon) -> tuple:
        st, text = http_get(f"http://{d.http_addr()}/readyz")
        self.outputs.append((f"{Path(d.binary).name} /readyz", text))
        return st, text

    # -- Kafka, as the super user --

    def read(self, topic: str) -> list:
        return consume_all(self.sk.bootstrap, topic, timeout=60, conf=self.sk.client_conf())

    # -- checks --

    def logs(self) -> str:
        return "\n".join(d.tail(60) for d in self.daemons) or "(no daemon started)"

    def assert_no_secret(self, extra=()) -> int:
        """No secret in any output, log or /metrics text seen; returns how many texts."""
        texts = list(self.outputs) + [(d.log_path.name, d.log()) for d in self.daemons]
        secrets = [s for s in list(self.sk.secrets()) + list(extra) if s]
        assert secrets, "no secret to look for"
        for what, text in texts:
            for s in secrets:
                assert s not in text, f"{what} shows a secret ({s[:6]}...)"
        return len(texts)

    def close(self) -> None:
        for stop in [d.cleanup for d in self.daemons] + [self.rx.stop, self.smtp.close]:
            with contextlib.suppress(Exception):  # keep tearing down
                stop()
        print(self.logs())  # shown by pytest only when the test failed


@pytest.fixture
def worlds(tmp_path, sk):
    """worlds(kafka=None, timeout_ms=30000) -> SecureWorld on the module's secured broker."""
    made = []

    def make(**kw) -> SecureWorld:
        sub = tmp_path / f"w{len(made) + 1}"
        sub.mkdir()
        w = SecureWorld(sub, sk, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


# --- the checks both modules make ----------------------------------------------------------------


def check_all_three_work(w: SecureWorld) -> None:
    """The CLI creates the topics, imports and lists subscribers, publishes, lists the DLQ; the
    webhooks daemon delivers to the receiver and the mailer sends to the SMTP server; what was
    published is on the broker; and no output, log or /metrics text shows a secret."""
    cp = w.cli_ok("topics", "create")
    created = {ln.split("\t")[1] for ln in cp.stdout.splitlines() if "\t" in ln}
    assert set(w.cfg.all_topics) <= created, describe(cp)
    w.import_subscribers([dict(email=SUBSCRIBER, name="Ana Quispe", lang="en", frequency="immediate",
                               tz="UTC")])
    cp = w.cli_ok("subscribers", "list", "--json")
    ids = [json.loads(ln)["id"] for ln in cp.stdout.splitlines() if ln.strip()]
    assert ids == [SUBSCRIBER], describe(cp)

    wh = w.daemon("noticecast-webhooks")
    ml = w.daemon("noticecast-mailer")
    n = notice("news", "Secured broker notice")
    rows = w.publish([n])
    assert rows[0]["topic"] == w.cfg.topic("news")
    on_broker = [m.key for m in w.read(w.cfg.topic("news"))]
    assert on_broker == [n["id"]], on_broker

    w.rx.wait_for_ids("/pe", {n["id"]}, timeout=90, extra=w.logs)
    mails = w.smtp.wait_for(1, timeout=90)
    assert [m.rcpt_tos for m in mails] == [[SUBSCRIBER]], mails
    assert b"Secured broker notice" in mails[0].data

    cp = w.cli_ok("dlq", "list")
    assert not cp.stdout.strip(), describe(cp)
    # librdkafka's own debug output: its configuration dump and the SASL/TLS exchange
    cp = w.cli_ok("-v", "-X", "debug=conf,security,broker,protocol", "subscribers", "list")
    assert "sasl.mechanisms" in cp.stderr or "ssl.ca.location" in cp.stderr, describe(cp)
    for d in (wh, ml):
        assert "noticecast_" in w.metrics_text(d)
        assert w.readyz(d)[0] == 200
    for prog in ("noticecast",) + DAEMONS:
        cp = w.check_output(prog)
        assert cp.returncode == EX_OK, describe(cp)
    assert w.assert_no_secret() >= 12


def check_cli_refused(w: SecureWorld, cause: str, extra_secrets=()) -> None:
    """Each command that needs the broker fails with exit 69 within its timeout, its error
    naming CAUSE (a regular expression); run side by side, they take one timeout."""
    cmds = [("topics", "create"), ("publish", w.notice_file([notice("news", "Refused")])),
            ("subscribers", "list"), ("dlq", "list")]
    procs = [(c, subprocess.Popen(w.cli_argv(*c), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, errors="replace"))
             for c in cmds]
    for c, p in procs:
        out, err = p.communicate(timeout=120)
        cp = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        w.outputs.append((" ".join(map(str, c)), out + err))
        assert p.returncode == EX_UNAVAILABLE, describe(cp)
        last = [ln for ln in err.splitlines() if ln.startswith("noticecast: ")]
        assert last and re.search(cause, last[-1]), f"error does not name {cause!r}" + describe(cp)
    w.assert_no_secret(extra_secrets)


def check_daemons_refused(w: SecureWorld, cause: str, extra_secrets=()) -> None:
    """Both daemons log that Kafka is unreachable, naming CAUSE, report not-ready on /readyz,
    keep running, and stop on SIGTERM."""
    ds = [w.daemon(name, ready=False) for name in DAEMONS]
    for d in ds:
        d.wait_log(r'msg="kafka unreachable" error="[^"\n]*' + cause, timeout=90,
                   what=f"{Path(d.binary).name}: kafka unreachable naming {cause!r}")
    for d in ds:
        st, text = w.readyz(d)
        assert st == 503, f"/readyz answered {st} {text!r}\n{d.tail()}"
        assert d.alive(), d.tail()
        w.metrics_text(d)
    w.assert_no_secret(extra_secrets)
    for d in ds:
        d.terminate(60)
