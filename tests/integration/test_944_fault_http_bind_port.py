"""Fault: a bind failure did not name the configured port (issue 8, item 5).

When the HTTP endpoint's port is taken, the daemon must exit with an error that names the
address and the port it was configured with.  Before the fix libmicrohttpd's message said
"Failed to bind to port 0" (it reported its port argument, 0, not the port in the address).
Both daemons: a Python socket listens on 127.0.0.1:P, the daemon is started with
listen = 127.0.0.1:P (and the mailer, in a second case, with public_listen = 127.0.0.1:P) and
must exit (not hang) with P in its error line.
"""

import re
import socket

import pytest

from mailer_support import ml_factory, mailer_bin  # noqa: F401 (fixtures)
from webhooks_support import wh_factory, daemon_bin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("kind", ["webhooks", "mailer", "mailer-public"])
def test_bind_failure_names_the_port(kind, wh_factory, ml_factory, record_property):  # noqa: F811
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        if kind == "webhooks":
            env = wh_factory()
            env.partner("p1", "http://127.0.0.1:9/hook")
            env.write_config(listen=f"127.0.0.1:{port}")
            d = env.start(ready=False, write=False)
        else:
            env = ml_factory()
            env.mailer["listen" if kind == "mailer" else "public_listen"] = f"127.0.0.1:{port}"
            d = env.start(ready=False)
        rc = d.wait_exit(60)
    finally:
        holder.close()
    errors = [ln for ln in d.log().splitlines() if "level=error" in ln]
    line = errors[-1] if errors else "(no error line)"
    named = bool(re.search(rf"\b{port}\b", line)) and "127.0.0.1" in line
    wrong = bool(re.search(r"\bport 0\b", line))
    figures = f"{kind}: exit {rc}; names port {port}: {named}; names another port (0): {wrong}: {line}"
    print(figures)
    record_property("figures", figures)
    assert rc != 0, figures
    assert named, f"{figures}\n{d.tail()}"
    assert not wrong, figures
