"""The preference centre (/manage) and its link in every email (issue 12).

Real Kafka, the real SMTP server of the mailer tests, plain HTTP with a cookie jar:
  - an immediate notice's email carries a signed manage link (text and HTML parts), and so do
    --preview, the confirmation email and the "already subscribed" note;
  - GET /manage shows the subscription's current choices; POST needs CSRF; a save writes a new
    record with the same generation (the view follows it), errors go next to their field and
    change nothing; forged links get 403;
  - unsubscribing from the page writes a tombstone; the link then opens nothing (410), and only
    a new double opt-in brings the address back, with new links (the old ones stay dead);
  - a subscriber suppressed after bounces can change choices but stays suppressed: only signing
    up again ends the suppression.
"""

import json
import re

from conftest import REPO
from mailer_support import *  # noqa: F401,F403
from test_38_mailer_signup import Session, _confirm_url, _html_lang, _path, _signup_secret

MANAGE_RE = re.compile(r"(https?://\S+/manage\?token=[A-Za-z0-9_-]+)")


def _manage_url(text):
    m = MANAGE_RE.search(text)
    assert m, f"no manage link in:\n{text}"
    return m.group(1)


def _checked(page, name):
    return sorted(re.findall(rf'name="{name}" value="([^"]+)" checked', page))


def _selected(page, select_id):
    m = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', page, re.S)
    assert m, f"no select {select_id}"
    return re.findall(r'<option value="([^"]+)" selected', m.group(1))


