"""Fault: unsubscribe tokens revealed the address and never expired (issue 8, item 4).

Before the fix a token was base64url(email) "." HMAC(email): the address was readable in every
List-Unsubscribe URL, and since the token depended on nothing else, a token kept from an old
email unsubscribed the address again after it had subscribed anew.

Now the token is the address and the subscription's generation, encrypted and authenticated
(consumer/mailer/unsub_token.h); `subscribers add` after a removal starts a new generation.  The test:
  * the URL of a received email contains the address in no encoding (plain, percent-encoded,
    base64 and base64url at every byte alignment, hex);
  * a token of the first format, made with the daemon's own secret, is refused (403);
  * one-click POST with the token: unsubscribed (tombstone);
  * `subscribers add` again (re-subscribe); the next email brings a new token;
  * the old token replayed (GET and POST) is refused with a page that says it is out of
    date, and the address is still subscribed (no new tombstone);
  * the new token works: GET shows the form, POST unsubscribes.
(Constant-time comparison of the tag: CRYPTO_memcmp in unsub_token.c, see its unit test.)
"""

import base64
import hashlib
import hmac
import urllib.parse

import pytest

from mailer_support import *  # noqa: F401,F403

pytestmark = pytest.mark.faults

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ONE_CLICK = b"List-Unsubscribe=One-Click"


def encodings(addr: str) -> dict:
    """Substrings any encoding of ADDR (inside a longer string, at any alignment) contains."""
    out = {"plain": [addr], "percent": [urllib.parse.quote(addr, safe=""), urllib.parse.quote_plus(addr)],
           "hex": [addr.encode().hex(), addr.encode().hex().upper()]}
    for name, enc in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        cores = []
        for shift in range(3):
            e = enc(b"\0" * shift + addr.encode()).decode().rstrip("=")
            # drop the block holding the prefix and the last, partial block
            core = e[4 if shift else 0:len(e) - 4]
            if len(core) >= 8:
                cores.append(core)
        out[name] = cores
    return out


def leaks(url: str, addr: str) -> list:
    found = []
    for a in {addr, addr.lower()}:
        for name, subs in encodings(a).items():
            for s in subs:
                if s in url or (name in ("plain", "percent") and s.lower() in url.lower()):
                    found.append(f"{name} of {a!r}: {s}")
    return found


def old_format_token(secret: bytes, sid: str) -> str:
    def b64u(b):
        return base64.urlsafe_b64encode(b).decode().rstrip("=")
    mac = hmac.new(secret, b"unsubscribe\n" + sid.encode(), hashlib.sha256).digest()
    return f"{b64u(sid.encode())}.{b64u(mac)}"


