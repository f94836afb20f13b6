"""kill -9 while a daily digest is being sent: every subscriber still gets it, duplicates carry
the same Message-ID.

1,000 daily subscribers (one `noticecast subscribers import`), all with the same send time;
one notice in the window.  The daemon runs with --clock-offset so that its planner's clock is
already in the digest minute when it starts (it plans the current minute at a first start);
the notice was published before the window's end.  The SMTP side is one session of 50
messages at a time with rate_limit = 100 messages/s, so sending takes a while and the kills
land mid-send: the daemon is killed with SIGKILL once 100, 400 and 700 messages have arrived,
and restarted (same clock offset) each time.

At the end: exactly 1,000 jobs were planned (planning happened once, across all restarts),
every subscriber received the digest at least once, every copy sent to a subscriber has the
same Message-ID (the job's), and every job has a mail.sent event.  The number of duplicates is
printed and recorded (how many depends on when the offsets were last committed before each
kill, so it is reported, not asserted).

test_kill_9_repeats_only_what_was_in_flight makes "duplicates are limited to what was in
flight" measurable: one jobs partition, rate_limit = 20 messages/s, one kill -9 once 100 of 200
digests have arrived.  At 20 messages/s, what may legitimately be repeated after the kill is
what was sent but not yet recorded/committed: a session's worth of messages plus the commit
interval — a handful.  The test allows 30 (1.5 s of sending); a daemon that commits only far
behind what it has sent repeats many more.
"""

import time

from mailer_support import *  # noqa: F401,F403

N = 1000
KILL_AT = (100, 400, 700)
LANGS = ["en", "es", "pt", "ko"]


