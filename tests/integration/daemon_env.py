"""What the daemons' integration tests share (webhooks_support.py, mailer_support.py).

  * Daemon: one run of a daemon binary in the foreground, stderr (logfmt) to a file; its log,
    /readyz, /metrics, signals, kill -9, bounded waits;
  * DaemonEnv: one test's world as both daemons need it: a unique topic prefix and consumer
    group, the CLI configuration and every topic (created by the real `noticecast topics
    create`, as in production: the daemons only check that theirs exist), publishing with the
    CLI, raw records, reading topics, and the teardown of every daemon started;
  * wait_for, parse_metrics, metric_value, http_get.

Every wait is a bounded poll with a generous deadline that fails saying what it saw.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from conftest import (REPO, admin_for, consume_all, create_topics, describe, parse_published,
                      unique_prefix, write_config)

__all__ = ["Daemon", "DaemonEnv", "wait_for", "parse_metrics", "metric_value", "promtool_check_metrics", "http_get",
           "READY_TIMEOUT", "binary", "env_factory"]

# Generous bounds on waiting (not performance assertions): the suite also runs under ASan.
READY_TIMEOUT = 90


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


def promtool_check_metrics(text: str) -> None:
    """`promtool check metrics` on an exposition: no lint problem, exit 0."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (Debian package prometheus, deploy/local/install-deps.sh)"
    cp = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0 and not cp.stdout.strip() and not cp.stderr.strip(), \
        f"promtool check metrics: exit {cp.returncode}\n{cp.stdout}{cp.stderr}"


def http_get(url: str, timeout: float = 10) -> tuple:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


class Daemon:
    """One run of a noticecast daemon in the foreground; stderr (logfmt) goes to a file."""

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


class DaemonEnv:
    """Topics, CLI configuration and daemons of one test; subclasses add the daemon's own
    configuration and servers (receivers, SMTP) and close them in close_servers()."""

    group_prefix = "nc"
    # Sections of cli.conf beyond the defaults (the webhooks' retry schedule: its retry topics)
    cli_sections: dict = {}

    def __init__(self, tmp_path: Path, bootstrap: str, nc_bin: str, daemon_bin: str, partitions: int = 3,
                 topics: bool = True):
        """topics=False: no topic is created (a test of a daemon started before them)."""
        self.tmp = Path(tmp_path)
        self.bootstrap = bootstrap
        self.nc_bin = nc_bin
        self.daemon_bin = daemon_bin
        self.prefix = unique_prefix()
        self.group = f"{self.group_prefix}-{uuid.uuid4().hex[:12]}"
        self.cli_cfg = write_config(self.tmp / "cli.conf", bootstrap, prefix=self.prefix,
                                    topics={"partitions": partitions}, **self.cli_sections)
        self.topics_made: dict = {}  # {topic: partitions} created so far
        if topics:
            self.create_topics(self.cli_cfg.path)
        self.daemons: list = []
        self._producer = None
        self._published = 0

    # -- topics --

    def topic_list(self, config: Path | None = None) -> dict:
        """`noticecast topics list` of CONFIG (default: the CLI's), without a broker:
        {topic: (partitions, policy, retention)}."""
        cp = self.cli("topics", "list", config=config)
        assert cp.returncode == 0, "topics list failed" + describe(cp)
        return {f[0]: (int(f[1]), f[2], f[3]) for f in (line.split("\t") for line in cp.stdout.splitlines())}

    def create_topics(self, config: Path) -> None:
        """`noticecast topics create -C CONFIG`, as an operator does before starting a daemon;
        skipped when CONFIG implies no topic not created yet (so that a daemon restarted while
        the broker is down needs no broker here)."""
        if set(self.topic_list(config)) - set(self.topics_made):
            self.topics_made.update(create_topics(self.bootstrap, config, nc_bin=self.nc_bin))

    # -- daemons --

    def spawn(self, config: Path, args=(), ready: bool = True, log_name: str = "daemon",
              topics: bool = True) -> Daemon:
        """Starts the daemon binary with CONFIG and ARGS, after `topics create -C CONFIG`
        (unless topics=False); waits for /readyz unless ready=False."""
        if topics:
            self.create_topics(config)
        n = len(self.daemons) + 1
        d = Daemon(self.daemon_bin, config, self.tmp / f"{log_name}-{n}.log", args)
        self.daemons.append(d)
        if ready:
            d.wait_ready(READY_TIMEOUT)
        return d

    def logs(self, n: int = 40) -> str:
        return "\n".join(d.tail(n) for d in self.daemons) or "(no daemon started)"

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

    subscribers_topic = property(lambda self: self.cli_cfg.subscribers_topic)
    dlq_topic = property(lambda self: self.cli_cfg.dlq_topic)
    deliveries_topic = property(lambda self: f"{self.prefix}deliveries")

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
        return consume_all(self.bootstrap, topic, isolation, timeout=60)

    # -- teardown --

    def close_servers(self) -> None:
        """The subclass's servers (receivers, SMTP): stopped after the daemons."""

    def close(self) -> None:
        for d in self.daemons:
            try:
                d.cleanup()
            except Exception:  # noqa: BLE001 (keep tearing down)
                pass
        try:
            self.close_servers()
        except Exception:  # noqa: BLE001
            pass
        if self._producer is not None:
            self._producer.flush(10)
        # shown by pytest only when the test failed
        for d in self.daemons:
            print(d.tail(80))


def binary(name: str) -> str:
    """Path of a built program ($NC_BIN_DIR, default build/); fails the test if missing."""
    path = Path(os.environ.get("NC_BIN_DIR", str(REPO / "build"))) / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} binary not found at {path} (run `make`, or set NC_BIN_DIR)")
    return str(path)


def env_factory(new_env, tmp_path: Path, tag: str):
    """Body of an env factory fixture (`yield from env_factory(...)`): yields make(**kw), which
    returns new_env(<tmp_path>/<tag>N, **kw), a fresh world each call; closes them all after."""
    envs = []

    def make(**kw):
        sub = Path(tmp_path) / f"{tag}{len(envs) + 1}"
        sub.mkdir()
        e = new_env(sub, **kw)
        envs.append(e)
        return e

    yield make
    for e in envs:
        e.close()
