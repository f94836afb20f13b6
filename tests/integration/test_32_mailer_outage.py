"""SMTP outages and refusals.

test_outage_then_everything_delivered, in three phases against one daemon (four immediate
subscribers, two notices per phase = 8 messages, a short [mailer] retry_schedule):
  1. the SMTP server is down (connection refused) while the notices are published; once the
     daemon has retried for a while, the server comes back;
  2. the next 3 connections get "421" at the greeting and the next 3 messages "451" after DATA;
  3. the relay closes every session with "421" after one message (a relay shutting down).
After each phase every (subscriber, notice) message has arrived exactly once (a refused or
4xx-answered message was never stored, so a second copy would be a bug), and every job's final
delivery event is mail.sent; nothing is recorded as failed or bounced.

test_5xx_is_a_bounce_and_suppresses: the server answers "550 5.1.1" to one recipient: a
mail.bounce event (key = subscriber id, code 550, the SMTP text, the job's Message-ID) and no
retry, while the others get their message.  With bounce_suppress_after = 2, a second bounce
rewrites the subscriber record with "suppressed": true, after which that subscriber gets no
further attempt (no third bounce) while the others still get mail.
"""

import re

from mailer_support import *  # noqa: F401,F403

RETRIES = "1s, 1s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s"  # ~30 s of retrying
SUBS = ["ana@example.pe", "joao@example.com.br", "minji@example.kr", "pat@example.org"]


def notice_of(m, notices):
    hits = [n["id"] for n in notices if n["title"]["en"] in m.text]
    return hits[0] if len(hits) == 1 else None


def test_outage_then_everything_delivered(ml):
    env = ml
    env.mailer["retry_schedule"] = RETRIES
    for a in SUBS:
        env.add_subscriber(a, name=a.split("@")[0].title(), lang="en", frequency="immediate")
    d = env.start()
    srv = env.smtp
    published = []

    def check_phase(name, notices):
        want = {(a, n["id"]) for a in SUBS for n in notices}

        def pairs(inbox):
            return [(m.to, notice_of(m, notices)) for m in inbox if notice_of(m, notices)]

        env.wait_mail(lambda ib: want <= set(pairs(ib)), timeout=MAIL_TIMEOUT,
                      what=f"{name}: all {len(want)} messages")
        jobs, events = env.wait_settled(min_jobs=len(SUBS) * len(published))
        got = pairs(env.inbox())
        dups = {p for p in got if got.count(p) > 1}
        assert not dups, f"{name}: messages stored twice although the first attempt was refused: {dups}"
        final = {}
        for e in events:
            final.setdefault(e["message_id"], []).append(e)
        bad = {k: v for k, v in final.items() if [e["type"] for e in v] != ["mail.sent"]}
        assert not bad, f"{name}: jobs whose outcome is not exactly one mail.sent: {list(bad.items())[:4]}"
        return jobs, events

    # --- 1: server down ---
    srv.down()
    since = d.log_size()
    n1 = [notice("news", f"Outage notice {i}") for i in (1, 2)]
    for n in n1:
        env.publish([n])
    published += n1
    # every job was tried twice and failed (the mailer logs "retry 2 in ..." once per job)
    wait_for(lambda: len(re.findall(r"retry 2 in", d.log_since(since))) >= 8, MAIL_TIMEOUT,
             "each of the 8 jobs to fail twice while the SMTP server is down", 0.2, d.tail)
    assert srv.count() == 0
    # the retry lines name their job with keys of their own, not inside msg
    retry_lines = [ln for ln in d.log_since(since).splitlines() if "retry 2 in" in ln]
    for ln in retry_lines:
        assert re.search(r'msg="smtp: temporary failure: retry 2 in \d+ ms"', ln), ln
        assert re.search(r" subscriber=\S+ message_id=\S+ topic=\S+ partition=\d+ offset=\d+ attempt=2 ", ln), ln
    srv.up()
    jobs, events = check_phase("server down, then up", n1)
    retried = [e for e in events if e["type"] == "mail.sent" and e["attempt"] >= 2]
    assert len(retried) >= 8, f"attempt numbers after the outage: {[(e['subscriber'], e['attempt']) for e in events]}"

    # --- 2: 421 at the greeting, 451 after DATA ---
    srv.fail_connections(3)
    srv.tempfail_messages(3)
    n2 = [notice("news", f"Tempfail notice {i}") for i in (1, 2)]
    for n in n2:
        env.publish([n])
    published += n2
    check_phase("421 greetings and 451 replies", n2)
    assert srv._get("_fail_connections") == 0 and srv._get("_tempfail") == 0, \
        "the scripted 421/451 replies were not all used: the phase tested nothing"

    # --- 3: the relay closes each session after one message ---
    srv.close_after(1)
    conns = srv.connections
    n3 = [notice("news", f"Closing relay notice {i}") for i in (1, 2)]
    env.publish(n3)
    published += n3
    check_phase("relay closing sessions after one message", n3)
    assert srv.connections - conns >= 8, "each message needed a session of its own"
    srv.close_after(0)

    events = env.events()
    assert not [e for e in events if e["type"] != "mail.sent"], \
        f"non-sent outcomes: {[e for e in events if e['type'] != 'mail.sent']}"
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()


