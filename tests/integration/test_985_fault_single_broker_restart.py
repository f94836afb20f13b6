"""Issue 11: the single development broker stopped for 20 s mid-stream and started again on the
same data, first with SIGTERM (kafka.sh down), then with kill -9, under both daemons at work.

A probe found nothing lost and no duplicates here; this test keeps it so.  Work: 1,000 notices
to 3 real HTTP partners (500 published before the first stop, 500 between the two) and two
urgent bulletins to 1,000 immediate subscribers on the real SMTP server (one before each stop).
Expected: every (notice, partner) pair and every subscriber's two messages arrive; duplicates
(expected none) are printed, carry the same webhook-id / Message-ID, and stay within what was
in flight at each stop; both daemons keep running.  Each daemon's recovery time is printed.
"""

import pytest

from broker_faults import Streams, broker_outage, daemon_envs
from mailer_support import mailer_bin  # noqa: F401 (fixture)
from webhooks_support import daemon_bin, notice  # noqa: F401 (fixture)

pytestmark = pytest.mark.faults

N_NOTICES, N_SUBS = 1000, 1000
DOWN_S = 20


def test_single_broker_restarts_mid_stream(own_kafka, tmp_path, nc_bin, daemon_bin, mailer_bin,
                                           record_property):
    with daemon_envs(tmp_path, own_kafka.bootstrap, nc_bin, daemon_bin, mailer_bin) as (wh, ml):
        run(own_kafka, wh, ml, record_property)


def run(broker, wh, ml, record_property):
    # ~10 deliveries/s per partner and ~20 messages/s: both still at work at each stop
    st = Streams(wh, ml, subscribers=N_SUBS, partner_delay=0.1, max_in_flight=1, smtp_delay=0.05,
                 batch=20).start()
    notices = [notice(("news", "press", "alerts")[i % 3], f"Single {i}") for i in range(N_NOTICES)]
    st.notice_ids = {n["id"] for n in notices}
    half = N_NOTICES // 2
    for i in range(0, half, 100):
        st.publish(notices[i:i + 100])
    st.bulletin("Single bulletin one")
    st.wait_under_way(webhooks=300, mail=200)

    outages = []
    st.fault("SIGTERM, down 20 s")
    outages.append(broker_outage(broker, DOWN_S, daemons=(st.dw, st.dm)))
    for i in range(half, N_NOTICES, 100):
        st.publish(notices[i:i + 100])
    st.bulletin("Single bulletin two")
    st.wait_under_way(webhooks=st.delivered() + 300, mail=st.ml.smtp.count() + 200)
    st.fault("kill -9, down 20 s")
    outages.append(broker_outage(broker, DOWN_S, daemons=(st.dw, st.dm), kill=True))
    st.finish()

    lines, problems = st.report()
    lines.insert(0, "single broker: " + "; ".join(
        f"down {o.down_s:.0f} s, daemons ready {o.ready_s:.1f} s after the start" for o in outages))
    text = "\n".join(lines)
    print("\n" + text)
    record_property("figures", text)
    record_property("duplicates", st.duplicates)
    for name, dups in st.duplicates.items():
        bound = st.in_flight[name] * len(outages)
        if dups > bound:
            problems.append(f"{name}: {dups} duplicates, more than the {bound} in flight at the stops")
    problems += st.stop_daemons()
    assert not problems, "\n".join(problems) + "\n" + text
