"""What the broker-fault tests share (test_980, test_981, test_98x_fault_cluster_*, test_985).

  * broker_outage(): stop a broker (SIGTERM through kafka.sh, or kill -9), keep it down for a
    while (running something meanwhile), start it again on the same data and wait (bounded)
    until the daemons say they are ready;
  * Progress: samples a delivery counter in a thread, so that a test can say, for each fault,
    how long deliveries stopped (the recovery time: from the fault until they flow again);
  * webhook_tally() / mail_tally(): what arrived per (notice, partner) or per subscriber:
    missing, duplicates, and whether each duplicate carried the same webhook-id / Message-ID.

Nothing here asserts on time: figures are returned for the tests to print.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

__all__ = ["Outage", "broker_outage", "kill9_broker", "Progress", "webhook_tally", "mail_tally",
           "daemon_envs"]


@contextlib.contextmanager
def daemon_envs(tmp_path, bootstrap: str, nc_bin: str, daemon_bin: str, mailer_bin: str, **kw):
    """(WebhooksEnv, MailerEnv) of one test, in tmp_path/wh and tmp_path/ml, on `bootstrap`
    (kw: replication_factor, ...); both torn down afterwards."""
    from mailer_support import MailerEnv
    from webhooks_support import WebhooksEnv
    (tmp_path / "wh").mkdir()
    (tmp_path / "ml").mkdir()
    wh = WebhooksEnv(tmp_path / "wh", bootstrap, nc_bin, daemon_bin, **kw)
    try:
        ml = MailerEnv(tmp_path / "ml", bootstrap, nc_bin, mailer_bin, **kw)
    except BaseException:
        wh.close()
        raise
    try:
        yield wh, ml
    finally:
        wh.close()
        ml.close()


@dataclass
class Outage:
    t_down: float  # time.monotonic() when the stop began
    t_up: float  # when the start began
    t_ready: float  # when every daemon answered /readyz 200 again

    @property
    def down_s(self) -> float:
        return self.t_up - self.t_down

    @property
    def ready_s(self) -> float:
        """From the start of the broker to every daemon ready."""
        return self.t_ready - self.t_up


def kill9_broker(broker) -> None:
    """kill -9 of a conftest.Broker's JVM; returns once it is gone."""
    pid = broker.pid()
    assert pid, "the broker is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process_alive(pid):
        time.sleep(0.1)
    assert not process_alive(pid), f"broker pid {pid} still alive after SIGKILL"


def process_alive(pid: int) -> bool:
    """False once the process is gone or a zombie (the JVM was kafka.sh's child, reparented:
    whoever reaps it may take a while)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def broker_outage(broker, seconds: float, daemons=(), during=None, kill: bool = False,
                  ready_timeout: float = 120) -> Outage:
    """Stops `broker` (kafka.sh down = SIGTERM; kill=True: kill -9), runs during() if given,
    keeps it down until `seconds` after the stop, starts it on the same data, then waits for
    /readyz 200 of every daemon (a list, or a callable returning one: daemons started by
    during())."""
    t_down = time.monotonic()
    if kill:
        kill9_broker(broker)
    else:
        broker.down()
    if during:
        during()
    while time.monotonic() - t_down < seconds:
        time.sleep(min(0.5, max(0.0, seconds - (time.monotonic() - t_down))))
    t_up = time.monotonic()
    broker.up()
    for d in (daemons() if callable(daemons) else daemons):
        d.wait_ready(timeout=ready_timeout)
    return Outage(t_down, t_up, time.monotonic())


class Progress(threading.Thread):
    """Samples count() and target() (what there is to deliver so far) every `interval` s.
    stall_after(t) is the recovery time of a fault at t: from t until deliveries flow again
    after the longest pause, while work was waiting, that began within `window` s of it (0 when
    they never paused longer than `pause` s).  Time with nothing to deliver is no pause."""

    def __init__(self, count, target, interval: float = 0.1):
        super().__init__(daemon=True)
        self.count, self.target, self.interval = count, target, interval
        self.samples: list = []  # (t, count, target)
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.samples.append((time.monotonic(), self.count(), self.target()))
            except Exception:  # noqa: BLE001 (a sample missed; the next one counts)
                pass
            self.stop_ev.wait(self.interval)

    def stop(self) -> None:
        self.stop_ev.set()
        self.join(10)

    def at(self, t: float) -> int:
        """The count at time t (the last sample taken by then)."""
        c = 0
        for ts, n, _ in self.samples:
            if ts > t:
                break
            c = n
        return c

    def stall_after(self, t: float, window: float = 60, pause: float = 2.0) -> float:
        longest, end = 0.0, None
        since, prev = t, None  # since: the last delivery, or the last moment with nothing to do
        for ts, n, target in self.samples:
            moved = prev is not None and n != prev
            prev = n
            if ts <= t:
                continue
            if moved:
                if ts - since > longest and since <= t + window:
                    longest, end = ts - since, ts
                since = ts
            elif n >= target:
                since = ts
        if end is None or longest <= pause:
            return 0.0
        return round(end - t, 1)


def webhook_tally(receivers: dict, path: str, notice_ids: set) -> dict:
    """Per partner: missing notice ids, duplicates (successful requests beyond the first for a
    notice) and the duplicates whose webhook-id differs from the first's."""
    out = {}
    for pid, rx in receivers.items():
        ok = [r for r in rx.snapshot(path) if r.ok and r.event == "notice.published"]
        ids = defaultdict(list)
        for r in ok:
            ids[r.notice_id].append(r.webhook_id)
        out[pid] = {
            "missing": sorted(notice_ids - set(ids)),
            "duplicates": sum(len(v) - 1 for v in ids.values()),
            "dup_notices": sorted(n for n, v in ids.items() if len(v) > 1),
            "changed_id": sorted(n for n, v in ids.items() if len(set(v)) > 1),
        }
    return out


