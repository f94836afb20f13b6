"""The private Postfix harness (postfix.py) is a real MTA: Debian's Postfix, run on its own
config/queue/data dirs on loopback ports, for the inbound-mail tests.

(a) virtual(8) delivers to a Maildir; (b) mail to an unknown virtual user is accepted at RCPT
time and bounced by Postfix itself as an RFC 3464 DSN to the VERP envelope sender, which the
pipe(8) transport hands to a probe program with the VERP address in its argv; (c) the probe
exiting 75 (EX_TEMPFAIL) defers the message and Postfix retries it; once the probe exits 0 a
flush delivers it, exactly once; (d) two instances run side by side; (e) the relay option
hands other domains to an SMTP server by smtp(8).  No Kafka, no noticecast binary: nothing
here needs `make`.  Every wait is bounded polling.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest
from postfix import POSTFIX, PrivatePostfix
from smtp_server import SMTPTestServer

# The pipe command: records its argv and the message, then exits with the status written in
# <dir>/exit_code (0 if absent).  Every run is appended to <dir>/attempts.
PROBE = textwrap.dedent("""\
    #!{python}
    import json, os, sys, time
    d = sys.argv[1]
    data = sys.stdin.buffer.read()
    try:
        code = int(open(os.path.join(d, "exit_code")).read())
    except OSError:
        code = 0
    with open(os.path.join(d, "attempts"), "a") as f:
        f.write(json.dumps({{"argv": sys.argv, "exit": code, "uid": os.getuid()}}) + "\\n")
    if code == 0:
        n = "%d-%d" % (time.time_ns(), os.getpid())
        with open(os.path.join(d, n + ".eml"), "wb") as f:
            f.write(data)
        with open(os.path.join(d, n + ".json"), "w") as f:
            json.dump({{"argv": sys.argv, "uid": os.getuid()}}, f)
    sys.exit(code)
    """)


class Probe:
    def __init__(self, base: Path):
        self.script = base / "probe.py"
        # the system's python: the pipe user cannot reach root's pyenv (sys.executable)
        self.script.write_text(PROBE.format(python=shutil.which("python3", path="/usr/bin:/bin")))
        os.chmod(self.script, 0o755)
        self.dir = base / "pipe"  # PrivatePostfix makes it, owned by the pipe user

    def argv(self) -> list[str]:
        return [str(self.script), str(self.dir), "${original_recipient}"]

    def set_exit(self, code: int) -> None:
        (self.dir / "exit_code").write_text(str(code))

    def attempts(self) -> list[dict]:
        try:
            return [json.loads(line) for line in (self.dir / "attempts").read_text().splitlines()]
        except OSError:
            return []

    def delivered(self) -> list[tuple[dict, bytes]]:
        out = []
        for j in sorted(self.dir.glob("*.json")):
            out.append((json.loads(j.read_text()), j.with_suffix(".eml").read_bytes()))
        return out


@pytest.fixture
def make_postfix():
    """make_postfix(**kwargs) -> (PrivatePostfix started, Probe); all stopped (by their
    master's pid if `postfix stop` fails) and removed at the end, also on failure."""
    if not os.access(POSTFIX, os.X_OK):
        pytest.fail(f"no {POSTFIX}: Debian's postfix is needed (deploy/local/install-deps.sh)")
    if os.getuid() != 0:
        pytest.fail("a private Postfix instance needs root (postfix -c DIR start)")
    made: list[PrivatePostfix] = []
    bases: list[Path] = []

    def make(**kwargs):
        base = Path(tempfile.mkdtemp(prefix="nc-postfix-", dir="/tmp"))
        bases.append(base)
        os.chmod(base, 0o755)
        probe = Probe(base)
        kwargs.setdefault("bounce_domain", "bounces.test")
        kwargs.setdefault("pipe_argv", probe.argv())
        pf = PrivatePostfix(base, **kwargs)
        made.append(pf)
        pf.start()
        return pf, probe

    yield make
    for pf in made:
        pf.stop()
    for base in bases:
        shutil.rmtree(base, ignore_errors=True)


def test_virtual_user_gets_maildir_delivery(make_postfix):
    pf, _ = make_postfix(virtual_domains={"inbox.test": ["alice", "bob"]})
    assert pf.send("sender@example.test", "alice@inbox.test",
                   "From: sender@example.test\r\nSubject: hello alice\r\n"
                   "Message-ID: <a1@example.test>\r\n\r\nbody\r\n") == {}
    msgs = pf.wait_for(lambda: pf.maildir_messages("alice"), 20, what="alice's Maildir")
    assert [m["Message-ID"] for m in msgs] == ["<a1@example.test>"]
    assert pf.maildir_messages("bob") == []
    pf.wait_queue_empty(10)
    new = list((pf.mail_dir / "inbox.test" / "alice" / "new").iterdir())
    assert len(new) == 1 and new[0].stat().st_uid == 65534  # virtual_uid_maps: nobody
    assert "to=<alice@inbox.test>, relay=virtual" in pf.log_text()


def test_unknown_virtual_user_bounces_as_dsn_through_pipe(make_postfix):
    pf, probe = make_postfix(virtual_domains={"inbox.test": ["alice"]})
    original = ("From: News <news@example.test>\r\nTo: ghost@inbox.test\r\n"
                "Subject: the weekly notice\r\nMessage-ID: <orig-42@example.test>\r\n"
                "X-Notice-Id: n-42\r\n\r\nHello.\r\n")
    # accepted at RCPT time (smtpd_reject_unlisted_recipient = no): no SMTP-time refusal
    assert pf.send("bounces+abc@bounces.test", "ghost@inbox.test", original) == {}
    got = pf.wait_for(probe.delivered, 20, what="the DSN at the pipe probe")
    assert len(got) == 1
    meta, raw = got[0]
    # ${original_recipient}: the VERP address, one recipient per run, run as nobody
    assert meta["argv"][2:] == ["bounces+abc@bounces.test"] and meta["uid"] == 65534
    dsn = email.message_from_bytes(raw, policy=email.policy.default)
    assert dsn["Return-Path"] == "<>"  # flags R, null_sender= (empty)
    assert dsn["Delivered-To"] == "bounces+abc@bounces.test"  # flag D
    assert dsn["To"] == "bounces+abc@bounces.test"
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = list(dsn.iter_parts())
    types = [p.get_content_type() for p in parts]
    assert "message/delivery-status" in types
    status = parts[types.index("message/delivery-status")]
    # message/delivery-status: per-message fields, then one block per recipient
    blocks = [dict(b.items()) for b in status.get_payload()]
    rcpt = next(b for b in blocks if "Final-Recipient" in b)
    assert rcpt["Final-Recipient"].split(";")[1].strip() == "ghost@inbox.test"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"].startswith("5.")
    # the original message (or its headers) is returned
    returned = [p for p in parts
                if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")]
    assert returned
    text = returned[0].as_string()
    assert "Message-ID: <orig-42@example.test>" in text and "X-Notice-Id: n-42" in text
    log = pf.log_text()
    assert "to=<ghost@inbox.test>" in log and "status=bounced" in log
    assert "sender non-delivery notification" in log
    pf.wait_queue_empty(10)


def test_pipe_tempfail_defers_then_delivers_after_flush(make_postfix):
    pf, probe = make_postfix(retry_seconds=(2, 4, 1))
    probe.set_exit(75)
    msg = "From: MAILER-DAEMON@example.test\r\nSubject: bounce\r\nMessage-ID: <t75@x>\r\n\r\nx\r\n"
    assert pf.send("", "bounces+t75@bounces.test", msg) == {}
    pf.wait_log(r"to=<bounces\+t75@bounces\.test>, relay=inbound.*status=deferred", 1, 20)

    def deferred():
        q = pf.queue()
        return q if q and q[0]["queue_name"] == "deferred" else None

    q = pf.wait_for(deferred, 20, what="the message in the deferred queue")
    assert len(q) == 1 and q[0]["recipients"][0]["address"] == "bounces+t75@bounces.test"
    assert "temporary failure" in q[0]["recipients"][0].get("delay_reason", "")
    # Postfix retries by itself (minimal_backoff_time 2 s): a second run, still exit 75
    pf.wait_for(lambda: len(probe.attempts()) >= 2, 30, what="the queue manager's retry")
    assert probe.delivered() == [] and len(pf.queue()) == 1

    probe.set_exit(0)
    pf.flush()
    pf.wait_queue_empty(20)
    got = probe.delivered()
    assert len(got) == 1  # nothing lost, nothing twice
    assert b"Message-ID: <t75@x>" in got[0][1]
    assert got[0][0]["argv"][2:] == ["bounces+t75@bounces.test"]
    assert all(a["exit"] == 75 for a in probe.attempts()[:-1])
    assert pf.wait_log(r"to=<bounces\+t75@bounces\.test>, relay=inbound.*status=sent", 1, 5)


def test_two_instances_run_side_by_side(make_postfix):
    a, probe_a = make_postfix(virtual_domains={"inbox.test": ["alice"]})
    b, probe_b = make_postfix(virtual_domains={"inbox.test": ["alice"]})
    assert a.port != b.port and a.queue_dir != b.queue_dir
    pid_a, pid_b = a.master_pid(), b.master_pid()
    assert pid_a and pid_b and pid_a != pid_b
    a.send("s@example.test", "alice@inbox.test", "Subject: to A\r\n\r\nA\r\n")
    b.send("s@example.test", "alice@inbox.test", "Subject: to B\r\n\r\nB\r\n")
    b.send("s@example.test", "bounces+b@bounces.test", "Subject: pipe B\r\n\r\nB\r\n")
    a.wait_for(lambda: a.maildir_messages("alice"), 20, what="A's delivery")
    b.wait_for(lambda: b.maildir_messages("alice"), 20, what="B's delivery")
    b.wait_for(probe_b.delivered, 20, what="B's pipe delivery")
    assert [m["Subject"] for m in a.maildir_messages("alice")] == ["to A"]
    assert [m["Subject"] for m in b.maildir_messages("alice")] == ["to B"]
    assert probe_a.delivered() == []
    # each logs only its own (syslog_name, maillog_file of its own)
    assert "Subject: to B" not in a.log_text() and b.name not in a.log_text()
    # stopping A leaves B running
    a.stop()
    assert a.master_pid() is None and b.master_pid() == pid_b
    b.send("s@example.test", "alice@inbox.test", "Subject: B again\r\n\r\nB\r\n")
    b.wait_for(lambda: len(b.maildir_messages("alice")) == 2, 20, what="B's second delivery")


def test_relay_hands_other_domains_to_smtp_server(make_postfix):
    with SMTPTestServer() as sink:
        pf, _ = make_postfix(relay=("127.0.0.1", sink.port))
        pf.send("news@example.test", "reader@elsewhere.test", "Subject: relayed\r\n\r\nhi\r\n")
        got = sink.wait_for(1)
        assert got[0].rcpt_tos == ["reader@elsewhere.test"]
        assert b"Subject: relayed" in got[0].data
        pf.wait_queue_empty(10)
