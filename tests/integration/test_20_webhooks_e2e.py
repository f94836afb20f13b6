"""noticecast-webhooks end to end: the CLI publishes, the daemon fans out to real HTTP receivers.

Three partners with different filters and formats; each gets exactly the notices that match,
signed so that the official `standardwebhooks` library verifies them, with the payload shapes,
headers and delivery events of the spec; withdrawals arrive as notice.withdrawn; a partner
with two secrets gets two signatures, each verifiable alone; a disabled partner gets nothing.
"""

import re
import signal
from collections import Counter

from webhook_receiver import Always, verify_with
from webhooks_support import *  # noqa: F401,F403  (fixtures: wh, daemon_bin, ...)

# index -> (category, regions); None = no "regions" key at all
NOTICES = [
    ("news", ["PE"]),        # 0  pe
    ("news", ["BR"]),        # 1  br
    ("news", None),          # 2  pe, br   (no regions: everyone)
    ("alerts", ["PE", "BR"]),  # 3 pe        (br does not take alerts)
    ("press", ["BR"]),       # 4  br
    ("press", ["PE"]),       # 5  nobody    (pe does not take press, br not PE)
    ("tenders", None),       # 6  duo
    ("alerts", ["CL"]),      # 7  nobody    (pe is PE only)
    ("news", ["CL", "PE"]),  # 8  pe        (shares PE)
    ("press", []),           # 9  br        (empty regions: everyone)
    ("tenders", ["AR"]),     # 10 duo       (duo has no region filter)
]
EXPECT_PUBLISHED = {"pe": {0, 2, 3, 8}, "br": {1, 2, 4, 9}, "duo": {6, 10}}
# withdrawals carry no regions: every partner of the category gets them
WITHDRAW = [2, 5, 6]
EXPECT_WITHDRAWN = {"pe": {2}, "br": {2, 5}, "duo": {6}}

MEDIA_TYPE = {"standard": "application/json", "cloudevents": "application/cloudevents+json"}


def daemon_version(wh) -> str:
    cp = wh.run_daemon("-V")
    assert cp.returncode == 0, f"-V exited {cp.returncode}: {cp.stderr}"
    m = re.search(r"noticecast\S*\s+v?(\d+\.\d+\.\d+\S*)", cp.stdout)
    assert m, f"no 'noticecast X.Y.Z' in -V output:\n{cp.stdout}"
    return m.group(1)


def kafka_values(wh, categories):
    """{(notice id, event): (Msg, parsed value)} of everything on the notice topics."""
    out = {}
    for c in categories:
        for m in wh.messages(wh.topic(c)):
            out[(m.key, m.headers.get("noticecast-event"))] = (m, m.json())
    return out


def check_request(r, partner, fmt, kafka, version):
    where = f"partner {partner}: {r.describe()}"
    assert r.method == "POST", where
    assert r.verified is True, f"{where}: signature does not verify: {r.verify_error}"
    assert WEBHOOK_ID_RE.match(r.webhook_id or ""), f"{where}: webhook-id {r.webhook_id!r}"
    assert re.fullmatch(r"\d+", r.header("webhook-timestamp") or ""), where
    # the timestamp of this attempt, on this machine's clock (a sanity bound, not a latency one)
    assert abs(r.webhook_timestamp - r.arrived_wall) < 120, where
    for sig in r.signatures:
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", sig), f"{where}: signature {sig!r}"
    ua = r.header("user-agent") or ""
    assert re.match(rf"^noticecast/{re.escape(version)}(\s|$)", ua), f"{where}: User-Agent {ua!r}"
    ctype = (r.header("content-type") or "").split(";")[0].strip().lower()
    assert ctype == MEDIA_TYPE[fmt], f"{where}: Content-Type {r.header('content-type')!r}"

    nid, event = r.key
    assert (nid, event) in kafka, f"{where}: not a notice/withdrawal that was published"
    _, value = kafka[(nid, event)]
    p = r.payload
    assert isinstance(p, dict), f"{where}: body is not a JSON object: {r.body[:200]!r}"
    if fmt == "standard":
        assert set(p) == {"type", "timestamp", "data"}, f"{where}: keys {sorted(p)}"
        assert p["type"] == event
        rfc3339(p["timestamp"])
        assert p["data"] == value, f"{where}: data differs from the Kafka record\n{p['data']}\n{value}"
    else:
        for k in ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"):
            assert k in p, f"{where}: CloudEvent without {k}: {sorted(p)}"
        assert p["specversion"] == "1.0"
        assert p["id"] == r.webhook_id, f"{where}: CloudEvent id {p['id']!r} != webhook-id"
        assert p["source"] == f"/noticecast/{value['category']}", where
        assert p["type"] == f"gov.noticecast.{event}", where
        assert p["subject"] == nid, where
        rfc3339(p["time"])
        assert p["datacontenttype"] == "application/json", where
        assert p["data"] == value, f"{where}: data differs from the Kafka record"


