"""`noticecast inbound` against a real broker: every sample of tests/integration/inbound/ (with a
real VERP address (inbound_support.py) and a real unsubscribe token, made here from
consumer/mailer/unsub_token.h) becomes one event on <prefix>deliveries
with the right fields; forged tokens and auto-replies are recorded as mail.ignored; garbage is
quarantined in the DLQ; with Kafka away the exit code is 75 (the MTA keeps the mail) and
nothing is written, and the same mail once the broker is back is written exactly once."""

import base64
import hashlib
import hmac
import json
import os
import pwd
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from conftest import admin_for, consume_all, describe, free_port, wait_topics, write_config
from inbound_support import message_ref, subscriber_ref, verp_address

SAMPLES = Path(__file__).resolve().parent / "inbound"
EX_OK, EX_USAGE, EX_TEMPFAIL = 0, 64, 75
BASE = "bounces@example.gov"
FROM = "notices@example.gov"
UNSUB = "unsubscribe@example.gov"
DATE = "Thu, 03 Dec 2026 12:00:00 +0000"
GENERATION = 0x0123456789ABCDEF
TIMEOUT_MS = 4000
SLACK_S = 30  # a bound on hanging (the subprocess timeout), not a performance assertion


# --- tokens, from their specifications ---------------------------------------------------------


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def verp(secret: bytes, sid: str, message_id: str, base: str = BASE):
    """(address, subscriber_ref hex, message_ref hex) as the mailer makes them."""
    return (verp_address(secret, base, sid, message_id), subscriber_ref(secret, sid),
            message_ref(message_id))


def unsub_token(secret: bytes, sid: str, generation: int, expires: int) -> str:
    """A v3 unsubscribe token (AES-256-CTR with a synthetic IV, by the openssl command)."""
    k_enc = _hmac(secret, b"noticecast unsubscribe token v2: encryption")
    k_mac = _hmac(secret, b"noticecast unsubscribe token v2: authentication")
    idb = sid.encode()
    p = b"\x03" + expires.to_bytes(8, "big") + generation.to_bytes(8, "big") + bytes([len(idb)]) + idb
    p += b"\0" * (-len(p) % 16)
    tag = _hmac(k_mac, p)[:16]
    cp = subprocess.run(["openssl", "enc", "-aes-256-ctr", "-K", k_enc.hex(), "-iv", tag.hex()],
                        input=p, capture_output=True, check=True)
    assert len(cp.stdout) == len(p)
    return base64.urlsafe_b64encode(tag + cp.stdout).rstrip(b"=").decode()


# --- the setting ---------------------------------------------------------------------------------


