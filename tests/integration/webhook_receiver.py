"""Real HTTP(S) webhook receivers for the noticecast-webhooks integration tests.

A WebhookReceiver is a ThreadingHTTPServer on 127.0.0.1 (a free port), run in a thread of the
test process.  Each path has a behaviour script (always 204, fail the first N with 503, always
410, hang longer than the partner's timeout, redirect, ...) and the secrets its partner signs
with.  Every request is recorded (path, headers, body bytes, arrival time, status sent) and its
signature is checked with the official `standardwebhooks` library.  The HTTPS variant wraps
each connection with an ssl.SSLContext and can require a client certificate; failed TLS
handshakes are counted, since they never become HTTP requests.

    rx = WebhookReceiver().start()
    rx.route("/pe", Always(204), secrets=[secret])
    ... point a partner at rx.url("/pe") ...
    rx.wait_for_ids("/pe", {id1, id2})
    rx.stop()

Waits are bounded polls with generous deadlines that fail with a message saying what arrived.
"""

from __future__ import annotations

import email.utils
import functools
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

from standardwebhooks import Webhook

# --- behaviour scripts -------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering (interrupted when the receiver stops)


class Behaviour:
    """Decides the reply to the n-th request (0-based) that arrived on a path."""

    def reply(self, n: int, req: "Request") -> Reply:  # pragma: no cover - interface
        raise NotImplementedError


class Always(Behaviour):
    """Always the same status (204 = healthy partner; 503, 410, 400, ...)."""

    def __init__(self, status: int = 204, delay: float = 0.0, retry_after: str | None = None):
        self.status, self.delay, self.retry_after = status, delay, retry_after

    def reply(self, n, req):
        h = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        body = b"" if self.status in (204, 304) else f"status {self.status}\n".encode()
        return Reply(self.status, h, body, self.delay)


class FailFirst(Behaviour):
    """The first `n` requests get `status` (503), optionally with a Retry-After header; the
    rest get `then` (204).  retry_after may be a number of seconds (int/str), an HTTP date
    string, or a callable(n) returning either (None = no header)."""

    def __init__(self, n: int, status: int = 503, retry_after=None, then: int = 204):
        self.n, self.status, self.retry_after, self.then = n, status, retry_after, then

    def reply(self, n, req):
        if n < self.n:
            ra = self.retry_after(n) if callable(self.retry_after) else self.retry_after
            h = {"Retry-After": str(ra)} if ra is not None else {}
            return Reply(self.status, h, f"status {self.status}\n".encode())
        return Reply(self.then)


class Hang(Behaviour):
    """Answers only after `seconds` (longer than the partner's timeout_ms)."""

    def __init__(self, seconds: float = 30.0, status: int = 204):
        self.seconds, self.status = seconds, status

    def reply(self, n, req):
        return Reply(self.status, {}, b"", self.seconds)


class Redirect(Behaviour):
    """302 to `location` (which must never be followed)."""

    def __init__(self, location: str, status: int = 302):
        self.location, self.status = location, status

    def reply(self, n, req):
        return Reply(self.status, {"Location": self.location}, b"moved\n")


def http_date(epoch: float) -> str:
    """An IMF-fixdate (RFC 9110) for Retry-After."""
    return email.utils.formatdate(epoch, usegmt=True)


# --- what was received -------------------------------------------------------------------------


@dataclass
class Request:
    seq: int  # arrival order on this receiver (all paths)
    n: int  # arrival order on this path
    method: str
    path: str
    headers: dict  # lower-cased names -> value (last one wins)
    header_list: list  # [(name, value)] as sent
    body: bytes
    arrived: float  # time.monotonic() when the request had been read
    arrived_wall: float  # time.time() at the same moment
    status: int = 0  # status we answered (or meant to: a hung reply may never get out)
    verified: bool | None = None  # signature valid for at least one secret of the path
    verified_by: list = field(default_factory=list)  # one bool per secret of the path
    verify_error: str | None = None
    peer_cert: dict | None = None  # client certificate (HTTPS with client certs)
    connection: int = 0  # id of the TCP connection it came on

    def header(self, name: str, default=None):
        return self.headers.get(name.lower(), default)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def webhook_id(self) -> str | None:
        return self.header("webhook-id")

    @property
    def webhook_timestamp(self) -> int | None:
        v = self.header("webhook-timestamp")
        try:
            return int(v)
        except (TypeError, ValueError):
            return None

    @property
    def signatures(self) -> list:
        return (self.header("webhook-signature") or "").split()

    def json(self):
        return json.loads(self.body)

    @functools.cached_property
    def payload(self):
        try:
            return self.json()
        except ValueError:
            return None

    @property
    def event(self) -> str | None:
        """notice.published / notice.withdrawn, from either payload format."""
        p = self.payload
        if not isinstance(p, dict):
            return None
        t = p.get("type")
        if isinstance(t, str) and t.startswith("gov.noticecast."):
            return t[len("gov.noticecast."):]
        return t

    @property
    def notice_id(self) -> str | None:
        p = self.payload
        if not isinstance(p, dict):
            return None
        if "specversion" in p:
            return p.get("subject") or (p.get("data") or {}).get("id")
        return (p.get("data") or {}).get("id")

    @property
    def key(self) -> tuple:
        """(notice id, event): what one webhook-id stands for on one partner."""
        return (self.notice_id, self.event)

    def describe(self) -> str:
        return (f"#{self.seq} {self.method} {self.path} -> {self.status} id={self.webhook_id} "
                f"ts={self.header('webhook-timestamp')} notice={self.notice_id} event={self.event} "
                f"verified={self.verified}")


