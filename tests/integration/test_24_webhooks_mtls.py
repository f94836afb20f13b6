"""HTTPS partners with mutual TLS, against a test CA made here with the openssl command line.

Every receiver requires a client certificate signed by the test CA.  The partner configured with
ca_file + client_cert/client_key receives; one without a client certificate, one with a
certificate of another CA, and one that does not trust the server's CA receive nothing (their
deliveries fail, are retried and end in the DLQ); tls_verify = false skips the server check and
is logged."""

import re

from webhook_receiver import Always, TLSConfig
from webhooks_support import *  # noqa: F401,F403


def test_mtls_partners(wh, pki):
    wh.webhooks.update(retry_schedule="1s, 1s")
    tls = TLSConfig(pki["server_crt"], pki["server_key"], client_ca=pki["ca"], require_client_cert=True)
    client = {"client_cert": pki["client_crt"], "client_key": pki["client_key"]}
    setups = {
        "good": {"ca_file": pki["ca"], **client},
        "nocert": {"ca_file": pki["ca"]},
        "rogue": {"ca_file": pki["ca"], "client_cert": pki["rogue_crt"], "client_key": pki["rogue_key"]},
        "noca": dict(client),  # the server's certificate is not signed by a system CA
        "insecure": {"tls_verify": "false", **client},
    }
    rxs = {}
    for pid, opts in setups.items():
        rx = wh.receiver(pid, tls=tls)
        p = wh.partner(pid, rx.url("/hook"), **{k: str(v) for k, v in opts.items()})
        rx.route("/hook", Always(204), secrets=p.secrets)
        rxs[pid] = rx
        assert p.url.startswith("https://127.0.0.1:")
    d = wh.start()

    notices = [notice("alerts", f"Secure {i}") for i in range(3)]
    wh.publish(notices)
    ids = {n["id"] for n in notices}

    for pid in ("good", "insecure"):
        rxs[pid].wait_for_ids("/hook", ids, extra=wh.logs)
        for r in rxs[pid].snapshot("/hook"):
            assert r.verified, r.describe()
            assert r.peer_cert is not None, "request without a client certificate"
            subject = dict(x[0] for x in r.peer_cert["subject"])
            assert subject.get("commonName") == "partner-client", r.peer_cert
    for pid in ("nocert", "rogue", "noca"):
        msgs = wh.wait_dlq(pid, ids)
        for m in msgs:
            reason = m.headers["noticecast-dlq-reason"]
            assert pid in reason and "retries exhausted" in reason, reason
        rx = rxs[pid]
        assert rx.snapshot() == [], f"{pid}: HTTP requests got through:\n{rx.summary()}"
        assert rx.tls_failures, f"{pid}: no failed handshake recorded (did the daemon try at all?)"
    wh.wait_all_committed()

    # failed attempts are recorded as connection errors: no HTTP status, an error text
    ev = wh.delivery_events()
    for pid in ("nocert", "rogue", "noca"):
        mine = [e for e in ev if e.get("partner") == pid]
        assert mine and all(e["status"] is None and e["error"] for e in mine), mine[:3]
        assert {e["outcome"] for e in mine} <= {"retry", "dlq"}, mine[:3]

    # tls_verify = false is logged loudly (a warning that names the partner and the key)
    log = d.log()
    assert re.search(r"(?m)^.*\binsecure\b.*\btls_verify\b.*$|^.*\btls_verify\b.*\binsecure\b.*$", log), \
        "no log line about partner insecure's tls_verify = false\n" + d.tail()
    for secret in (s for p in wh.partners.values() for s in p.secrets):
        assert secret not in log and secret[6:] not in log, "a secret appears in the log"
    assert d.terminate() == 0, d.tail()
