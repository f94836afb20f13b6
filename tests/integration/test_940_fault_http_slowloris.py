"""Fault: slow clients starve the HTTP endpoint (issue 8, item 1).

64 connections from 127.0.0.1 each send one header byte every 5 s and never finish their
request.  Before the fix they held every connection slot of the endpoint (the limit was 64,
and MHD's timeout only closes *idle* connections) for as long as they trickled: /healthz
from anywhere else went unanswered (0 of 8 probes within 3 s) and the liveness probe would
have restarted the pod; /unsubscribe was unreachable too.

Now: one address gets at most NC_HTTPD_CONNECTIONS_PER_IP (16) connections of the budget
(128), and a request that is not in within NC_HTTPD_REQUEST_DEADLINE_S (10 s) of its first
byte gets its connection closed however slowly it trickles.  Both daemons use nc_httpd; each
is tested.  While the attack runs, probes come from other loopback addresses (a kubelet
probes from the node's address, not the attacker's): /healthz from 127.0.0.2 and, for the
mailer, /unsubscribe from 127.0.0.3 must be answered within 3 s, and the attacker's
connections must be closed by the server although they keep sending.  The mailer serves
/unsubscribe on its public listener (issue 10): both of its listeners are attacked at once,
/healthz is probed on the admin one and /unsubscribe on the public one.
"""

import time

import pytest

from http_fault_support import Trickler, probe
from mailer_support import ml_factory, mailer_bin  # noqa: F401 (fixtures)
from webhooks_support import wh_factory, daemon_bin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.faults

ATTACKERS = 64
TRICKLE_S = 5.0
PROBES = 8
PROBE_TIMEOUT = 3.0
# generous: the deadline is 10 s; the watchdog looks every 0.25 s; the trickle loop every 0.1 s
CLOSE_BOUND_S = 30


def start_daemon(kind, wh_factory, ml_factory):  # noqa: F811
    if kind == "webhooks":
        env = wh_factory()
        env.partner("p1", "http://127.0.0.1:9/hook")
        return env, env.start()
    env = ml_factory()
    # (also gives the fresh topics their leaders: the mailer exits on "not leader" at start)
    env.add_subscriber("reader@example.org", tz="UTC")
    return env, env.start()


@pytest.mark.parametrize("kind", ["webhooks", "mailer"])
def test_slow_clients_do_not_starve_probes(kind, wh_factory, ml_factory, record_property):  # noqa: F811
    env, d = start_daemon(kind, wh_factory, ml_factory)
    addr = d.http_addr()
    st, _, err = probe(addr, "/healthz", "127.0.0.2")
    assert st == 200, f"/healthz before the attack: {st} {err}\n{d.tail()}"

    public = f"127.0.0.1:{env.public_port}" if kind == "mailer" else None
    attack = Trickler(addr, ATTACKERS, src="127.0.0.1", interval=TRICKLE_S).start()
    attack_pub = Trickler(public, ATTACKERS, src="127.0.0.1", interval=TRICKLE_S).start() if public else None
    try:
        time.sleep(1.5)
        health, unsub = [], []
        for i in range(PROBES):
            health.append(probe(addr, "/healthz", "127.0.0.2", timeout=PROBE_TIMEOUT))
            if kind == "mailer":
                # a token that is not ours: the page saying so (403) is an answer
                unsub.append(probe(public, "/unsubscribe?token=not-a-token", "127.0.0.3",
                                   timeout=PROBE_TIMEOUT))
            time.sleep(1.0)
        t_end = time.monotonic() + CLOSE_BOUND_S
        while (attack.still_open() or (attack_pub and attack_pub.still_open())) and time.monotonic() < t_end:
            time.sleep(0.5)
        still_open = attack.still_open() + (attack_pub.still_open() if attack_pub else 0)
        accepted = attack.accepted + (attack_pub.accepted if attack_pub else 0)
        attacks = [a for a in (attack, attack_pub) if a]
        opened = sum(len(a.socks) for a in attacks)
        held_s = max((a.closed_at.get(i, CLOSE_BOUND_S) for a in attacks for i in range(len(a.socks))
                      if a.closed_at.get(i, 1e9) > 1.0), default=0.0)
    finally:
        attack.stop()
        if attack_pub:
            attack_pub.stop()

    ok_health = sum(1 for s, secs, _ in health if s == 200 and secs <= PROBE_TIMEOUT)
    ok_unsub = sum(1 for s, secs, _ in unsub if s == 403 and secs <= PROBE_TIMEOUT)
    figures = (f"{kind}: /healthz answered {ok_health}/{PROBES} within {PROBE_TIMEOUT:.0f}s"
               + (f", /unsubscribe answered {ok_unsub}/{PROBES}" if kind == "mailer" else "")
               + f"; attacker connections: {opened} opened, {accepted} held by the server, "
               f"{still_open} still open {CLOSE_BOUND_S}s after the probes (longest held {held_s:.1f}s)")
    print(figures)
    record_property("figures", figures)

    assert ok_health == PROBES, f"{figures}\nprobes: {health}\n{d.tail()}"
    if kind == "mailer":
        assert ok_unsub == PROBES, f"{figures}\nprobes: {unsub}\n{d.tail()}"
    assert still_open == 0, f"slow requests were not cut: {figures}\n{d.tail()}"
    # the daemon is still fine afterwards
    st, _, err = probe(addr, "/healthz", "127.0.0.1")
    assert st == 200, f"/healthz after the attack: {st} {err}\n{d.tail()}"
    assert d.alive(), d.tail()
