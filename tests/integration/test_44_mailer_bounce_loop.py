"""The inbound mail loop end to end, with a real Postfix (a private instance on loopback,
tests/integration/postfix.py) and real Kafka:

- test_dsn_loop_suppresses: the mailer relays through Postfix; alice@inbox.test exists, the
  ghost does not.  Postfix accepts both, delivers alice's, and sends a real DSN (RFC 3464) for
  the ghost's to its VERP envelope sender bounces+<token>@bounces.test, which its pipe(8)
  transport hands to `noticecast inbound` (run as nobody).  After bounce_suppress_after such
  bounces the ghost is suppressed: `suppressions list` shows it and the next notice is not
  sent to it (Postfix sees no more mail for it) while alice still gets hers.
- test_samples_through_the_pipe (through `noticecast inbound --serve`, the pipe running the thin
  client noticecast-inbound): the hand-written reports of tests/integration/inbound/
  (Gmail-style DSN, Exchange NDR, delayed DSN, Yahoo- and Microsoft-style ARF, a mailto
  unsubscribe, an out-of-office), filled with the VERP address and unsubscribe token of real
  messages the mailer sent, are mailed to Postfix and reach `noticecast inbound` the same way:
  the right outcome for each; a forged VERP token changes nothing.
- test_kafka_down_is_retried: while `noticecast inbound` cannot reach Kafka it exits 75, Postfix
  keeps the DSN deferred; once Kafka is reachable again the queue's retry is processed: the
  bounce is recorded exactly once, nothing is lost.
"""
import os
import pwd
import re
import shutil
import subprocess
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from conftest import REPO
from inbound_support import secret_key, verp_address, VERP_RE
from mailer_support import *  # noqa: F401,F403
from mailer_support import FROM_ADDR
from smtp_server import free_port
from postfix import PrivatePostfix

SAMPLES = REPO / "tests" / "integration" / "inbound"
BOUNCE_DOMAIN = "bounces.test"
ENVELOPE = f"bounces@{BOUNCE_DOMAIN}"
UNSUB = f"unsubscribe@{BOUNCE_DOMAIN}"
FBL = f"fbl@{BOUNCE_DOMAIN}"
USERS = ["alice", "carol", "dave", "erin", "frank", "gina", "hugo"]


