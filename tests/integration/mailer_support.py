"""Fixtures and helpers for the noticecast-mailer integration tests (test_3*_mailer*.py).

Test modules import them with `from mailer_support import *`; pytest then finds the fixtures
in the module's namespace.  They build on conftest.py (the session broker, write_config,
create_topics, consume_all) and on daemon_env.py (Daemon: stderr to a log file, signals,
kill -9, /readyz; DaemonEnv: topics, CLI, Kafka helpers, teardown), as the webhook tests do.

Setup per test (fixture `ml`, or `ml_factory()`):
  * a unique topic prefix and consumer group; every topic created by the real `noticecast
    topics create` (the daemon only checks that its topics exist), with cli.conf at first and
    with the daemon's configuration before each start (ml_factory(topics=False),
    start(topics=False): none);
  * cli.conf: the plain CLI configuration (publish, subscribers);  mailer.conf: the same plus
    [mailer] and [smtp], pointing at a real SMTP server (smtp_server.SMTPTestServer, aiosmtpd,
    in this process, on a free loopback port) and listening on two fixed free ports of its
    own: `port` (listen: /metrics, /healthz, /readyz) and `public_port` (public_listen:
    /unsubscribe only), so that unsubscribe_url can name the public one;
  * the real daemon binary ($NC_BIN_DIR/noticecast-mailer); every daemon still running at the
    end is stopped (SIGTERM, then SIGKILL) and its log printed (pytest shows it on failure).

Received messages are parsed with Python's `email` package (policy=email.policy.default).
`message_problems()` lists every way a message breaks the format the issue asks for, so a
test can report all of them at once.  Time: digests are planned per UTC minute; helpers here
pick a future minute M, give subscribers the local send_at of M in their zone, and either wait
for the real clock (no offset) or start the daemon with --clock-offset so that the planner's
clock reaches M at a chosen real moment.  Every wait is a bounded poll that fails saying what
it saw; nothing asserts on how fast something happened.
"""

from __future__ import annotations

import csv
import email
import email.policy
import json
import math
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import REPO, describe, free_port, write_config
from daemon_env import Daemon, DaemonEnv, binary, env_factory, metric_value, parse_metrics, wait_for
from smtp_server import SMTPTestServer

__all__ = [
    "mailer_bin", "ml", "ml_factory",
    "MailerEnv", "Mail", "Daemon", "wait_for", "parse_metrics", "metric_value",
    "notice", "example_notice", "message_problems", "raw_headers",
    "local_hhmm", "weekday_name", "future_minute", "minute_iso", "http_request",
    "EX_OK", "EX_DATAERR", "EX_CONFIG", "REQUIRED_HEADERS", "MSGID_DOMAIN", "LIST_ID",
    "PUBLISHED_HEADERS", "FAST_REJOIN", "MAIL_TIMEOUT",
]

EX_OK, EX_DATAERR, EX_CONFIG = 0, 65, 78
MAILER_NAME = "noticecast-mailer"

# A generous bound on waiting (not a performance assertion): the suite also runs under ASan.
MAIL_TIMEOUT = 90

MSGID_DOMAIN = "notices.example.gov"
LIST_ID = "notices.example.gov"
FROM_NAME = "Ministry of the Interior"
FROM_ADDR = "notices@example.gov"
UNSUB_MAILTO = "unsubscribe@example.gov"

# Every header the issue lists, each of which must be present exactly once.
REQUIRED_HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id",
                    "List-Unsubscribe", "List-Unsubscribe-Post", "Auto-Submitted", "Precedence",
                    "Content-Type"]

# Headers of a notice record as `noticecast publish` writes them (for raw records).
PUBLISHED_HEADERS = [("content-type", b"application/json"), ("noticecast-schema", b"1"),
                     ("noticecast-event", b"notice.published")]

MAILER_DEFAULTS = {
    "from_name": FROM_NAME,
    "from_address": FROM_ADDR,
    "list_id": LIST_ID,
    "unsubscribe_mailto": UNSUB_MAILTO,
    "templates": str(REPO / "config" / "templates"),
    "message_id_domain": MSGID_DOMAIN,
    "weekly_day": "monday",
    "max_notices": 50,
    "bounce_suppress_after": 3,
    "retry_schedule": "1s, 1s, 2s",
    "shutdown_timeout": "10s",
}

SMTP_DEFAULTS = {
    "host": "127.0.0.1",
    "starttls": "off",
    "sessions": 2,
    "batch": 200,
    "rate_limit": 0,
    "timeout_ms": 10000,
}

