"""A citizen's whole life as a subscriber, in a real browser (issue 12): Debian's Chromium
through Selenium, a real Kafka broker, the real SMTP server of the mailer tests, the real
mailer; every page and every HTML email through axe-core (WCAG 2.1 A and AA): 0 violations.

test_citizen, the issue's flow, run as a citizen would, in each of en, es, pt, ko:
  sign up (typed, clicked, the page in the browser's language) -> the confirmation email arrives at the SMTP server
  (parsed with Python's email) -> its link, the button pressed -> the subscriber is in
  `noticecast subscribers list` -> an immediate notice reaches them -> from the manage link in
  that email they switch to a weekly digest (a notice published then reaches a probe
  subscriber but not them) -> they unsubscribe from the page -> no more mail (the next notice
  again reaches the probe only).

test_manage_pages, in each of en, es, pt, ko: the immediate notice email, an urgent alert
email and the daily digest (`--preview`) (HTML parts, as a mail client shows them), the
one-click unsubscribe page of the email and its 403 for a forged link, the preference centre, its "saved" answer,
the "unsubscribed" page and the 410 of the link afterwards: axe 0, and at phone width nothing
scrolls sideways.  NC_SCREENSHOTS=1 writes docs/img/manage-es.png and
docs/img/manage-es-phone.png.
"""

import datetime
import email
import email.policy
import os
import zoneinfo

import pytest

from browser import browser, desktop, phone, screenshot, serve_html, page_status  # noqa: F401
from conftest import REPO
from mailer_support import *  # noqa: F401,F403
from test_39_mailer_browser import (_all, _at_phone_width, _by, _clean, _confirm_url, _lang,
                                    _navigates, _no_sideways_scroll, _open, _signup_secret)
from test_40_mailer_manage import _manage_url

LANGS = ("en", "es", "pt", "ko")
SCREENSHOTS = os.environ.get("NC_SCREENSHOTS") == "1"
IMG = REPO / "docs" / "img"
NAMES = {"en": "Alex Morgan", "es": "José Núñez", "pt": "João Conceição", "ko": "김지우"}
ZONES = {"en": "UTC", "es": "America/Lima", "pt": "America/Sao_Paulo", "ko": "Asia/Seoul"}
SECOND = {"en": "Second notice", "es": "Segundo aviso", "pt": "Segundo aviso", "ko": "두 번째 공지"}
THIRD = {"en": "Third notice", "es": "Tercer aviso", "pt": "Terceiro aviso", "ko": "세 번째 공지"}
TITLES = {"en": "Water supply cut on Friday", "es": "Corte de agua el viernes",
          "pt": "Corte de água na sexta-feira", "ko": "금요일 단수 안내"}


def _select(driver, css, value):
    from selenium.webdriver.support.ui import Select
    Select(_by(driver, css)).select_by_value(value)


def _far_send_at(tz):
    """A send time twelve hours away in TZ: no digest falls due while the test runs."""
    t = datetime.datetime.now(zoneinfo.ZoneInfo(tz)) + datetime.timedelta(hours=12)
    return t.strftime("%H:%M")


def _mails_with(env, addr, title):
    return [m for m in env.mail_for(addr) if title in m.text]


