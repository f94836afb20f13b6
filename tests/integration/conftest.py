"""Integration-test harness for the noticecast CLI, against a real Apache Kafka broker.

The session starts one KRaft broker on a free port with deploy/local/kafka.sh (data under a
pytest temp dir) and stops + purges it at the end.  Every test gets its own topic prefix, so
tests share the broker without seeing each other's messages.  What the CLI wrote is read back
with confluent_kafka, whose wheel carries its own librdkafka: a different client build than
the one the C CLI links against.

Environment:
  NC_BIN_DIR           directory holding the `noticecast` binary (default <repo>/build)
  NC_TEST_BOOTSTRAP    use this already-running broker instead of starting one (development)
  KAFKA_VERSION        passed through to kafka.sh (default there: 3.9.2)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "local" / "kafka.sh"

CATEGORIES = ["news", "press", "tenders", "alerts"]
LANGUAGES = ["en", "es", "pt", "ko"]

# exit codes of the CLI (sysexits.h)
EX_OK, EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_CONFIG = 0, 64, 65, 69, 78


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "faults: the fault tier (make test-faults): one test per real-world fault, long-running; "
        "`make integration-test` leaves them out",
    )


# --- broker management -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> tuple[int, int]:
    a = free_port()
    b = free_port()
    while b == a:
        b = free_port()
    return a, b


class Broker:
    """A broker run by deploy/local/kafka.sh, on its own ports and data dir.

    env: more kafka.sh settings (KAFKA_EXTRA_PROPS, KAFKA_FORMAT_ARGS, KAFKA_NODE_ID, ...) for a
    secured broker or one node of a cluster."""

    def __init__(self, var_dir: Path, port: int | None = None, controller_port: int | None = None,
                 env: dict | None = None):
        if port is None:
            port, controller_port = free_port_pair()
        self.port = port
        self.controller_port = controller_port or free_port()
        self.var_dir = Path(var_dir)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})

    @property
    def data_dir(self) -> Path:
        return self.var_dir / f"kafka-{self.port}"

    def _env(self) -> dict:
        env = dict(os.environ)
        env["KAFKA_PORT"] = str(self.port)
        env["KAFKA_CONTROLLER_PORT"] = str(self.controller_port)
        env["NC_VAR_DIR"] = str(self.var_dir)
        env.update(self.extra_env)
        return env

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(KAFKA_SH), *args],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self) -> None:
        cp = self._run("up")
        if cp.returncode != 0:
            raise RuntimeError(f"kafka.sh up failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")

    def down(self, purge: bool = False) -> None:
        cp = self._run("down", *(["--purge"] if purge else []))
        if cp.returncode != 0:
            raise RuntimeError(f"kafka.sh down failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")

    def running(self) -> bool:
        return self._run("status").returncode == 0

    def pid(self) -> int | None:
        """The broker JVM's pid while it runs (for kill -9), else None."""
        try:
            return int((self.data_dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.data_dir / "kafka.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no broker log)"


class ExternalBroker:
    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def log_tail(self, n: int = 40) -> str:
        return "(external broker)"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """The session's broker (started once, stopped and purged at the end, also on failure)."""
    ext = os.environ.get("NC_TEST_BOOTSTRAP")
    if ext:
        yield ExternalBroker(ext)
        return
    broker = Broker(tmp_path_factory.mktemp("kafka-var"))
    broker.up()
    try:
        yield broker
    finally:
        broker.down(purge=True)


@pytest.fixture
def own_kafka(tmp_path_factory):
    """A broker of the test's own, which the test may stop and start (same data dir)."""
    broker = Broker(tmp_path_factory.mktemp("own-kafka-var"))
    broker.up()
    try:
        yield broker
    finally:
        broker.down(purge=True)


@pytest.fixture(scope="session")
def bootstrap(kafka) -> str:
    return kafka.bootstrap


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nc_bin() -> str:
    path = Path(os.environ.get("NC_BIN_DIR", str(REPO / "build"))) / "noticecast"
    if not os.access(path, os.X_OK):
        pytest.fail(f"noticecast binary not found at {path} (run `make`, or set NC_BIN_DIR)")
    return str(path)


@dataclass
class Config:
    path: Path
    prefix: str
    bootstrap: str
    categories: list = field(default_factory=lambda: list(CATEGORIES))
    partitions: int = 3

    def topic(self, category: str) -> str:
        return f"{self.prefix}notices.{category}"

    @property
    def notice_topics(self) -> list:
        return [self.topic(c) for c in self.categories]

    @property
    def subscribers_topic(self) -> str:
        return f"{self.prefix}subscribers"

    @property
    def dlq_topic(self) -> str:
        return f"{self.prefix}dlq"

    @property
    def all_topics(self) -> list:
        return self.notice_topics + [self.subscribers_topic, self.dlq_topic]

    def __str__(self) -> str:
        return str(self.path)


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}."


def write_config(path: Path, bootstrap: str, prefix: str | None = None, extra: str = "", **overrides) -> Config:
    """Write a noticecast config file.

    overrides: section name -> {key: value} merged over the defaults (a value of None drops the
    key); `extra` is raw text appended at the end (for deliberately bad files).
    """
    prefix = prefix or unique_prefix()
    sections = {
        "noticecast": {
            "topic_prefix": prefix,
            "categories": ", ".join(CATEGORIES),
            "languages": ", ".join(LANGUAGES),
            "default_language": "en",
            "default_timezone": "UTC",
        },
        "kafka": {"bootstrap.servers": bootstrap},
        "topics": {"partitions": 3, "replication_factor": 1},
        "producer": {"timeout_ms": 30000},
    }
    for sec, kv in overrides.items():
        sections.setdefault(sec, {})
        for k, v in kv.items():
            if v is None:
                sections[sec].pop(k, None)
            else:
                sections[sec][k] = v
    lines = []
    for sec, kv in sections.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {v}" for k, v in kv.items()]
        lines.append("")
    text = "\n".join(lines) + extra
    path.write_text(text)
    cats = [c.strip() for c in str(sections["noticecast"].get("categories", "")).split(",") if c.strip()]
    return Config(path=path, prefix=prefix, bootstrap=bootstrap, categories=cats,
                  partitions=int(sections["topics"].get("partitions", 3)))


@pytest.fixture
def make_config(bootstrap):
    """make_config(tmp_path, name='noticecast.conf', bootstrap=None, **sections) -> Config"""
    counter = [0]

    def make(tmp_path: Path, name: str | None = None, bootstrap_servers: str | None = None, **overrides) -> Config:
        counter[0] += 1
        path = Path(tmp_path) / (name or f"noticecast-{counter[0]}.conf")
        return write_config(path, bootstrap_servers or bootstrap, **overrides)

    return make


@pytest.fixture
def run_cli(nc_bin):
    """run_cli(*args, config=Config|path|None, input=None, timeout=60) -> CompletedProcess (text)."""

    def run(*args, config=None, input=None, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        argv = [nc_bin]
        if config is not None:
            argv += ["-C", str(config)]
        argv += [str(a) for a in args]
        e = dict(os.environ)
        if env:
            e.update(env)
        cp = subprocess.run(
            argv,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=e,
        )
        return cp

    return run


def describe(cp: subprocess.CompletedProcess) -> str:
    return (f"\n$ {' '.join(map(str, cp.args))}\nexit {cp.returncode}\n"
            f"--- stdout\n{cp.stdout}\n--- stderr\n{cp.stderr}")


def expect_rc(cp: subprocess.CompletedProcess, rc: int) -> subprocess.CompletedProcess:
    assert cp.returncode == rc, f"expected exit {rc}" + describe(cp)
    return cp


@pytest.fixture
def check_rc():
    return expect_rc


# --- Kafka side: admin + reading back with confluent_kafka -------------------------------------


def client_conf(bootstrap: str, conf: dict | None = None, **kv) -> dict:
    """A confluent_kafka configuration: `conf` (security settings of a secured broker, e.g.
    secure_kafka.SecureKafka.client_conf()) with bootstrap.servers and kv over it."""
    out = dict(conf or {})
    out["bootstrap.servers"] = bootstrap
    out.update(kv)
    return out


def admin_for(bootstrap: str, conf: dict | None = None) -> AdminClient:
    return AdminClient(client_conf(bootstrap, conf))


def create_topics(bootstrap: str, cfg, timeout: float = 30, nc_bin: str | None = None,
                  conf: dict | None = None) -> dict:
    """Creates the topics of cfg (a Config, or the path of a configuration file) on bootstrap
    and waits until every partition has a leader; returns {topic: partitions}.

    With nc_bin (what the daemons' tests do): by running the real `noticecast -C cfg -b
    bootstrap topics create`, which makes every topic the programs use, as in production.
    Without: only the CLI's own topics (notices, subscribers, DLQ), with AdminClient as `topics
    create` makes them, which is all the CLI's tests need (the daemons' topics, one set per
    test, would only crowd the session broker).  conf: the AdminClient's security settings
    (a secured broker: secure_kafka.SecureKafka.client_conf())."""
    if nc_bin:
        argv = [nc_bin, "-C", str(cfg), "-b", bootstrap, "topics"]
        cp = subprocess.run(argv + ["create"], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=timeout + 60)
        assert cp.returncode == 0, "noticecast topics create failed" + describe(cp)
        cp = subprocess.run(argv + ["list"], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60)
        assert cp.returncode == 0, "noticecast topics list failed" + describe(cp)
        want = {f[0]: int(f[1]) for f in (line.split("\t") for line in cp.stdout.splitlines())}
    else:
        admin = admin_for(bootstrap, conf)
        new = [NewTopic(t, num_partitions=cfg.partitions, replication_factor=1) for t in cfg.notice_topics]
        new.append(NewTopic(cfg.subscribers_topic, num_partitions=cfg.partitions, replication_factor=1,
                            config={"cleanup.policy": "compact"}))
        new.append(NewTopic(cfg.dlq_topic, num_partitions=cfg.partitions, replication_factor=1))
        for t, fut in admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout).items():
            try:
                fut.result()
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        want = {t: cfg.partitions for t in cfg.all_topics}
    # wait until metadata shows all partitions with leaders
    admin = admin_for(bootstrap, conf)
    deadline = time.time() + timeout
    while True:
        md = admin.list_topics(timeout=10)
        ok = all(
            t in md.topics and md.topics[t].error is None
            and len(md.topics[t].partitions) == n
            and all(p.leader >= 0 for p in md.topics[t].partitions.values())
            for t, n in want.items()
        )
        if ok:
            return want
        if time.time() > deadline:
            raise AssertionError(f"topics not ready after {timeout}s: {sorted(want)}")
        time.sleep(0.2)


@pytest.fixture
def topics(bootstrap):
    """topics(cfg): create cfg's CLI topics on the session broker with AdminClient."""

    def make(cfg: Config, bootstrap_servers: str | None = None) -> Config:
        create_topics(bootstrap_servers or bootstrap, cfg)
        return cfg

    return make


@pytest.fixture
def cfg(tmp_path, make_config, topics) -> Config:
    """A fresh config (unique prefix) whose topics already exist."""
    return topics(make_config(tmp_path))


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    headers: dict

    def json(self):
        assert self.value is not None, f"tombstone at {self.topic}/{self.partition}@{self.offset}"
        return json.loads(self.value)


def _decode(b):
    if b is None:
        return None
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


_TRANSIENT = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT, KafkaError._TIMED_OUT}