def test_manage_from_an_email(ml):
    env = ml
    _signup_secret(env, "m")
    env.mailer["signup_regions"] = "PE, BR"
    d = env.start()
    addr = env.add_subscriber("ana@example.org", name="Ana", lang="es", categories=["news"],
                              regions=["PE"], frequency="immediate", tz="America/Lima")
    wait_for(lambda: addr in env.subscribers(), 30, "the subscriber")
    gen = env.subscribers()[addr]["generation"]

    # --- every notice email carries the subscriber's manage link ---
    env.publish([notice("news", {"en": "Road works", "es": "Obras en la vía"}, regions=["PE"])])
    mail = env.wait_mail(lambda box: [m for m in box if m.to == addr], what="the notice")[0]
    url = _manage_url(mail.text)
    assert f'href="{url}"' in mail.html, "the HTML part has no manage link"
    cp = env.run_daemon("--preview", addr)
    assert cp.returncode == 0 and b"/manage?token=" in cp.stdout, cp.stderr.decode()

    # --- GET: the current choices, in the subscriber's language ---
    s = Session(env.public_url)
    st, page = s.request(_path(url))
    assert st == 200 and _html_lang(page) == "es", (st, page[:400])
    assert addr in page and 'name="email"' not in page, "the address is shown, not editable"
    assert _checked(page, "categories") == ["news"] and _checked(page, "regions") == ["PE"]
    assert _selected(page, "frequency") == ["immediate"] and _selected(page, "tz") == ["America/Lima"]
    assert _selected(page, "lang") == ["es"]
    before = env.subscribers()[addr]

    # --- CSRF: nothing without the field of this visitor's cookie ---
    st, _ = s.request(_path(url), "POST", {"action": "save", "frequency": "weekly"})
    assert st == 403
    st, _ = Session(env.public_url).request(_path(url), "POST",
                                            {"action": "save", "csrf": s.csrf(page)})
    assert st == 403, "a CSRF field without its cookie was taken"

    # --- a bad value: 400, the error next to its field, nothing written ---
    fields = {"csrf": s.csrf(page), "action": "save", "name": "Ana", "lang": "es", "categories": ["news"],
              "regions": ["PE"], "frequency": "immediate", "tz": "Mars/Olympus", "send_at": "08:00"}
    st, page = s.request(_path(url), "POST", fields)
    assert st == 400 and 'id="tz-error"' in page, (st, page[:400])
    assert env.subscribers()[addr] == before

    # --- save: a new record, same generation and address, the page in the new language ---
    fields.update(csrf=s.csrf(page), lang="pt", categories=["news", "alerts"], regions=["PE", "BR"],
                  frequency="weekly", tz="America/Sao_Paulo", send_at="09:15", email="evil@example.org")
    st, page = s.request(_path(url), "POST", fields)
    assert st == 200 and _html_lang(page) == "pt" and 'role="status"' in page, (st, page[:400])
    rec = env.subscribers()[addr]
    assert (rec["email"], rec["generation"], rec["lang"], sorted(rec["categories"]), sorted(rec["regions"]),
            rec["frequency"], rec["tz"], rec["send_at"], rec["name"]) == \
        ("ana@example.org", gen, "pt", ["alerts", "news"], ["BR", "PE"], "weekly", "America/Sao_Paulo",
         "09:15", "Ana"), rec
    assert "evil@example.org" not in env.subscribers()
    # The view picks it up: the page shows the saved choices.
    wait_for(lambda: _selected(Session(env.public_url).request(_path(url))[1], "frequency") == ["weekly"],
             30, "the view to show the saved record")

    # --- forged and altered links: 403, nothing changes ---
    tok = url.split("token=", 1)[1]
    for t in (tok[:-2] + ("AA" if tok[-2:] != "AA" else "BB"), "x" * 40, ""):
        st, _ = Session(env.public_url).request(f"/manage?token={t}")
        assert st == 403, (t, st)
    st, p = Session(env.public_url).request(_path(url).replace("/manage", "/confirm"))
    assert st == 403, "a manage token opened the confirmation page"

    # --- unsubscribe from the page: a tombstone; the link then opens nothing ---
    st, page = s.request(_path(url))
    st, page = s.request(_path(url), "POST", {"csrf": s.csrf(page), "action": "unsubscribe"})
    assert st == 200 and _html_lang(page) == "pt", (st, page[:300])
    assert addr not in env.subscribers()
    assert env.subscriber_records(addr)[-1] is None
    st, page = Session(env.public_url).request(_path(url))
    assert st == 410, (st, page[:300])
    assert "unsubscribed" in d.log() or "preference centre" in d.log()

    # --- only a new double opt-in brings it back, with new links; the old one stays dead ---
    v = Session(env.public_url)
    st, _ = v.subscribe({"email": addr, "lang": "en"}, "en")
    assert st == 200
    conf = env.wait_mail(lambda box: [m for m in box if m.to == addr and "/confirm?" in m.text],
                         what="confirmation")[0]
    future = _manage_url(conf.text)
    st, _ = Session(env.public_url).request(_path(future))
    assert st == 410, "the confirmation's manage link worked before the confirmation"
    curl = _confirm_url(conf)
    st, page = v.request(_path(curl))
    st, page = v.request(_path(curl), "POST", {"csrf": v.csrf(page)})
    assert st == 200 and _manage_url(page.replace("&amp;", "&")), (st, page[:300])
    wait_for(lambda: addr in env.subscribers(), 30, "the new subscription")
    assert env.subscribers()[addr]["generation"] != gen
    wait_for(lambda: Session(env.public_url).request(_path(future))[0] == 200, 30,
             "the confirmation's manage link to open once confirmed")
    st, _ = Session(env.public_url).request(_path(url))
    assert st == 410, "a manage link of the earlier subscription opened the new one"

    # --- a second sign-up of the known address: a note whose manage link works ---
    n0 = len(env.mail_for(addr))
    st, _ = Session(env.public_url).subscribe({"email": addr, "lang": "ko"}, "ko")
    note = env.wait_mail(lambda box: [m for m in box if m.to == addr][n0:], what="known note")[0]
    assert "/confirm?token=" not in note.text
    st, page = Session(env.public_url).request(_path(_manage_url(note.text)))
    assert st == 200 and addr in page, (st, page[:300])


