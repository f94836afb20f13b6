"""Issue 11: broker failures mid-stream, on a real three-broker KRaft cluster (kafka_cluster.py:
replication factor 3, min.insync.replicas 2, topics made by `noticecast topics create`).

Both daemons work at once, under the same faults:
  * noticecast-webhooks delivers 1,000 notices to 3 real HTTP partners; the notices are
    published with the CLI in batches of 10, one batch a second, a seventh of them in each
    phase (before the faults, during each one, after);
  * noticecast-mailer sends an urgent notice to 1,000 immediate subscribers through a real SMTP
    server that takes 0.1 s per message, and a second one when the rolling restart begins.
Faults, in order: kill -9 of the node that leads the most notice and mailer.jobs partitions;
20 s later it is started again (same data) and the test waits for whole ISRs; then a rolling
restart of all three nodes, one at a time (SIGTERM, start, whole ISRs again).

Expected: every (notice, partner) pair and every subscriber's two messages arrive at least once;
a duplicate carries the same webhook-id / Message-ID as the first; both daemons keep running
(same pid, /readyz 200 at the end).  Duplicates are counted and printed, and so is the
recovery time of each fault (from the fault until deliveries flow again after the longest
pause it caused) and how many CLI publishes failed and were run again (test_984 is the one that
asserts on publishing).
"""

import json
import threading
import time

import pytest

from broker_faults import Streams, daemon_envs
from conftest import describe
from kafka_cluster import kafka_cluster  # noqa: F401 (fixture)
from mailer_support import mailer_bin  # noqa: F401 (fixture)
from webhooks_support import daemon_bin, notice  # noqa: F401 (fixture)

pytestmark = pytest.mark.faults

N_NOTICES, BATCH, EVERY_S = 1000, 10, 1.0
PHASES = 7  # before, during the kill, after it, each rolling step, after
N_SUBS = 1000
PARTNERS = ("alpha", "beta", "gamma")
DOWN_S = 20
CATEGORY = "alerts"


class Publisher(threading.Thread):
    """Publishes the notices with the CLI, BATCH at a time every EVERY_S s, up to a quota that
    the test raises at each fault (so that every phase has notices to deliver); a batch whose
    publish fails is published again (same ids: nothing of a failed transaction is visible)."""

    def __init__(self, st: Streams, notices: list):
        super().__init__(daemon=True)
        self.st, self.wh, self.notices = st, st.wh, notices
        self.failures: list = []
        self.slowest = 0.0  # the longest CLI run, s
        self.published = 0
        self.quota = 0
        self.cond = threading.Condition()

    def allow(self, share: float) -> None:
        """Raises the quota to share (0..1) of the notices."""
        with self.cond:
            self.quota = max(self.quota, int(len(self.notices) * share))
            self.cond.notify_all()

    def run(self):
        for i in range(0, len(self.notices), BATCH):
            with self.cond:
                self.cond.wait_for(lambda: i + BATCH <= self.quota, timeout=600)
            f = self.wh.tmp / f"cluster-batch-{i // BATCH}.ndjson"
            f.write_text("".join(json.dumps(n) + "\n" for n in self.notices[i:i + BATCH]))
            t0 = time.monotonic()
            for _ in range(5):
                t1 = time.monotonic()
                cp = self.wh.cli("publish", f, timeout=120)
                self.slowest = max(self.slowest, time.monotonic() - t1)
                if cp.returncode == 0:
                    break
                self.failures.append((round(time.monotonic() - t0, 1), cp.returncode,
                                      cp.stderr.strip()[-200:]))
            else:
                raise AssertionError("publish failed 5 times" + describe(cp))
            self.published += len(self.notices[i:i + BATCH])
            self.st.published = self.published
            time.sleep(max(0.0, EVERY_S - (time.monotonic() - t0)))


def test_broker_failures_under_both_daemons(kafka_cluster, tmp_path, nc_bin, daemon_bin, mailer_bin,
                                            record_property):
    with daemon_envs(tmp_path, kafka_cluster.bootstrap, nc_bin, daemon_bin, mailer_bin,
                     replication_factor=3) as (wh, ml):
        run(kafka_cluster, wh, ml, record_property)


def run(cluster, wh, ml, record_property):
    st = Streams(wh, ml, partners=PARTNERS, subscribers=N_SUBS).start()
    notices = [notice(CATEGORY, f"Cluster {i}") for i in range(N_NOTICES)]
    st.notice_ids = {n["id"] for n in notices}
    pub = Publisher(st, notices)
    phase = [1]

    def next_phase(what):
        st.fault(what)
        phase[0] += 1
        pub.allow(phase[0] / PHASES)

    pub.allow(1 / PHASES)
    pub.start()
    st.bulletin("Cluster bulletin one")
    st.wait_under_way(webhooks=100, mail=100)

    victim, led = cluster.busiest_leader([wh.topic(CATEGORY), ml.jobs_topic])
    next_phase(f"kill -9 node {victim}")
    cluster.kill9(victim)
    time.sleep(DOWN_S)
    next_phase(f"node {victim} started again")
    cluster.start(victim)
    isr_back = cluster.wait_isr()
    st.bulletin("Cluster bulletin two")
    rolling = cluster.rolling_restart(between=lambda n: next_phase(f"rolling restart: node {n} stopped"))
    t_end = time.monotonic()
    pub.allow(1)
    pub.join(300)
    assert not pub.is_alive() and pub.published == N_NOTICES, f"published {pub.published}"
    st.finish()

    lines, problems = st.report()
    lines.insert(0, f"cluster: node {victim} led {led}; ISR whole {isr_back:.1f} s after its restart; "
                    f"rolling restart (node, down s, ISR s) {rolling}; faults over after "
                    f"{t_end - st.faults[0][1]:.0f} s")
    lines.append(f"  CLI publishes: slowest {pub.slowest:.1f} s; run again after a failure: "
                 f"{len(pub.failures)} {pub.failures[:3]}")
    text = "\n".join(lines)
    print("\n" + text)
    record_property("figures", text)
    record_property("duplicates", st.duplicates)
    problems += st.stop_daemons()
    assert not problems, "\n".join(problems) + "\n" + text