@pytest.mark.parametrize("lang", LANGS)
def test_citizen(ml, browser, lang):  # noqa: F811 (the fixture)
    env = ml
    _signup_secret(env, "k")
    env.start()
    probe = env.add_subscriber("probe@example.org", lang="en", frequency="immediate", tz="UTC")
    d = browser({"en": "en-GB", "es": "es-PE", "pt": "pt-BR", "ko": "ko-KR"}[lang])
    addr = f"citizen-{lang}@example.org"

    # --- sign up: the page's language from the browser's Accept-Language ---
    assert _open(d, f"{env.public_url}/subscribe") == 200 and _lang(d) == lang
    _by(d, "#email").send_keys(addr)
    _by(d, "#name").send_keys(NAMES[lang])
    _select(d, "#frequency", "immediate")
    assert _by(d, "#tz").get_attribute("value") == ZONES[lang], "the language's default zone"
    _navigates(d, _by(d, "button[type=submit]").click)
    assert page_status(d) == 200 and not _all(d, "form"), "the inbox page"
    assert addr not in env.subscribers(), "subscribed before confirming"

    # --- the confirmation email (parsed by the harness with Python's email package) ---
    conf = env.wait_mail(lambda box: [m for m in box if m.to == addr], what="confirmation")[0]
    assert f'lang="{lang}"' in conf.html, conf.subject
    with serve_html(conf.html) as mail_url:
        assert _open(d, mail_url) == 200
        _clean(d, f"the {lang} confirmation email")
        link = [a for a in _all(d, "a[href]") if "/confirm?token=" in a.get_attribute("href")]
        assert len(link) == 1 and link[0].get_attribute("href") == _confirm_url(conf)
        _navigates(d, link[0].click)
    assert page_status(d) == 200 and _lang(d) == lang and addr in _by(d, "main").text
    assert addr not in env.subscribers(), "the link alone subscribed"
    _navigates(d, _by(d, "form[method=post] button[type=submit]").click)
    assert page_status(d) == 200 and _lang(d) == lang, "the confirmed page"
    _clean(d, f"the {lang} confirmed page")
    rec = env.subscribers()[addr]
    assert (rec["lang"], rec["name"], rec["frequency"], rec["tz"]) == \
        (lang, NAMES[lang], "immediate", ZONES[lang]), rec

    # --- an immediate notice reaches them ---
    n1 = notice("news", {"en": "Road works", lang: TITLES[lang]})
    env.publish([n1])
    mail = env.wait_mail(lambda box: _mails_with(env, addr, TITLES[lang]), what="the notice")[0]
    assert f'lang="{lang}"' in mail.html
    url = _manage_url(mail.text)

    # --- from that email's manage link: a weekly digest instead ---
    with serve_html(mail.html) as mail_url:
        assert _open(d, mail_url) == 200
        _clean(d, f"the {lang} notice email")
        link = [a for a in _all(d, "a[href]") if "/manage?token=" in a.get_attribute("href")]
        assert len(link) == 1 and link[0].get_attribute("href") == url
        _navigates(d, link[0].click)
    assert page_status(d) == 200 and _lang(d) == lang and addr in _by(d, "main").text
    _clean(d, f"the {lang} preference centre")
    _select(d, "#frequency", "weekly")
    d.execute_script("arguments[0].value = arguments[1]", _by(d, "#send_at"),
                     _far_send_at(ZONES[lang]))
    _navigates(d, _by(d, "button[name=action][value=save]").click)
    assert page_status(d) == 200 and _all(d, "[role=status]"), "the saved page"
    _clean(d, f"the {lang} saved page")
    assert _by(d, "#frequency").get_attribute("value") == "weekly"
    assert env.subscribers()[addr]["frequency"] == "weekly"

    n2 = notice("news", {"en": "Second notice", lang: SECOND[lang]})
    env.publish([n2])
    env.wait_mail(lambda box: _mails_with(env, probe, "Second notice"), what="the probe's notice")
    assert not _mails_with(env, addr, SECOND[lang]), "a weekly subscriber got an immediate email"

    # --- unsubscribe from the page: no more mail ---
    assert _open(d, url) == 200
    _navigates(d, _by(d, "button[name=action][value=unsubscribe]").click)
    assert page_status(d) == 200 and _lang(d) == lang and not _all(d, "form")
    _clean(d, f"the {lang} unsubscribed page")
    assert addr not in env.subscribers()
    before = len(env.mail_for(addr))
    n3 = notice("news", {"en": "Third notice", lang: THIRD[lang]})
    env.publish([n3])
    env.wait_mail(lambda box: _mails_with(env, probe, "Third notice"), what="the probe's notice")
    assert len(env.mail_for(addr)) == before, "mail after unsubscribing"
    assert _open(d, url) == 410, "the manage link after unsubscribing"