def mail_tally(inbox: list, subscribers: set, subject: str) -> dict:
    """For the messages whose subject contains `subject`: missing subscribers, duplicates and
    the duplicates whose Message-ID differs from the first's."""
    per = defaultdict(list)
    for m in inbox:
        if subject in (m.subject or ""):
            per[m.to].append(m.message_id)
    return {
        "missing": sorted(subscribers - set(per)),
        "duplicates": sum(len(v) - 1 for v in per.values()),
        "dup_subscribers": sorted(a for a, v in per.items() if len(v) > 1),
        "changed_id": sorted(a for a, v in per.items() if len(set(v)) > 1),
        "per_count": Counter(len(v) for v in per.values()),
    }


# --- both daemons at work, under faults (test_982, test_985) --------------------------------------

__all__ += ["Streams"]


class Streams:
    """Both daemons working at once: noticecast-webhooks delivering to real HTTP partners, and
    noticecast-mailer sending urgent bulletins to immediate subscribers on the real SMTP server;
    each one's deliveries counted over time (Progress).  fault() marks a fault; report() says,
    per fault, how long deliveries stopped, and per daemon what arrived, was lost or came twice."""

    def __init__(self, wh, ml, partners=("alpha", "beta", "gamma"), subscribers: int = 1000,
                 partner_delay: float = 0.01, max_in_flight: int = 4, smtp_delay: float = 0.1,
                 sessions: int = 1, batch: int = 10):
        from webhook_receiver import Always
        self.wh, self.ml = wh, ml
        self.rxs = {}
        for pid in partners:
            rx = wh.receiver(pid)
            p = wh.partner(pid, rx.url("/hook"), max_in_flight=max_in_flight)
            rx.route("/hook", Always(204, delay=partner_delay), secrets=p.secrets)
            self.rxs[pid] = rx
        self.subs = {f"reader{i:04d}@example.org" for i in range(subscribers)}
        ml.import_subscribers([{"email": a, "lang": "en", "frequency": "immediate"}
                               for a in sorted(self.subs)])
        ml.smtp_cfg.update(sessions=sessions, batch=batch)
        ml.smtp.slow(smtp_delay)
        # requests/messages that may be under way when a fault strikes (a bound on duplicates)
        self.in_flight = {"webhooks": max_in_flight * len(partners), "mailer": sessions * batch}
        self.bulletins: list = []
        self.notice_ids: set = set()
        self.faults: list = []  # (what, time.monotonic())
        self.published = 0  # notices published so far (the test counts them)
        self.prog = {"webhooks": Progress(self.delivered, lambda: self.published * len(self.rxs)),
                     "mailer": Progress(ml.smtp.count, lambda: len(self.bulletins) * len(self.subs))}

    def delivered(self) -> int:
        return sum(rx.count("/hook", ok=True) for rx in self.rxs.values())

    def start(self, *wh_args):
        self.dw = self.wh.start(*wh_args)
        self.dm = self.ml.start()
        for p in self.prog.values():
            p.start()
        return self

    def bulletin(self, title: str) -> None:
        from webhooks_support import notice
        self.ml.publish([notice("alerts", title, priority="urgent")])
        self.bulletins.append(title)

    def publish(self, notices: list) -> None:
        self.wh.publish(notices)
        self.published += len(notices)

    def wait_under_way(self, webhooks: int, mail: int, timeout: float = 180) -> None:
        from daemon_env import wait_for
        wait_for(lambda: self.delivered() >= webhooks and self.ml.smtp.count() >= mail, timeout,
                 f"{webhooks} webhook deliveries and {mail} messages", 0.2,
                 lambda: f"{self.delivered()} deliveries, {self.ml.smtp.count()} mails\n"
                         f"{self.wh.logs()}\n{self.ml.logs()}")

    def fault(self, what: str) -> None:
        self.faults.append((what, time.monotonic()))

    def finish(self, timeout: float = 300) -> None:
        """Waits (bounded) until every notice reached every partner and every bulletin every
        subscriber, and the webhooks group committed past the last notice."""
        for rx in self.rxs.values():
            rx.wait_for_ids("/hook", self.notice_ids, timeout=timeout, extra=self.wh.logs)
        n = len(self.subs)
        self.ml.wait_mail(lambda ib: all(len({m.to for m in ib if t in m.subject}) >= n
                                         for t in self.bulletins),
                          timeout=timeout, what=f"{len(self.bulletins)} bulletin(s) to {n} subscribers",
                          interval=1)
        self.wh.wait_all_committed(timeout=180)
        time.sleep(3)  # late duplicates, if any
        for p in self.prog.values():
            p.stop()

    def report(self) -> tuple:
        """(lines, problems): recovery per fault, and delivered/missing/duplicates per daemon."""
        wt = webhook_tally(self.rxs, "/hook", self.notice_ids)
        inbox = self.ml.inbox()
        mt = {t: mail_tally(inbox, self.subs, t) for t in self.bulletins}
        lines, problems = [], []
        t0 = self.faults[0][1] if self.faults else 0
        for i, (what, t) in enumerate(self.faults):
            # a pause is the fault's that it followed
            window = self.faults[i + 1][1] - t if i + 1 < len(self.faults) else 120
            rec = {k: p.stall_after(t, window) for k, p in self.prog.items()}
            lines.append(f"  +{t - t0:5.1f} s {what}: recovery webhooks {rec['webhooks']} s, mailer "
                         f"{rec['mailer']} s (delivered by then: "
                         f"{self.prog['webhooks'].at(t)} webhooks, {self.prog['mailer'].at(t)} mails)")
        n = len(self.notice_ids)
        for pid, r in wt.items():
            lines.append(f"  webhooks {pid}: {n - len(r['missing'])} of {n} delivered, missing "
                         f"{len(r['missing'])}, duplicates {r['duplicates']} (other webhook-id: "
                         f"{len(r['changed_id'])}) {r['dup_notices'][:5]}")
        for t, r in mt.items():
            lines.append(f"  mailer {t!r}: {len(self.subs) - len(r['missing'])} of {len(self.subs)} "
                         f"mailed, missing {len(r['missing'])}, duplicates {r['duplicates']} (other "
                         f"Message-ID: {len(r['changed_id'])}) {r['dup_subscribers'][:5]}")
        for name, d in (("webhooks", self.dw), ("mailer", self.dm)):
            log = d.log()
            commitfail = len(re.findall(r"level=(?:warn|error)[^\n]*facility=COMMITFAIL", log))
            lines.append(f"  {name} log: partitions revoked {log.count('revoked')} time(s); "
                         f"{', '.join(re.findall(r'kafka reconnected.? (outage=[0-9.]+s)', log)) or 'no outage'}; "
                         f"failed offset commits logged {commitfail} time(s)")
            # the first of a burst is logged, the others counted (they came by the hundred)
            if commitfail > 3 * len(self.faults):
                problems.append(f"{name}: {commitfail} failed offset commit lines logged")
        for name, tally in (("webhooks", wt), ("mailer", mt)):
            for k, r in tally.items():
                if r["missing"]:
                    problems.append(f"{name} {k}: {len(r['missing'])} lost: {r['missing'][:5]}")
                if r["changed_id"]:
                    problems.append(f"{name} {k}: duplicates with another id: {r['changed_id'][:5]}")
        for name, d in (("webhooks", self.dw), ("mailer", self.dm)):
            if not d.alive():
                problems.append(f"{name} (pid {d.pid}) did not keep running\n{d.tail()}")
        self.duplicates = {"webhooks": sum(r["duplicates"] for r in wt.values()),
                           "mailer": sum(r["duplicates"] for r in mt.values())}
        return lines, problems

    def stop_daemons(self) -> list:
        """Both daemons still ready, then SIGTERM: problems (empty when both exit 0)."""
        problems = []
        for name, d in (("webhooks", self.dw), ("mailer", self.dm)):
            d.wait_ready(timeout=60)
            rc = d.terminate()
            if rc != 0:
                problems.append(f"{name} exited {rc} on SIGTERM\n{d.tail()}")
        return problems