def test_manage_keeps_suppression(ml):
    env = ml
    _signup_secret(env, "k")
    env.start()
    addr = env.add_subscriber("bounced@example.org", lang="en", frequency="immediate", tz="UTC")
    env.publish([notice("news", {"en": "Water cuts"})])
    mail = env.wait_mail(lambda box: [m for m in box if m.to == addr], what="the notice")[0]
    url = _manage_url(mail.text)

    # As the sender writes it after bounce_suppress_after hard bounces.
    rec = dict(env.subscribers()[addr], bounces=3, suppressed=True)
    env.produce_raw(env.subscribers_topic, json.dumps(rec).encode(), key=addr.encode(),
                    headers=[("noticecast-event", b"subscriber.updated")])
    s = Session(env.public_url)
    wait_for(lambda: 'class="note"' in s.request(_path(url))[1], 30, "the suppression on the page")
    st, page = s.request(_path(url))
    assert st == 200 and "/subscribe?lang=en" in page, "no way back through sign-up is offered"

    st, page = s.request(_path(url), "POST", {"csrf": s.csrf(page), "action": "save", "lang": "en",
                                              "frequency": "daily", "tz": "UTC", "send_at": "07:00"})
    assert st == 200, (st, page[:300])
    after = env.subscribers()[addr]
    assert (after["frequency"], after["suppressed"], after["bounces"]) == ("daily", True, 3), after

    # Signing up again (double opt-in) is the way back.
    v = Session(env.public_url)
    v.subscribe({"email": addr, "lang": "en"})
    conf = env.wait_mail(lambda box: [m for m in box if m.to == addr and "/confirm?" in m.text],
                         what="confirmation")[0]
    curl = _confirm_url(conf)
    st, page = v.request(_path(curl))
    st, page = v.request(_path(curl), "POST", {"csrf": v.csrf(page)})
    assert st == 200
    wait_for(lambda: not env.subscribers()[addr].get("suppressed"), 30, "the suppression to end")


def test_pages_reworded_on_sighup(ml):
    """A ministry rewords a page: SIGHUP takes the new text; a broken file is refused and the
    pages in use stay."""
    import shutil
    import signal

    env = ml
    _signup_secret(env, "r")
    tpl = env.tmp / "templates"
    shutil.copytree(REPO / "config" / "templates", tpl)
    env.mailer["templates"] = str(tpl)
    d = env.start()
    st, page = http_request(f"{env.public_url}/subscribe?lang=es")
    assert st == 200 and "Suscríbase a los avisos" in page

    f = tpl / "es" / "pages" / "subscribe.mustache"
    f.write_text(f.read_text().replace("<h1>Suscríbase a los avisos</h1>", "<h1>Reciba los avisos</h1>"))
    off = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload: sign-up pages re-read", since=off, timeout=30, what="the pages' reload")
    st, page = http_request(f"{env.public_url}/subscribe?lang=es")
    assert st == 200 and "<h1>Reciba los avisos</h1>" in page, page[:500]

    (tpl / "ko" / "pages" / "manage.mustache").write_text("{{#unclosed}}\n")
    off = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload: sign-up pages: .*manage.mustache.*keeping the current ones", since=off,
               timeout=30, what="the broken page refused")
    st, page = http_request(f"{env.public_url}/subscribe?lang=es")
    assert st == 200 and "<h1>Reciba los avisos</h1>" in page and d.alive()


def test_expired_manage_link(ml):
    import time

    env = ml
    _signup_secret(env, "x")
    env.mailer["manage_expiry"] = "1s"
    env.start()
    addr = env.add_subscriber("late@example.org", lang="pt", frequency="immediate", tz="UTC")
    env.publish([notice("news", {"en": "Bridge closed", "pt": "Ponte fechada"})])
    mail = env.wait_mail(lambda box: [m for m in box if m.to == addr], what="the notice")[0]
    url = _manage_url(mail.text)
    time.sleep(2.5)  # past the 1 s expiry (whole seconds)
    st, page = Session(env.public_url).request(_path(url))
    assert st == 410 and "<form" not in page, (st, page[:300])
    assert env.subscribers()[addr]["frequency"] == "immediate"
