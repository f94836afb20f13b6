"""Fixtures and helpers for the noticecast-webhooks integration tests (test_2*_webhooks*.py).

Test modules import them with `from webhooks_support import *`; pytest then finds the fixtures
in the module's namespace.  They build on conftest.py: the session broker, write_config,
create_topics, consume_all.

Setup per test (fixture `wh`, or `wh_factory(partitions=N)`):
  * a unique topic prefix; the notice and DLQ topics created with AdminClient, as
    `noticecast topics create` would (the broker does not auto-create topics, so the daemon
    has to create its own internal topics: retry topics and <prefix>deliveries);
  * cli.conf: the plain CLI configuration, used to publish;  webhooks.conf: the same sections
    plus [webhooks] and [partner.<id>], used by the daemon (same prefix, same broker);
  * real WebhookReceivers (webhook_receiver.py), one secret file per partner;
  * the real daemon binary ($NC_BIN_DIR/noticecast-webhooks), stderr to a log file; every
    daemon and receiver still running at the end is stopped (SIGTERM, then SIGKILL).

Every wait is a bounded poll with a generous deadline that fails saying what it saw.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets as _secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from conftest import (REPO, admin_for, consume_all, create_topics, describe, parse_published,
                      unique_prefix, write_config)
from webhook_receiver import TLSConfig, WebhookReceiver

__all__ = [
    "daemon_bin", "wh", "wh_factory", "pki",
    "WebhooksEnv", "Daemon", "make_secret", "notice", "wait_for", "parse_metrics", "metric_value",
    "rfc3339", "config_line", "make_pki", "WEBHOOK_ID_RE", "EX_OK", "EX_CONFIG",
]

EX_OK, EX_CONFIG = 0, 78
WEBHOOK_ID_RE = re.compile(r"^msg_[0-9a-f]{32}$")
DAEMON_NAME = "noticecast-webhooks"

# Generous bounds on waiting (not performance assertions): the suite also runs under ASan.
READY_TIMEOUT = 90
DELIVERY_TIMEOUT = 90


# --- small helpers -------------------------------------------------------------------------------


def wait_for(pred, timeout: float, what: str, interval: float = 0.1, extra=None):
    """Polls pred() until it returns something truthy (returned) or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f}s waiting for {what}"
            if extra:
                msg += "\n" + (extra() if callable(extra) else str(extra))
            raise AssertionError(msg)
        time.sleep(interval)


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


_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list:
    """Prometheus text format -> [(name, {label: value}, float)]."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line.strip())
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(_LABEL_RE.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_value(samples: list, name: str, **labels) -> float | None:
    """Sum of the samples of `name` whose labels include `labels` (None if there is none)."""
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == v2 for k, v2 in labels.items())]
    return sum(vals) if vals else None


def http_get(url: str, timeout: float = 10) -> tuple:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


# --- the daemon ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def daemon_bin() -> str:
    path = Path(os.environ.get("NC_BIN_DIR", str(REPO / "build"))) / DAEMON_NAME
    if not os.access(path, os.X_OK):
        pytest.fail(f"{DAEMON_NAME} binary not found at {path} (run `make`, or set NC_BIN_DIR)")
    return str(path)


class Daemon:
    """One run of noticecast-webhooks in the foreground; stderr (logfmt) goes to a file."""

    def __init__(self, binary: str, config: Path, log_path: Path, args=()):
        self.binary, self.config, self.log_path = binary, Path(config), Path(log_path)
        self.argv = [binary, "-C", str(config), *map(str, args)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self._addr = None

    # -- log --

    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        return self.log_path.read_bytes()[offset:].decode("utf-8", "replace")

    def tail(self, n: int = 40) -> str:
        lines = self.log().splitlines()
        return f"--- {self.log_path.name} (pid {self.pid}, rc {self.proc.poll()}), last {n} lines:\n" + \
            "\n".join(lines[-n:])

    def wait_log(self, pattern: str, since: int = 0, timeout: float = 60, what: str | None = None) -> re.Match:
        rx = re.compile(pattern)

        def found():
            m = rx.search(self.log_since(since))
            if m is None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting for "
                                     f"{what or pattern!r}\n{self.tail()}")
            return m

        return wait_for(found, timeout, what or f"log line matching {pattern!r}", 0.1, self.tail)

    # -- HTTP endpoint --

    def http_addr(self, timeout: float = READY_TIMEOUT) -> str:
        if self._addr is None:
            m = self.wait_log(r'msg="?http listening"?[^\n]*?\baddr="?([0-9.]+:\d+)', timeout=timeout,
                              what='msg="http listening" addr=HOST:PORT')
            self._addr = m.group(1)
        return self._addr

    def get(self, path: str) -> tuple:
        return http_get(f"http://{self.http_addr()}{path}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> "Daemon":
        deadline = time.monotonic() + timeout
        self.http_addr(timeout)
        last = None

        def ready():
            nonlocal last
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before /readyz\n{self.tail()}")
            last = self.get("/readyz")
            return last[0] == 200

        wait_for(ready, max(1.0, deadline - time.monotonic()), "/readyz to answer 200", 0.2,
                 lambda: f"last answer: {last}\n{self.tail()}")
        return self

    def metrics(self) -> list:
        st, text = self.get("/metrics")
        assert st == 200, f"/metrics answered {st}: {text[:500]}\n{self.tail()}"
        return parse_metrics(text)

    # -- process --

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon (pid {self.pid}) still running {timeout:.0f}s later\n{self.tail()}")

    def terminate(self, timeout: float = 40) -> int:
        """SIGTERM and wait (bounded) for the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


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


