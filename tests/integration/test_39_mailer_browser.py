"""The sign-up pages in a real browser (issue 12): Debian's Chromium, headless, through
ChromeDriver with Selenium; a real Kafka broker, the real SMTP server of the mailer tests and
the real mailer.  Every page (and both emails) goes through axe-core's WCAG 2.1 A
and AA rules: 0 violations, in every language (en, es, pt, ko).

In each language, with a browser whose Accept-Language is that language:
  - /subscribe?lang=X: axe 0; Tab reaches every control in order, each with a visible
    focus outline (3:1 against the page: axe does not check focus);
  - an invalid address typed and the button clicked: the 400 page, axe 0, the error right
    after its field and named by the field's aria-describedby, the value kept;
  - the CSRF page (the form sent without its cookie): 403, axe 0;
  - a valid sign-up sent with Enter from the keyboard: the "check your inbox" page, axe 0;
  - the confirmation email's HTML part, served from a loopback http.server: lang=X, axe 0;
    its link clicked: the confirm page with a button, axe 0; the button pressed: the
    "you are subscribed" page, axe 0, and the subscriber is on the subscribers topic in X;
  - the link again: the "already subscribed" page, axe 0; a forged token: 403, axe 0;
  - a second sign-up of the address: the "already subscribed" email, lang=X, axe 0;
  - at phone width (390 CSS px, mobile viewport) /subscribe does not scroll sideways, nor
    at 320 px (WCAG 2.1 1.4.10, reflow) /subscribe (also with the text spacing of WCAG
    1.4.12), its error page and the emails.
And an expired link (confirm_expiry 1s) in every language: 410, axe 0.

NC_SCREENSHOTS=1 also writes docs/img/signup-ko.png (1100 px wide, the whole form) and
docs/img/signup-ko-phone.png (390 px wide).

Without Chromium, ChromeDriver, Selenium or axe-core these tests fail (browser.py): run
deploy/local/install-deps.sh.
"""

import os
import re
import time

import pytest

from browser import (REFLOW, axe_violations, browser, contrast, desktop,  # noqa: F401
                     horizontal_overflow, page_status, phone, screenshot, serve_html,
                     tab_through, text_spacing)
from conftest import REPO
from mailer_support import *  # noqa: F401,F403
from test_38_mailer_signup import _confirm_url, _signup_secret

LANGS = ("en", "es", "pt", "ko")
SCREENSHOTS = os.environ.get("NC_SCREENSHOTS") == "1"
IMG = REPO / "docs" / "img"
NAMES = {"en": "Alex Morgan", "es": "José Núñez", "pt": "João Conceição", "ko": "김지우"}


def _by(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, css)


def _all(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, css)


