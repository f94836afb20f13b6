"""A real three-node KRaft cluster on loopback, for the fault tier (test_98x_fault_cluster_*.py).

Three JVMs, each a broker and a controller (combined mode), started by deploy/local/kafka.sh
through conftest.Broker, formatted with the same cluster id and voting in one controller
quorum.  Topics get replication factor 3 and min.insync.replicas 2, as in production: the
cluster keeps serving (and committing transactions) with one node down, and refuses writes
with two down.  Unclean leader election is off, so a restarted node never loses committed
records.

    cluster = KafkaCluster(var_dir).up()
    cluster.bootstrap              "127.0.0.1:a,127.0.0.1:b,127.0.0.1:c"
    cluster.kill9(2); cluster.start(2); cluster.wait_isr()
    cluster.leader_of(topic, 0)    node id of the partition's leader
    cluster.rolling_restart()      each node in turn: SIGTERM, start, wait for whole ISRs

Node ids are 1, 2, 3.  Every wait is bounded and fails saying what it saw.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from broker_faults import kill9_broker
from conftest import Broker, free_port

__all__ = ["KafkaCluster", "kafka_cluster", "NODES"]

NODES = (1, 2, 3)
# Three JVMs on a 2-core machine: modest heaps.
HEAP = "-Xmx384m -Xms192m"

CLUSTER_PROPS = """\
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
unclean.leader.election.enable=false
"""


def cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class KafkaCluster:
    def __init__(self, var_dir: Path, heap: str = HEAP):
        self.var_dir = Path(var_dir)
        self.var_dir.mkdir(parents=True, exist_ok=True)
        props = self.var_dir / "cluster.properties"
        props.write_text(CLUSTER_PROPS)
        ports = {}
        used = set()
        for n in NODES:
            pair = []
            while len(pair) < 2:
                p = free_port()
                if p not in used:
                    used.add(p)
                    pair.append(p)
            ports[n] = tuple(pair)
        voters = ",".join(f"{n}@127.0.0.1:{ports[n][1]}" for n in NODES)
        cid = cluster_id()
        self.nodes = {
            n: Broker(self.var_dir, ports[n][0], ports[n][1], env={
                "KAFKA_NODE_ID": str(n), "KAFKA_QUORUM_VOTERS": voters, "KAFKA_CLUSTER_ID": cid,
                "KAFKA_EXTRA_PROPS": str(props), "KAFKA_READY": "log", "KAFKA_HEAP_OPTS": heap,
                "KAFKA_START_TIMEOUT": "120"})
            for n in NODES
        }
        self.bootstrap = ",".join(b.bootstrap for b in self.nodes.values())
        self.down_nodes: set = set()

    # -- nodes --

    def node(self, n: int) -> Broker:
        return self.nodes[n]

    def _parallel(self, fn, nodes) -> None:
        """fn(n) for every node at once (a quorum of 2 must be up before any node is ready)."""
        errors = {}

        def run(n):
            try:
                fn(n)
            except Exception as e:  # noqa: BLE001 (reported below)
                errors[n] = e

        threads = [threading.Thread(target=run, args=(n,)) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        if errors:
            raise RuntimeError("; ".join(f"node {n}: {e}\n{self.nodes[n].log_tail()}"
                                         for n, e in errors.items()))

    def up(self) -> "KafkaCluster":
        self._parallel(self.start, NODES)
        self.wait_brokers(len(NODES))
        return self

    def start(self, n: int) -> None:
        self.nodes[n].up()
        self.down_nodes.discard(n)

    def stop(self, n: int) -> None:
        """SIGTERM (kafka.sh down): a controlled shutdown, leaders move away first."""
        self.down_nodes.add(n)
        self.nodes[n].down()

    def kill9(self, n: int) -> None:
        self.down_nodes.add(n)
        kill9_broker(self.nodes[n])

    def close(self) -> None:
        try:
            self._parallel(lambda n: self.nodes[n].down(purge=True), NODES)
        except RuntimeError:  # keep tearing down
            pass

    # -- metadata --

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def metadata(self, timeout: float = 10):
        return self.admin().list_topics(timeout=timeout)

    def leader_of(self, topic: str, partition: int) -> int:
        return self.metadata().topics[topic].partitions[partition].leader

    def leaders(self, topics) -> dict:
        """{(topic, partition): leader node id} for the given topics."""
        md = self.metadata()
        return {(t, p): pm.leader for t in topics if t in md.topics
                for p, pm in md.topics[t].partitions.items()}

    def busiest_leader(self, topics) -> tuple:
        """The node that leads the most partitions of topics, and which: (node, [(t, p)])."""
        led: dict = {n: [] for n in NODES}
        for tp, leader in self.leaders(topics).items():
            if leader in led:
                led[leader].append(tp)
        n = max(NODES, key=lambda k: (len(led[k]), -k))
        return n, sorted(led[n])

    def wait_brokers(self, count: int, timeout: float = 120) -> None:
        last = None

        def ok():
            nonlocal last
            try:
                last = sorted(self.metadata(5).brokers)
            except Exception as e:  # noqa: BLE001 (not answering yet)
                last = str(e)
                return False
            return isinstance(last, list) and len(last) >= count

        _wait(ok, timeout, f"{count} brokers in the metadata", lambda: f"last: {last}")

    def wait_fenced(self, n: int, timeout: float = 120) -> None:
        """Until the controller has fenced node n after a kill: n is out of the metadata and
        leads no partition of any topic, the internal ones (the transaction coordinators')
        included.  Before that a client can be sent to the dead node for up to the broker
        session timeout: that is Kafka's failure detection, not what a test checks."""
        last = None

        def ok():
            nonlocal last
            try:
                md = self.metadata(5)
            except Exception as e:  # noqa: BLE001 (not answering yet)
                last = str(e)
                return False
            led = sorted((t, p) for t, tm in md.topics.items() for p, pm in tm.partitions.items()
                         if pm.leader == n)
            last = f"brokers {sorted(md.brokers)}, led by {n}: {led[:10]}"
            return n not in md.brokers and not led

        _wait(ok, timeout, f"node {n} fenced", lambda: f"last: {last}")

    def wait_isr(self, topics=None, n: int = len(NODES), timeout: float = 180) -> float:
        """Waits until every partition of topics (default: all, internal ones included) has a
        leader and n in-sync replicas; returns how long that took."""
        t0 = time.monotonic()
        short: list = []

        def whole():
            nonlocal short
            try:
                md = self.metadata(5)
            except Exception as e:  # noqa: BLE001
                short = [str(e)]
                return False
            names = md.topics if topics is None else topics
            short = []
            for t in names:
                tm = md.topics.get(t)
                if tm is None or tm.error is not None:
                    short.append((t, "missing" if tm is None else str(tm.error)))
                    continue
                short += [(t, p, pm.leader, sorted(pm.isrs)) for p, pm in tm.partitions.items()
                          if pm.leader < 0 or len(pm.isrs) < n]
            return not short

        _wait(whole, timeout, f"ISR of {n} on every partition", lambda: f"short: {short[:10]}")
        return time.monotonic() - t0

    def rolling_restart(self, topics=None, between=None) -> list:
        """Restarts each node in turn (SIGTERM, start, ISRs whole again before the next);
        between(n), if given, runs while node n is down.  Returns [(node, down s, isr s)]."""
        out = []
        for n in NODES:
            t0 = time.monotonic()
            self.stop(n)
            if between:
                between(n)
            self.start(n)
            down = time.monotonic() - t0
            out.append((n, round(down, 1), round(self.wait_isr(topics), 1)))
        return out


def _wait(pred, timeout, what, extra):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; {extra()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory):
    """A fresh three-node cluster per test module (a fault test leaves nodes restarted)."""
    c = KafkaCluster(tmp_path_factory.mktemp("cluster-var"))
    try:
        c.up()
        yield c
    finally:
        c.close()
