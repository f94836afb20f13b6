#!/usr/bin/env python3
"""A real SMTP server for tests: aiosmtpd 1.4.6 on loopback, with scriptable failures.

In-process (pytest):

    with SMTPTestServer(tls=True, auth=True) as srv:   # 127.0.0.1, a free port
        ...point the mailer at srv.host, srv.port (CA file for STARTTLS: srv.cert_file)...
        msgs = srv.wait_for(3)                          # list of Received
        assert msgs[0].rcpt_tos == ["a@example.org"] and msgs[0].data.endswith(b"\\r\\n")

As a script (for the C tests and by hand):

    smtp_server.py [--port N] [--tls] [--auth] [--fail-connections N] [--tempfail N]
                   [--reject ADDR]... [--close-after N] [--drop-after N] [--spool DIR]
                   [--certdir DIR] [--host ADDR]

prints one line "READY port=N cert=PATH|-" once it listens, then obeys commands on stdin, one
per line: "down", "up", "fail-connections N", "tempfail N", "reject ADDR", "accept ADDR",
"close-after N", "drop-after N", "count" (answers "COUNT n"), "tempfail-rcpt ADDR",
"untempfail-rcpt", "auth-count" (answers "AUTH n": AUTH commands received), "quit"; each is
answered with one line.  It stops at end of input or on SIGTERM/SIGINT, so a parent that dies takes it
along.  With --spool, message number K (from 1)
is written as K.json (envelope) and then K.eml (the bytes received, dot-unstuffed).

Failure modes (all thread-safe; each can be changed while running):
  fail_connections(n)  the next n connections get "421" instead of the greeting, then close;
  tempfail_messages(n) the next n messages get "451" at the end of DATA (not stored);
  reject(addr...)      RCPT TO these addresses gets "550 5.1.1";
  close_after(n)       in each connection, the MAIL FROM after n stored messages gets "421"
                       and the connection is closed (a relay shutting down mid-session);
  drop_after(n)        in each connection, the message after n stored ones is read to its
                       end, then the connection is cut without a reply (a relay crash);
  down() / up()        stop listening (connections are refused) / listen again, same port;
  tempfail_rcpt(addr...) RCPT TO these addresses ("*" = every address) gets "452 4.2.2"
                       (a mailbox over quota, a relay throttling); untempfail_rcpt() undoes;
  slow(seconds)        each message's final reply comes that much later (a slow relay);
  defer_domain(domain, reply="421 4.7.0 Try again later")
                       RCPT TO any address of this domain gets REPLY (a mailbox provider
                       throttling: "421 ..." then closes the connection, "450 4.7.28 ..."
                       keeps it); undefer_domain(domain) undoes (and returns
                       the RCPT TO commands the domain got so far);
  auth_commands        the mechanism of every AUTH command that arrived (whether or not it
                       succeeded), to prove that credentials were or were not sent;
  rcpt_attempts(domain) RCPT TO commands received for the domain (answered in any way);
  max_sessions(domain) the most connections at once whose first RCPT TO was for the domain
                       (from that RCPT until QUIT or the connection's end).
StallingSMTPServer: accepts connections and never answers (a relay that hangs).
STARTTLS (tls=True) uses a self-signed certificate for localhost and 127.0.0.1 made with the
openssl command; AUTH PLAIN and LOGIN (auth=True) accept only user/password, and with
auth=True a MAIL FROM without AUTH gets "530".  By default AUTH is offered only after STARTTLS
when tls=True, and before it otherwise (auth_require_tls to change that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax


class _NoLoginDataWarning(logging.Filter):
    """aiosmtpd 1.4.6 itself sets its deprecated Session.login_data on AUTH, and says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_NoLoginDataWarning())

USER = "noticecast"
PASSWORD = "s3cret-test-password"