@pytest.mark.parametrize("lang", LANGS)
def test_manage_pages(ml, browser, lang):  # noqa: F811 (the fixture)
    env = ml
    _signup_secret(env, "p")
    env.mailer["signup_regions"] = "PE, BR"
    env.start()
    addr = env.add_subscriber(f"manage-{lang}@example.org", name="Ana Souza", lang=lang,
                              frequency="immediate", tz="UTC", send_at=_far_send_at("UTC"))
    d = browser(lang)

    # --- the emails as a mail client shows them: a notice and an urgent alert ---
    env.publish([notice("news", {"en": "Road works", lang: TITLES[lang]})])
    mail = env.wait_mail(lambda box: _mails_with(env, addr, TITLES[lang]), what="the notice")[0]
    env.publish([notice("alerts", {"en": "Storm warning", lang: "⚠ " + TITLES[lang]},
                        priority="urgent")])
    alert = env.wait_mail(lambda box: _mails_with(env, addr, "⚠ " + TITLES[lang]),
                          what="the urgent alert")[0]
    # A daily digest of the notice (urgent alerts are not repeated in digests), as --preview
    # renders it: the same renderer as the sender's.
    env.cli("subscribers", "add", "--email", f"digest-{lang}@example.org", "--lang", lang,
            "--frequency", "daily", "--tz", "UTC", "--send-at", _far_send_at("UTC"))
    wait_for(lambda: f"digest-{lang}@example.org" in env.subscribers(), 30, "the digest subscriber")
    cp = env.run_daemon("--preview", f"digest-{lang}@example.org")
    assert cp.returncode == 0, cp.stderr.decode()
    digest = email.message_from_bytes(cp.stdout, policy=email.policy.default)
    digest_html = digest.get_body(("html",)).get_content()
    assert TITLES[lang] in digest_html and "/manage?token=" in digest_html
    for what, m in (("notice", mail), ("urgent alert", alert), ("daily digest", None)):
        html = m.html if m else digest_html
        with serve_html(html) as mail_url:
            assert _open(d, mail_url) == 200 and _lang(d) == lang
            _clean(d, f"the {lang} {what} email")
            phone(d)
            _no_sideways_scroll(d, f"the {lang} {what} email")
            desktop(d)
    url = _manage_url(mail.text)

    # --- the email's one-click unsubscribe page (GET: a button), in the subscriber's language ---
    unsub = mail.unsubscribe_url()
    assert _open(d, unsub) == 200 and _lang(d) == lang and _all(d, "form[method=post]")
    _clean(d, f"the {lang} unsubscribe page")
    assert _open(d, unsub[:-3] + ("AAA" if unsub[-3:] != "AAA" else "BBB")) == 403
    _clean(d, f"the {lang} page of a forged unsubscribe link")
    assert addr in env.subscribers(), "GET /unsubscribe unsubscribed"

    # --- the preference centre ---
    assert _open(d, url) == 200 and _lang(d) == lang
    _clean(d, f"the {lang} preference centre")
    if SCREENSHOTS and lang == "es":
        screenshot(d, IMG / "manage-es.png")
    _at_phone_width(d, f"the {lang} preference centre",
                    IMG / "manage-es-phone.png" if SCREENSHOTS and lang == "es" else None)

    # --- saved ---
    _by(d, "#region-BR").click()
    _navigates(d, _by(d, "button[name=action][value=save]").click)
    assert page_status(d) == 200 and _all(d, "[role=status]"), "the saved page"
    _clean(d, f"the {lang} saved page")
    assert env.subscribers()[addr]["regions"] == ["PE"], "BR unticked of the two"

    # --- unsubscribed, and the link afterwards ---
    _navigates(d, _by(d, "button[name=action][value=unsubscribe]").click)
    assert page_status(d) == 200 and _lang(d) == lang and not _all(d, "form")
    _clean(d, f"the {lang} unsubscribed page")
    assert _all(d, f'a[href="/subscribe?lang={lang}"]'), "no way back to the form"
    assert _open(d, url) == 410 and _lang(d) == lang
    _clean(d, f"the {lang} not-subscribed page")
    phone(d)
    _no_sideways_scroll(d, f"the {lang} not-subscribed page")
