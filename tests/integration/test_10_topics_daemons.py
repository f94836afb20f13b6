"""The daemons only check their topics: `noticecast topics create` makes them.

Each daemon is started before any topic exists.  It must stay up and not ready, say in ONE log
line which of its topics are missing (all of them, and none it does not use) and that
`noticecast topics create` makes them, give the reason on /readyz, and check again every few
seconds, logging again only when the set changes: after the CLI's own three kinds are created
with AdminClient, one more line names only what is still missing.  Then the real `noticecast
topics create` runs, and the daemon becomes ready and delivers a notice (webhooks: to a
partner; mailer: an immediate alert to a subscriber added afterwards).
"""

import re
import time

import pytest

from conftest import create_topics
from mailer_support import *  # noqa: F401,F403
from mailer_support import notice
from webhook_receiver import Always
from webhooks_support import daemon_bin, wh_factory  # noqa: F401 (fixtures)

# The kinds each daemon reads or writes (topic name after the prefix).
USES = {
    "webhooks": re.compile(r"^(notices\..+|dlq|deliveries|webhooks\.retry\..+)$"),
    "mailer": re.compile(r"^(notices\..+|subscribers|dlq|deliveries|mailer\.plan|mailer\.jobs)$"),
}
MISSING_RE = r'checking topics: \d+ topics? missing \(run `noticecast topics create`[^\n]*'
# Two checks at least (every 5 s) after a line: a repeated line would show by then.
QUIET_S = 12


def setup_webhooks(wh_factory):
    env = wh_factory(topics=False)
    rx = env.receiver("rx")
    p = env.partner("pe", rx.url("/hook"))
    rx.route("/hook", Always(204), secrets=p.secrets)

    def deliver():
        n = notice("news", "After topics create")
        env.publish([n])
        rx.wait_for_ids("/hook", {n["id"]}, timeout=120, extra=env.logs)

    return env, env.start(ready=False, topics=False), deliver


def setup_mailer(ml_factory):
    env = ml_factory(topics=False)

    def deliver():
        sid = env.add_subscriber("first@example.org", lang="en", frequency="immediate")
        n = notice("alerts", "After topics create", priority="urgent")
        env.publish([n])
        env.wait_mail(lambda ib: any(m.to == sid for m in ib), what="the alert after topics create")

    return env, env.start(ready=False, topics=False), deliver


def missing_lines(d) -> list:
    return re.findall(MISSING_RE, d.log())


def named(line: str, topics) -> set:
    return {t for t in topics if re.search(rf"(?<![\w.]){re.escape(t)}(?![\w.])", line)}


@pytest.mark.parametrize("daemon", ["webhooks", "mailer"])
def test_daemon_waits_for_topics_create(daemon, request):
    factory = request.getfixturevalue("wh_factory" if daemon == "webhooks" else "ml_factory")
    env, d, deliver = (setup_webhooks if daemon == "webhooks" else setup_mailer)(factory)
    every = env.topic_list(d.config)
    mine = {t for t in every if USES[daemon].match(t[len(env.prefix):])}
    assert mine and mine != set(every), f"topics of {daemon}: {sorted(mine)}"

    first = d.wait_log(MISSING_RE, timeout=90, what="the missing-topics line").group(0)
    assert named(first, every) == mine, f"named {sorted(named(first, every))}\nuses {sorted(mine)}\n{first}"
    st, body = d.get("/readyz")
    assert st == 503 and "topics missing" in body and "noticecast topics create" in body, (st, body)
    time.sleep(QUIET_S)
    assert d.alive(), d.tail()
    assert len(missing_lines(d)) == 1, "the same missing topics logged again:\n" + d.tail()
    assert d.get("/readyz")[0] == 503

    # Some of them appear (the CLI's own kinds): one more line, naming only the rest.
    create_topics(env.bootstrap, env.cli_cfg)
    rest = mine - set(env.cli_cfg.all_topics)
    wait_for(lambda: len(missing_lines(d)) >= 2, 60, "a line for the smaller set", 0.2, d.tail)
    second = missing_lines(d)[1]
    assert rest and named(second, every) == rest, f"named {sorted(named(second, every))}, missing {sorted(rest)}"
    assert d.get("/readyz")[0] == 503

    env.create_topics(d.config)  # the real `noticecast topics create -C <daemon config>`
    d.wait_ready()
    assert "checking topics: done" in d.log(), d.tail()
    assert len(missing_lines(d)) == 2, d.tail()
    deliver()
    assert d.alive() and d.terminate() == 0, d.tail()
