"""The mailer's two listeners (issue 10): the public one ([mailer] public_listen) serves
/unsubscribe and nothing else, so the port that faces the Internet never shows /metrics; the
admin one ([mailer] listen) serves /metrics, /healthz and /readyz and not /unsubscribe.

One daemon; every path asked on both ports, with GET and HEAD; a token that is not one of ours
gets the unsubscribe page's 403 on the public port (the route is there) and 404 on the admin
port (it is not).
"""

from mailer_support import *  # noqa: F401,F403


def test_public_and_admin_listeners(ml):
    env = ml
    env.add_subscriber("one@example.org", frequency="immediate")
    d = env.start()
    assert d.http_addr() == f"127.0.0.1:{env.port}", "the admin address is the 'http listening' one"
    m = d.wait_log(r'msg="public http listening" addr=([0-9.]+:\d+)', what="the public listener line")
    assert m.group(1) == f"127.0.0.1:{env.public_port}", m.group(0)
    seen = {}
    for name, base in (("public", env.public_url), ("admin", env.base_url)):
        for path in ("/metrics", "/healthz", "/readyz", "/unsubscribe?token=not-ours", "/"):
            for method in ("GET", "HEAD"):
                st, body = http_request(base + path, method=method)
                seen[(name, method, path)] = (st, body)
    summary = {k: v[0] for k, v in seen.items()}
    print(f"\n{summary}")
    for method in ("GET", "HEAD"):
        for path in ("/metrics", "/healthz", "/readyz", "/"):
            assert seen[("public", method, path)][0] == 404, (method, path, seen[("public", method, path)])
        assert seen[("public", method, "/unsubscribe?token=not-ours")][0] == 403, summary
        assert seen[("admin", method, "/unsubscribe?token=not-ours")][0] == 404, summary
        for path in ("/metrics", "/healthz", "/readyz"):
            assert seen[("admin", method, path)][0] == 200, (method, path, seen[("admin", method, path)])
    assert "noticecast_" not in seen[("public", "GET", "/metrics")][1]
    assert "noticecast_mail_messages_total" in seen[("admin", "GET", "/metrics")][1]
    # ready means the brokers answer: the gauge says so too
    assert metric_value(d.metrics(), "noticecast_kafka_broker_up") == 1
    assert d.terminate() == 0, d.tail()