def test_5xx_is_a_bounce_and_suppresses(ml):
    env = ml
    env.mailer["bounce_suppress_after"] = 2
    good = ["good1@example.org", "good2@example.org"]
    bouncy = "no-such-user@example.org"
    for a in good + [bouncy]:
        env.add_subscriber(a, lang="en", frequency="immediate")
    env.smtp.reject(bouncy)
    d = env.start()

    def bounces():
        return [e for e in env.events() if e["type"] == "mail.bounce"]

    notices = []
    for i in (1, 2):
        n = notice("news", f"Bounce round {i}")
        env.publish([n])
        notices.append(n)
        env.wait_mail(lambda ib: all(any(m.to == a and n["title"]["en"] in m.text for m in ib) for a in good),
                      what=f"notice {i} to the good subscribers")
        wait_for(lambda: len(bounces()) >= i, MAIL_TIMEOUT, f"bounce event #{i}", 0.5,
                 lambda: f"events: {env.events()}\n{env.logs()}")
    jobs, events = env.wait_settled(min_jobs=6)
    bjobs = [j for j in jobs if j["subscriber"] == bouncy]
    b = bounces()
    assert len(b) == 2 and len(bjobs) == 2, f"bounces {b}, jobs for {bouncy}: {bjobs}"
    for e in b:
        assert e["_key"] == bouncy and e["subscriber"] == bouncy, e
        assert e["code"] == 550, e
        assert "5.1.1" in e.get("text", ""), e
        assert e["attempt"] == 1, f"a 5xx must not be retried: {e}"
        assert e["message_id"] in {j["message_id"] for j in bjobs}, e
    assert [e for e in events if e["subscriber"] == bouncy and e["type"] != "mail.bounce"] == [], \
        f"other outcomes for {bouncy}: {events}"
    assert not [m for m in env.inbox() if bouncy in m.rcpt]
    assert all(e["type"] == "mail.sent" for e in events if e["subscriber"] in good), events

    # two bounces in a row: the record is rewritten as suppressed (on the subscribers topic)
    last = []

    def suppressed():
        nonlocal last
        last = env.subscriber_records(bouncy)
        return last and last[-1] is not None and last[-1].get("suppressed") is True

    wait_for(suppressed, MAIL_TIMEOUT, f"{bouncy} suppressed on the subscribers topic", 0.5,
             lambda: f"records: {last}\n{env.logs()}")
    assert last[-1].get("bounces") == 2, last[-1]
    assert last[-1]["email"] == bouncy and last[-1]["frequency"] == "immediate", last[-1]

    # a suppressed subscriber gets no further attempt; the others still get mail
    n3 = notice("news", "After suppression")
    env.publish([n3])
    env.wait_mail(lambda ib: all(any(m.to == a and "After suppression" in m.text for m in ib) for a in good),
                  what="notice 3 to the good subscribers")
    jobs, events = env.wait_settled(min_jobs=8)
    late = [e for e in events if e["subscriber"] == bouncy and e["type"] not in ("mail.bounce", "mail.skipped")]
    assert len(bounces()) == 2 and not late, f"{bouncy} was tried again after suppression: {events}"
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()