def watermarks(bootstrap: str, topic: str, isolation: str = "read_uncommitted", timeout: float = 10,
               conf: dict | None = None) -> dict:
    """{partition: (low, high)}; with read_committed, high is the last stable offset."""
    c = Consumer(client_conf(bootstrap, conf, **{"group.id": f"wm-{uuid.uuid4().hex}",
                                                 "isolation.level": isolation, "enable.auto.commit": False}))
    try:
        md = c.list_topics(topic, timeout=timeout)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            raise AssertionError(f"topic {topic} does not exist: {tmd.error if tmd else 'missing'}")
        out = {}
        deadline = time.time() + timeout
        for p in sorted(tmd.partitions):
            while True:
                try:
                    out[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
                    break
                except KafkaException as e:
                    # a just-created partition: the broker may not act as its leader yet
                    if not e.args[0].retriable() and e.args[0].code() not in _TRANSIENT:
                        raise
                    if time.time() > deadline:
                        raise
                    time.sleep(0.2)
        return out
    finally:
        c.close()


def _settled_watermarks(bootstrap: str, topic: str, wm: dict, timeout: float, settle: float = 5,
                        conf: dict | None = None) -> dict:
    """A producer's commit_transaction() returns before the coordinator has written the commit
    markers to the data partitions, so right after a CLI exits the last stable offset may still
    stand before its transaction. Wait (a bounded while) for the LSO to reach the high watermark;
    a transaction that is really left open (a test that kills a producer) stays invisible."""
    deadline = time.time() + min(settle, timeout)
    while True:
        hi = watermarks(bootstrap, topic, "read_uncommitted", timeout, conf)
        if all(wm.get(p, (0, 0))[1] >= h for p, (_, h) in hi.items()) or time.time() > deadline:
            return wm
        time.sleep(0.2)
        wm = watermarks(bootstrap, topic, "read_committed", timeout, conf)


def consume_all(bootstrap: str, topic: str, isolation: str = "read_committed", timeout: float = 20,
                conf: dict | None = None) -> list:
    """Every message of `topic` from the beginning to the current end (read via watermarks);
    conf: the client's security settings for a secured broker (see client_conf)."""
    wm = watermarks(bootstrap, topic, isolation, timeout, conf)
    if isolation == "read_committed":
        wm = _settled_watermarks(bootstrap, topic, wm, timeout, conf=conf)
    pending = {p for p, (lo, hi) in wm.items() if hi > lo}
    if not pending:
        return []
    c = Consumer(client_conf(bootstrap, conf, **{
        "group.id": f"check-{uuid.uuid4().hex}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }))
    out = []
    try:
        c.assign([TopicPartition(topic, p, lo) for p, (lo, hi) in wm.items() if p in pending])
        deadline = time.time() + timeout
        while pending:
            if time.time() > deadline:
                raise AssertionError(f"consume_all({topic}): partitions {sorted(pending)} not read to "
                                     f"their end {wm} within {timeout}s; got {len(out)} messages")
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if m.offset() >= wm[m.partition()][1]:
                        pending.discard(m.partition())
                    continue
                raise AssertionError(f"consume error on {topic}: {m.error()}")
            hdrs = {}
            for k, v in m.headers() or []:
                hdrs[k] = _decode(v)
            out.append(Msg(m.topic(), m.partition(), m.offset(), _decode(m.key()), m.value(), hdrs))
            if m.offset() + 1 >= wm[m.partition()][1]:
                pending.discard(m.partition())
    finally:
        c.close()
    return sorted(out, key=lambda x: (x.partition, x.offset))


@pytest.fixture
def consume(bootstrap):
    """consume(topic, isolation='read_committed', timeout=20, bootstrap_servers=None, conf=None) -> [Msg]"""

    def f(topic, isolation="read_committed", timeout=20, bootstrap_servers=None, conf=None):
        return consume_all(bootstrap_servers or bootstrap, topic, isolation, timeout, conf)

    return f


@pytest.fixture
def consume_prefix(bootstrap):
    """consume_prefix(cfg, isolation='read_committed') -> [Msg] over every topic of cfg's prefix."""

    def f(cfg: Config, isolation="read_committed", timeout=20, bootstrap_servers=None, conf=None):
        bs = bootstrap_servers or bootstrap
        md = admin_for(bs, conf).list_topics(timeout=10)
        out = []
        for t in sorted(md.topics):
            if t.startswith(cfg.prefix):
                out += consume_all(bs, t, isolation, timeout, conf)
        return out

    return f


@pytest.fixture
def high_watermarks(bootstrap):
    """high_watermarks(topic, bootstrap_servers=None, conf=None) -> {partition: high}
    (read_uncommitted: includes aborted records)."""

    def f(topic, bootstrap_servers=None, conf=None):
        wm = watermarks(bootstrap_servers or bootstrap, topic, conf=conf)
        return {p: hi for p, (lo, hi) in wm.items()}

    return f


def parse_published(stdout: str) -> list:
    """Parse the CLI's `id<TAB>topic<TAB>partition<TAB>offset` lines."""
    rows = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        assert len(parts) == 4, f"not an `id\\ttopic\\tpartition\\toffset` line: {line!r}"
        rows.append({"id": parts[0], "topic": parts[1], "partition": int(parts[2]), "offset": int(parts[3])})
    return rows


@pytest.fixture
def published():
    return parse_published
