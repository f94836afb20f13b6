"""Issue 8, item 6: noticecast_webhook_retry_backlog counts what waits in the retry tiers, and a
bind failure of the metrics/health endpoint names the configured port.

500 notices to a partner that answers 503: each first attempt fails at once and is parked in
the 30 s retry tier.  Before the fix the gauge counted only the retry records held in memory
plus the deliveries in flight (the issue saw 7 with 500 waiting): a held record pauses its
partition, so the rest stay unread in Kafka.  Now it is the retry tier records read and not
settled plus those not read yet.  Counted: the gauge's highest reading in the 30 s window."""

import re
import socket
import time

import pytest

from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403

pytestmark = pytest.mark.faults

N = 500


def test_retry_backlog_counts_what_waits(wh, record_property):
    wh.webhooks.update(retry_schedule="30s")
    rx = wh.receiver()
    p = wh.partner("down", rx.url("/down"), max_in_flight=8)
    rx.route("/down", Always(503), secrets=p.secrets)
    d = wh.start()

    wh.publish([notice("news", f"Waiting {i}") for i in range(N)])
    rx.wait_count("/down", N, ok=None, timeout=90, extra=wh.logs)
    t_all = time.monotonic()
    best = seen = None
    while time.monotonic() - t_all < 20:
        v = metric_value(d.metrics(), "noticecast_webhook_retry_backlog")
        seen = v
        best = v if best is None or (v is not None and v > best) else best
        if v is not None and v >= N:
            break
        time.sleep(0.5)
    print(f"\n{N} deliveries parked in the 30 s tier: noticecast_webhook_retry_backlog read "
          f"{seen} (highest {best}) within {time.monotonic() - t_all:.1f} s of the last failure")
    record_property("retry_backlog_highest", best)
    assert rx.count("/down") < 2 * N, "retries came before the 30 s: nothing was waiting"
    assert best is not None and best >= N, f"retry backlog {best}, but {N} deliveries wait"
    assert best <= N + 10, f"retry backlog {best} for {N} waiting deliveries"
    assert d.terminate() == 0, d.tail()


def test_bind_failure_names_the_port(wh):
    rx = wh.receiver()
    wh.partner("pe", rx.url("/pe"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        path = wh.write_config(listen=f"127.0.0.1:{port}")
        cp = wh.run_daemon("-C", path, timeout=60)
    err = cp.stdout + cp.stderr
    line = next((l for l in err.splitlines() if "http" in l.lower() and "level=error" in l), err)
    print(f"\nlisten port {port} in use: exit {cp.returncode}: {line}")
    assert cp.returncode == EX_CONFIG, err
    assert re.search(rf"\bport {port}\b", line), f"the error does not name port {port}: {line}"
