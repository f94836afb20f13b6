"""One-click unsubscribe (RFC 8058) from a received email, and the next digest skips them.

Two daily subscribers, `leaving` (en) and `staying` (es), with the same send time, minute M
(half an hour ahead of the real clock).  The daemon first runs with its planner clock ten
minutes before M; an urgent alert reaches both at once, and the List-Unsubscribe header of
leaving's copy gives the URL with the token.

* GET of that URL: 200, a page with a POST form; nothing is written (`subscribers list` still
  shows leaving; no new record on the subscribers topic).
* Forged tokens (another subscriber's MAC, one altered character, garbage, none), by GET and
  POST: 403 and nothing changes.
* POST of `List-Unsubscribe=One-Click` to the URL: 200; `subscribers list` no longer shows
  leaving (a tombstone on the subscribers topic); staying is untouched.
Then a normal notice is published and the daemon is restarted (SIGTERM, exit 0) with its
planner clock just past M: it catches up the minutes it missed, staying gets the digest with
the notice (and not the urgent alert), and no digest job exists for leaving.
"""

import time

from mailer_support import *  # noqa: F401,F403

FORM = "application/x-www-form-urlencoded"


def test_one_click_unsubscribe(ml):
    env = ml
    now_min = int(time.time() // 60)
    M = now_min + 30
    leaving = env.add_subscriber("Leaving@example.org", name="Lee Ving", lang="en", frequency="daily",
                                 tz="UTC", send_at=local_hhmm(M, "UTC"))
    staying = env.add_subscriber("staying@example.org", name="Stella Ying", lang="es", frequency="daily",
                                 tz="UTC", send_at=local_hhmm(M, "UTC"))
    d = env.start(clock_offset=(M - 10) * 60 - time.time())

    alert = notice("alerts", {"en": "Storm warning", "es": "Alerta de tormenta"}, priority="urgent")
    env.publish([alert])
    env.wait_mail(lambda ib: {leaving, staying} <= {m.to for m in ib}, what="the urgent alert to both")
    mail = env.mail_for(leaving)[0]
    url = mail.unsubscribe_url()
    token = mail.unsubscribe_token()
    assert url and token, f"no unsubscribe URL/token in {mail.header('List-Unsubscribe')!r}"
    assert url.startswith(env.unsubscribe_url + "?"), f"List-Unsubscribe URL {url} is not the configured {env.unsubscribe_url}"
    other = env.mail_for(staying)[0].unsubscribe_token()
    assert other and other != token, (token, other)
    assert token in mail.html, "the HTML part has no unsubscribe link with the token"

    def records():
        return {sid: env.subscriber_records(sid) for sid in (leaving, staying)}

    before = records()
    assert before[leaving] and before[leaving][-1] is not None, before

    # --- GET: a confirmation page, nothing changes ---
    st, page = http_request(url)
    assert st == 200, f"GET {url}: {st} {page[:300]}"
    assert "<form" in page and 'method="post"' in page.lower(), f"no POST form on the page: {page[:500]}"
    st_head, _ = http_request(url, method="HEAD")
    assert st_head in (200, 405), st_head
    assert leaving in env.subscribers(), "GET of the unsubscribe URL removed the subscriber"
    assert records() == before, f"GET wrote to the subscribers topic: {records()}"

    # --- forged tokens: 403, nothing changes ---
    lid, lmac = token.split(".", 1) if "." in token else (token, "")
    sid_, smac = other.split(".", 1) if "." in other else (other, "")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    forged = {"another subscriber's MAC": f"{lid}.{smac}", "one character changed": flipped,
              "garbage": "not-a-token", "empty": ""}
    for what, tok in forged.items():
        for method in ("GET", "POST"):
            st, page = http_request(f"{env.unsubscribe_url}?token={tok}", method=method,
                                    body=b"List-Unsubscribe=One-Click" if method == "POST" else None,
                                    headers={"Content-Type": FORM} if method == "POST" else {})
            assert st == 403, f"{method} with a forged token ({what}): {st} {page[:200]}"
    st, page = http_request(env.unsubscribe_url, method="POST", body=b"List-Unsubscribe=One-Click",
                            headers={"Content-Type": FORM})
    assert st == 403, f"POST without a token: {st} {page[:200]}"
    assert records() == before, f"a forged token changed the subscribers topic: {records()}"
    assert {leaving, staying} <= set(env.subscribers())

    # --- POST (RFC 8058 one-click): removed ---
    st, page = http_request(url, method="POST", body=b"List-Unsubscribe=One-Click",
                            headers={"Content-Type": FORM})
    assert st == 200, f"one-click POST {url}: {st} {page[:300]}\n{env.logs()}"
    listed = env.subscribers()
    assert leaving not in listed, f"{leaving} still listed after the one-click POST: {sorted(listed)}"
    assert staying in listed
    after = records()
    assert after[leaving][-1] is None, f"no tombstone for {leaving}: {after[leaving]}"
    assert after[staying] == before[staying], "the other subscriber's record changed"

    # --- the next digest skips them ---
    n = notice("news", {"en": "Library opening hours", "es": "Horario de la biblioteca"})
    env.publish([n])
    time.sleep(2)
    assert d.terminate() == 0, d.tail()
    d = env.start(clock_offset=M * 60 + 1 - time.time())  # planner: just past M; catches up
    env.wait_mail(lambda ib: any(m.to == staying and "Horario de la biblioteca" in m.text for m in ib),
                  what=f"the digest of {minute_iso(M)} to {staying}")
    jobs, events = env.wait_settled(min_jobs=3)
    digest_jobs = [j for j in jobs if j["type"] == "digest"]
    assert [j["subscriber"] for j in digest_jobs] == [staying], f"digest jobs: {digest_jobs}"
    assert digest_jobs[0]["notices"] == [n["id"]], f"the urgent alert is in the digest: {digest_jobs}"
    assert [m.subject for m in env.mail_for(leaving)] == [mail.subject], \
        f"{leaving} got mail after unsubscribing: {[m.describe() for m in env.mail_for(leaving)]}"
    assert len(env.mail_for(staying)) == 2, [m.describe() for m in env.mail_for(staying)]
    assert d.terminate() == 0, d.tail()
