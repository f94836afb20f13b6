"""Two noticecast-mailer processes in one group: planning happens once, sending is shared.

300 daily subscribers with the same send time and 10 immediate subscribers.  One notice is
published before the daemons start (it is in the digest, and goes at once to the immediate
subscribers); three press notices are published while both run.  The two daemons have the
same group_id (each its own HTTP port) and the same --clock-offset, so that their planner clock
reaches the digest minute M about 20 s after they start: both have joined the groups by then.

Expected: exactly one digest job per daily subscriber and one job per (immediate subscriber,
notice) — nothing planned twice — and exactly one message for each of them (no process died,
so there is nothing to repeat); both processes sent some of the messages (their /metrics
`noticecast_mail_messages_total{outcome="sent"}` are both > 0 and add up to the total).
"""

import re
import time

from conftest import free_port
from mailer_support import *  # noqa: F401,F403

N_DAILY, N_IMMEDIATE = 300, 10


def sent_by(d) -> float:
    return metric_value(d.metrics(), "noticecast_mail_messages_total", outcome="sent") or 0


def test_two_instances_share_the_sending(ml):
    env = ml
    M = int(time.time() // 60) + 10
    daily = [f"daily{i:03d}@example.org" for i in range(N_DAILY)]
    immediate = [f"now{i:02d}@example.org" for i in range(N_IMMEDIATE)]
    env.import_subscribers(
        [{"email": a, "frequency": "daily", "tz": "UTC", "send_at": local_hhmm(M, "UTC")} for a in daily]
        + [{"email": a, "frequency": "immediate", "lang": "es"} for a in immediate])
    digest_notice = notice("news", "Shared digest notice")
    env.publish([digest_notice])
    time.sleep(2)
    offset = M * 60 - 20 - time.time()  # planner clock at M - 20 s now: M comes in ~20 s
    a = env.start(clock_offset=offset)
    cfg_b = env.write_config(env.tmp / "mailer-b.conf", mailer={"listen": f"127.0.0.1:{free_port()}",
                                                                    "public_listen": f"127.0.0.1:{free_port()}"})
    b = env.start(clock_offset=offset, config=cfg_b)

    now_notices = [notice("press", f"Immediate notice {i}") for i in range(3)]
    for n in now_notices:
        env.publish([n])
    # the immediate subscribers get the digest's notice too (it is news, less than a day old)
    now_notices.append(digest_notice)
    total = N_DAILY + N_IMMEDIATE * len(now_notices)
    env.wait_mail(lambda ib: len(ib) >= total, timeout=MAIL_TIMEOUT + 30,
                  what=f"{total} messages (the digest to {N_DAILY}, 4 notices to {N_IMMEDIATE})", interval=0.5)
    jobs, events = env.wait_settled(min_jobs=total)

    digest_jobs = [j for j in jobs if j["type"] == "digest"]
    per_sub = {}
    for j in digest_jobs:
        per_sub[j["subscriber"]] = per_sub.get(j["subscriber"], 0) + 1
    assert sorted(per_sub) == sorted(daily) and set(per_sub.values()) == {1}, \
        f"digest planned more than once or not for everyone: {len(digest_jobs)} jobs for {len(per_sub)} subscribers"
    pairs = [(j["subscriber"], tuple(j["notices"])) for j in jobs if j["type"] != "digest"]
    want = {(s, (n["id"],)) for s in immediate for n in now_notices}
    assert sorted(pairs) == sorted(want), f"immediate jobs: {len(pairs)} for {len(want)} (subscriber, notice) pairs"
    assert len(jobs) == total

    inbox = env.inbox()
    counts = {}
    for m in inbox:
        counts[m.message_id] = counts.get(m.message_id, 0) + 1
    twice = {k: v for k, v in counts.items() if v > 1}
    assert not twice, f"{len(twice)} message(s) sent more than once without any crash: {list(twice.items())[:5]}"
    assert len(inbox) == total, f"{len(inbox)} messages, expected {total}"

    def both_counted():
        return sent_by(a) + sent_by(b) >= total

    wait_for(both_counted, 30, "the two instances' sent counters to add up", 0.5,
             lambda: f"a: {sent_by(a)}, b: {sent_by(b)}")
    sa, sb = sent_by(a), sent_by(b)
    print(f"\ninstance a sent {sa:.0f}, instance b sent {sb:.0f} of {total}")
    assert sa > 0 and sb > 0 and sa + sb == total, f"a sent {sa}, b sent {sb}, of {total}\n{env.logs(20)}"
    assert a.terminate() == 0, a.tail()
    assert b.terminate() == 0, b.tail()


N_BUSY = 150


def test_a_rebalance_while_sending_sends_nothing_twice(ml):
    """A second instance joins while the first is in the middle of sending (a slow relay keeps
    its SMTP sessions busy and its queue full).  The first lets go of the jobs of the revoked
    partitions it had not begun, finishes its sessions and writes their mail.sent events before
    the rebalance goes on, so the second, reading those partitions again from the committed
    offset, learns what was sent: every subscriber gets the notice exactly once.  (Without
    this, 59 of 150 subscribers got it twice.)"""
    env = ml
    subs = [f"busy{i:03d}@example.org" for i in range(N_BUSY)]
    env.import_subscribers([{"email": a, "frequency": "immediate"} for a in subs])
    env.smtp.slow(0.1)
    # sessions of 20 messages (2 s each): what is in them is finished within shutdown_timeout,
    # the rest waits in the queue
    env.smtp_cfg["batch"] = 20
    a = env.start()
    env.publish([notice("press", "Sent while the group rebalances")])
    env.wait_mail(lambda ib: len(ib) >= 10, what="the first instance to be sending")
    cfg_b = env.write_config(env.tmp / "mailer-b.conf", mailer={"listen": f"127.0.0.1:{free_port()}",
                                                                    "public_listen": f"127.0.0.1:{free_port()}"})
    b = env.start(config=cfg_b)
    env.wait_mail(lambda ib: len({r for m in ib for r in m.rcpt}) >= N_BUSY, timeout=MAIL_TIMEOUT + 60,
                  what=f"a message to each of the {N_BUSY} subscribers", interval=0.5)
    env.smtp.slow(0)
    env.wait_settled(min_jobs=N_BUSY)
    time.sleep(2)  # a duplicate would be sent by now: its job was taken by the other instance
    inbox = env.inbox()
    per_rcpt = {}
    for m in inbox:
        for r in m.rcpt:
            per_rcpt[r] = per_rcpt.get(r, 0) + 1
    twice = {k: v for k, v in per_rcpt.items() if v > 1}
    let_go = re.findall(r"rebalance: (\d+) jobs? not begun left", a.log())
    print(f"\n{len(inbox)} messages to {len(per_rcpt)} subscribers; the first instance let go of "
          f"{sum(map(int, let_go))} queued jobs at the rebalance; sent by a: {sent_by(a):.0f}, "
          f"by b: {sent_by(b):.0f}")
    assert not twice, f"{len(twice)} subscriber(s) got the notice more than once: {list(twice.items())[:5]}"
    assert sorted(per_rcpt) == sorted(subs), f"{len(per_rcpt)} of {N_BUSY} subscribers got it"
    assert a.terminate() == 0, a.tail()
    assert b.terminate() == 0, b.tail()