def _navigates(driver, action, timeout=60):
    """Runs action() (a click, a key) and waits until the browser has left the page and
    loaded the next one: a mark set on the old page's window is gone (a new document has a
    new window object) and the new one is loaded.  While the page changes, the driver may
    answer an error about the old page's nodes: those polls are retried."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.__ncOldPage = true;")
    action()
    WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return window.__ncOldPage === undefined"
                                   " && document.readyState === 'complete'"),
        f"the page after {driver.current_url} within {timeout}s")


def _open(driver, url):
    driver.get(url)
    return page_status(driver)


def _lang(driver):
    return driver.execute_script("return document.documentElement.lang")


def _h1(driver):
    h = _all(driver, "h1")
    return h[0].text if h else None


def _clean(driver, what):
    """axe on the page the browser shows: no violation, else the list (rule, impact,
    targets, help) and where."""
    v = axe_violations(driver)
    assert v == [], f"{what} ({driver.current_url}): {len(v)} axe violation(s):\n  " + "\n  ".join(v)


def _no_sideways_scroll(driver, what):
    sw, iw = horizontal_overflow(driver)
    assert sw <= iw, f"{what} at {iw} px: the page is {sw} px wide (scrolls sideways)"


def _check_keyboard(driver, what):
    """Tab reaches every control of the form in order (not the honeypot) and the button, and
    each shows a focus outline of at least 2 px with 3:1 contrast against what is behind it
    (WCAG 2.1 2.4.7 and 1.4.11; axe does not check focus)."""
    want = driver.execute_script("""
        return Array.from(document.querySelectorAll('form input, form select, form button'))
          .filter(e => e.type !== 'hidden' && e.tabIndex >= 0).map(e => e.id || e.tagName.toLowerCase());
    """)
    got = tab_through(driver)
    assert [f["id"] or f["tag"] for f in got] == want, f"{what}: the Tab order"
    bad = [f"{f['id'] or f['tag']}: {f['outline_style']} {f['outline_width']}px {f['outline_color']}"
           f" on {f['behind']} ({contrast(f['outline_color'], f['behind']):.1f}:1)"
           for f in got if f["outline_style"] in ("none", "hidden") or f["outline_width"] < 2
           or contrast(f["outline_color"], f["behind"]) < 3]
    assert not bad, f"{what}: focus not visible enough:\n  " + "\n  ".join(bad)


def _at_phone_width(driver, what, shot=None):
    """The page again at phone width: no sideways scrolling, axe 0 (and a screenshot at SHOT);
    then back at desktop width, the page reloaded."""
    phone(driver)
    driver.refresh()
    _no_sideways_scroll(driver, what)
    _clean(driver, f"{what} at phone width")
    if shot:
        screenshot(driver, shot)
    desktop(driver)
    driver.refresh()
    page_status(driver)


def _check_field_error(driver, field, what):
    """The field is marked invalid and names its error, which follows it at once."""
    inp = _by(driver, f"#{field}")
    assert inp.get_attribute("aria-invalid") == "true", f"{what}: #{field} not aria-invalid"
    described = (inp.get_attribute("aria-describedby") or "").split()
    assert f"{field}-error" in described, f"{what}: #{field} aria-describedby={described}"
    err = _by(driver, f"#{field}-error")
    assert err.is_displayed() and err.text.strip(), f"{what}: #{field}-error not shown"
    nxt = driver.execute_script("return arguments[0].nextElementSibling", inp)
    assert nxt is not None and nxt.get_attribute("id") == f"{field}-error", \
        f"{what}: the error is not next to #{field}"
    gap = err.rect["y"] - (inp.rect["y"] + inp.rect["height"])
    assert 0 <= gap < 40, f"{what}: the error is {gap:.0f} px below #{field}"


@pytest.mark.parametrize("lang", LANGS)
def test_signup_in_browser(ml, browser, lang):  # noqa: F811 (the fixture)
    env = ml
    _signup_secret(env, "b")
    env.mailer["signup_regions"] = "PE, BR"  # the form has its regions fieldset too
    env.start()
    d = browser(lang)
    addr = f"browser-{lang}@example.org"
    before = env.subscribers()

    # --- the form ---
    assert _open(d, f"{env.public_url}/subscribe?lang={lang}") == 200
    assert _lang(d) == lang and _all(d, "form")
    _clean(d, f"/subscribe?lang={lang}")
    _check_keyboard(d, f"/subscribe?lang={lang}")
    if SCREENSHOTS and lang == "ko":
        screenshot(d, IMG / "signup-ko.png")

    # --- at phone width: nothing wider than the screen (nor at 320 px, WCAG 1.4.10) ---
    phone(d, REFLOW)
    d.refresh()
    _no_sideways_scroll(d, f"/subscribe?lang={lang}")
    text_spacing(d)
    _no_sideways_scroll(d, f"/subscribe?lang={lang} with WCAG 1.4.12 text spacing")
    _at_phone_width(d, f"/subscribe?lang={lang}",
                    IMG / "signup-ko-phone.png" if SCREENSHOTS and lang == "ko" else None)

    # --- an invalid address, typed, the button clicked: the error next to its field ---
    email = _by(d, "#email")
    email.clear()
    email.send_keys("not-an-address")
    _navigates(d, _by(d, "button[type=submit]").click)
    assert page_status(d) == 400, "the invalid form"
    assert _lang(d) == lang
    _check_field_error(d, "email", f"{lang} error page")
    assert _by(d, "#email").get_attribute("value") == "not-an-address", "the value is not kept"
    _clean(d, f"{lang} error page")
    phone(d, REFLOW)
    _no_sideways_scroll(d, f"{lang} error page")
    desktop(d)

    # --- the form sent without its cookie: the CSRF page ---
    d.delete_all_cookies()
    _navigates(d, _by(d, "button[type=submit]").click)
    assert page_status(d) == 403 and _lang(d) == lang and not _all(d, "form"), "the CSRF page"
    _clean(d, f"{lang} CSRF page")

    # --- a valid sign-up, sent with Enter: the inbox page ---
    assert _open(d, f"{env.public_url}/subscribe?lang={lang}") == 200
    email = _by(d, "#email")
    email.clear()
    email.send_keys(addr)
    _by(d, "#name").send_keys(NAMES[lang])
    assert _by(d, "#lang").get_attribute("value") == lang, "the language select"
    from selenium.webdriver.common.keys import Keys
    _navigates(d, lambda: _by(d, "#name").send_keys(Keys.ENTER))
    assert page_status(d) == 200 and _lang(d) == lang, "the inbox page"
    assert not _all(d, "form") and not _all(d, "p.error"), \
        [e.text for e in _all(d, "p.error")]
    _clean(d, f"{lang} inbox page")
    assert env.subscribers() == before, "written before the link was confirmed"

    # --- the confirmation email, as a mail client shows its HTML part ---
    mail = env.wait_mail(lambda box: [m for m in box if addr in m.rcpt], what="confirmation")[0]
    url = _confirm_url(mail)
    with serve_html(mail.html) as mail_url:
        assert _open(d, mail_url) == 200
        assert _lang(d) == lang, f"the email's <html lang> is {_lang(d)!r}"
        # A webmail shows the body without its <html>: the language is on the content too.
        assert d.execute_script("return document.body.firstElementChild.lang") == lang
        _clean(d, f"{lang} confirmation email")
        phone(d, REFLOW)
        _no_sideways_scroll(d, f"{lang} confirmation email")
        desktop(d)
        link = [a for a in _all(d, "a[href]") if "/confirm?token=" in a.get_attribute("href")]
        assert len(link) == 1 and link[0].get_attribute("href") == url, \
            [a.get_attribute("href") for a in _all(d, "a[href]")]
        _navigates(d, link[0].click)

    # --- the confirm page: a button, nothing written until it is pressed ---
    assert page_status(d) == 200 and _lang(d) == lang, "the confirm page"
    assert addr in _by(d, "main").text
    _clean(d, f"{lang} confirm page")
    _check_keyboard(d, f"{lang} confirm page")
    assert env.subscribers() == before, "GET /confirm subscribed"
    _navigates(d, _by(d, "form[method=post] button[type=submit]").click)
    assert page_status(d) == 200 and _lang(d) == lang, "the confirmed page"
    assert not _all(d, "form")
    _clean(d, f"{lang} confirmed page")
    subs = env.subscribers()
    assert addr in subs, sorted(subs)
    assert (subs[addr]["lang"], subs[addr]["name"]) == (lang, NAMES[lang]), subs[addr]

    # --- the link again: already subscribed; a forged token: 403 ---
    confirmed_h1 = _h1(d)
    assert _open(d, url) == 200 and _lang(d) == lang and not _all(d, "form")
    assert _h1(d) != confirmed_h1, "the 'already' page says what the 'confirmed' one did"
    _clean(d, f"{lang} already-subscribed page")
    tok = url.split("token=", 1)[1]
    forged = url.replace(tok, tok[:-2] + ("AA" if tok[-2:] != "AA" else "BB"))
    assert _open(d, forged) == 403 and _lang(d) == lang, "the forged link"
    assert _all(d, f'a[href="/subscribe?lang={lang}"]'), "no way back to the form"
    _clean(d, f"{lang} forged-link page")

    # --- signing up again: the "already subscribed" email (the other HTML email) ---
    n0 = len(env.mail_for(addr))
    assert _open(d, f"{env.public_url}/subscribe?lang={lang}") == 200
    _by(d, "#email").send_keys(addr)
    _navigates(d, _by(d, "button[type=submit]").click)
    assert page_status(d) == 200 and not _all(d, "form"), "the inbox page, again"
    note = env.wait_mail(lambda box: [m for m in box if addr in m.rcpt][n0:], what="known note")[0]
    assert "/confirm?token=" not in note.text, note.text
    with serve_html(note.html) as note_url:
        assert _open(d, note_url) == 200
        assert _lang(d) == lang, f"the note's <html lang> is {_lang(d)!r}"
        _clean(d, f"{lang} already-subscribed email")
        phone(d, REFLOW)
        _no_sideways_scroll(d, f"{lang} already-subscribed email")


def test_expired_link_in_browser(ml, browser):  # noqa: F811 (the fixture)
    env = ml
    _signup_secret(env, "x")
    env.mailer["confirm_expiry"] = "1s"
    env.start()
    urls = {}
    for lang in LANGS:
        d = browser(lang)
        addr = f"late-{lang}@example.org"
        assert _open(d, f"{env.public_url}/subscribe?lang={lang}") == 200
        _by(d, "#email").send_keys(addr)
        _navigates(d, _by(d, "button[type=submit]").click)
        assert page_status(d) == 200
        mail = env.wait_mail(lambda box, a=addr: [m for m in box if a in m.rcpt],
                             what=f"confirmation ({lang})")[0]
        urls[lang] = (d, _confirm_url(mail))
    time.sleep(2.5)  # past the 1 s expiry (the token's time is in whole seconds)
    for lang, (d, url) in urls.items():
        assert _open(d, url) == 410, f"{lang}: the expired link"
        assert _lang(d) == lang and not _all(d, "form")
        assert _all(d, f'a[href="/subscribe?lang={lang}"]'), "no way back to the form"
        _clean(d, f"{lang} expired-link page")
    assert not {f"late-{lang}@example.org" for lang in LANGS} & set(env.subscribers())
