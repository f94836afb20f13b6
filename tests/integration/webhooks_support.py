"""Fixtures and helpers for the noticecast-webhooks integration tests (test_2*_webhooks*.py).

Test modules import them with `from webhooks_support import *`; pytest then finds the fixtures
in the module's namespace.  They build on conftest.py: the session broker, write_config,
create_topics, consume_all.

Setup per test (fixture `wh`, or `wh_factory(partitions=N)`):
  * a unique topic prefix; every topic created by the real `noticecast topics create` (the
    broker does not auto-create topics, and the daemon only checks that its topics exist): with
    cli.conf at first (which has the default [webhooks] retry_schedule of these tests), then
    with the daemon's configuration before each start, for the retry topics of a schedule a
    test changed (wh_factory(topics=False), start(topics=False): none);
  * cli.conf: the plain CLI configuration, used to publish;  webhooks.conf: the same sections
    plus [webhooks] and [partner.<id>], used by the daemon (same prefix, same broker);
  * real WebhookReceivers (webhook_receiver.py), one secret file per partner;
  * the real daemon binary ($NC_BIN_DIR/noticecast-webhooks), stderr to a log file; every
    daemon and receiver still running at the end is stopped (SIGTERM, then SIGKILL).

The daemon harness (Daemon) and what the mailer's tests need too (DaemonEnv: topics, CLI,
Kafka helpers, teardown) are in daemon_env.py.  Every wait is a bounded poll with a generous
deadline that fails saying what it saw.
"""

from __future__ import annotations

import base64
import os
import re
import secrets as _secrets
import subprocess
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from conftest import consume_all, write_config
from daemon_env import Daemon, DaemonEnv, binary, env_factory, metric_value, parse_metrics, wait_for
from webhook_receiver import TLSConfig, WebhookReceiver

__all__ = [
    "daemon_bin", "wh", "wh_factory", "pki",
    "WebhooksEnv", "Daemon", "make_secret", "notice", "wait_for", "parse_metrics", "metric_value",
    "rfc3339", "config_line", "make_pki", "WEBHOOK_ID_RE", "EX_OK", "EX_CONFIG",
]

EX_OK, EX_CONFIG = 0, 78
WEBHOOK_ID_RE = re.compile(r"^msg_[0-9a-f]{32}$")
DAEMON_NAME = "noticecast-webhooks"

# A generous bound on waiting (not a performance assertion): the suite also runs under ASan.
DELIVERY_TIMEOUT = 90


# --- small helpers -------------------------------------------------------------------------------


def make_secret(nbytes: int = 32) -> str:
    """A Standard Webhooks secret: whsec_ + base64 of nbytes random bytes."""
    return "whsec_" + base64.b64encode(_secrets.token_bytes(nbytes)).decode()


def rfc3339(s) -> datetime:
    assert isinstance(s, str), f"not an RFC 3339 string: {s!r}"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", s), \
        f"not an RFC 3339 timestamp: {s!r}"
    d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    assert d.tzinfo is not None
    return d


def notice(category: str, name: str, regions=None, nid: str | None = None, **extra) -> dict:
    """A notice as an admin would write it (the CLI normalises it); id assigned here so the test
    knows which is which.  extra overrides fields (title, body, ...)."""
    title = name
    n = {
        "id": nid or str(uuid.uuid4()),
        "category": category,
        "title": {"en": title, "es": f"{title} (es)"},
        "summary": {"en": f"Summary of {title}."},
        "body": {"en": f"First paragraph of {title}.\n\nSecond paragraph."},
        "url": "https://example.gov/notices/" + title.lower().replace(" ", "-"),
        "source": "Ministry of the Interior",
    }
    if regions is not None:
        n["regions"] = regions
    n.update(extra)
    return n


def config_line(path: Path, section: str, key: str) -> int:
    """1-based line of `key = ...` inside [section] of an INI file."""
    cur = None
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            cur = s[1:-1].strip()
        elif cur == section and "=" in s and s.split("=", 1)[0].strip() == key:
            return i
    raise AssertionError(f"{path}: no {key} in [{section}]")


# --- the daemon ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def daemon_bin() -> str:
    return binary(DAEMON_NAME)


# --- one test's world ----------------------------------------------------------------------------


class Partner:
    def __init__(self, pid: str, url: str, secrets: list, secret_file: Path, options: dict):
        self.id, self.url, self.secrets, self.secret_file, self.options = pid, url, secrets, secret_file, options

    def section(self) -> dict:
        d = {"url": self.url, "secret_file": str(self.secret_file)}
        d.update({k: v for k, v in self.options.items() if v is not None})
        return d


WEBHOOKS_DEFAULTS = {
    "listen": "127.0.0.1:0",
    "retry_schedule": "1s, 1s, 1s",
    "retry_after_max": "10s",
    "max_pending": 10000,
    "shutdown_timeout": "10s",
}

PARTNER_DEFAULTS = {"format": "standard", "timeout_ms": 2000, "max_in_flight": 4}