def verify_with(secret: str, body: bytes, headers: dict) -> tuple[bool, str | None]:
    """Verify with the official standardwebhooks library (timestamp tolerance included)."""
    try:
        Webhook(secret).verify(body, {k: v for k, v in headers.items()}, json_parse=False)
        return True, None
    except Exception as e:  # WebhookVerificationError, or a malformed header
        return False, f"{type(e).__name__}: {e}"


# --- the server --------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl's multi interface uses it
    server_version = "noticecast-test-receiver/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _handle(self):
        rx: WebhookReceiver = self.server.receiver  # type: ignore[attr-defined]
        body = self._read_body()
        peer = None
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                peer = self.connection.getpeercert() or None
            except (ValueError, OSError):
                peer = None
        path = self.path.split("?", 1)[0]
        req, reply = rx._record(self.command, path, self.headers.items(), body, peer,
                                id(self.connection))
        if reply.delay > 0:
            if rx._stopping.wait(reply.delay):
                self.close_connection = True
                return
        try:
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            if reply.status not in (204, 304) and not (100 <= reply.status < 200):
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.status not in (204, 304) and reply.body:
                self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:  # the client gave up (timeout) or went away
            self.close_connection = True

    do_POST = _handle
    do_PUT = _handle
    do_GET = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, receiver: "WebhookReceiver"):
        self.receiver = receiver
        super().__init__(addr, _Handler)

    def finish_request(self, request, client_address):
        rx = self.receiver
        sock = request
        if rx.ssl_context is not None:
            try:
                sock = rx.ssl_context.wrap_socket(request, server_side=True,
                                                  do_handshake_on_connect=False)
                sock.settimeout(30)
                sock.do_handshake()
                sock.settimeout(None)
            except (ssl.SSLError, OSError) as e:
                rx._tls_failure(e)
                try:
                    sock.close()
                except OSError:
                    pass
                return
        rx._conn_opened(sock)
        try:
            self.RequestHandlerClass(sock, client_address, self)
        except OSError:
            pass
        finally:
            rx._conn_closed(sock)
            if sock is not request:
                try:
                    sock.close()
                except OSError:
                    pass


class TLSConfig:
    """Server side TLS: certificate + key, optionally requiring a client certificate signed by
    `client_ca`."""

    def __init__(self, certfile, keyfile, client_ca=None, require_client_cert: bool = False):
        self.certfile, self.keyfile = str(certfile), str(keyfile)
        self.client_ca = str(client_ca) if client_ca else None
        self.require_client_cert = require_client_cert

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.certfile, self.keyfile)
        if self.client_ca:
            ctx.load_verify_locations(cafile=self.client_ca)
        if self.require_client_cert:
            assert self.client_ca, "require_client_cert needs client_ca"
            ctx.verify_mode = ssl.CERT_REQUIRED
        elif self.client_ca:
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


