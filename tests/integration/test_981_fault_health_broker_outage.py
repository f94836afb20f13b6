"""Health that tells the truth (issue 10): the broker goes away for 30 s under both daemons.

Before: with the broker stopped for 40 s, /healthz and /readyz of both daemons stayed 200
(readiness was set once and never cleared), and the logs had ~70 librdkafka error lines and no
line saying the brokers were back.

Both daemons run on the test's own broker with kafka_grace = 5s.  Work is under way when the
broker stops: 60 notices to a partner that answers in 50 ms (one at a time), and a notice to
40 immediate subscribers through a relay that takes 100 ms per message.  Every 0.25 s the test
asks both daemons' /readyz and /healthz.  Expected:
  - /readyz 200 before; 503 once the outage is longer than the grace (and not before it:
    a broker restart shorter than the grace is no reason to take a daemon out of service),
    with "kafka unreachable for N s"; 200 again after the restart;
  - /healthz 200 throughout: the webhooks loop keeps turning; the mailer's may block in the
    planner's transaction calls (their timeouts: 60 s + 30 s + 10 s), which its liveness
    bound (120 s) allows; how long each loop was stuck at most is printed;
  - one msg="kafka unreachable" and one msg="kafka reconnected" line per daemon, and few
    librdkafka warnings (the first of the outage, then counted, not logged);
  - nothing lost: every notice delivered to the partner and mailed to every subscriber,
    those published before the outage and a second round published after it.
The timings seen are printed.
"""

import re
import threading
import time

import pytest

from broker_faults import broker_outage, daemon_envs
from mailer_support import *  # noqa: F401,F403
from daemon_env import http_get
from webhook_receiver import Always
from webhooks_support import daemon_bin  # noqa: F401 (fixture)

pytestmark = pytest.mark.faults

OUTAGE_S = 30
GRACE_S = 5
N_WH = 60
N_SUBS = 40


class Sampler(threading.Thread):
    """Asks /readyz and /healthz of each daemon every 0.25 s: (t, name, path, status, body)."""

    def __init__(self, daemons: dict):
        super().__init__(daemon=True)
        self.daemons, self.samples, self.stop = daemons, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            for name, d in self.daemons.items():
                for path in ("/readyz", "/healthz"):
                    st, body = http_get(f"http://{d.http_addr()}{path}", timeout=5)
                    self.samples.append((time.monotonic(), name, path, st, body.strip()))
            self.stop.wait(0.25)

    def series(self, name, path, t0=None, t1=None):
        return [(t, st, body) for (t, n, p, st, body) in self.samples
                if n == name and p == path and (t0 is None or t >= t0) and (t1 is None or t < t1)]


def test_readiness_follows_the_broker(own_kafka, tmp_path, nc_bin, mailer_bin, daemon_bin,
                                      record_property):
    with daemon_envs(tmp_path, own_kafka.bootstrap, nc_bin, mailer_bin=mailer_bin,
                     daemon_bin=daemon_bin) as (wh, ml):
        run(ml, wh, own_kafka, record_property)


def first(series, pred):
    return next((t for (t, st, _) in series if pred(st)), None)