class Inbound:
    def __init__(self, tmp_path: Path, bootstrap: str, nc_bin: str, create: bool = True, **sections):
        self.nc_bin = nc_bin
        self.client_bin = str(Path(nc_bin).with_name("noticecast-inbound"))
        self.socket = None
        self.server = None
        self.bootstrap = bootstrap
        self.secret = base64.urlsafe_b64encode(os.urandom(30))  # 40 bytes, no blanks
        self.secret_file = tmp_path / "unsubscribe.key"
        self.secret_file.write_bytes(self.secret)
        self.secret_file.chmod(0o600)
        mailer = {"from_address": FROM, "envelope_from": BASE, "unsubscribe_mailto": UNSUB,
                  "unsubscribe_secret_file": str(self.secret_file)}
        mailer.update(sections.pop("mailer", {}))
        producer = {"timeout_ms": TIMEOUT_MS}
        self.cfg = write_config(tmp_path / "nc.conf", bootstrap, mailer=mailer, producer=producer,
                                **sections)
        self.deliveries = f"{self.cfg.prefix}deliveries"
        self.dlq = f"{self.cfg.prefix}dlq"
        if create:
            self.create_topics()

    def create_topics(self):
        admin = admin_for(self.bootstrap)
        new = [NewTopic(t, num_partitions=3, replication_factor=1) for t in (self.deliveries, self.dlq)]
        for _, fut in admin.create_topics(new, operation_timeout=30, request_timeout=30).items():
            try:
                fut.result()
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        wait_topics(self.bootstrap, {self.deliveries: 3, self.dlq: 3})

    def mail(self, name: str, rcpt: str, message_id: str, token: str | None = None,
             verp_addr: str | None = None) -> bytes:
        text = (SAMPLES / name).read_text()
        if verp_addr is None:
            verp_addr = verp(self.secret, rcpt, message_id)[0]
        for k, v in {"${VERP}": verp_addr, "${RCPT}": rcpt, "${MESSAGE_ID}": message_id,
                     "${FROM}": FROM, "${UNSUB}": UNSUB, "${DATE}": DATE,
                     "${TOKEN}": token or self.token(rcpt)}.items():
            text = text.replace(k, v)
        return text.encode()

    def token(self, rcpt: str, expires: int | None = None) -> str:
        return unsub_token(self.secret, rcpt, GENERATION,
                           int(time.time()) + 86400 if expires is None else expires)

    def run(self, data: bytes, *args, config: Path | None = None, user: str | None = None,
            timeout: float = TIMEOUT_MS / 1000 + SLACK_S + 30) -> subprocess.CompletedProcess:
        if self.socket:  # through `noticecast inbound --serve` (the MTA runs the thin client)
            argv = [self.client_bin, "-s", str(self.socket), "-C", str(config or self.cfg.path),
                    *map(str, args)]
            return subprocess.run(argv, input=data, capture_output=True, timeout=timeout)
        argv = [self.nc_bin, "-C", str(config or self.cfg.path), "inbound", *map(str, args)]
        if user:
            argv = ["runuser", "-u", user, "--"] + argv
        return subprocess.run(argv, input=data, capture_output=True, timeout=timeout)

    def serve(self, tmp_path: Path) -> None:
        """Starts `noticecast inbound --serve` on a socket in TMP_PATH; run() then goes
        through the thin client."""
        self.socket = tmp_path / "inbound.sock"
        self.server = subprocess.Popen([self.nc_bin, "-C", str(self.cfg.path), "inbound", "--serve",
                                        str(self.socket)], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SLACK_S
        while not self.socket.exists():
            assert self.server.poll() is None, self.server.stdout.read().decode()
            assert time.monotonic() < deadline, "the server's socket did not appear"
            time.sleep(0.05)

    def stop_server(self) -> tuple:
        """SIGTERM; (exit code, output)."""
        self.server.terminate()
        out, _ = self.server.communicate(timeout=SLACK_S)
        return self.server.returncode, out.decode(errors="replace")

    def events(self) -> list:
        return consume_all(self.bootstrap, self.deliveries, "read_committed")

    def dlq_entries(self) -> list:
        return consume_all(self.bootstrap, self.dlq, "read_committed")


def rc_is(cp, rc):
    assert cp.returncode == rc, f"expected exit {rc}" + describe(
        subprocess.CompletedProcess(cp.args, cp.returncode, cp.stdout.decode(errors="replace"),
                                    cp.stderr.decode(errors="replace")))
    return cp


def by_report(events, message_id: str) -> list:
    return [m for m in events if m.json().get("report_message_id") == message_id]


@pytest.fixture(params=["direct", "served"])
def ib(request, tmp_path, bootstrap, nc_bin) -> Inbound:
    """`noticecast inbound` itself, and the same through `--serve` and noticecast-inbound."""
    inb = Inbound(tmp_path, bootstrap, nc_bin)
    if request.param == "served":
        inb.serve(tmp_path)
    yield inb
    if inb.server and inb.server.poll() is None:
        rc, out = inb.stop_server()
        assert rc == 0, out
        assert not inb.socket.exists(), "the server removes its socket"


def rcpt_addr() -> str:
    return f"ana.{uuid.uuid4().hex[:8]}@example.org"


# --- the samples ---------------------------------------------------------------------------------

# sample -> (report Message-ID in the sample, --recipient: "verp" | "unsub" | None, expected)
CASES = {
    "gmail-dsn-5.1.1.eml": ("6577ea3f.050a0220.1c7d0.9b7eSMTPIN_ADDED_BROKEN@mx.google.com", "verp",
                            {"type": "mail.bounce", "kind": "dsn", "status": "5.1.1", "action": "failed",
                             "status_source": "delivery-status"}),
    "exchange-ndr-5.1.10.eml": ("b3a1e0f2-44c1-4e7a-9d15-0c9f8a6d2b77@AM6PR04MB5000.eurprd04.prod.outlook.com",
                                "verp", {"type": "mail.bounce", "kind": "dsn", "status": "5.1.10",
                                         "action": "failed"}),
    "delayed-4.4.7.eml": ("20261203120000.6A1F23E0C1@relay.example.gov", None,
                          {"type": "mail.delayed", "kind": "dsn", "status": "4.4.7", "action": "delayed"}),
    "yahoo-arf-abuse.eml": ("1733212345.77.yahoo.fbl@arf.mail.yahoo.com", "verp",
                            {"type": "mail.complaint", "kind": "arf", "feedback_type": "abuse",
                             "user_agent": "Yahoo!-Mail-Feedback/2.0"}),
    "microsoft-arf-abuse.eml": ("BY5PR1901MB2089.JMRP.1733212345@outlook.com", None,
                                {"type": "mail.complaint", "kind": "arf", "feedback_type": "abuse"}),
    "mailto-unsubscribe.eml": ("CAF=ab12cd34ef56@mail.example.org", "unsub",
                               {"type": "mail.unsubscribed", "kind": "mailto"}),
    "out-of-office.eml": ("auto.4d5e6f@mail.example.org", "verp",
                          {"type": "mail.ignored", "kind": "other", "reason": "auto-reply"}),
}


def test_every_sample_becomes_its_event(ib):
    sent = {}
    for name, (report_id, recipient, _) in CASES.items():
        rcpt = rcpt_addr()
        mid = f"n-{uuid.uuid4().hex}@example.gov"
        addr, sref, mref = verp(ib.secret, rcpt, mid)
        args = {"verp": ["--recipient", addr], "unsub": ["--recipient", UNSUB], None: []}[recipient]
        cp = rc_is(ib.run(ib.mail(name, rcpt, mid), *args), EX_OK)
        assert cp.stdout == b"", cp.stdout
        sent[name] = (rcpt, sref, mref)

    events = ib.events()
    assert len(events) == len(CASES), [m.json() for m in events]
    for name, (report_id, _, want) in CASES.items():
        rcpt, sref, mref = sent[name]
        got = by_report(events, report_id)
        assert len(got) == 1, f"{name}: {[m.json() for m in events]}"
        m = got[0]
        ev = m.json()
        for k, v in want.items():
            assert ev.get(k) == v, f"{name}: {k} = {ev.get(k)!r}, want {v!r}: {ev}"
        assert ev["source"] == "inbound"
        assert len(ev["id"]) == 16 and ev["time"].endswith("Z")
        assert m.headers.get("noticecast-event") == ev["type"], m.headers
        assert m.headers.get("noticecast-source") == "inbound", m.headers
        # the references of the VERP token (the mailto sample carries only the unsubscribe token)
        assert ev["subscriber_ref"] == sref, f"{name}: {ev}"
        if name != "mailto-unsubscribe.eml":
            assert ev["message_ref"] == mref, f"{name}: {ev}"
        # the subscriber itself only where an unsubscribe token names it
        if name in ("yahoo-arf-abuse.eml", "mailto-unsubscribe.eml"):
            assert ev["subscriber"] == rcpt and ev["generation"] == f"{GENERATION:016x}", ev
            assert m.key == rcpt, m.key
        else:
            assert "subscriber" not in ev, ev
            assert m.key == f"ref:{sref}", m.key
        if ev["kind"] == "dsn":
            assert ev["recipient"] == rcpt, ev

    gmail = by_report(events, CASES["gmail-dsn-5.1.1.eml"][0])[0].json()
    # Diagnostic-Code unfolded: its continuation lines joined by spaces
    assert gmail["diagnostic"].startswith(
        "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try "
        "550-5.1.1 double-checking"), gmail
    assert "\n" not in gmail["diagnostic"] and len(gmail["diagnostic"].encode()) <= 1000


def test_forged_tokens_are_ignored(ib):
    rcpt = rcpt_addr()
    mid = f"n-{uuid.uuid4().hex}@example.gov"
    # a VERP address made with another secret
    forged = verp(b"not the secret, not the secret!!", rcpt, mid)[0]
    rc_is(ib.run(ib.mail("gmail-dsn-5.1.1.eml", rcpt, mid, verp_addr=forged), "--recipient", forged), EX_OK)
    # an unsubscribe token of another secret
    other = unsub_token(b"another secret, 32 bytes long!!!", rcpt, GENERATION, int(time.time()) + 3600)
    rc_is(ib.run(ib.mail("mailto-unsubscribe.eml", rcpt, mid, token=other), "--recipient", UNSUB), EX_OK)

    events = ib.events()
    dsn = by_report(events, CASES["gmail-dsn-5.1.1.eml"][0])
    unsub = by_report(events, CASES["mailto-unsubscribe.eml"][0])
    assert len(dsn) == 1 and len(unsub) == 1, [m.json() for m in events]
    d, u = dsn[0].json(), unsub[0].json()
    assert d["type"] == "mail.ignored" and d["reason"] == "forged VERP token", d
    assert "subscriber_ref" not in d and "subscriber" not in d, d
    assert d["status"] == "5.1.1"  # recorded as it came
    assert u["type"] == "mail.ignored" and u["reason"] == "forged unsubscribe token", u
    assert "subscriber" not in u, u
    assert dsn[0].headers["noticecast-event"] == "mail.ignored"


def test_expired_unsubscribe_token_is_honoured(ib):
    rcpt = rcpt_addr()
    tok = ib.token(rcpt, expires=int(time.time()) - 86400)
    rc_is(ib.run(ib.mail("mailto-unsubscribe.eml", rcpt, "x@example.gov", token=tok), "--recipient", UNSUB),
          EX_OK)
    [m] = ib.events()
    ev = m.json()
    assert ev["type"] == "mail.unsubscribed" and ev["subscriber"] == rcpt and ev["token_expired"] is True, ev


def test_garbage_is_quarantined(ib):
    garbage = os.urandom(3000).replace(b":", b"")
    cp = rc_is(ib.run(garbage), EX_OK)
    [entry] = ib.dlq_entries()
    assert entry.value == garbage, "the DLQ holds the bytes as they came"
    assert entry.headers["noticecast-dlq-stage"] == "inbound", entry.headers
    assert entry.headers["noticecast-dlq-reason"].startswith("unparseable: "), entry.headers
    assert entry.headers["content-type"] == "message/rfc822"
    [m] = ib.events()
    ev = m.json()
    assert ev["type"] == "mail.ignored" and ev["quarantined"] is True, ev
    assert ev["reason"] == entry.headers["noticecast-dlq-reason"]
    assert entry.key == m.key == f"inbound:{ev['id']}"
    assert cp.stdout == b""

    # `dlq list` shows it; there is nothing to replay it to
    cp = subprocess.run([ib.nc_bin, "-C", str(ib.cfg.path), "dlq", "list"], capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0 and "\tinbound\t" in cp.stdout and "unparseable" in cp.stdout, cp


def test_oversized_input_is_quarantined_as_a_reference(ib):
    big = b"From: a@example.org\r\nSubject: big\r\n\r\n" + b"x" * (11 * 1024 * 1024)
    rc_is(ib.run(big), EX_OK)
    [entry] = ib.dlq_entries()
    ref = json.loads(entry.value)
    assert ref["type"] == "noticecast.dlq.reference" and ref["stage"] == "inbound", ref
    assert ref["prefix"].startswith("From: a@example.org"), ref
    assert entry.headers["noticecast-dlq-reference"] == "1"
    assert int(entry.headers["noticecast-dlq-size"]) == len(big)
    [m] = ib.events()
    assert m.json()["reason"] == "unparseable: larger than 10 MiB"


def test_dry_run_writes_nothing(ib_plain):
    ib = ib_plain
    rcpt = rcpt_addr()
    mid = f"n-{uuid.uuid4().hex}@example.gov"
    addr, sref, _ = verp(ib.secret, rcpt, mid)
    cp = rc_is(ib.run(ib.mail("gmail-dsn-5.1.1.eml", rcpt, mid), "--recipient", addr, "-n"), EX_OK)
    ev = json.loads(cp.stdout)
    assert ev["type"] == "mail.bounce" and ev["subscriber_ref"] == sref, ev
    cp = rc_is(ib.run(b"\x00\x01 not a mail", "-n"), EX_OK)
    assert json.loads(cp.stdout)["quarantined"] is True
    assert b"would quarantine" in cp.stderr
    assert ib.events() == [] and ib.dlq_entries() == []


def test_usage_and_configuration(ib_plain, tmp_path):
    ib = ib_plain
    cp = rc_is(ib.run(b"", "-h"), EX_OK)
    assert cp.stdout.startswith(b"noticecast inbound") and cp.stderr == b""
    cp = rc_is(ib.run(b"", "--nonsense"), EX_USAGE)
    assert b"usage:" in cp.stderr
    cp = rc_is(ib.run(b"", "extra-argument"), EX_USAGE)
    # a configuration problem defers (Postfix would bounce 78), naming what is wrong
    bad = tmp_path / "bad.conf"
    bad.write_text("[mailer]\nverp_delimiter = #\n")
    cp = rc_is(ib.run(b"From: a@b.example\n\nx\n", config=bad), EX_TEMPFAIL)
    assert b"verp_delimiter" in cp.stderr
    no_secret = write_config(tmp_path / "nosecret.conf", ib.bootstrap, mailer={"from_address": FROM})
    cp = rc_is(ib.run(b"From: a@b.example\n\nx\n", config=no_secret.path), EX_TEMPFAIL)
    assert b"unsubscribe_secret_file is required" in cp.stderr
    ib.secret_file.chmod(0o644)
    cp = rc_is(ib.run(b"From: a@b.example\n\nx\n"), EX_TEMPFAIL)
    assert b"refused: chmod 600" in cp.stderr and ib.secret not in cp.stderr
    assert ib.events() == []


def test_kafka_unreachable_is_tempfail(tmp_path, nc_bin):
    ib = Inbound(tmp_path, f"127.0.0.1:{free_port()}", nc_bin, create=False)
    cp = rc_is(ib.run(ib.mail("delayed-4.4.7.eml", rcpt_addr(), "m@example.gov")), EX_TEMPFAIL)
    assert b"the MTA keeps the mail" in cp.stderr, cp.stderr


def test_broker_stopped_then_back_writes_once(own_kafka, tmp_path, nc_bin):
    ib = Inbound(tmp_path, own_kafka.bootstrap, nc_bin)
    rcpt = rcpt_addr()
    mid = f"n-{uuid.uuid4().hex}@example.gov"
    addr, sref, _ = verp(ib.secret, rcpt, mid)
    mail = ib.mail("exchange-ndr-5.1.10.eml", rcpt, mid)
    own_kafka.down()
    rc_is(ib.run(mail, "--recipient", addr), EX_TEMPFAIL)
    own_kafka.up()
    assert ib.events() == [], "nothing was written while the broker was away"
    # the MTA tries again
    rc_is(ib.run(mail, "--recipient", addr), EX_OK)
    [m] = ib.events()
    ev = m.json()
    assert ev["type"] == "mail.bounce" and ev["subscriber_ref"] == sref, ev


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")
def test_runs_as_an_unprivileged_user(tmp_path, bootstrap, nc_bin):
    """As Postfix's pipe(8) runs it (user=nobody): the secret file must belong to that user,
    mode 600 or 400 (nc_secret_file_read refuses group or other bits)."""
    home = Path(f"/tmp/nc-inbound-{uuid.uuid4().hex[:8]}")
    home.mkdir(mode=0o755)
    try:
        nobody = pwd.getpwnam("nobody")
        ib = Inbound(home, bootstrap, nc_bin)
        os.chown(ib.secret_file, nobody.pw_uid, nobody.pw_gid)
        ib.cfg.path.chmod(0o644)
        rcpt = rcpt_addr()
        mid = f"n-{uuid.uuid4().hex}@example.gov"
        addr, sref, _ = verp(ib.secret, rcpt, mid)
        rc_is(ib.run(ib.mail("gmail-dsn-5.1.1.eml", rcpt, mid), "--recipient", addr, user="nobody"), EX_OK)
        [m] = ib.events()
        assert m.json()["subscriber_ref"] == sref
        # a secret of root's (600) is not readable by nobody: deferred, not lost
        os.chown(ib.secret_file, 0, 0)
        cp = rc_is(ib.run(ib.mail("gmail-dsn-5.1.1.eml", rcpt, mid), user="nobody"), EX_TEMPFAIL)
        assert b"Permission denied" in cp.stderr, cp.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_served_without_kafka_is_tempfail(tmp_path, nc_bin):
    """The server cannot reach Kafka: the client's exit is 75 with the server's reason."""
    ib = Inbound(tmp_path, f"127.0.0.1:{free_port()}", nc_bin, create=False)
    ib.serve(tmp_path)
    cp = rc_is(ib.run(ib.mail("delayed-4.4.7.eml", rcpt_addr(), "m@example.gov")), EX_TEMPFAIL)
    assert b"noticecast-inbound:" in cp.stderr and b"kafka" in cp.stderr.lower(), cp.stderr
    rc, out = ib.stop_server()
    assert rc == 0, out


def test_no_server_falls_back_to_the_command(ib_plain):
    """No server on the socket (not started, restarting): the client runs `noticecast inbound`
    itself on the mail, which is written all the same."""
    ib = ib_plain
    ib.socket = ib.cfg.path.parent / "nobody-listens.sock"
    rcpt = rcpt_addr()
    mid = f"n-{uuid.uuid4().hex}@example.gov"
    addr, sref, _ = verp(ib.secret, rcpt, mid)
    rc_is(ib.run(ib.mail("gmail-dsn-5.1.1.eml", rcpt, mid), "--recipient", addr), EX_OK)
    [m] = ib.events()
    assert m.json()["type"] == "mail.bounce" and m.json()["subscriber_ref"] == sref, m.json()


@pytest.fixture
def ib_plain(tmp_path, bootstrap, nc_bin) -> Inbound:
    return Inbound(tmp_path, bootstrap, nc_bin)