class WebhooksEnv(DaemonEnv):
    """Topics, configuration, receivers and daemons of one test."""

    group_prefix = "wh"
    cli_sections = {"webhooks": {"retry_schedule": WEBHOOKS_DEFAULTS["retry_schedule"]}}

    def __init__(self, tmp_path: Path, bootstrap: str, nc_bin: str, daemon_bin: str, partitions: int = 3,
                 topics: bool = True):
        super().__init__(tmp_path, bootstrap, nc_bin, daemon_bin, partitions, topics)
        self.config_path = self.tmp / "webhooks.conf"
        self.webhooks = dict(WEBHOOKS_DEFAULTS, group_id=self.group)
        self.partners: dict = {}
        self.receivers: list = []

    # -- receivers and partners --

    def receiver(self, name: str = "rx", tls: TLSConfig | None = None) -> WebhookReceiver:
        rx = WebhookReceiver(tls=tls, name=name).start()
        self.receivers.append(rx)
        return rx

    def partner(self, pid: str, url: str, secrets: list | None = None, **options) -> Partner:
        """Declares [partner.<pid>] (written by write_config); secrets default to one fresh one.
        options: categories, regions, format, timeout_ms, max_in_flight, ... (None = leave out)."""
        secrets = secrets or [make_secret()]
        sdir = self.tmp / "secrets"
        sdir.mkdir(exist_ok=True)
        sf = sdir / f"{pid}.secret"
        sf.write_text(f"# secrets of partner {pid}, newest first\n" + "".join(s + "\n" for s in secrets))
        os.chmod(sf, 0o600)
        p = Partner(pid, url, list(secrets), sf, dict(PARTNER_DEFAULTS, **options))
        self.partners[pid] = p
        return p

    def write_config(self, path: Path | None = None, extra: str = "", **webhooks) -> Path:
        """Writes the daemon's configuration (default: self.config_path) from self.webhooks and
        self.partners; keyword arguments override [webhooks] keys for this file only."""
        path = Path(path or self.config_path)
        sections = {"webhooks": dict(self.webhooks, **webhooks)}
        for pid, p in self.partners.items():
            sections[f"partner.{pid}"] = p.section()
        write_config(path, self.bootstrap, prefix=self.prefix, extra=extra,
                     topics={"partitions": self.cli_cfg.partitions}, **sections)
        return path

    # -- daemon --

    def start(self, *args, ready: bool = True, config: Path | None = None, write: bool = True,
              topics: bool = True) -> Daemon:
        if write and config is None:
            self.write_config()
        return self.spawn(config or self.config_path, args, ready, "webhooks", topics)

    def run_daemon(self, *args, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs the daemon binary to completion (-n, -h, -V)."""
        return subprocess.run([self.daemon_bin, *map(str, args)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def dlq(self, partner: str | None = None) -> list:
        """DLQ records (read_committed); partner=<id>: only those of that partner."""
        msgs = self.messages(self.dlq_topic)
        if partner is not None:
            msgs = [m for m in msgs if m.headers.get("noticecast-dlq-partner") == partner]
        return msgs

    def wait_dlq(self, partner: str | None, keys: set, timeout: float = DELIVERY_TIMEOUT) -> list:
        """Waits until the DLQ holds a record for every key in keys (for that partner)."""
        keys = set(keys)
        last = []

        def done():
            nonlocal last
            last = self.dlq(partner)
            return keys <= {m.key for m in last}

        wait_for(done, timeout, f"DLQ records of partner {partner} for {len(keys)} notice(s)", 0.5,
                 lambda: f"DLQ now: {[(m.key, m.headers) for m in last][:10]}\n{self.logs()}")
        return last

    def delivery_events(self) -> list:
        """Parsed values of <prefix>deliveries (read_committed)."""
        return [m.json() for m in self.messages(self.deliveries_topic)]

    def committed(self) -> dict:
        """{(topic, partition): committed offset} of the daemon's group on the notice topics."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                      "enable.auto.commit": False})
        try:
            tps = []
            md = c.list_topics(timeout=10)
            for t in self.cli_cfg.notice_topics:
                tps += [TopicPartition(t, p) for p in md.topics[t].partitions]
            return {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=15)}
        finally:
            c.close()

    def wait_all_committed(self, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Waits until the group's committed offsets are past the last record of every notice
        topic partition: then every delivery of every notice succeeded or was parked."""
        need = {}
        for t in self.cli_cfg.notice_topics:
            for m in consume_all(self.bootstrap, t, "read_committed", timeout=30):
                need[(t, m.partition)] = max(need.get((t, m.partition), 0), m.offset + 1)
        last = {}

        def done():
            nonlocal last
            try:
                last = self.committed()
            except KafkaException:
                return False
            return all(last.get(tp, -1) >= off for tp, off in need.items())

        wait_for(done, timeout, f"group {self.group} to commit past the last notice", 0.5,
                 lambda: f"need {need}\ncommitted {last}\n{self.logs()}")

    # -- teardown --

    def close_servers(self) -> None:
        for rx in self.receivers:
            rx.stop()


@pytest.fixture
def wh_factory(tmp_path, bootstrap, nc_bin, daemon_bin):
    """wh_factory(partitions=3, topics=True) -> WebhooksEnv (several per test are fine)."""
    yield from env_factory(lambda sub, partitions=3, topics=True: WebhooksEnv(
        sub, bootstrap, nc_bin, daemon_bin, partitions=partitions, topics=topics), tmp_path, "wh")


@pytest.fixture
def wh(wh_factory) -> WebhooksEnv:
    return wh_factory()


# --- a test PKI made with the openssl command-line tool ----------------------------------------


def _openssl(*args, cwd: Path) -> None:
    cp = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                        text=True, timeout=60)
    assert cp.returncode == 0, f"openssl {' '.join(args)} failed:\n{cp.stdout}\n{cp.stderr}"


def _ca(d: Path, name: str, cn: str) -> tuple:
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key.name, "-out", crt.name, "-days", "3", "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return key, crt


def _leaf(d: Path, name: str, cn: str, ca: tuple, ext: str) -> tuple:
    key, csr, crt, extf = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext"
    extf.write_text(ext)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={cn}", cwd=d)
    _openssl("x509", "-req", "-in", csr.name, "-CA", ca[1].name, "-CAkey", ca[0].name,
             "-CAcreateserial", "-out", crt.name, "-days", "2", "-sha256", "-extfile", extf.name, cwd=d)
    return key, crt


def make_pki(d: Path) -> dict:
    """A test CA; a server certificate for 127.0.0.1 (SAN IP); a client certificate from the
    CA; and a client certificate from another ("rogue") CA.  Returns paths by name."""
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca(d, "ca", "noticecast test CA")
    rogue_ca = _ca(d, "rogue-ca", "some other CA")
    server = _leaf(d, "server", "127.0.0.1", ca,
                   "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    client_ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    client = _leaf(d, "client", "partner-client", ca, client_ext)
    rogue = _leaf(d, "rogue-client", "rogue-client", rogue_ca, client_ext)
    for k in (server[0], client[0], rogue[0], ca[0], rogue_ca[0]):
        os.chmod(k, 0o600)
    return {"ca": ca[1], "server_key": server[0], "server_crt": server[1],
            "client_key": client[0], "client_crt": client[1],
            "rogue_key": rogue[0], "rogue_crt": rogue[1]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- fault-tier helpers (tests/integration/test_92*_fault_*.py) ----------------------------------

__all__ += ["PUBLISHED_HEADERS", "set_topic_config", "produce_large", "reset_group_offsets",
            "retry_topics", "busiest_second"]

# Headers of a notice record as `noticecast publish` writes them (for raw records).
PUBLISHED_HEADERS = [("content-type", b"application/json"), ("noticecast-schema", b"1"),
                     ("noticecast-event", b"notice.published")]


def set_topic_config(bootstrap: str, topic: str, configs: dict, timeout: float = 30) -> None:
    """Sets topic configs (e.g. max.message.bytes) with an incremental AlterConfigs."""
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, str(v), incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    for fut in admin.incremental_alter_configs([res], request_timeout=timeout).values():
        fut.result(timeout)


def produce_large(bootstrap: str, topic: str, key: str, value: bytes, headers=None,
                  max_bytes: int = 4_000_000) -> tuple:
    """Produces one record of up to max_bytes (the topic must accept it); (partition, offset)."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": max_bytes,
                  "enable.idempotence": True, "linger.ms": 0})
    out = {}
    p.produce(topic, value=value, key=key, headers=headers or [],
              on_delivery=lambda err, msg: out.update(err=err, msg=msg))
    p.flush(60)
    assert out.get("err") is None and "msg" in out, f"produce of {len(value)} bytes failed: {out.get('err')}"
    return out["msg"].partition(), out["msg"].offset()


def retry_topics(bootstrap: str, prefix: str) -> list:
    """The retry tier topics there are for prefix (`noticecast topics create` made them)."""
    from confluent_kafka.admin import AdminClient
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return sorted(t for t in md.topics if t.startswith(f"{prefix}webhooks.retry."))


def reset_group_offsets(bootstrap: str, group: str, topics: list, timeout: float = 30) -> int:
    """Moves the (empty) group's committed offsets of every partition of topics back to the
    start, so that a restarted daemon reads everything again; returns the partitions reset."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    tps = []
    for t in topics:
        lo = {}
        for p in md.topics[t].partitions:
            lo[p] = watermarks_low(bootstrap, t, p)
        tps += [TopicPartition(t, p, lo[p]) for p in md.topics[t].partitions]
    fut = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)],
                                            request_timeout=timeout)
    for f in fut.values():
        f.result(timeout)
    return len(tps)


def watermarks_low(bootstrap: str, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lo-{uuid.uuid4().hex}"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)[0]
    finally:
        c.close()


def busiest_second(times: list) -> int:
    """Most arrival times (seconds) within any 1-second window."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best