def run(ml, wh, broker, record_property):
    subs = [f"reader{i:02d}@example.org" for i in range(N_SUBS)]
    ml.import_subscribers([{"email": a, "lang": "en", "frequency": "immediate"} for a in subs])
    ml.mailer["kafka_grace"] = f"{GRACE_S}s"
    ml.smtp_cfg.update(sessions=1, batch=10)
    ml.smtp.slow(0.1)
    wh.webhooks["kafka_grace"] = f"{GRACE_S}s"
    rx = wh.receiver("rx")
    p = wh.partner("peru", rx.url("/hook"), max_in_flight=1)
    rx.route("/hook", Always(204, delay=0.05), secrets=p.secrets)

    dm = ml.start(*FAST_REJOIN)
    dw = wh.start("-X", "session.timeout.ms=10000", "-X", "heartbeat.interval.ms=1000")
    sampler = Sampler({"mailer": dm, "webhooks": dw})
    sampler.start()

    before = [notice(("news", "press", "alerts")[i % 3], f"Before the outage {i}") for i in range(N_WH)]
    wh.publish(before)
    ml.publish([notice("news", "Outage bulletin")])
    wait_for(lambda: ml.smtp.count() >= 5 and len(rx.delivered_ids("/hook")) >= 5, 120,
             "work under way before the outage", 0.05, lambda: f"{ml.smtp.count()} mails\n{wh.logs()}")
    log_at = {"mailer": dm.log_size(), "webhooks": dw.log_size()}
    gauge = {}

    def read_gauge():
        time.sleep(GRACE_S + 6)
        # the gauge is the loop's (the mailer's may be blocked in the planner: webhooks only)
        gauge["down"] = metric_value(dw.metrics(), "noticecast_kafka_broker_up")

    out = broker_outage(broker, OUTAGE_S, daemons=(dm, dw), during=read_gauge)
    t_down, t_up, t_ready = out.t_down, out.t_up, out.t_ready
    gauge_down = gauge["down"]

    after = [notice("alerts", f"After the outage {i}") for i in range(5)]
    wh.publish(after)
    ml.publish([notice("alerts", "After the outage", priority="urgent")])
    rx.wait_for_ids("/hook", {n["id"] for n in before + after}, timeout=180, extra=wh.logs)
    ml.wait_mail(lambda ib: len({m.to for m in ib if "After the outage" in (m.subject or "")}) >= N_SUBS
                 and len({m.to for m in ib if "Outage bulletin" in (m.subject or "")}) >= N_SUBS,
                 timeout=240, what=f"both notices to all {N_SUBS} subscribers", interval=0.5)
    time.sleep(3)
    gauge_up = {name: metric_value(d.metrics(), "noticecast_kafka_broker_up")
                for name, d in (("mailer", dm), ("webhooks", dw))}
    sampler.stop.set()
    sampler.join(10)

    figures, problems = [], []
    for name, d in (("mailer", dm), ("webhooks", dw)):
        ready = sampler.series(name, "/readyz")
        health = sampler.series(name, "/healthz")
        pre = [st for (t, st, _) in ready if t < t_down]
        t503 = first(sampler.series(name, "/readyz", t_down, t_up + 60), lambda st: st == 503)
        during = sampler.series(name, "/readyz", t_down + GRACE_S + 6, t_up)
        back = first(sampler.series(name, "/readyz", t_up), lambda st: st == 200)
        reasons = sorted({b for (_, st, b) in ready if st == 503})
        # The loop rewrites the reason ("... for N s") every second while it turns: the longest
        # time one reason stayed is how long the loop was stuck at most (/healthz's bound).
        stuck, last = 0.0, None
        for (t, st, b) in sampler.series(name, "/readyz", t_down, t_up):
            if last is None or b != last[1]:
                last = (t, b)
            elif "kafka unreachable for" in b:
                stuck = max(stuck, t - last[0])
        not_live = [(round(t - t_down, 1), st, b) for (t, st, b) in health if st != 200]
        log = d.log_since(log_at[name])
        unreachable = len(re.findall(r'msg="?kafka unreachable"?', log))
        reconnected = re.findall(r'msg="?kafka reconnected"?[^\n]*', log)
        lib_warn = len([ln for ln in log.splitlines()
                        if "component=librdkafka" in ln and re.search(r"level=(warn|error)", ln)])
        figures.append(
            f"{name}: /readyz 503 after {None if t503 is None else round(t503 - t_down, 1)} s "
            f"(grace {GRACE_S} s), 200 again {None if back is None else round(back - t_up, 1)} s after "
            f"the restart (ready {t_ready - t_up:.1f} s after it); 503 bodies {reasons[:3]}; "
            f"/healthz non-200 samples {len(not_live)} of {len(health)}; loop stuck {stuck:.0f} s at most; "
            f"'kafka unreachable' x{unreachable}, 'kafka reconnected' x{len(reconnected)} "
            f"{reconnected[:1]}; librdkafka warn/error lines during the outage: {lib_warn}")
        if not pre or any(st != 200 for st in pre):
            problems.append(f"{name}: /readyz before the outage: {pre[-5:]}")
        if t503 is None or t503 - t_down < GRACE_S - 0.5:
            problems.append(f"{name}: /readyz 503 at {t503 and t503 - t_down} s: not after the grace")
        if t503 is not None and t503 - t_down > GRACE_S + 6:
            problems.append(f"{name}: /readyz turned 503 only {t503 - t_down:.1f} s into the outage")
        if not during or any(st != 503 for (_, st, _) in during):
            problems.append(f"{name}: /readyz during the outage (past the grace): "
                            f"{sorted({st for (_, st, _) in during})}")
        if not any("kafka unreachable for" in r for r in reasons):
            problems.append(f"{name}: 503 without the outage as its reason: {reasons}")
        if back is None:
            problems.append(f"{name}: /readyz never 200 again after the restart")
        if not_live:
            problems.append(f"{name}: /healthz not 200: {not_live[:5]}")
        if unreachable != 1 or len(reconnected) != 1:
            problems.append(f"{name}: {unreachable} 'kafka unreachable', {len(reconnected)} "
                            f"'kafka reconnected' lines (expected one each)")
        if not re.search(r"outage=\d+\.\ds", reconnected[0] if reconnected else ""):
            problems.append(f"{name}: the reconnected line does not say how long: {reconnected}")
        if lib_warn > 5:
            problems.append(f"{name}: {lib_warn} librdkafka warnings/errors logged during the outage")
    figures.append(f"noticecast_kafka_broker_up: webhooks {gauge_down} during the outage, {gauge_up} after")
    if gauge_down != 0 or gauge_up != {"mailer": 1, "webhooks": 1}:
        problems.append(f"noticecast_kafka_broker_up: {gauge_down} during the outage, {gauge_up} after")
    text = "; ".join(figures)
    print("\n" + "\n".join(figures))
    record_property("figures", text)
    assert not problems, "\n".join(problems) + f"\n{text}\n{dm.tail()}\n{dw.tail()}"
    assert dm.terminate() == 0, dm.tail()
    assert dw.terminate() == 0, dw.tail()
