"""Self-service sign-up pages on the mailer's public listener (issue 12), first part.

What this covers today (web.c): GET /subscribe renders in every configured language (the
<html lang> follows ?lang=, else Accept-Language, else default_language), every form control
has its <label for>, the honeypot is hidden by the stylesheet served at /assets/site.css;
POST /subscribe validates with the CLI's rules and puts the error next to its field
(aria-invalid + aria-describedby) in the page's language; a valid or honeypot-filled POST
gets the "check your inbox" page and nothing is written to the subscribers topic.

Not yet: CSRF, rate limits, confirmation/manage emails, /confirm and /manage (they need the
token and rate-limit primitives of branch h-sec).
"""

import re
import urllib.parse

from mailer_support import *  # noqa: F401,F403

FORM = "application/x-www-form-urlencoded"
LANGS = ("en", "es", "pt", "ko")


def _post(env, fields, headers=None):
    body = urllib.parse.urlencode(fields, doseq=True).encode()
    return http_request(f"{env.public_url}/subscribe", method="POST", body=body,
                        headers=dict({"Content-Type": FORM}, **(headers or {})))


def _html_lang(page):
    m = re.search(r'<html lang="([^"]+)"', page)
    return m.group(1) if m else None


def test_signup_pages(ml):
    env = ml
    secret = env.tmp / "signup.secret"
    secret.write_text("s" * 40 + "\n")
    env.mailer["signup_secret_file"] = str(secret)
    env.mailer["signup_regions"] = "PE, BR"
    env.start()
    before = env.subscribers()

    # --- every language renders, chosen by ?lang= or Accept-Language ---
    seen = {}
    for lang in LANGS:
        st, page = http_request(f"{env.public_url}/subscribe?lang={lang}")
        assert st == 200, f"GET /subscribe?lang={lang}: {st} {page[:300]}"
        seen[lang] = _html_lang(page)
        ids = set(re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', page))
        labelled = set(re.findall(r'<label for="([^"]+)"', page))
        assert ids and ids <= labelled, f"{lang}: controls without a label: {ids - labelled}"
        for field in ("email", "name", "lang", "categories", "regions", "frequency", "tz",
                      "send_at", "csrf", "website"):
            assert f'name="{field}"' in page, f"{lang}: no field {field}"
        assert 'type="submit"' in page
        assert "style=" not in page and "<style" not in page and "<script" not in page, lang
        assert 'tabindex="-1"' in page and 'autocomplete="off"' in page, "honeypot attributes"
        assert page.count('name="categories"') == 4 and page.count(" checked") == 6, \
            f"{lang}: the four categories and two regions are not all checked by default"
    assert seen == {lang: lang for lang in LANGS}, seen
    st, page = http_request(f"{env.public_url}/subscribe",
                            headers={"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"})
    assert st == 200 and _html_lang(page) == "ko", (st, _html_lang(page))
    assert 'value="Asia/Seoul" selected' in page, "the Korean page's default zone is not Asia/Seoul"
    st, page = http_request(f"{env.public_url}/subscribe", headers={"Accept-Language": "fr, de"})
    assert st == 200 and _html_lang(page) == "en", (st, _html_lang(page))

    st, css = http_request(f"{env.public_url}/assets/site.css")
    assert st == 200 and ".hp" in css, (st, css[:200])

    # --- validation errors next to their field, in the page's language ---
    st, page = _post(env, {"email": "not-an-address", "lang": "es", "frequency": "daily"})
    assert st == 400, (st, page[:300])
    assert _html_lang(page) == "es"
    assert 'aria-invalid="true" aria-describedby="email-error"' in page, page
    m = re.search(r'<p class="error" id="email-error">([^<]*)</p>', page)
    assert m and m.group(1).startswith("Correo electrónico:"), page
    assert 'value="not-an-address"' in page, "the posted value is not kept"
    st, page = _post(env, {"email": "ok@example.org", "tz": "Mars/Olympus", "lang": "pt"})
    assert st == 400 and 'id="tz-error"' in page and _html_lang(page) == "pt", (st, page[:400])

    # --- a valid sign-up and a honeypot one: the same inbox page, nothing written ---
    st, ok_page = _post(env, {"email": "citizen@example.org", "lang": "ko", "categories": ["news", "alerts"],
                              "regions": ["PE"], "frequency": "weekly", "tz": "Asia/Seoul",
                              "send_at": "07:30", "website": ""})
    assert st == 200 and _html_lang(ok_page) == "ko" and "<form" not in ok_page, \
        (st, re.findall(r'<p class="error"[^>]*>[^<]*', ok_page))
    st, bot_page = _post(env, {"email": "victim@example.org", "lang": "ko", "website": "http://spam"})
    assert (st, bot_page) == (200, ok_page), "the honeypot page differs from the normal one"
    assert env.subscribers() == before, "a sign-up was written before confirmation"