class WebhookReceiver:
    """An HTTP(S) server on 127.0.0.1 that scripts replies per path and records every request."""

    def __init__(self, tls: TLSConfig | None = None, name: str = "rx"):
        self.name = name
        self.tls = tls
        self.ssl_context = tls.context() if tls else None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._routes: dict = {}  # path -> (Behaviour, [secrets])
        self._counts: dict = {}  # path -> number of requests so far
        self._seq = 0
        self.requests: list = []
        self.tls_failures: list = []  # str(error) per failed handshake
        self.connections = 0  # TCP(+TLS) connections accepted
        self._open: set = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> "WebhookReceiver":
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"webhook-receiver-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._lock:
                open_socks = list(self._open)
            for s in open_socks:  # end idle keep-alive connections
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "receiver not started"
        return self._server.server_address[1]

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    # -- configuration --

    def route(self, path: str, behaviour: Behaviour, secrets: Iterable[str] = ()) -> str:
        """Sets (or replaces, at any time) the behaviour and secrets of `path`; returns its URL."""
        with self._lock:
            old = self._routes.get(path)
            secs = list(secrets) if secrets else (old[1] if old else [])
            self._routes[path] = (behaviour, secs)
        return self.url(path)

    # -- recording (server threads) --

    def _record(self, method, path, header_items, body, peer, conn):
        header_list = list(header_items)
        headers = {k.lower(): v for k, v in header_list}
        now_m, now_w = time.monotonic(), time.time()
        with self._lock:
            behaviour, secrets = self._routes.get(path, (Always(404), []))
            n = self._counts.get(path, 0)
            self._counts[path] = n + 1
            seq = self._seq
            self._seq += 1
            req = Request(seq=seq, n=n, method=method, path=path, headers=headers,
                          header_list=header_list, body=body, arrived=now_m, arrived_wall=now_w,
                          peer_cert=peer, connection=conn)
        if secrets:
            results = [verify_with(s, body, headers) for s in secrets]
            req.verified_by = [ok for ok, _ in results]
            req.verified = any(req.verified_by)
            errs = [e for ok, e in results if e]
            req.verify_error = None if req.verified else "; ".join(errs)
        reply = behaviour.reply(n, req)
        req.status = reply.status
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()
        return req, reply

    def _tls_failure(self, e: Exception) -> None:
        with self._cond:
            self.tls_failures.append(f"{type(e).__name__}: {e}")
            self._cond.notify_all()

    def _conn_opened(self, s) -> None:
        with self._lock:
            self.connections += 1
            self._open.add(s)

    def _conn_closed(self, s) -> None:
        with self._lock:
            self._open.discard(s)

    # -- queries (test thread) --

    def snapshot(self, path: str | None = None) -> list:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def count(self, path: str | None = None, ok: bool | None = None) -> int:
        return sum(1 for r in self.snapshot(path) if ok is None or r.ok == ok)

    def delivered(self, path: str) -> list:
        """Requests on `path` we answered with 2xx."""
        return [r for r in self.snapshot(path) if r.ok]

    def delivered_keys(self, path: str) -> set:
        """{(notice id, event)} answered with 2xx on `path`."""
        return {r.key for r in self.delivered(path)}

    def delivered_ids(self, path: str, event: str = "notice.published") -> set:
        return {r.notice_id for r in self.delivered(path) if r.event == event}

    def summary(self, path: str | None = None, last: int = 15) -> str:
        reqs = self.snapshot(path)
        lines = [f"{self.name}: {len(reqs)} request(s){' on ' + path if path else ''}, "
                 f"{len(self.tls_failures)} TLS handshake failure(s)"]
        lines += ["  " + r.describe() for r in reqs[-last:]]
        if self.tls_failures:
            lines.append("  last TLS failure: " + self.tls_failures[-1])
        return "\n".join(lines)

    def wait_until(self, pred: Callable[[], bool], timeout: float, what: str,
                   extra: Callable[[], str] | None = None) -> None:
        """Bounded wait for pred() (re-checked on every request and at least every 0.2 s)."""
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with self._cond:
                self._cond.wait(min(left, 0.2))
        else:
            return
        msg = f"timed out after {timeout:.0f}s waiting for {what}\n{self.summary()}"
        if extra:
            msg += "\n" + extra()
        raise AssertionError(msg)

    def wait_count(self, path: str, n: int, ok: bool | None = True, timeout: float = 60,
                   extra=None) -> list:
        """Waits until `path` got at least n requests (ok=True: answered 2xx; None: any)."""
        self.wait_until(lambda: self.count(path, ok) >= n, timeout,
                        f"{n} {'successful ' if ok else ''}request(s) on {path}", extra)
        return self.snapshot(path)

    def wait_for_keys(self, path: str, keys: set, timeout: float = 60, extra=None) -> None:
        """Waits until every (notice id, event) in keys was delivered (2xx) on path."""
        keys = set(keys)
        self.wait_until(lambda: keys <= self.delivered_keys(path), timeout,
                        f"deliveries on {path} (missing: "
                        f"{sorted(map(str, keys - self.delivered_keys(path)))[:10]})", extra)

    def wait_for_ids(self, path: str, ids: Iterable[str], timeout: float = 60, extra=None) -> None:
        self.wait_for_keys(path, {(i, "notice.published") for i in ids}, timeout, extra)

    def wait_tls_failures(self, n: int = 1, timeout: float = 60, extra=None) -> None:
        self.wait_until(lambda: len(self.tls_failures) >= n, timeout,
                        f"{n} failed TLS handshake(s)", extra)
