"""Per-domain sending (issue 13): a throttling mailbox provider never delays the others.

test_deferring_domain_is_backed_off_alone (twice: a "421 4.7.0" that closes the connection, and
a "450 4.7.28" that keeps it): five immediate subscribers on each of a.test, b.test and
slow.test, two notices = 10 messages per domain.  The SMTP server answers every RCPT TO of
slow.test with the deferral.  While it does, every message to a.test and b.test arrives,
exactly once and at the first attempt, and none to slow.test; the RCPT TO commands seen for
slow.test are counted: one per session (the session ends at the deferral), and at most as many
sessions as the backoff (domain_backoff = 1s doubling to 4s) allows for the time it deferred —
far fewer than its 10 messages x 17 attempts.  The mailer logs the backoff and, once the server
stops deferring, the recovery (naming the domain, no address), and every message to slow.test
then arrives exactly once; every job ends mail.sent, nothing failed, the DLQ is empty, and
noticecast_mail_domain_deferrals_total{domain="slow.test"} counted the deferrals.

test_domain_sessions_limit: domain_limits = one.test 0 1 with sessions = 4 and batch = 3, a
relay that takes 0.1 s per message: 24 messages to one.test and 24 to many.test.  The server
counts the connections at once per domain of their first RCPT TO: never more than 1 for
one.test; every message arrives exactly once.

Nothing is timed: each wait is a bounded poll.
"""

import re
import time

import pytest

from mailer_support import *  # noqa: F401,F403

RETRIES = ", ".join(["1s"] * 16)  # 17 attempts: the test must never run out of them
DOMAINS = ["a.test", "b.test", "slow.test"]
PER_DOMAIN = 5


def backoff_sessions_bound(seconds: float, first: float = 1.0, cap: float = 4.0) -> int:
    """The most sessions the backoff lets start for a domain that defers for `seconds`: one at
    once, then one after each backoff (first, doubled, up to cap) that has passed."""
    n, t, d = 1, 0.0, first
    while t + d <= seconds:
        t += d
        n += 1
        d = min(d * 2, cap)
    return n


@pytest.mark.parametrize("reply", ["421 4.7.0 Try again later", "450 4.7.28 rate limited"])
def test_deferring_domain_is_backed_off_alone(ml, reply):
    env = ml
    env.mailer["retry_schedule"] = RETRIES
    env.smtp_cfg.update(sessions=2, batch=50, domain_limits="slow.test 0 2",
                        domain_backoff="1s", domain_backoff_max="4s")
    subs = {d: [f"reader{i}@{d}" for i in range(PER_DOMAIN)] for d in DOMAINS}
    env.import_subscribers([{"email": a, "lang": "en", "frequency": "immediate"}
                            for d in DOMAINS for a in subs[d]])
    srv = env.smtp
    srv.defer_domain("slow.test", reply)
    d = env.start()
    since = d.log_size()
    notices = [notice("news", f"Domain notice {i}") for i in (1, 2)]
    t0 = time.monotonic()
    env.publish(notices)

    def pairs(inbox, domain):
        return [(m.to, n["id"]) for m in inbox if m.to.endswith("@" + domain)
                for n in notices if n["title"]["en"] in m.text]

    fast = {(a, n["id"]) for dom in ("a.test", "b.test") for a in subs[dom] for n in notices}
    env.wait_mail(lambda ib: fast <= set(pairs(ib, "a.test") + pairs(ib, "b.test")),
                  what="all 20 messages to a.test and b.test while slow.test defers")
    # slow.test keeps deferring until it was backed off three times in a row.
    wait_for(lambda: re.search(r'domain=slow\.test .*deferrals=3 ', d.log_since(since)),
             MAIL_TIMEOUT, "slow.test backed off 3 times", 0.2, d.tail)
    assert not [m for m in env.inbox() if m.to.endswith("@slow.test")], "slow.test got mail"
    probes = srv.undefer_domain("slow.test")  # RCPT TO while it deferred, all deferred
    deferred_for = time.monotonic() - t0

    want = {(a, n["id"]) for a in subs["slow.test"] for n in notices}
    env.wait_mail(lambda ib: want <= set(pairs(ib, "slow.test")),
                  what="the 10 messages to slow.test once it accepts mail again")
    jobs, events = env.wait_settled(min_jobs=len(DOMAINS) * PER_DOMAIN * len(notices))
    inbox = env.inbox()
    print(f"\nslow.test: {probes} RCPT TO while deferring for {deferred_for:.1f} s "
          f"(backoff bound {backoff_sessions_bound(deferred_for)}); after: "
          f"{srv.rcpt_attempts('slow.test')}; a.test {srv.rcpt_attempts('a.test')}, "
          f"b.test {srv.rcpt_attempts('b.test')}; {len(inbox)} messages received")

    # Exactly once each, for every domain.
    for dom in DOMAINS:
        got = pairs(inbox, dom)
        assert sorted(got) == sorted({(a, n["id"]) for a in subs[dom] for n in notices}), \
            f"{dom}: {len(got)} messages, duplicates {[p for p in set(got) if got.count(p) > 1]}"
    assert len(inbox) == 30, f"{len(inbox)} messages received, expected 30"
    # a.test and b.test were never retried nor asked twice.
    for dom in ("a.test", "b.test"):
        assert srv.rcpt_attempts(dom) == 10, f"{dom}: {srv.rcpt_attempts(dom)} RCPT TO"
        late = [e for e in events if e["subscriber"].endswith("@" + dom) and e["attempt"] != 1]
        assert not late, f"{dom}: jobs retried although only slow.test deferred: {late[:3]}"
    # slow.test: one RCPT TO per session, sessions bounded by the backoff.
    assert 1 <= probes <= backoff_sessions_bound(deferred_for), \
        f"slow.test: {probes} RCPT TO in {deferred_for:.1f} s of deferral"
    assert probes < 10, f"slow.test was asked {probes} times for 10 messages"
    # Once it accepts: each message asked once more, no more.
    assert srv.rcpt_attempts("slow.test") == probes + 10, srv.rcpt_attempts("slow.test")
    final = {}
    for e in events:
        final.setdefault(e["message_id"], []).append(e["type"])
    bad = {k: v for k, v in final.items() if v != ["mail.sent"]}
    assert not bad, f"jobs whose outcome is not one mail.sent: {list(bad.items())[:4]}"
    assert env.dlq() == [], "jobs in the DLQ"
    # Only the messages that got the deferral themselves were charged an attempt.
    charged = sum(e["attempt"] - 1 for e in events if e["subscriber"].endswith("@slow.test"))
    assert charged <= probes, f"{charged} attempts charged to slow.test for {probes} deferrals"

    log = d.log_since(since)
    backed = [ln for ln in log.splitlines() if "domain deferred mail" in ln]
    recovered = [ln for ln in log.splitlines() if "domain accepts mail again" in ln]
    assert backed and all("domain=slow.test" in ln for ln in backed), backed
    assert len(recovered) == 1 and "domain=slow.test" in recovered[0], recovered
    assert not [ln for ln in backed + recovered if "@" in ln], "an address in the domain log lines"
    code = reply.split()[0]
    assert f"code={code} " in backed[0] and "status=4.7." in backed[0], backed[0]
    samples = d.metrics()
    assert metric_value(samples, "noticecast_mail_domain_deferrals_total",
                        domain="slow.test") == len(backed)
    assert metric_value(samples, "noticecast_mail_domain_deferrals_total", domain="other") == 0
    assert d.terminate() == 0, d.tail()