class WebhooksEnv:
    """Topics, configuration, receivers and daemons of one test."""

    def __init__(self, tmp_path: Path, bootstrap: str, nc_bin: str, daemon_bin: str, partitions: int = 3):
        self.tmp = Path(tmp_path)
        self.bootstrap = bootstrap
        self.nc_bin = nc_bin
        self.daemon_bin = daemon_bin
        self.prefix = unique_prefix()
        self.group = f"wh-{uuid.uuid4().hex[:12]}"
        self.cli_cfg = write_config(self.tmp / "cli.conf", bootstrap, prefix=self.prefix,
                                    topics={"partitions": partitions})
        create_topics(bootstrap, self.cli_cfg)
        self.config_path = self.tmp / "webhooks.conf"
        self.webhooks = dict(WEBHOOKS_DEFAULTS, group_id=self.group)
        self.partners: dict = {}
        self.receivers: list = []
        self.daemons: list = []
        self._producer = None
        self._published = 0

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

    def start(self, *args, ready: bool = True, config: Path | None = None, write: bool = True) -> Daemon:
        if write and config is None:
            self.write_config()
        n = len(self.daemons) + 1
        d = Daemon(self.daemon_bin, config or self.config_path, self.tmp / f"webhooks-{n}.log", args)
        self.daemons.append(d)
        if ready:
            d.wait_ready()
        return d

    def run_daemon(self, *args, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs the daemon binary to completion (-n, -h, -V)."""
        return subprocess.run([self.daemon_bin, *map(str, args)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def logs(self) -> str:
        return "\n".join(d.tail() for d in self.daemons) or "(no daemon started)"

    # -- CLI --

    def cli(self, *args, config=None, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [self.nc_bin, "-C", str(config or self.cli_cfg.path), *map(str, args)]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def publish(self, notices: list) -> list:
        """Publishes notices with `noticecast publish` (one batch = one transaction); returns
        the CLI's rows {id, topic, partition, offset} in input order."""
        self._published += 1
        f = self.tmp / f"batch-{self._published}.ndjson"
        f.write_text("".join(json.dumps(n, ensure_ascii=False) + "\n" for n in notices))
        cp = self.cli("publish", f)
        assert cp.returncode == 0, "publish failed" + describe(cp)
        rows = parse_published(cp.stdout)
        assert len(rows) == len(notices), describe(cp)
        by_id = {r["id"]: r for r in rows}
        assert set(by_id) == {n["id"] for n in notices}, describe(cp)
        return [by_id[n["id"]] for n in notices]

    def withdraw(self, nid: str, category: str, reason: str = "Published in error") -> None:
        cp = self.cli("withdraw", nid, "--category", category, "--reason", reason)
        assert cp.returncode == 0, "withdraw failed" + describe(cp)

    # -- Kafka --

    def topic(self, category: str) -> str:
        return self.cli_cfg.topic(category)

    @property
    def dlq_topic(self) -> str:
        return f"{self.prefix}dlq"

    @property
    def deliveries_topic(self) -> str:
        return f"{self.prefix}deliveries"

    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                                       "linger.ms": 0})
        return self._producer

    def produce_raw(self, topic: str, value, key=None, headers=None, partition: int | None = None) -> tuple:
        """Produces one record as is; returns (partition, offset) once the broker has it."""
        out = {}

        def dr(err, msg):
            out["err"], out["msg"] = err, msg

        kw = {"value": value, "key": key, "headers": headers or [], "on_delivery": dr}
        if partition is not None:
            kw["partition"] = partition
        p = self.producer()
        p.produce(topic, **kw)
        p.flush(30)
        assert out.get("err") is None and "msg" in out, f"produce to {topic} failed: {out.get('err')}"
        return out["msg"].partition(), out["msg"].offset()

    def topic_exists(self, topic: str) -> bool:
        md = admin_for(self.bootstrap).list_topics(timeout=10)
        return topic in md.topics and md.topics[topic].error is None

    def messages(self, topic: str, isolation: str = "read_committed") -> list:
        if not self.topic_exists(topic):
            return []
        return consume_all(self.bootstrap, topic, isolation, timeout=30)

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

    def close(self) -> None:
        for d in self.daemons:
            try:
                d.cleanup()
            except Exception:  # keep tearing down
                pass
        for rx in self.receivers:
            rx.stop()
        if self._producer is not None:
            self._producer.flush(10)
        # shown by pytest only when the test failed
        for d in self.daemons:
            print(d.tail(60))


@pytest.fixture
def wh_factory(tmp_path, bootstrap, nc_bin, daemon_bin):
    """wh_factory(partitions=3) -> WebhooksEnv (several per test are fine)."""
    envs = []

    def make(partitions: int = 3) -> WebhooksEnv:
        sub = tmp_path / f"wh{len(envs) + 1}"
        sub.mkdir()
        e = WebhooksEnv(sub, bootstrap, nc_bin, daemon_bin, partitions=partitions)
        envs.append(e)
        return e

    yield make
    for e in envs:
        e.close()


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