def test_kill_9_during_digest_loses_nothing(ml, record_property):
    env = ml
    env.smtp_cfg.update(sessions=1, batch=50, rate_limit=100)
    M = int(time.time() // 60) + 10  # the digest minute (the planner's clock gets there)
    send_at = local_hhmm(M, "UTC")
    subs = [f"sub{i:04d}@example.org" for i in range(N)]
    env.import_subscribers([{"email": a, "name": f"Subscriber {i}", "lang": LANGS[i % 4],
                             "frequency": "daily", "tz": "UTC", "send_at": send_at}
                            for i, a in enumerate(subs)])
    n = notice("news", {"en": "Daily bulletin", "es": "Boletín diario", "pt": "Boletim diário",
                        "ko": "일일 소식"})
    env.publish([n])
    time.sleep(2)
    # planner clock at start = M:00 + 1 s: the window [M - 24 h, M) ends 1 s before now (real),
    # after the notice was published
    offset = M * 60 + 1 - time.time()
    print(f"digest minute {minute_iso(M)} (send_at {send_at} UTC), clock offset {offset:.1f} s")
    srv = env.smtp
    d = env.start(*FAST_REJOIN, clock_offset=offset)

    def delivered():
        return len({a for m in env.inbox() for a in m.rcpt})

    def status():
        return f"{srv.count()} messages, {delivered()} distinct recipients of {N}\n{env.logs(15)}"

    kills = []
    for threshold in KILL_AT:
        wait_for(lambda: srv.count() >= threshold, 240,
                 f"{threshold} messages before kill -9 #{len(kills) + 1}", 0.005, status)
        d.kill9()
        kills.append((srv.count(), delivered()))
        assert kills[-1][1] < N, f"every digest was sent before kill -9 #{len(kills)}: nothing was tested"
        # not waiting for /readyz: the next kill comes at the next threshold
        d = env.start(*FAST_REJOIN, clock_offset=offset, ready=False)

    env.wait_mail(lambda ib: len({a for m in ib for a in m.rcpt}) >= N, timeout=300,
                  what=f"the digest to all {N} subscribers", interval=0.5)
    jobs, events = env.wait_settled(min_jobs=N, timeout=120)

    # planning happened once: one digest job per subscriber, whatever the restarts
    by_sub = {}
    for j in jobs:
        by_sub.setdefault(j["subscriber"], []).append(j)
    twice = {k: v for k, v in by_sub.items() if len(v) != 1}
    assert not twice, f"{len(twice)} subscriber(s) with several digest jobs: {list(twice.items())[:3]}"
    assert set(by_sub) == set(subs) and len(jobs) == N, f"{len(jobs)} jobs for {len(by_sub)} subscribers"
    assert all(j["type"] == "digest" and j["notices"] == [n["id"]] for j in jobs), jobs[:3]

    copies = {}
    for m in env.inbox():
        assert len(m.rcpt) == 1, m.describe()
        copies.setdefault(m.to, []).append(m)
    missing = set(subs) - set(copies)
    assert not missing, f"{len(missing)} subscriber(s) never got the digest: {sorted(missing)[:10]}"
    problems = []
    for a, ms in copies.items():
        ids = {m.message_id for m in ms}
        if ids != {"<" + by_sub[a][0]["message_id"] + ">"}:
            problems.append(f"{a}: Message-IDs {ids}, job {by_sub[a][0]['message_id']}")
        if not all(("Daily bulletin" in m.subject or "Boletín diario" in m.subject
                    or "Boletim diário" in m.subject or "일일 소식" in m.subject) for m in ms):
            problems.append(f"{a}: subjects {[m.subject for m in ms]}")
    assert not problems, f"{len(problems)} problem(s): {problems[:10]}"
    sent = {e["message_id"] for e in events if e["type"] == "mail.sent"}
    assert {j["message_id"] for j in jobs} <= sent, "jobs without a mail.sent event"

    total = sum(len(v) for v in copies.values())
    duplicates = total - N
    dup_subs = sum(1 for v in copies.values() if len(v) > 1)
    print(f"\nkill -9 at (messages, distinct recipients): {kills}")
    print(f"messages received: {total} for {N} subscribers -> {duplicates} duplicate(s) "
          f"({dup_subs} subscriber(s) got the digest more than once), all with the same Message-ID")
    record_property("duplicates", duplicates)
    record_property("kills", str(kills))
    assert d.terminate() == 0, d.tail()


def test_kill_9_repeats_only_what_was_in_flight(ml_factory, record_property):
    env = ml_factory(partitions=1)
    env.smtp_cfg.update(sessions=1, batch=50, rate_limit=20)
    n_subs, kill_at, allowed = 200, 100, 30
    M = int(time.time() // 60) + 10
    subs = [f"reader{i:03d}@example.org" for i in range(n_subs)]
    env.import_subscribers([{"email": a, "frequency": "daily", "tz": "UTC",
                             "send_at": local_hhmm(M, "UTC")} for a in subs])
    env.publish([notice("news", "Evening bulletin")])
    time.sleep(2)
    offset = M * 60 + 1 - time.time()
    srv = env.smtp
    d = env.start(*FAST_REJOIN, clock_offset=offset)
    wait_for(lambda: srv.count() >= kill_at, 120, f"{kill_at} messages before kill -9", 0.005,
             lambda: f"{srv.count()} messages\n{env.logs(15)}")
    d.kill9()
    at_kill = srv.count()
    d = env.start(*FAST_REJOIN, clock_offset=offset, ready=False)
    env.wait_mail(lambda ib: len({a for m in ib for a in m.rcpt}) >= n_subs, timeout=180,
                  what=f"the digest to all {n_subs} subscribers", interval=0.5)
    env.wait_settled(min_jobs=n_subs)
    total = srv.count()
    duplicates = total - n_subs
    # the order in which the first run sent the jobs (offsets on the single jobs partition)
    pos = {m.json()["message_id"]: m.offset for m in env.messages(env.jobs_topic)}
    first_run = [pos.get(m.bare_id) for m in env.inbox()[:at_kill]]
    print(f"\nkill -9 after {at_kill} messages; {total} received for {n_subs} subscribers -> "
          f"{duplicates} duplicate(s); job offsets in the order the first run sent them: "
          f"{first_run[:25]} ... {first_run[-10:]}")
    record_property("duplicates", duplicates)
    assert duplicates <= allowed, (
        f"kill -9 after {at_kill} messages repeated {duplicates} of them (allowed {allowed}: what "
        f"was in flight at 20 messages/s).  Job offsets in the order the first run sent them "
        f"(one partition): {first_run[:30]} ... {first_run[-15:]}\n{env.logs(15)}")
    assert d.terminate() == 0, d.tail()