def test_domain_sessions_limit(ml):
    env = ml
    env.smtp_cfg.update(sessions=4, batch=3, domain_limits="one.test 0 1")
    subs = [f"r{i}@one.test" for i in range(12)] + [f"r{i}@many.test" for i in range(12)]
    env.import_subscribers([{"email": a, "lang": "en", "frequency": "immediate"} for a in subs])
    env.smtp.slow(0.1)
    d = env.start()
    notices = [notice("news", f"Limit notice {i}") for i in (1, 2)]
    env.publish(notices)
    want = {(a, n["id"]) for a in subs for n in notices}

    def pairs(inbox):
        return [(m.to, n["id"]) for m in inbox for n in notices if n["title"]["en"] in m.text]

    env.wait_mail(lambda ib: want <= set(pairs(ib)), what="all 48 messages")
    env.wait_settled(min_jobs=len(want))
    got = pairs(env.inbox())
    one, many = env.smtp.max_sessions("one.test"), env.smtp.max_sessions("many.test")
    print(f"\nmost sessions at once: one.test {one}, many.test {many}; "
          f"{env.smtp.connections} connections")
    assert len(got) == len(want) == 48, f"{len(got)} messages for 48 jobs"
    assert one == 1, f"one.test had {one} sessions at once (domain_limits says 1)"
    assert many >= 1
    assert d.terminate() == 0, d.tail()


def test_domain_limits_errors_name_the_line(ml):
    """A bad entry is refused at load (exit 78) with the file, the line and the key."""
    env = ml
    for key, value, words in (("domain_limits", "gmail.com 20/s 4, outlook.com 10/x 2",
                               ["entry 2", "'10/x'"]),
                              ("domain_limit_default", "5/s", ["expected RATE SESSIONS"])):
        path = env.write_config(env.tmp / f"bad-{key}.conf", smtp={key: value})
        line = next(i for i, x in enumerate(path.read_text().splitlines(), 1) if x.startswith(key))
        cp = env.run_daemon("-n", config=path)
        err = cp.stderr.decode()
        assert cp.returncode == 78, err
        assert f"{path}:{line}: smtp.{key}: " in err and all(w in err for w in words), err