def test_end_to_end_filters_formats_signatures(wh):
    version = daemon_version(wh)
    rx_a = wh.receiver("a")
    rx_b = wh.receiver("b")
    pe = wh.partner("pe", rx_a.url("/pe"), categories="news, alerts", regions="PE", format="standard")
    br = wh.partner("br", rx_b.url("/br"), categories="news, press", regions="BR, AR", format="cloudevents")
    duo_secrets = [make_secret(32), make_secret(48)]
    duo = wh.partner("duo", rx_a.url("/duo"), secrets=duo_secrets, categories="tenders", format="standard")
    off = wh.partner("off", rx_b.url("/off"), enabled="false")
    for rx, path, p in ((rx_a, "/pe", pe), (rx_b, "/br", br), (rx_a, "/duo", duo), (rx_b, "/off", off)):
        rx.route(path, Always(204), secrets=p.secrets)
    fmts = {"pe": "standard", "br": "cloudevents", "duo": "standard"}
    rxs = {"pe": (rx_a, "/pe"), "br": (rx_b, "/br"), "duo": (rx_a, "/duo")}

    d = wh.start()

    notices = []
    for i, (cat, regions) in enumerate(NOTICES):
        extra = {}
        if i == 0:  # non-ASCII text and a body over 1 KiB (libcurl sends Expect: 100-continue)
            extra = {"title": {"en": "Visa waiver extended", "ko": "비자 면제 연장", "es": "Exención de visado"},
                     "body": {"en": "Long paragraph. " * 200}}
        notices.append(notice(cat, f"Notice {i}", regions, **extra))
    wh.publish(notices)
    ids = [n["id"] for n in notices]
    for i in WITHDRAW:
        wh.withdraw(ids[i], NOTICES[i][0], reason=f"Withdrawn {i}")

    expect = {pid: {(ids[i], "notice.published") for i in EXPECT_PUBLISHED[pid]}
              | {(ids[i], "notice.withdrawn") for i in EXPECT_WITHDRAWN[pid]} for pid in fmts}
    for pid, (rx, path) in rxs.items():
        rx.wait_for_keys(path, expect[pid], extra=wh.logs)
    # once the group has committed past every record, no delivery is still to come
    wh.wait_all_committed()

    kafka = kafka_values(wh, ["news", "press", "tenders", "alerts"])
    all_ids = {}
    for pid, (rx, path) in rxs.items():
        reqs = rx.snapshot(path)
        assert all(r.ok for r in reqs), rx.summary(path)
        got = Counter(r.key for r in reqs)
        assert set(got) == expect[pid], (f"partner {pid}: got {sorted(got)}\nexpected {sorted(expect[pid])}")
        dups = {k: n for k, n in got.items() if n > 1}
        assert not dups, f"partner {pid}: delivered more than once without any failure: {dups}"
        for r in reqs:
            check_request(r, pid, fmts[pid], kafka, version)
        # one webhook-id per (notice, event) on a partner
        wids = {r.key: r.webhook_id for r in reqs}
        assert len(set(wids.values())) == len(wids), f"partner {pid}: webhook-ids collide: {wids}"
        all_ids[pid] = wids
    assert rx_b.snapshot("/off") == [], "a partner with enabled = false received requests"

    # a signature is made with the partner's own secret only
    r = rx_a.snapshot("/pe")[0]
    assert verify_with(br.secrets[0], r.body, r.headers)[0] is False
    assert verify_with(make_secret(), r.body, r.headers)[0] is False

    # two secrets: two signatures, and either secret alone verifies
    for r in rx_a.snapshot("/duo"):
        assert len(r.signatures) == 2, f"two secrets, signature header {r.header('webhook-signature')!r}"
        assert r.verified_by == [True, True], f"{r.describe()}: verified per secret {r.verified_by}"

    # delivery events: one "delivered" webhook.attempt per request
    def events_complete():
        ev = wh.delivery_events()
        return ev if len([e for e in ev if e.get("outcome") == "delivered"]) >= sum(
            len(v) for v in expect.values()) else None

    events = wait_for(events_complete, 60, f"'delivered' events on {wh.deliveries_topic}", 0.5, wh.logs)
    delivered_events = {(e["partner"], e["webhook_id"]): e for e in events if e["outcome"] == "delivered"}
    for pid, wids in all_ids.items():
        for (nid, event), wid in wids.items():
            e = delivered_events.get((pid, wid))
            assert e is not None, f"no delivered event for {pid} {nid} {event} ({wid}); events: {events[:5]}"
            assert e["type"] == "webhook.attempt"
            assert e["notice_id"] == nid and e["event"] == event
            assert e["attempt"] == 1 and e["status"] == 204 and e["error"] is None, e
            assert isinstance(e["latency_ms"], (int, float)) and e["latency_ms"] >= 0, e
            rfc3339(e["time"])
    for m in wh.messages(wh.deliveries_topic):
        assert m.key == m.json()["notice_id"], f"deliveries record key {m.key!r} != notice_id"
    assert not any(e.get("partner") == "off" for e in events), "events for a disabled partner"
    assert wh.dlq() == [], f"unexpected DLQ records: {[(m.key, m.headers) for m in wh.dlq()]}"

    # metrics, health
    samples = d.metrics()
    for pid in fmts:
        v = metric_value(samples, "noticecast_webhook_deliveries_total", partner=pid, outcome="delivered")
        assert v == len(expect[pid]), f"deliveries_total{{partner={pid},outcome=delivered}} = {v}"
        v = metric_value(samples, "noticecast_webhook_attempts_total", partner=pid, outcome="delivered")
        assert v == len(expect[pid]), f"attempts_total{{partner={pid},outcome=delivered}} = {v}"
    assert d.get("/healthz")[0] == 200
    assert d.get("/readyz")[0] == 200

    # graceful stop
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(10 + 30)  # shutdown_timeout = 10s, plus slack: a bound on hanging
    assert rc == 0, f"SIGTERM: exit {rc}\n{d.tail()}"
