"""Raw-socket HTTP clients for the HTTP endpoint fault tests (test_94*_fault_*.py): requests
sent byte for byte from a chosen loopback source address (all of 127/8 is loopback, so one
test can play an attacker at 127.0.0.1 and a probe at 127.0.0.2), and a slow client that
trickles a request in a byte at a time.  Everything is bounded in time and count."""

from __future__ import annotations

import select
import socket
import threading
import time

__all__ = ["raw_request", "probe", "Trickler", "split_addr"]


def split_addr(addr: str) -> tuple:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def raw_request(addr: str, data: bytes, src: str | None = None, timeout: float = 5) -> tuple:
    """Sends DATA to ADDR ("host:port") from source address SRC and reads until the server
    closes or TIMEOUT passes.  Returns (status or None, raw answer, seconds, error or None)."""
    t0 = time.monotonic()
    out = b""
    err = None
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if src:
            s.bind((src, 0))
        s.connect(split_addr(addr))
        s.sendall(data)
        while time.monotonic() - t0 < timeout:
            b = s.recv(65536)
            if not b:
                break
            out += b
            # one answer is enough once its body is in (Content-Length known)
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep:
                cl = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
                      if ln.lower().startswith(b"content-length:")]
                if cl and len(body) >= int(cl[0]):
                    break
        s.close()
    except OSError as e:  # refused, reset, timed out
        err = f"{type(e).__name__}: {e}"
    status = None
    if out.startswith(b"HTTP/1.") and len(out) >= 12:
        try:
            status = int(out[9:12])
        except ValueError:
            pass
    return status, out, time.monotonic() - t0, err


def probe(addr: str, path: str, src: str, timeout: float = 3, method: str = "GET",
          body: bytes = b"", headers: dict | None = None) -> tuple:
    """One request with Connection: close; (status or None, seconds, error or None)."""
    h = {"Host": addr, "Connection": "close", **(headers or {})}
    if body or method == "POST":
        h["Content-Length"] = str(len(body))
    req = f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(
        f"{k}: {v}\r\n".encode() for k, v in h.items()) + b"\r\n" + body
    st, _, secs, err = raw_request(addr, req, src=src, timeout=timeout)
    return st, secs, err


class Trickler:
    """N connections from SRC that send a request one header byte every INTERVAL seconds and
    never finish it; notes when the server closes each (EOF or reset)."""

    REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000

    def __init__(self, addr: str, n: int, src: str = "127.0.0.1", interval: float = 5.0):
        self.addr, self.n, self.src, self.interval = addr, n, src, interval
        self.socks: list = []
        self.connect_errors = 0
        self.opened_at: dict = {}
        self.closed_at: dict = {}  # index -> seconds after opening when the server closed it
        self._stop = threading.Event()
        self._t = None

    def start(self) -> "Trickler":
        for _ in range(self.n):
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(3)
                s.bind((self.src, 0))
                s.connect(split_addr(self.addr))
                s.setblocking(False)
                self.opened_at[len(self.socks)] = time.monotonic()
                self.socks.append(s)
            except OSError:
                self.connect_errors += 1
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _check_closed(self, i: int, s) -> None:
        if i in self.closed_at:
            return
        try:
            r, _, _ = select.select([s], [], [], 0)
            if r and s.recv(4096) == b"":
                self.closed_at[i] = time.monotonic() - self.opened_at[i]
        except OSError:
            self.closed_at[i] = time.monotonic() - self.opened_at[i]

    def _run(self) -> None:
        pos = 0
        next_send = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            for i, s in enumerate(self.socks):
                self._check_closed(i, s)
            if now >= next_send:
                for i, s in enumerate(self.socks):
                    if i in self.closed_at:
                        continue
                    try:
                        s.send(self.REQUEST[pos:pos + 1])
                    except OSError:
                        self.closed_at[i] = time.monotonic() - self.opened_at[i]
                pos = min(pos + 1, len(self.REQUEST) - 1)
                next_send = now + self.interval
            self._stop.wait(0.1)

    @property
    def accepted(self) -> int:
        """Connections the server did not close at once (within 1 s of opening)."""
        return sum(1 for i in range(len(self.socks)) if self.closed_at.get(i, 1e9) > 1.0)

    def still_open(self) -> int:
        return sum(1 for i in range(len(self.socks)) if i not in self.closed_at)

    def stop(self) -> None:
        self._stop.set()
        if self._t:
            self._t.join(10)
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
