#!/usr/bin/env python3
"""A local webhook receiver for `make demo`: prints each delivery and checks its signature.

usage: webhook-sink.py PORT SECRET_FILE [PATH=SECRET_FILE ...]

The signature is checked the Standard Webhooks way, with nothing but the standard library:
base64(HMAC-SHA256(key, webhook-id + "." + webhook-timestamp + "." + body)), where key is the
base64-decoded secret after "whsec_".  Runs until killed."""
import base64
import hashlib
import hmac
import http.server
import json
import sys


def load_key(path):
    with open(path) as f:
        secret = next(l.strip() for l in f if l.strip() and not l.startswith("#"))
    return base64.b64decode(secret.removeprefix("whsec_"))


PORT = int(sys.argv[1])
KEYS = {}
for arg in sys.argv[2:]:
    path, _, file = arg.partition("=")
    KEYS[path] = load_key(file)


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        wid, ts = self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", "")
        key = KEYS.get(self.path)
        expected = base64.b64encode(
            hmac.new(key or b"", f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        sigs = [s.partition(",")[2] for s in self.headers.get("webhook-signature", "").split()]
        ok = key is not None and any(hmac.compare_digest(expected, s) for s in sigs)
        self.send_response(204 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()
        doc = json.loads(body)
        data = doc.get("data", {})
        kind = "CloudEvents " + doc["type"] if "specversion" in doc else "standard " + doc["type"]
        title = data.get("title", {})
        print(f"POST {self.path}  {self.headers.get('Content-Type')}  ({kind})", flush=True)
        print(f"    webhook-id: {wid}  signature: {'VALID' if ok else 'INVALID'}", flush=True)
        print(f"    notice {data.get('id')}: {title.get('en') or data.get('reason')}", flush=True)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Sink).serve_forever()
