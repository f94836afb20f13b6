"""Fault: a daemon started while the brokers are down exited (69) instead of waiting.

Found while merging the issue-8 work: `noticecast-webhooks` exited 69 after 30 s with
"create topics: Failed while waiting for controller: Local: Timed out", and
`noticecast-mailer` exited 69 the same way (and, right after its topics were created, with
"offsets for times: Broker: Not leader for partition", which made tests flaky).  A daemon never
exits on a transient Kafka error: it waits, says so, and reports not ready.

Both daemons are started while the test's own broker is stopped and kept waiting for 40 s
(longer than the 30 s [producer] timeout_ms that made them give up).  Checked meanwhile: both
alive, /healthz 200, /readyz 503, a "trying again" line in the log.  Then the broker comes back:
both become ready, and a notice published afterwards is delivered to the partner and mailed to
the subscriber.  Last, SIGTERM: exit 0.  A daemon stopped while still waiting exits 0 at once.
"""

import time

import pytest

from broker_faults import broker_outage, daemon_envs
from mailer_support import *  # noqa: F401,F403
from webhook_receiver import Always
from webhooks_support import daemon_bin  # noqa: F401 (fixture)

pytestmark = pytest.mark.faults

DOWN_S = 40


def test_daemons_wait_for_brokers_at_start(own_kafka, tmp_path, nc_bin, mailer_bin, daemon_bin,
                                           record_property):
    with daemon_envs(tmp_path, own_kafka.bootstrap, nc_bin, mailer_bin=mailer_bin,
                     daemon_bin=daemon_bin) as (wh, ml):
        run(ml, wh, own_kafka, record_property)


def run(ml, wh, broker, record_property):
    sid = ml.add_subscriber("waiting@example.org", lang="en", frequency="immediate")
    rx = wh.receiver("rx")
    p = wh.partner("peru", rx.url("/hook"))
    rx.route("/hook", Always(204), secrets=p.secrets)

    started, state = {}, {}

    def start_and_wait():
        started.update(mailer=ml.start(ready=False), webhooks=wh.start(ready=False),
                       t0=time.monotonic())
        time.sleep(DOWN_S)
        for name in ("mailer", "webhooks"):
            d = started[name]
            alive = d.alive()
            health = d.get("/healthz")[0] if alive else None
            ready = d.get("/readyz")[0] if alive else None
            said = "trying again" in d.log()
            state[name] = (alive, health, ready, said)

    out = broker_outage(broker, 0, during=start_and_wait,
                        daemons=lambda: (started["mailer"], started["webhooks"]))
    dm, dw = started["mailer"], started["webhooks"]
    waited = out.t_ready - started["t0"]
    n = notice("alerts", "After the brokers came back", priority="urgent")
    ml.publish([n])
    wh.publish([n])
    ml.wait_mail(lambda ib: any(m.to == sid for m in ib), what="the alert after the wait")
    rx.wait_for_ids("/hook", {n["id"]}, timeout=120, extra=wh.logs)
    rc = {"mailer": dm.terminate(), "webhooks": dw.terminate()}
    text = (f"brokers down {DOWN_S} s at start: (alive, /healthz, /readyz, said so) {state}; "
            f"ready {waited:.0f} s after start; exit codes on SIGTERM {rc}")
    print("\n" + text)
    record_property("figures", text)
    for name, (alive, health, ready, said) in state.items():
        assert alive, f"{name} exited while the brokers were down\n" + (dm if name == "mailer" else dw).tail()
        assert health == 200 and ready == 503 and said, f"{name}: {state[name]}"
    assert rc == {"mailer": 0, "webhooks": 0}, rc

    # stopped while still waiting: exit 0, promptly
    broker.down()
    d = wh.start(ready=False)
    d.wait_log("trying again", timeout=60)
    t1 = time.monotonic()
    code = d.terminate(timeout=20)
    print(f"stopped while waiting: exit {code} after {time.monotonic() - t1:.1f} s")
    assert code == 0, d.tail()
    broker.up()