@dataclass
class Received:
    """One message as the server stored it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # exactly the message bytes received (dot-unstuffed, CRLF line ends)
    peer: str
    connection: int  # 1 = the first connection after start()
    tls: bool
    auth_user: Optional[str]
    mail_options: list[str] = field(default_factory=list)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_cert(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """Self-signed certificate for localhost / 127.0.0.1 (also usable as the client's CA)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class _SMTP(SMTP):
    """aiosmtpd's SMTP with a connection hook: count connections, refuse some with 421."""

    def __init__(self, handler, owner: "SMTPTestServer", **kwargs):
        super().__init__(handler, **kwargs)
        self._owner = owner

    async def _handle_client(self):  # aiosmtpd 1.4.6: sends the greeting, then the loop
        # On the protocol object, not self.session: aiosmtpd makes a new Session at STARTTLS.
        conn = self._owner._connection_opened()
        self.nc_connection = conn
        self.nc_stored = 0
        self.nc_domain = None  # of the first RCPT TO, while counted as a session of it
        if conn and self._owner._take("_fail_connections"):
            await self.push("421 4.3.2 test server: service not available, closing channel")
            self.transport.close()
            return
        await super()._handle_client()

    def connection_lost(self, exc):
        self._owner._session_end(self)
        super().connection_lost(exc)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg):
        # Recorded before aiosmtpd looks at it: any AUTH command means credentials were sent.
        self._owner._auth_seen((arg or "").split(" ")[0].upper())
        return await super().smtp_AUTH(arg)


class _Handler:
    def __init__(self, owner: "SMTPTestServer"):
        self.owner = owner

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        close_after = self.owner._get("_close_after")
        if close_after and server.nc_stored >= close_after:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 test server: shutting down, closing channel"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.owner._session_end(server)
        return "221 Bye"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rpartition("@")[2].lower()
        reply = self.owner._rcpt_seen(server, domain)
        if reply:
            if reply.startswith("421"):
                asyncio.get_running_loop().call_soon(server.transport.close)
            return reply
        tf = self.owner._get("_tempfail_rcpt")
        if "*" in tf or address.lower() in tf:
            return f"452 4.2.2 <{address}>: mailbox temporarily unavailable, try again later"
        if address.lower() in self.owner._rejected():
            return f"550 5.1.1 <{address}>: recipient rejected: no such user"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        delay = self.owner._get("_delay")
        if delay:
            await asyncio.sleep(delay)
        drop_after = self.owner._get("_drop_after")
        if drop_after and server.nc_stored >= drop_after:
            server.transport.abort()  # the data is in, the reply never comes
            return "451 4.3.0 test server: dropped"
        if self.owner._take("_tempfail"):
            return "451 4.3.0 test server: temporary failure, try again later"
        auth = getattr(session, "auth_data", None)
        user = None
        if isinstance(auth, LoginPassword):
            user = auth.login.decode("utf-8", "replace")
        msg = Received(
            mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content), peer=str(session.peer),
            connection=server.nc_connection, tls=session.ssl is not None,
            auth_user=user, mail_options=list(envelope.mail_options))
        seq = self.owner._store(msg)
        server.nc_stored += 1
        return f"250 2.0.0 OK queued as {seq}"


class SMTPTestServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False,
                 require_tls: bool = False, auth: bool = False,
                 auth_require_tls: Optional[bool] = None, user: str = USER,
                 password: str = PASSWORD, certdir: Optional[os.PathLike] = None,
                 fail_connections: int = 0, tempfail_messages: int = 0,
                 reject: Iterable[str] = (), close_after: int = 0, drop_after: int = 0,
                 spool: Optional[os.PathLike] = None, hostname: str = "smtp.test"):
        self.host = host
        self.port = port or free_port(host)
        self.user, self.password = user, password
        self.auth = auth
        self.hostname = hostname
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._messages: list[Received] = []
        self._connections = 0
        self._counting = False
        self._fail_connections = fail_connections
        self._tempfail = tempfail_messages
        self._close_after = close_after
        self._drop_after = drop_after
        self._reject = {a.lower() for a in reject}
        self._tempfail_rcpt: frozenset = frozenset()
        self._delay = 0.0
        self._deferred: dict[str, str] = {}  # domain -> reply to its RCPT TO
        self._rcpts: dict[str, int] = {}  # domain -> RCPT TO commands
        self._active: dict[str, int] = {}  # domain -> sessions now
        self._max_active: dict[str, int] = {}
        self._auth_commands: list[str] = []
        self._spool = Path(spool) if spool else None
        self._tmp = None
        self.cert_file: Optional[Path] = None
        self._tls_context = None
        if tls:
            if certdir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="nc-smtp-")
                certdir = self._tmp.name
            self.cert_file, key = make_cert(Path(certdir))
            self._tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls_context.load_cert_chain(self.cert_file, key)
        self._require_tls = require_tls
        self._auth_require_tls = tls if auth_require_tls is None else auth_require_tls
        self._controller: Optional[Controller] = None

    # --- life cycle -------------------------------------------------------------------

    def _factory(self):
        kwargs = dict(hostname=self.hostname, ident="noticecast-test", enable_SMTPUTF8=True,
                      tls_context=self._tls_context, require_starttls=self._require_tls)
        if self.auth:
            kwargs.update(auth_required=True, auth_require_tls=self._auth_require_tls,
                          authenticator=self._authenticate)
        return _SMTP(_Handler(self), self, **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == self.user.encode()
              and auth_data.password == self.password.encode())
        # handled=False: aiosmtpd then answers 235 or 535 itself (with True it would say nothing).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> "SMTPTestServer":
        owner = self

        class _Controller(Controller):
            def factory(self):
                return owner._factory()

        with self._lock:
            self._counting = False
        self._controller = _Controller(None, hostname=self.host, port=self.port)
        self._controller.start()
        # aiosmtpd's start() opened (and read the greeting of) one connection of its own:
        # count and script only the ones that come after.
        with self._lock:
            self._counting = True
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def down(self) -> None:
        """Stop listening: connections to the port are refused until up()."""
        self.stop()

    def up(self) -> None:
        if self._controller is None:
            self.start()

    def __enter__(self) -> "SMTPTestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- scripted failures --------------------------------------------------------------

    def fail_connections(self, n: int) -> None:
        with self._lock:
            self._fail_connections = n

    def tempfail_messages(self, n: int) -> None:
        with self._lock:
            self._tempfail = n

    def close_after(self, n: int) -> None:
        with self._lock:
            self._close_after = n

    def drop_after(self, n: int) -> None:
        with self._lock:
            self._drop_after = n

    def reject(self, *addresses: str) -> None:
        with self._lock:
            self._reject.update(a.lower() for a in addresses)

    def accept(self, *addresses: str) -> None:
        with self._lock:
            self._reject.difference_update(a.lower() for a in addresses)

    def tempfail_rcpt(self, *addresses: str) -> None:
        """RCPT TO any of these ("*" = all) gets 452 from now on."""
        with self._lock:
            self._tempfail_rcpt = self._tempfail_rcpt | {a.lower() for a in addresses}

    def slow(self, seconds: float) -> None:
        """Each message's reply after DATA waits this long (0 = at once)."""
        with self._lock:
            self._delay = float(seconds)

    def untempfail_rcpt(self) -> None:
        with self._lock:
            self._tempfail_rcpt = frozenset()

    def defer_domain(self, domain: str, reply: str = "421 4.7.0 Try again later") -> None:
        """RCPT TO an address of `domain` gets `reply` from now on (a 421 also closes)."""
        with self._lock:
            self._deferred[domain.lower()] = reply

    def undefer_domain(self, domain: str) -> int:
        """Stops deferring `domain`; returns the RCPT TO commands it got until then."""
        with self._lock:
            self._deferred.pop(domain.lower(), None)
            return self._rcpts.get(domain.lower(), 0)

    def rcpt_attempts(self, domain: str) -> int:
        with self._lock:
            return self._rcpts.get(domain.lower(), 0)

    def max_sessions(self, domain: str) -> int:
        with self._lock:
            return self._max_active.get(domain.lower(), 0)

    @property
    def auth_commands(self) -> list[str]:
        with self._lock:
            return list(self._auth_commands)

    # --- what arrived -------------------------------------------------------------------

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    def count(self) -> int:
        with self._lock:
            return len(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        """Waits until at least n messages are stored; returns them all (or raises)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._messages)} of {n} messages arrived")
                self._cond.wait(left)
            return list(self._messages)

    # --- used by the protocol side (event loop thread) ------------------------------------

    def _connection_opened(self) -> int:
        with self._lock:
            if not self._counting:
                return 0
            self._connections += 1
            return self._connections

    def _take(self, attr: str) -> bool:
        with self._lock:
            left = getattr(self, attr)
            if left > 0:
                setattr(self, attr, left - 1)
                return True
            return False

    def _get(self, attr: str):
        with self._lock:
            return getattr(self, attr)

    def _rcpt_seen(self, server, domain: str) -> Optional[str]:
        """Counts a RCPT TO (and the session, at its first); returns the deferral reply, if any."""
        with self._lock:
            self._rcpts[domain] = self._rcpts.get(domain, 0) + 1
            if getattr(server, "nc_domain", None) is None:
                server.nc_domain = domain
                self._active[domain] = self._active.get(domain, 0) + 1
                self._max_active[domain] = max(self._max_active.get(domain, 0),
                                               self._active[domain])
            return self._deferred.get(domain)

    def _session_end(self, server) -> None:
        with self._lock:
            domain = getattr(server, "nc_domain", None)
            if domain is not None:
                server.nc_domain = None
                self._active[domain] -= 1

    def _auth_seen(self, mechanism: str) -> None:
        with self._lock:
            self._auth_commands.append(mechanism)

    def _rejected(self) -> set[str]:
        with self._lock:
            return set(self._reject)

    def _store(self, msg: Received) -> int:
        with self._cond:
            self._messages.append(msg)
            seq = len(self._messages)
            if self._spool is not None:
                env = {"mail_from": msg.mail_from, "rcpt_tos": msg.rcpt_tos, "peer": msg.peer,
                       "connection": msg.connection, "tls": msg.tls, "auth_user": msg.auth_user,
                       "mail_options": msg.mail_options}
                self._write(self._spool / f"{seq}.json", json.dumps(env).encode())
                self._write(self._spool / f"{seq}.eml", msg.data)
            self._cond.notify_all()
            return seq

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


class StallingSMTPServer:
    """Accepts TCP connections on loopback and never says a word (no greeting, no reply): a
    relay that hangs.  Connections are held open until stop(); `connections` counts them."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port or free_port(host)
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._count = 0
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def start(self) -> "StallingSMTPServer":
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="stalling-smtp", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self._sock.accept()
            except OSError:
                continue
            with self._lock:
                self._conns.append(c)
                self._count += 1

    @property
    def connections(self) -> int:
        with self._lock:
            return self._count

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()

    close = stop

    def __enter__(self) -> "StallingSMTPServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description="test SMTP server (aiosmtpd) with failure modes")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = a free port")
    p.add_argument("--tls", action="store_true", help="offer STARTTLS (self-signed cert)")
    p.add_argument("--require-tls", action="store_true", help="refuse commands before STARTTLS")
    p.add_argument("--auth", action="store_true", help="require AUTH PLAIN/LOGIN")
    p.add_argument("--auth-before-tls", action="store_true",
                   help="offer AUTH before STARTTLS too")
    p.add_argument("--user", default=USER)
    p.add_argument("--password", default=PASSWORD)
    p.add_argument("--fail-connections", type=int, default=0)
    p.add_argument("--tempfail", type=int, default=0)
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--close-after", type=int, default=0)
    p.add_argument("--drop-after", type=int, default=0)
    p.add_argument("--tempfail-rcpt", action="append", default=[],
                   help="RCPT TO this address ('*' = all) gets 452")
    p.add_argument("--spool", help="write each message as K.json + K.eml here")
    p.add_argument("--certdir", help="where to make the certificate (default: a temp dir)")
    a = p.parse_args(argv)

    if a.spool:
        Path(a.spool).mkdir(parents=True, exist_ok=True)
    if a.certdir:
        Path(a.certdir).mkdir(parents=True, exist_ok=True)
    srv = SMTPTestServer(
        a.host, a.port, tls=a.tls, require_tls=a.require_tls, auth=a.auth,
        auth_require_tls=(False if a.auth_before_tls else None), user=a.user,
        password=a.password, certdir=a.certdir, fail_connections=a.fail_connections,
        tempfail_messages=a.tempfail, reject=a.reject, close_after=a.close_after,
        drop_after=a.drop_after,
        spool=a.spool)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    if a.tempfail_rcpt:
        srv.tempfail_rcpt(*a.tempfail_rcpt)
    srv.start()
    try:
        print(f"READY port={srv.port} cert={srv.cert_file or '-'}", flush=True)
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "quit":
                break
            elif cmd == "down":
                srv.down()
            elif cmd == "up":
                srv.up()
            elif cmd == "fail-connections":
                srv.fail_connections(int(arg))
            elif cmd == "tempfail":
                srv.tempfail_messages(int(arg))
            elif cmd == "close-after":
                srv.close_after(int(arg))
            elif cmd == "drop-after":
                srv.drop_after(int(arg))
            elif cmd == "reject":
                srv.reject(arg)
            elif cmd == "accept":
                srv.accept(arg)
            elif cmd == "count":
                pass
            elif cmd == "tempfail-rcpt":
                srv.tempfail_rcpt(arg)
            elif cmd == "untempfail-rcpt":
                srv.untempfail_rcpt()
            elif cmd == "auth-count":
                print(f"AUTH {len(srv.auth_commands)}", flush=True)
                continue
            elif cmd:
                print(f"ERROR unknown command {cmd!r}", flush=True)
                continue
            print(f"OK {cmd}" if cmd != "count" else f"COUNT {srv.count()}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
