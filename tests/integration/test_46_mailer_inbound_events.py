"""The mailer's side of the inbound mail loop, against real Kafka and the test SMTP server:

- every message goes out with its own VERP envelope sender, bounces+<token>@domain, the token
  naming the subscriber and the message (checked against the format computed here apart);
- the events `noticecast inbound` writes (here produced as it writes them) are applied by the
  mailer: a hard bounce is counted once per message, bounce_suppress_after of them suppress
  the subscriber (no more mail), `noticecast suppressions list` shows it and `remove` ends it;
- a complaint removes the subscriber at once; a mailto unsubscribe with the token of an earlier
  subscription changes nothing, with the current one it removes; a reference that names nobody
  changes nothing.

The real loop through Postfix and `noticecast inbound` is test_44."""
import json

from inbound_support import inbound_event, message_ref, secret_key, subscriber_ref, verp_address, VERP_RE
from mailer_support import *  # noqa: F401,F403


def _send(env, event: tuple, key: str | None = None) -> None:
    value, headers = event
    env.produce_raw(env.deliveries_topic, value, key=key, headers=headers)


def test_verp_bounces_suppress_and_unsuppress(ml):
    env = ml
    env.mailer["bounce_suppress_after"] = 3
    env.mailer["envelope_from"] = "bounces@bounces.example.gov"
    bouncy, good = "gone@example.org", "here@example.org"
    for a in (bouncy, good):
        env.add_subscriber(a, lang="en", frequency="immediate")
    d = env.start()
    key = secret_key(env.secret_file)

    def notice_round(title: str, to: list) -> list:
        env.publish([notice("news", title)])
        env.wait_mail(lambda ib: all(any(m.to == a and title in m.text for m in ib) for a in to),
                      what=f"{title!r} to {to}")
        return [m for m in env.inbox() if title in m.text]

    # 1. The envelope sender of each message is its own VERP address, as computed here.
    mails = notice_round("Round 1", [bouncy, good])
    senders = set()
    for m in mails:
        rcpt = m.rcpt[0]
        want = verp_address(key, "bounces@bounces.example.gov", rcpt, m.message_id)
        assert m.rec.mail_from == want, (m.rec.mail_from, want)
        assert VERP_RE.match(m.rec.mail_from) and len(m.rec.mail_from.split("@")[0]) <= 64
        senders.add(m.rec.mail_from)
    assert len(senders) == 2, senders

    # 2. DSNs come back (as noticecast inbound records them): counted once per message.
    ref = subscriber_ref(key, bouncy)
    mids = [m.message_id for m in mails if m.to == bouncy]
    for _ in range(2):  # the same DSN twice: one bounce
        _send(env, inbound_event(
            "mail.bounce", "dsn", subscriber_ref=ref, message_ref=message_ref(mids[0]),
            status="5.1.1", diagnostic="smtp; 550 5.1.1 user unknown"), key=f"ref:{ref}")
    wait_for(lambda: (env.subscribers().get(bouncy) or {}).get("bounces") == 1, MAIL_TIMEOUT,
             "the first bounce counted", 0.5, lambda: env.logs())
    for i in (2, 3):
        mails = notice_round(f"Round {i}", [bouncy, good])
        mid = [m.message_id for m in mails if m.to == bouncy][0]
        _send(env, inbound_event(
            "mail.bounce", "dsn", subscriber_ref=ref, message_ref=message_ref(mid), status="5.1.1",
            diagnostic=f"smtp; 550 5.1.1 user unknown (round {i})"), key=f"ref:{ref}")
        wait_for(lambda: (env.subscribers().get(bouncy) or {}).get("bounces") == i, MAIL_TIMEOUT,
                 f"bounce {i} counted", 0.5, lambda: f"{env.subscribers().get(bouncy)}\n{env.logs()}")
    rec = env.subscribers()[bouncy]
    assert rec.get("suppressed") is True and rec["bounces"] == 3, rec
    assert "round 3" in rec.get("bounce_reason", "") and rec.get("bounced_at"), rec
    assert rec["email"] == bouncy and rec["frequency"] == "immediate", rec

    # 3. The admin sees it; it is no longer mailed.
    cp = env.cli("suppressions", "list")
    assert cp.returncode == 0, cp.stderr
    rows = [r.split("\t") for r in cp.stdout.splitlines()]
    assert [r[0] for r in rows] == [bouncy] and rows[0][1] == "3" and "5.1.1" in rows[0][3], cp.stdout
    cp = env.cli("suppressions", "list", "--json")
    assert [json.loads(x)["email"] for x in cp.stdout.splitlines()] == [bouncy], cp.stdout
    notice_round("Round 4", [good])
    env.wait_settled(min_jobs=7)  # 3 rounds of 2, then only the one not suppressed
    assert not [m for m in env.inbox() if "Round 4" in m.text and m.to == bouncy]

    # 4. remove ends it: the next notice reaches the address again, with its old links.
    gen = rec["generation"]
    cp = env.cli("suppressions", "remove", "--email", bouncy.upper())
    assert cp.returncode == 0 and cp.stdout.strip() == f"unsuppressed\t{bouncy}", (cp.stdout, cp.stderr)
    rec = env.subscribers()[bouncy]
    assert not rec.get("suppressed") and not rec.get("bounces") and rec["generation"] == gen, rec
    cp = env.cli("suppressions", "list")
    assert cp.returncode == 0 and cp.stdout == "", cp.stdout
    cp = env.cli("suppressions", "remove", "--email", "nobody@example.org")
    assert cp.returncode == 65 and "nobody@example.org" in cp.stderr, cp.stderr
    notice_round("Round 5", [bouncy, good])
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()


