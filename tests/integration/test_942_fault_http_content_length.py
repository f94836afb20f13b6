"""Fault: conflicting Content-Length headers were accepted (issue 8, item 3).

A request with two different Content-Length values (or a list of them in one header, or a
Content-Length together with Transfer-Encoding) is framed differently by different readers:
a proxy in front may forward one body and one next request, the daemon see another (request
smuggling).  Before the fix, GET /healthz with "Content-Length: 0" and "Content-Length: 5"
got 200 (libmicrohttpd used the first).  Now both daemons answer 400 and close the
connection; identical duplicates stay acceptable (RFC 9110 §8.6).
"""

import pytest

from http_fault_support import raw_request
from mailer_support import ml_factory, mailer_bin  # noqa: F401 (fixtures)
from webhooks_support import wh_factory, daemon_bin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.faults


def req(method, path, headers, body=b""):
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n" + body)


BAD = {
    "two lengths 0 and 5": lambda p, m: req(m, p, [("Content-Length", "0"), ("Content-Length", "5")], b"hello"),
    "two lengths 5 and 0": lambda p, m: req(m, p, [("Content-Length", "5"), ("Content-Length", "0")], b"hello"),
    "two lengths 26 and 3": lambda p, m: req(m, p, [("Content-Length", "26"), ("Content-Length", "3"),
                                                   ("Content-Type", "application/x-www-form-urlencoded")],
                                            b"List-Unsubscribe=One-Click"),
    "length and chunked": lambda p, m: req(m, p, [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
                                          b"0\r\n\r\n"),
}


@pytest.mark.parametrize("kind", ["webhooks", "mailer"])
def test_conflicting_content_length_is_400(kind, wh_factory, ml_factory, record_property):  # noqa: F811
    if kind == "webhooks":
        env = wh_factory()
        env.partner("p1", "http://127.0.0.1:9/hook")
        paths = [("GET", "/healthz", None), ("POST", "/healthz", None)]
    else:
        env = ml_factory()
        env.add_subscriber("reader@example.org", tz="UTC")
        # /unsubscribe is on the public listener (issue 10)
        paths = [("GET", "/healthz", None), ("POST", "/unsubscribe?token=x", f"127.0.0.1:{env.public_port}")]
    d = env.start()
    addr = d.http_addr()
    results = {}
    for what, make in BAD.items():
        for method, path, where in paths:
            st, raw, _, err = raw_request(where or addr, make(path, method), timeout=10)
            # after the 400 the server must have closed: nothing of the body is read as a
            # second request (one status line only)
            results[f"{what}: {method} {path}"] = (st, raw.count(b"HTTP/1."), err)
    # identical duplicates are fine
    st_dup, _, _, _ = raw_request(addr, req("GET", "/healthz", [("Content-Length", "0"), ("Content-Length", "0"),
                                                                 ("Connection", "close")]), timeout=10)
    rejected = sum(1 for st, n, _ in results.values() if st == 400 and n == 1)
    figures = (f"{kind}: {rejected}/{len(results)} badly framed requests answered 400 (and only that); "
               f"identical duplicate Content-Length: {st_dup}")
    print(figures)
    for k, v in results.items():
        print(f"  {k}: status {v[0]}, {v[1]} answer(s), {v[2] or ''}")
    record_property("figures", figures)
    assert rejected == len(results), f"{figures}\n{results}\n{d.tail()}"
    assert st_dup == 200, figures
    assert d.get("/healthz")[0] == 200 and d.alive(), d.tail()