class Loop:
    """A mailer env relaying through a private Postfix whose bounce domain pipes to
    `noticecast inbound`."""

    def __init__(self, env, nc_bin: str, served: bool = False):
        self.env = env
        self.pf = None
        self.server = None
        pipe_user = pwd.getpwnam("nobody")
        base = Path(__import__("tempfile").mkdtemp(prefix="nc-loop-", dir="/tmp"))
        os.chmod(base, 0o755)
        # What the pipe user runs and reads: a copy of the CLI (the checkout may be in a
        # directory nobody cannot enter), the unsubscribe secret and its own configuration.
        self.bin = base / "noticecast"
        shutil.copy2(nc_bin, self.bin)
        os.chmod(self.bin, 0o755)
        self.secret = base / "unsubscribe.secret"
        shutil.copy2(env.secret_file, self.secret)
        os.chown(self.secret, pipe_user.pw_uid, pipe_user.pw_gid)
        os.chmod(self.secret, 0o600)
        self.conf = base / "inbound.conf"
        env.mailer.update(envelope_from=ENVELOPE, unsubscribe_mailto=UNSUB)
        self.write_inbound_config(env.bootstrap)
        argv = [str(self.bin), "-C", str(self.conf), "inbound", "--recipient", "${original_recipient}"]
        if served:
            # The deployment docs/inbound.md recommends: one `noticecast inbound --serve`, and
            # the pipe runs the thin client noticecast-inbound.
            client = base / "noticecast-inbound"
            shutil.copy2(Path(nc_bin).with_name("noticecast-inbound"), client)
            os.chmod(client, 0o755)
            self.sock = base / "inbound.sock"
            self.server = subprocess.Popen(
                [str(self.bin), "-C", str(self.conf), "inbound", "--serve", str(self.sock),
                 "--socket-mode", "0666"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=open(base / "serve.log", "wb"))
            wait_for(self.sock.exists, 30, "the inbound server's socket", 0.05,
                     lambda: (base / "serve.log").read_text())
            argv = [str(client), "-s", str(self.sock), "--recipient", "${original_recipient}"]
        self.pf = PrivatePostfix(
            base / "postfix", virtual_domains={"inbox.test": USERS}, bounce_domain=BOUNCE_DOMAIN,
            pipe_argv=argv, retry_seconds=(2, 4, 1)).start()
        env.smtp_cfg.update(host="127.0.0.1", port=self.pf.port)
        self.base = base

    def write_inbound_config(self, bootstrap: str) -> None:
        self.env.write_config(self.conf, mailer={"unsubscribe_secret_file": str(self.secret)})
        text = self.conf.read_text()
        if bootstrap != self.env.bootstrap:
            text = re.sub(r"(?m)^bootstrap\.servers = .*$", f"bootstrap.servers = {bootstrap}", text)
            self.conf.write_text(text)
        pu = pwd.getpwnam("nobody")
        os.chown(self.conf, pu.pw_uid, pu.pw_gid)
        os.chmod(self.conf, 0o600)

    def close(self) -> None:
        if self.pf:
            self.pf.stop()
            self.pf.cleanup()
        if self.server:
            self.server.terminate()
            assert self.server.wait(60) == 0, (self.base / "serve.log").read_text()
        shutil.rmtree(self.base, ignore_errors=True)

    def inbound_events(self) -> list:
        return [e for e in self.env.events() if e.get("source") == "inbound"]

    def maildir(self, user: str) -> list:
        return self.pf.maildir_messages(user, "inbox.test")

    def wait_maildir(self, user: str, title: str) -> list:
        def text(m) -> str:
            body = m.get_body(preferencelist=("plain",))
            return str(m["Subject"] or "") + (body.get_content() if body else "")

        def got():
            return [m for m in self.maildir(user) if title in text(m)]
        return wait_for(got, MAIL_TIMEOUT, f"{title!r} in {user}'s Maildir", 0.5,
                        lambda: self.pf.log_tail(30))

    def describe(self) -> str:
        return f"events: {self.inbound_events()}\n--- postfix log\n{self.pf.log_tail(40)}\n{self.env.logs()}"


@pytest.fixture
def loop(ml, nc_bin):
    lp = Loop(ml, nc_bin)
    yield lp
    lp.close()


@pytest.fixture
def served_loop(ml, nc_bin):
    lp = Loop(ml, nc_bin, served=True)
    yield lp
    lp.close()


def _addr(user: str) -> str:
    return f"{user}@inbox.test"


def test_dsn_loop_suppresses(loop):
    env, pf = loop.env, loop.pf
    env.mailer["bounce_suppress_after"] = 3
    ghost = _addr("ghost")
    for a in (_addr("alice"), ghost):
        env.add_subscriber(a, lang="en", frequency="immediate")
    d = env.start()
    for i in (1, 2, 3):
        title = f"Loop notice {i}"
        env.publish([notice("news", title)])
        loop.wait_maildir("alice", title)
        wait_for(lambda: len([e for e in loop.inbound_events() if e["type"] == "mail.bounce"]) >= i,
                 MAIL_TIMEOUT, f"DSN #{i} recorded by noticecast inbound", 0.5, loop.describe)
        wait_for(lambda: (env.subscribers().get(ghost) or {}).get("bounces") == i, MAIL_TIMEOUT,
                 f"bounce #{i} counted", 0.5, loop.describe)
    bounces = [e for e in loop.inbound_events() if e["type"] == "mail.bounce"]
    assert len(bounces) == 3, bounces
    for e in bounces:
        assert e["kind"] == "dsn" and e["status"].startswith("5.1."), e
        assert re.fullmatch(r"[0-9a-f]{16}", e["subscriber_ref"]) and e.get("message_ref"), e
        assert e.get("recipient", "").lower() == ghost, e
        assert e.get("diagnostic"), e
    # Postfix's own DSN went to the VERP address: its log shows the pipe delivery of each.
    log = pf.log_text()
    assert len(re.findall(r"to=<bounces\+[a-z2-7]{32}@bounces\.test>.*relay=inbound.*status=sent", log)) >= 3, log
    rec = env.subscribers()[ghost]
    assert rec["suppressed"] is True and rec["bounces"] == 3, rec
    cp = env.cli("suppressions", "list")
    assert cp.returncode == 0 and cp.stdout.split("\t")[0] == ghost, (cp.stdout, cp.stderr)
    assert "5.1." in cp.stdout, cp.stdout

    # No more mail to the ghost; alice still gets hers.
    before = len(re.findall(r"to=<ghost@inbox\.test>", pf.log_text()))
    env.publish([notice("news", "Loop notice 4")])
    loop.wait_maildir("alice", "Loop notice 4")
    env.wait_settled(min_jobs=7)
    pf.wait_queue_empty(30)
    assert len(re.findall(r"to=<ghost@inbox\.test>", pf.log_text())) == before, pf.log_tail(20)
    assert len([e for e in loop.inbound_events() if e["type"] == "mail.bounce"]) == 3
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()


def _fill(name: str, **values) -> bytes:
    text = (SAMPLES / name).read_text()
    values.setdefault("DATE", formatdate(localtime=False))
    for k, v in values.items():
        text = text.replace("${" + k + "}", v)
    assert "${" not in text, (name, re.findall(r"\$\{\w+\}", text))
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def test_samples_through_the_pipe(served_loop):
    loop = served_loop
    env, pf = loop.env, loop.pf
    env.mailer["bounce_suppress_after"] = 5
    users = ["alice", "carol", "dave", "erin", "frank", "gina"]
    for u in users:
        env.add_subscriber(_addr(u), lang="es", frequency="immediate")
    d = env.start()
    env.publish([notice("news", "Aviso para las muestras")])
    real = {}
    for u in users:
        m = loop.wait_maildir(u, "Aviso para las muestras")[0]
        verp = m["Return-Path"].strip("<>")
        assert VERP_RE.match(verp), verp
        assert verp == verp_address(secret_key(env.secret_file), ENVELOPE, _addr(u), m["Message-ID"])
        lu = m["List-Unsubscribe"]
        token = re.search(r"subject=unsubscribe%20([A-Za-z0-9_-]+)", lu).group(1)
        real[u] = dict(VERP=verp, RCPT=_addr(u), MESSAGE_ID=m["Message-ID"].strip().strip("<>"),
                       FROM=FROM_ADDR, TOKEN=token, UNSUB=UNSUB)
    subs0 = env.subscribers()

    def send(name: str, user: str, rcpt: str, **extra) -> None:
        pf.send("", rcpt, _fill(name, **dict(real[user], **extra)))

    # A forged token first: the same address with one character of the token changed.
    forged = re.sub(r"\+(.)", lambda mt: "+" + ("b" if mt.group(1) == "a" else "a"), real["frank"]["VERP"], count=1)
    send("gmail-dsn-5.1.1.eml", "frank", forged, VERP=forged)
    wait_for(lambda: [e for e in loop.inbound_events() if e["type"] == "mail.ignored"], MAIL_TIMEOUT,
             "the forged DSN recorded as ignored", 0.5, loop.describe)
    ign = [e for e in loop.inbound_events() if e["type"] == "mail.ignored"]
    assert len(ign) == 1 and "forged" in ign[0]["reason"], ign
    assert not env.subscribers()[_addr("frank")].get("bounces")

    send("yahoo-arf-abuse.eml", "carol", real["carol"]["VERP"])
    send("microsoft-arf-abuse.eml", "dave", FBL)
    send("mailto-unsubscribe.eml", "erin", UNSUB)
    send("gmail-dsn-5.1.1.eml", "frank", real["frank"]["VERP"])
    send("delayed-4.4.7.eml", "gina", real["gina"]["VERP"])
    send("out-of-office.eml", "alice", real["alice"]["VERP"])
    pf.wait_queue_empty(60)

    def settled():
        subs = env.subscribers()
        return (not {_addr("carol"), _addr("dave"), _addr("erin")} & set(subs)
                and subs.get(_addr("frank"), {}).get("bounces") == 1 and subs)
    subs = wait_for(settled, MAIL_TIMEOUT, "complaints, unsubscribe and bounce applied", 0.5, loop.describe)
    by_type = {}
    for e in loop.inbound_events():
        by_type.setdefault(e["type"], []).append(e)
    assert [e["kind"] for e in by_type["mail.complaint"]] == ["arf", "arf"], by_type
    assert {e["feedback_type"] for e in by_type["mail.complaint"]} == {"abuse"}, by_type
    assert [e["kind"] for e in by_type["mail.unsubscribed"]] == ["mailto"], by_type
    assert by_type["mail.unsubscribed"][0]["subscriber"] == _addr("erin"), by_type
    assert [(e["kind"], e["status"]) for e in by_type["mail.bounce"]] == [("dsn", "5.1.1")], by_type
    assert [e["status"] for e in by_type["mail.delayed"]] == ["4.4.7"], by_type
    reasons = sorted(e["reason"] for e in by_type["mail.ignored"])
    assert len(reasons) == 2 and any("forged" in r for r in reasons), by_type
    assert any("auto-reply" in r for r in reasons), by_type
    # The delayed DSN and the out-of-office changed nothing; alice and gina keep their records.
    for u in ("alice", "gina"):
        assert subs[_addr(u)] == subs0[_addr(u)], (u, subs[_addr(u)], subs0[_addr(u)])
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()


def test_kafka_down_is_retried(loop):
    env, pf = loop.env, loop.pf
    ghost = _addr("nobody-here")
    env.add_subscriber(ghost, lang="en", frequency="immediate")
    # noticecast inbound cannot reach Kafka: its configuration points at a closed port.
    loop.write_inbound_config(f"127.0.0.1:{free_port()}")
    d = env.start()
    env.publish([notice("news", "While Kafka is away")])
    deferred = pf.wait_log(r"relay=inbound.*status=deferred", 1, MAIL_TIMEOUT)
    assert "75" in deferred[0] or "temporary" in deferred[0].lower() or "deferred" in deferred[0], deferred
    assert not loop.inbound_events()
    assert pf.queue(), "the DSN must stay in Postfix's queue"
    # Kafka is reachable again: the next retry is processed, once.
    loop.write_inbound_config(env.bootstrap)
    pf.flush()
    wait_for(lambda: [e for e in loop.inbound_events() if e["type"] == "mail.bounce"], MAIL_TIMEOUT,
             "the retried DSN recorded", 0.5, loop.describe)
    pf.wait_queue_empty(60)
    time.sleep(1)
    b = [e for e in loop.inbound_events() if e["type"] == "mail.bounce"]
    assert len(b) == 1 and b[0]["recipient"].lower() == ghost, b
    wait_for(lambda: (env.subscribers().get(ghost) or {}).get("bounces") == 1, MAIL_TIMEOUT,
             "the bounce counted", 0.5, loop.describe)
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()