def test_tokens_hide_the_address_and_expire_with_the_subscription(ml, record_property):
    env = ml
    addr = "Replay.Victim@example.org"
    sid = env.add_subscriber(addr, name="Vic Tim", lang="en", frequency="immediate", tz="UTC")
    env.add_subscriber("bystander@example.org", lang="en", frequency="immediate", tz="UTC")
    d = env.start()
    figures = {}

    def mail_n(n, what):
        env.wait_mail(lambda ib: len([m for m in ib if m.to == sid]) >= n, what=what)
        return env.mail_for(sid)[n - 1]

    env.publish([notice("alerts", "First alert", priority="urgent")])
    m1 = mail_n(1, "the first alert to the subscriber")
    url1, tok1 = m1.unsubscribe_url(), m1.unsubscribe_token()
    assert url1 and tok1, m1.header("List-Unsubscribe")
    found = sorted(set(leaks(m1.header("List-Unsubscribe") or "", addr) + leaks(url1, addr)))
    figures["address in the URL"] = found or "no (plain, percent, hex, base64, base64url)"

    # the first token format, made with the daemon's own secret
    secret = env.secret_file.read_text().strip().encode()
    st_old, _ = http_request(f"{env.unsubscribe_url}?token={old_format_token(secret, sid)}", "POST",
                             ONE_CLICK, FORM)
    figures["old-format token"] = st_old
    still_after_old = sid in env.subscribers()
    if not still_after_old:  # the old code took it: subscribe again for the rest of the test
        env.add_subscriber(addr, name="Vic Tim", lang="en", frequency="immediate", tz="UTC")

    st1, page1 = http_request(url1, "POST", ONE_CLICK, FORM)
    figures["first unsubscribe"] = st1
    gone = sid not in env.subscribers()

    # re-subscribe; the next email has the new subscription's token
    env.add_subscriber(addr, name="Vic Tim", lang="en", frequency="immediate", tz="UTC")
    n_before = len(env.mail_for(sid))
    env.publish([notice("alerts", "Second alert", priority="urgent")])
    m2 = mail_n(n_before + 1, "the second alert after re-subscribing")
    url2, tok2 = m2.unsubscribe_url(), m2.unsubscribe_token()
    records_before = env.subscriber_records(sid)

    st_get, page_get = http_request(url1)
    st_post, page_post = http_request(url1, "POST", ONE_CLICK, FORM)
    still = sid in env.subscribers()
    new_tombstones = env.subscriber_records(sid)[len(records_before):]
    figures["replayed old token"] = f"GET {st_get}, POST {st_post}, still subscribed: {still}"

    st_new_get, page_new_get = http_request(url2)
    st_new_post, _ = http_request(url2, "POST", ONE_CLICK, FORM)
    removed = sid not in env.subscribers()
    figures["fresh token"] = f"GET {st_new_get}, POST {st_new_post}, unsubscribed: {removed}"
    text = "; ".join(f"{k}: {v}" for k, v in figures.items())
    print(text)
    record_property("figures", text)

    assert not found, f"the address is readable in the unsubscribe URL: {found}\n{url1}"
    assert st_old == 403 and still_after_old, f"old-format token: {st_old}; {text}"
    assert st1 == 200 and gone, f"first unsubscribe: {st1} {page1[:300]}\n{d.tail()}"
    assert tok2 != tok1, "the token did not change with the new subscription"
    assert st_get == 410 and "out of date" in page_get, f"GET with the old token: {st_get} {page_get[:300]}"
    assert st_post == 410 and "out of date" in page_post, f"POST with the old token: {st_post} {page_post[:300]}"
    assert still and not new_tombstones, f"the replayed token unsubscribed again: {text}; {new_tombstones}"
    assert st_new_get == 200 and "<form" in page_new_get, f"GET with the fresh token: {st_new_get}"
    assert st_new_post == 200 and removed, f"fresh token: {text}\n{d.tail()}"
    assert "bystander@example.org" in env.subscribers()


def test_preference_change_keeps_the_links_of_the_subscription(ml, record_property):
    """`subscribers add` (or a re-import) for an address that is still subscribed changes its
    preferences, not its subscription: links in the mails it already got keep working."""
    env = ml
    addr = "changes.mind@example.org"
    sid = env.add_subscriber(addr, name="First Name", lang="en", frequency="immediate", tz="UTC")
    gen1 = env.subscriber_records(sid)[-1]["generation"]
    env.start()
    env.publish([notice("alerts", "An alert", priority="urgent")])
    env.wait_mail(lambda ib: any(m.to == sid for m in ib), what="the alert")
    url1 = env.mail_for(sid)[0].unsubscribe_url()
    env.add_subscriber(addr, name="Second Name", lang="es", frequency="daily", tz="America/Lima")
    gen2 = env.subscriber_records(sid)[-1]["generation"]
    st, page = http_request(url1, "POST", ONE_CLICK, FORM)
    removed = sid not in env.subscribers()
    text = f"generation {gen1} -> {gen2}; link of the first mail after the change: {st}, unsubscribed: {removed}"
    print(text)
    record_property("figures", text)
    assert gen1 == gen2, text
    assert st == 200 and removed, f"{text}\n{page[:300]}"
