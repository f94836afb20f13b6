"""The VERP token format (common/nc_verp.h), written apart from the C code, for the tests of the
inbound mail loop: what an envelope sender must look like, and references made the way
`noticecast inbound` makes them."""
import base64
import hashlib
import hmac
import json
import re
from pathlib import Path

VERP_RE = re.compile(r"^(?P<local>[^@+]+)\+(?P<token>[a-z2-7]{32})@(?P<domain>.+)$")


def secret_key(secret_file: Path) -> bytes:
    """The key the mailer uses: the file's content, trimmed, at most 64 bytes."""
    return secret_file.read_bytes().strip()[:64]


def _keys(secret: bytes) -> tuple:
    ref = hmac.new(secret, b"noticecast verp v1: subscriber reference", hashlib.sha256).digest()
    mac = hmac.new(secret, b"noticecast verp v1: authentication", hashlib.sha256).digest()
    return ref, mac


def subscriber_ref(secret: bytes, sub_id: str) -> str:
    """16 hex digits."""
    return hmac.new(_keys(secret)[0], sub_id.encode(), hashlib.sha256).digest()[:8].hex()


def message_ref(message_id: str) -> str:
    """8 hex digits."""
    return hashlib.sha256(message_id.strip("<>").encode()).digest()[:4].hex()


def verp_address(secret: bytes, base: str, sub_id: str, message_id: str, delim: str = "+") -> str:
    local, domain = base.rsplit("@", 1)
    raw = b"\x01" + bytes.fromhex(subscriber_ref(secret, sub_id)) + bytes.fromhex(message_ref(message_id))
    raw += hmac.new(_keys(secret)[1], raw, hashlib.sha256).digest()[:7]
    return f"{local}{delim}{base64.b32encode(raw).decode().lower()}@{domain}"


def inbound_event(etype: str, kind: str, **fields) -> tuple:
    """(value, headers) of an event as `noticecast inbound` writes it."""
    doc = dict(type=etype, source="inbound", kind=kind, **fields)
    return (json.dumps(doc).encode(),
            [("noticecast-event", etype.encode()), ("noticecast-source", b"inbound"),
             ("content-type", b"application/json")])