def test_complaint_and_mailto_unsubscribe(ml):
    env = ml
    a, b, c = "complains@example.org", "mailto@example.org", "stays@example.org"
    for x in (a, b, c):
        env.add_subscriber(x, lang="en", frequency="immediate")
    d = env.start()
    key = secret_key(env.secret_file)
    subs = env.subscribers()

    # A reference that names nobody, and an unsubscribe with an earlier subscription's
    # generation: nothing changes.
    _send(env, inbound_event(
        "mail.complaint", "arf", subscriber_ref="0123456789abcdef", feedback_type="abuse"))
    _send(env, inbound_event(
        "mail.unsubscribed", "mailto", subscriber=b, generation="00000000000000aa"), key=b)
    # A complaint about a (the Yahoo-style ARF names the subscriber by its VERP reference).
    _send(env, inbound_event(
        "mail.complaint", "arf", subscriber_ref=subscriber_ref(key, a), feedback_type="abuse"))
    wait_for(lambda: a not in env.subscribers(), MAIL_TIMEOUT, "the complainer removed", 0.5,
             lambda: env.logs())
    assert env.subscriber_records(a)[-1] is None
    now = env.subscribers()
    assert now[b] == subs[b] and now[c] == subs[c], (now, subs)
    # The current generation: removed.
    _send(env, inbound_event(
        "mail.unsubscribed", "mailto", subscriber=b, generation=subs[b]["generation"]), key=b)
    wait_for(lambda: b not in env.subscribers(), MAIL_TIMEOUT, "the mailto unsubscribe applied", 0.5,
             lambda: env.logs())
    assert list(env.subscribers()) == [c]
    # Only c gets the next notice.
    env.publish([notice("news", "After the complaint")])
    env.wait_mail(lambda ib: any(m.to == c and "After the complaint" in m.text for m in ib),
                  what="the notice to the one left")
    env.wait_settled(min_jobs=1)
    assert [m.to for m in env.inbox() if "After the complaint" in m.text] == [c]
    metrics = http_request(env.base_url + "/metrics")[1]
    for line in ('type="complaint",action="removed"', 'type="complaint",action="unknown_subscriber"',
                 'type="unsubscribed",action="stale"', 'type="unsubscribed",action="removed"'):
        assert any(line in x and x.rstrip().endswith(" 1") for x in metrics.splitlines()
                   if x.startswith("noticecast_mail_inbound_total")), (line, metrics)
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()
