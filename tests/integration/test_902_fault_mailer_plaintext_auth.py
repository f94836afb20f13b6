"""Fault: credentials sent in clear to a relay that offers AUTH but no STARTTLS (issue 8, item 2).

The relay (aiosmtpd) offers AUTH PLAIN LOGIN on a plain connection and no STARTTLS, and records
every AUTH command that arrives.  The mailer has `starttls = optional`, a user and a password.

Measured on the code before the fix: the mailer sent `AUTH LOGIN` with the credentials over
the plain connection (aiosmtpd offers LOGIN first; the issue saw PLAIN), and both messages
went out.  Expected: no AUTH command ever arrives; sessions end before AUTH with a clear error
in the log; the messages are retried later (no bounce, no `mail.failed` while retries last).
Then, with `allow_plaintext_auth = true` (the explicit opt-in), the daemon logs a warning at
start, authenticates in clear, and the jobs left uncommitted by the first run are sent.
"""

import os
import re

import pytest

from mailer_support import *  # noqa: F401,F403
from smtp_server import PASSWORD, USER, SMTPTestServer

# aiosmtpd warns about the insecure server this test needs
pytestmark = [pytest.mark.faults,
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

SUBS = ["ana@example.pe", "pat@example.org"]
RETRIES = ", ".join(["1s"] * 16)


def test_no_credentials_without_tls(ml_factory, record_property):
    env = ml_factory(smtp=SMTPTestServer(auth=True))  # no tls: AUTH offered in plain text
    pw = env.tmp / "smtp.password"
    pw.write_text(PASSWORD + "\n")
    os.chmod(pw, 0o600)  # secret files readable by others are refused
    env.mailer["retry_schedule"] = RETRIES
    env.smtp_cfg.update(starttls="optional", username=USER, password_file=str(pw))
    for a in SUBS:
        env.add_subscriber(a, lang="en", frequency="immediate")
    d = env.start()
    since = d.log_size()
    env.publish([notice("news", "Credentials notice")])

    # every job tried (and refused before AUTH) at least twice
    wait_for(lambda: len(re.findall(r"retry 2 in", d.log_since(since))) >= len(SUBS) or env.smtp.auth_commands,
             MAIL_TIMEOUT, "each job to be tried twice", 0.2, d.tail)
    auth = env.smtp.auth_commands
    events = env.events()
    log = d.log_since(since)
    print(f"\nAUTH commands received over the plain connection: {auth}; messages stored: "
          f"{env.smtp.count()}; events: {[e['type'] for e in events]}")
    record_property("auth_commands_in_clear", len(auth))
    assert auth == [], f"credentials were sent without TLS: AUTH {auth}"
    assert env.smtp.count() == 0
    assert "not sending credentials without TLS" in log, d.tail()
    assert PASSWORD not in log
    assert not [e for e in events if e["type"] in ("mail.bounce", "mail.failed", "mail.sent")], events
    assert d.terminate() == 0, d.tail()

    # The explicit opt-in: warned at start, AUTH in clear, the jobs left by the first run sent.
    env.smtp_cfg["allow_plaintext_auth"] = "true"
    d2 = env.start()
    assert re.search(r"level=warn[^\n]*allow_plaintext_auth", d2.log()), d2.tail()
    env.wait_mail(lambda ib: {m.to for m in ib} >= set(SUBS), what="both messages, authenticated")
    got = env.inbox()
    assert all(m.rec.auth_user == USER and not m.rec.tls for m in got), [(m.rec.auth_user, m.rec.tls) for m in got]
    assert env.smtp.auth_commands, "no AUTH although allow_plaintext_auth = true"
    print(f"with allow_plaintext_auth = true: AUTH {env.smtp.auth_commands[:3]}..., "
          f"{len(got)} message(s) delivered")
    assert PASSWORD not in d2.log()
    assert d2.terminate() == 0, d2.tail()