# A dead group member holds its partitions until its session times out: keep that short so a
# restart after kill -9 resumes quickly (a bound on waiting; nothing is asserted about it).
FAST_REJOIN = ("-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000")


# --- time -----------------------------------------------------------------------------------


def future_minute(lead: float, now: float | None = None) -> int:
    """The first Unix minute (UTC minutes since the epoch) starting at least `lead` s from now."""
    now = time.time() if now is None else now
    return math.ceil((now + lead) / 60)


def local_hhmm(minute: int, tz: str) -> str:
    """HH:MM, in zone tz, of the instant at which Unix minute `minute` starts."""
    return datetime.fromtimestamp(minute * 60, ZoneInfo(tz)).strftime("%H:%M")


def weekday_name(minute: int, tz: str = "UTC") -> str:
    return datetime.fromtimestamp(minute * 60, ZoneInfo(tz)).strftime("%A").lower()


def minute_iso(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


# --- notices ----------------------------------------------------------------------------------


def notice(category: str, title, regions=None, nid: str | None = None, **extra) -> dict:
    """A notice as an admin writes it; id assigned here so the test knows which is which.
    title: a string (English) or a language map; extra overrides fields."""
    titles = title if isinstance(title, dict) else {"en": title}
    first = next(iter(titles.values()))
    n = {
        "id": nid or str(uuid.uuid4()),
        "category": category,
        "title": titles,
        "summary": {"en": f"Summary of {first}."},
        "body": {"en": f"First paragraph of {first}.\n\nSecond paragraph."},
        "url": "https://example.gov/notices/" + uuid.uuid4().hex[:8],
        "source": "Ministry of the Interior",
    }
    if regions is not None:
        n["regions"] = regions
    n.update(extra)
    return n


def example_notice(nid: str | None = None) -> dict:
    """config/examples/moi-egov-latam.json (en, es, pt; regions KR, PE, BR) with an id."""
    n = json.loads((REPO / "config" / "examples" / "moi-egov-latam.json").read_text())
    n["id"] = nid or str(uuid.uuid4())
    return n


# --- HTTP ----------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def http_request(url: str, method: str = "GET", body: bytes | None = None,
                 headers: dict | None = None, timeout: float = 15) -> tuple:
    """(status, body text); status None if the connection failed.  Redirects are not followed."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


# --- received messages ---------------------------------------------------------------------------


def raw_headers(data: bytes) -> list:
    """[(name, unfolded raw value)] of the top-level header block, in order, exactly as sent
    (no RFC 2047 decoding).  Unfolding removes each CRLF that is followed by blank space."""
    end = data.find(b"\r\n\r\n")
    block = data[:end if end >= 0 else len(data)].decode("ascii", "replace")
    out = []
    for line in re.split(r"\r\n(?![ \t])", block):
        if ":" not in line:
            out.append(("", line))
            continue
        name, value = line.split(":", 1)
        out.append((name, value.replace("\r\n", "").strip()))
    return out


class Mail:
    """One message received by the SMTP server, parsed (policy=default)."""

    def __init__(self, rec, seen_at: float):
        self.rec = rec
        self.seen_at = seen_at  # time.time() when a poll first saw it (>= its arrival)
        self.raw: bytes = rec.data
        self.rcpt = [a.lower() for a in rec.rcpt_tos]
        self.msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        self._parts = None

    # -- parsed values --

    def header(self, name: str) -> str | None:
        v = self.msg.get(name)
        return None if v is None else str(v)

    @property
    def subject(self) -> str:
        return self.header("Subject") or ""

    @property
    def message_id(self) -> str:
        return (self.header("Message-ID") or "").strip()

    @property
    def bare_id(self) -> str:
        return self.message_id.strip("<>")

    @property
    def to(self) -> str:
        return self.rcpt[0] if self.rcpt else ""

    def _text_parts(self):
        if self._parts is None:
            self._parts = {}
            for p in self.msg.walk():
                ct = p.get_content_type()
                if ct in ("text/plain", "text/html") and ct not in self._parts:
                    try:
                        self._parts[ct] = p.get_content()
                    except Exception as e:  # noqa: BLE001 (reported as a problem)
                        self._parts[ct] = f"<<undecodable: {e}>>"
        return self._parts

    @property
    def text(self) -> str:
        return self._text_parts().get("text/plain", "")

    @property
    def html(self) -> str:
        return self._text_parts().get("text/html", "")

    def unsubscribe_url(self) -> str | None:
        """The http(s) URL of List-Unsubscribe (as a mail client reading the header would)."""
        m = re.search(r"<(https?://[^>]+)>", self.header("List-Unsubscribe") or "")
        return m.group(1) if m else None

    def unsubscribe_token(self) -> str | None:
        url = self.unsubscribe_url()
        if not url:
            return None
        return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("token", [None])[0]

    def describe(self, body: int = 0) -> str:
        s = (f"message to {self.rcpt} id {self.message_id} subject {self.subject!r} "
             f"date {self.header('Date')}")
        if body:
            s += "\n" + self.raw[:body].decode("utf-8", "replace")
        return s

    def __repr__(self) -> str:
        return f"<Mail {self.describe()}>"


def message_problems(mail: Mail, *, to_addr: str | None = None, to_name: str | None = None,
                     lang: str | None = None, list_unsubscribe_base: str | None = None) -> list:
    """Every way `mail` breaks the message format of the issue; [] if none.

    Structure (multipart/alternative: text/plain then text/html, both charset=utf-8), the
    wire form (CRLF only, lines <= 998 octets, 7-bit: the relay was not offered 8BITMIME),
    every required header exactly once and parseable without defects, From/To/Message-ID/
    List-Id/List-Unsubscribe(-Post)/Auto-Submitted/Precedence values, the List-Unsubscribe
    header as sent on the wire (<http(s) URL?token=...>, <mailto:...>, not RFC 2047-encoded:
    RFC 2369/8058 clients read the URLs from the raw header), no Bcc/Cc/Reply-To/Sender."""
    p = []
    raw, msg = mail.raw, mail.msg
    # -- the wire --
    if re.search(rb"(?<!\r)\n", raw) or re.search(rb"\r(?!\n)", raw):
        p.append("bare CR or LF in the message (every line must end with CRLF)")
    if not raw.endswith(b"\r\n"):
        p.append("the message does not end with CRLF")
    long_lines = [i + 1 for i, line in enumerate(raw.split(b"\r\n")) if len(line) > 998]
    if long_lines:
        p.append(f"lines longer than 998 octets: {long_lines[:5]}")
    if any(b > 0x7f for b in raw):
        p.append("8-bit bytes on the wire (no 8BITMIME was negotiated; MIME-encode them)")
    # -- headers --
    if msg.defects:
        p.append(f"message defects: {msg.defects}")
    for h in REQUIRED_HEADERS:
        n = len(msg.get_all(h) or [])
        if n != 1:
            p.append(f"header {h} present {n} times (must be exactly once)")
        elif getattr(msg[h], "defects", None):
            p.append(f"header {h}: defects {msg[h].defects}: {str(msg[h])!r}")
    for h in ("Bcc", "Cc", "Reply-To", "Sender", "Resent-To", "Resent-Bcc"):
        if msg.get_all(h):
            p.append(f"unexpected header {h}: {msg.get_all(h)}")
    try:
        frm = msg["From"].addresses
        if len(frm) != 1 or frm[0].addr_spec != FROM_ADDR or frm[0].display_name != FROM_NAME:
            p.append(f"From is {str(msg['From'])!r}, expected {FROM_NAME} <{FROM_ADDR}>")
    except Exception as e:  # noqa: BLE001
        p.append(f"From unparseable: {e}")
    try:
        to = msg["To"].addresses
        if len(to) != 1:
            p.append(f"To has {len(to)} addresses: {str(msg['To'])!r}")
        else:
            if to_addr is not None and to[0].addr_spec.lower() != to_addr.lower():
                p.append(f"To address {to[0].addr_spec!r}, expected {to_addr!r}")
            # Blanks are not compared: Python's address parser keeps the blank between two
            # adjacent encoded-words (RFC 2047 §6.2 says to drop it), and a long name is
            # legitimately split into several encoded-words.
            if to_name is not None and to[0].display_name.replace(" ", "") != to_name.replace(" ", ""):
                p.append(f"To display name {to[0].display_name!r}, expected {to_name!r}")
    except Exception as e:  # noqa: BLE001
        p.append(f"To unparseable: {e}")
    if to_addr is not None and mail.rcpt != [to_addr.lower()]:
        p.append(f"envelope recipients {mail.rcpt}, expected only {to_addr.lower()}")
    if not re.fullmatch(r"<[0-9A-Za-z._%+-]+@" + re.escape(MSGID_DOMAIN) + ">", mail.message_id):
        p.append(f"Message-ID {mail.message_id!r} is not <...@{MSGID_DOMAIN}>")
    try:
        d = msg["Date"].datetime
        if d is None or d.tzinfo is None:
            p.append(f"Date {msg['Date']!r} has no zone")
    except Exception as e:  # noqa: BLE001
        p.append(f"Date unparseable: {e}")
    if (mail.header("List-Id") or "").strip() not in (f"<{LIST_ID}>",) and \
            not (mail.header("List-Id") or "").strip().endswith(f"<{LIST_ID}>"):
        p.append(f"List-Id is {mail.header('List-Id')!r}, expected ... <{LIST_ID}>")
    if (mail.header("List-Unsubscribe-Post") or "").strip() != "List-Unsubscribe=One-Click":
        p.append(f"List-Unsubscribe-Post is {mail.header('List-Unsubscribe-Post')!r}")
    if (mail.header("Auto-Submitted") or "").strip().lower() != "auto-generated":
        p.append(f"Auto-Submitted is {mail.header('Auto-Submitted')!r}")
    if (mail.header("Precedence") or "").strip().lower() != "bulk":
        p.append(f"Precedence is {mail.header('Precedence')!r}")
    if (mail.header("MIME-Version") or "").strip() != "1.0":
        p.append(f"MIME-Version is {mail.header('MIME-Version')!r}")
    # List-Unsubscribe as sent: the URLs in angle brackets, readable without decoding.
    lu = [v for n, v in raw_headers(raw) if n.lower() == "list-unsubscribe"]
    if len(lu) == 1:
        base = re.escape(list_unsubscribe_base) if list_unsubscribe_base else r"https?://[^>\s]+"
        rx = (r"<(" + base + r"\?token=[A-Za-z0-9_.~%-]+)>\s*,\s*<mailto:" + re.escape(UNSUB_MAILTO)
              + r"(\?[^>\s]*)?>")
        if "=?" in lu[0]:
            p.append(f"List-Unsubscribe is RFC 2047-encoded on the wire (clients cannot read the "
                     f"URLs): {lu[0][:160]!r}...")
        elif not re.fullmatch(rx, lu[0]):
            p.append(f"List-Unsubscribe on the wire is {lu[0]!r}, expected <URL?token=...>, "
                     f"<mailto:{UNSUB_MAILTO}...>")
    if mail.unsubscribe_token() is None:
        p.append(f"no token in the List-Unsubscribe URL: {mail.header('List-Unsubscribe')!r}")
    # -- body structure --
    if msg.get_content_type() != "multipart/alternative":
        p.append(f"top-level Content-Type is {msg.get_content_type()}, expected multipart/alternative")
    else:
        parts = list(msg.iter_parts())
        types = [x.get_content_type() for x in parts]
        if types != ["text/plain", "text/html"]:
            p.append(f"parts are {types}, expected ['text/plain', 'text/html'] in that order")
        for x in parts:
            cs = x.get_param("charset")
            if (cs or "").lower() != "utf-8":
                p.append(f"{x.get_content_type()} part has charset {cs!r}, expected utf-8")
            if x.defects:
                p.append(f"{x.get_content_type()} part defects: {x.defects}")
            cte = (x.get("Content-Transfer-Encoding") or "7bit").lower()
            if cte not in ("7bit", "quoted-printable", "base64"):
                p.append(f"{x.get_content_type()} part has Content-Transfer-Encoding {cte}")
        if "<<undecodable" in mail.text or "<<undecodable" in mail.html:
            p.append("a text part could not be decoded")
    if lang is not None and not re.search(r'<html[^>]*\blang="' + re.escape(lang) + '"', mail.html):
        p.append(f'the HTML part is not <html lang="{lang}">')
    return p


# --- the daemon ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mailer_bin() -> str:
    return binary(MAILER_NAME)


class MailerEnv(DaemonEnv):
    """Topics, configuration, SMTP server and daemons of one test."""

    group_prefix = "ml"
    # One retry topic rather than the default schedule's six: the mailer uses none.
    cli_sections = {"webhooks": {"retry_schedule": "1s"}}

    def __init__(self, tmp_path: Path, bootstrap: str, nc_bin: str, mailer_bin: str,
                 partitions: int = 3, smtp: SMTPTestServer | None = None, topics: bool = True,
                 replication_factor: int = 1):
        super().__init__(tmp_path, bootstrap, nc_bin, mailer_bin, partitions, topics,
                         replication_factor)
        self.mailer_bin = mailer_bin
        self.secret_file = self.tmp / "unsubscribe.secret"
        self.secret_file.write_text(uuid.uuid4().hex + uuid.uuid4().hex + "\n")
        os.chmod(self.secret_file, 0o600)
        self.smtp = smtp or SMTPTestServer().start()
        self.port = free_port()  # admin: /metrics, /healthz, /readyz
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.public_port = free_port()  # public: /unsubscribe
        self.public_url = f"http://127.0.0.1:{self.public_port}"
        self.unsubscribe_url = f"{self.public_url}/unsubscribe"
        self.mailer = dict(MAILER_DEFAULTS, group_id=self.group, listen=f"127.0.0.1:{self.port}",
                           public_listen=f"127.0.0.1:{self.public_port}",
                           unsubscribe_url=self.unsubscribe_url,
                           unsubscribe_secret_file=str(self.secret_file))
        self.smtp_cfg = dict(SMTP_DEFAULTS, port=self.smtp.port)
        self.config_path = self.tmp / "mailer.conf"
        self._imports = 0
        self._mails: list = []  # Mail per received message, in arrival order

    # -- configuration and daemon --

    def write_config(self, path: Path | None = None, extra: str = "", mailer: dict | None = None,
                     smtp: dict | None = None) -> Path:
        """Writes the daemon's configuration (default: self.config_path) from self.mailer and
        self.smtp_cfg; `mailer`/`smtp` override keys for this file only (None drops a key)."""
        path = Path(path or self.config_path)
        write_config(path, self.bootstrap, prefix=self.prefix, extra=extra,
                     topics=self.topics_cfg, **self.cli_sections,
                     mailer=dict(self.mailer, **(mailer or {})),
                     smtp=dict(self.smtp_cfg, **(smtp or {})))
        return path

    def start(self, *args, ready: bool = True, clock_offset: float | None = None,
              config: Path | None = None, write: bool = True, topics: bool = True) -> Daemon:
        if write and config is None:
            self.write_config()
        argv = list(args)
        if clock_offset is not None:
            argv += ["--clock-offset", f"{clock_offset:.3f}"]
        return self.spawn(config or self.config_path, argv, ready, "mailer", topics)

    def run_daemon(self, *args, config: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """Runs the daemon binary to completion (-n, -h, -V, --preview); binary stdout."""
        argv = [self.mailer_bin]
        if config is not False:
            argv += ["-C", str(config or self.config_path)]
        argv += [str(a) for a in args]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)

    # -- CLI --

    def add_subscriber(self, email_addr: str, name: str | None = None, lang: str | None = None,
                       categories=(), regions=(), frequency: str | None = None,
                       tz: str | None = None, send_at: str | None = None) -> str:
        """`noticecast subscribers add`; returns the subscriber id (lower-cased email)."""
        args = ["subscribers", "add", "--email", email_addr]
        for flag, v in (("--name", name), ("--lang", lang), ("--frequency", frequency),
                        ("--tz", tz), ("--send-at", send_at)):
            if v is not None:
                args += [flag, v]
        for c in categories:
            args += ["--category", c]
        for r in regions:
            args += ["--region", r]
        cp = self.cli(*args)
        assert cp.returncode == 0, "subscribers add failed" + describe(cp)
        return email_addr.lower()

    def import_subscribers(self, rows: list) -> None:
        """`noticecast subscribers import` of a CSV made from dicts (lists joined with ';')."""
        self._imports += 1
        f = self.tmp / f"subscribers-{self._imports}.csv"
        cols = ["email", "name", "lang", "categories", "regions", "frequency", "tz", "send_at"]
        with open(f, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in rows:
                w.writerow([";".join(r[c]) if isinstance(r.get(c), (list, tuple)) else r.get(c, "")
                            for c in cols])
        cp = self.cli("subscribers", "import", f, timeout=180)
        assert cp.returncode == 0, "subscribers import failed" + describe(cp)
        # The import's transaction is committed when the CLI returns, but Kafka writes its
        # commit markers to the partitions afterwards: a read_committed reader started at
        # once (a mailer's view) may still stop short of them on some partitions and plan a
        # notice for fewer subscribers (test_900 once saw 66 of 200).  Wait until a reader
        # sees every address.
        want = {r["email"].strip().lower() for r in rows if r.get("email")}
        deadline = time.monotonic() + 60
        while True:
            missing = want - set(self.subscribers())
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not missing, f"{len(missing)} imported subscriber(s) never became visible"

    def subscribers(self) -> dict:
        """`noticecast subscribers list --json` -> {id: record}."""
        cp = self.cli("subscribers", "list", "--json")
        assert cp.returncode == 0, "subscribers list failed" + describe(cp)
        out = {}
        for line in cp.stdout.splitlines():
            if line.strip():
                r = json.loads(line)
                out[r["id"]] = r
        return out

    # -- Kafka --

    @property
    def jobs_topic(self) -> str:
        return f"{self.prefix}mailer.jobs"

    def events(self) -> list:
        """Parsed delivery events of <prefix>deliveries, each with "_key" (the record key)."""
        out = []
        for m in self.messages(self.deliveries_topic):
            v = m.json()
            v["_key"] = m.key
            out.append(v)
        return out

    def jobs(self) -> list:
        """Parsed jobs of <prefix>mailer.jobs (read_committed: only committed plans)."""
        return [m.json() for m in self.messages(self.jobs_topic)]

    def dlq(self) -> list:
        return self.messages(self.dlq_topic)

    def subscriber_records(self, sid: str) -> list:
        """Every record (value parsed, None for a tombstone) with key sid on the subscribers topic."""
        return [None if m.value is None else m.json()
                for m in self.messages(self.subscribers_topic) if m.key == sid]

    def wait_settled(self, timeout: float = MAIL_TIMEOUT, min_jobs: int = 1) -> tuple:
        """Waits until there are at least min_jobs jobs and every job has a final outcome
        (sent, bounce, failed, skipped) on the deliveries topic; returns (jobs, events)."""
        last = {}

        def done():
            jobs, evs = self.jobs(), self.events()
            last["jobs"], last["events"] = jobs, evs
            ids = {e.get("message_id") for e in evs}
            return len(jobs) >= min_jobs and all(j["message_id"] in ids for j in jobs)

        wait_for(done, timeout, f"every job (at least {min_jobs}) to have a delivery event", 0.5,
                 lambda: (f"{len(last.get('jobs', []))} jobs, {len(last.get('events', []))} events; "
                          f"jobs without an event: "
                          f"{[j for j in last.get('jobs', []) if j['message_id'] not in {e.get('message_id') for e in last.get('events', [])}][:5]}\n"
                          f"{self.logs()}"))
        return last["jobs"], last["events"]

    # -- mail --

    def inbox(self) -> list:
        """Every message received so far, in arrival order, stamped when first seen here."""
        now = time.time()
        recs = self.smtp.messages()  # the server only ever appends
        for r in recs[len(self._mails):]:
            self._mails.append(Mail(r, now))
        return list(self._mails)

    def mail_for(self, addr: str) -> list:
        return [m for m in self.inbox() if addr.lower() in m.rcpt]

    def wait_mail(self, pred, timeout: float = MAIL_TIMEOUT, what: str = "messages",
                  interval: float = 0.1, watch=None):
        """Polls the inbox until pred(inbox) is truthy (returned).  watch(inbox), if given, runs
        at each poll (e.g. to fail as soon as something arrives too early)."""
        last = []

        def check():
            nonlocal last
            last = self.inbox()
            if watch:
                watch(last)
            return pred(last)

        return wait_for(check, timeout, what, interval,
                        lambda: (f"{len(last)} message(s) so far:\n  "
                                 + "\n  ".join(m.describe() for m in last[-15:])
                                 + f"\n{self.logs()}"))

    # -- teardown --

    def close_servers(self) -> None:
        self.smtp.close()


@pytest.fixture
def ml_factory(tmp_path, bootstrap, nc_bin, mailer_bin):
    """ml_factory(partitions=3, smtp=None, topics=True) -> MailerEnv (smtp: an SMTPTestServer
    not started yet is started here; default: a plain one)."""
    def new_env(sub, partitions: int = 3, smtp: SMTPTestServer | None = None, topics: bool = True) -> MailerEnv:
        if smtp is not None and smtp._controller is None:
            smtp.start()
        return MailerEnv(sub, bootstrap, nc_bin, mailer_bin, partitions=partitions, smtp=smtp,
                         topics=topics)

    yield from env_factory(new_env, tmp_path, "ml")


@pytest.fixture
def ml(ml_factory) -> MailerEnv:
    return ml_factory()
