"""Header and HTML injection attempts are harmless; invalid records go to the DLQ.

* A notice whose title carries "\\r\\nBcc: evil@example.org" cannot be published with the CLI
  (exit 65); produced raw to Kafka (with the headers the CLI would set) it must land in the DLQ
  with the reason, and not be mailed.  The same for a CR/LF in `source` (another one-line
  field), and a subscriber record whose name has a line break, written raw to the subscribers
  topic: DLQ, no mail to that address, and the daemon goes on.
* A valid notice full of markup (<script>, "><img onerror>, &, quotes) and a subscriber whose
  display name looks like a list of addresses with markup: the HTML part has every one of them
  escaped (no raw "<script", "<img", "<b>"), the plain part has them verbatim, the Subject is
  the raw title, To: is exactly one address (the subscriber's), there is no Bcc/Cc anywhere,
  and the only envelope recipient is the subscriber.
* test_overlong_and_odd_input: a 300-byte title made of an encoded-word look-alike and one long
  word, display names with a bidi override / emoji / quotes / a comment, or made of an
  encoded-word look-alike, and a body with a 5,000-character line and "." / ".hidden" /
  "From " lines: the decoded Subject and To names equal the input, the body arrives intact.
"""

import json

from mailer_support import *  # noqa: F401,F403

BCC = "\r\nBcc: evil@example.org"
EVIL = "evil@example.org"

XSS_TITLE = '<script>alert(1)</script> & "quoted" \'single\''
XSS_SUMMARY = '"><img src=x onerror=alert(document.domain)>'
XSS_BODY = "Para <b>one</b>\nBcc: evil@example.org\n\n</p><script>alert(2)</script><p>"
XSS_SOURCE = "Ministry <i>of</i> Tests & Co"
SNEAKY_NAME = 'Eve "Boss" <ceo@example.org>, attacker@example.org <b>x</b>'


def test_header_and_html_injection(ml):
    env = ml
    victim = env.add_subscriber("victim@example.org", name=SNEAKY_NAME, lang="en",
                                frequency="immediate")
    plain = env.add_subscriber("lector@example.pe", name="Lector", lang="es", frequency="immediate")
    d = env.start()

    # --- the CLI refuses the CR/LF title ---
    bad = notice("news", "Hello" + BCC)
    f = env.tmp / "bad.json"
    f.write_text(json.dumps(bad))
    cp = env.cli("publish", f)
    assert cp.returncode == EX_DATAERR, f"CLI accepted a title with CR/LF: exit {cp.returncode}\n{cp.stderr}"
    assert "title" in cp.stderr, cp.stderr

    # --- so it is produced raw, as are a CR/LF source and a subscriber name with a newline ---
    raw_notices, raw_values = {}, {}
    for field, n in (("title", notice("news", "Hello" + BCC)),
                     ("source", notice("news", "Valid title", source="Ministry" + BCC))):
        n["published_at"] = "2026-01-01T00:00:00Z"
        raw_values[n["id"]] = json.dumps(n).encode()
        env.produce_raw(env.topic("news"), raw_values[n["id"]], key=n["id"], headers=PUBLISHED_HEADERS)
        raw_notices[n["id"]] = field
    mallory = "mallory@example.org"
    rec = {"id": mallory, "email": mallory, "name": "Mallory" + BCC, "lang": "en", "categories": [],
           "regions": [], "frequency": "immediate", "tz": "UTC", "send_at": "08:00",
           "updated_at": "2026-01-01T00:00:00Z"}
    raw_values[mallory] = json.dumps(rec).encode()
    env.produce_raw(env.subscribers_topic, raw_values[mallory], key=mallory)

    # --- a valid notice full of markup, published with the CLI; then a plain one after it ---
    xss = notice("news", {"en": XSS_TITLE, "es": XSS_TITLE + " (es)"},
                 summary={"en": XSS_SUMMARY}, body={"en": XSS_BODY}, source=XSS_SOURCE,
                 url="https://example.gov/notices/1?a=1&b=2")
    after = notice("news", "Plain notice after the poison")
    env.publish([xss])
    env.publish([after])

    # every good notice reaches both subscribers (the daemon went on past the poison)
    env.wait_mail(lambda ib: sum(1 for m in ib if m.to in (victim, plain)) >= 4,
                  what="the two valid notices to both subscribers")
    env.wait_settled(min_jobs=4)

    # --- DLQ ---
    dlq_keys = set(raw_notices) | {mallory}
    last = []

    def dlq_done():
        nonlocal last
        last = env.dlq()
        return dlq_keys <= {m.key for m in last}

    wait_for(dlq_done, MAIL_TIMEOUT, "DLQ records for the raw notices and the raw subscriber", 0.5,
             lambda: f"DLQ: {[(m.key, m.headers) for m in last]}\n{env.logs()}")
    for m in last:
        if m.key in raw_notices:
            reason = m.headers.get("noticecast-dlq-reason", "")
            assert raw_notices[m.key] in reason, f"DLQ reason for the bad {raw_notices[m.key]}: {m.headers}"
        if m.key in raw_values:
            assert m.value == raw_values[m.key], f"DLQ value is not the original record: {m.value!r}"
        if m.key == mallory:
            assert "name" in m.headers.get("noticecast-dlq-reason", ""), m.headers
    assert sum(1 for m in last if m.key in dlq_keys) == len(dlq_keys), \
        f"each invalid record once in the DLQ: {[(m.key, m.headers.get('noticecast-dlq-reason')) for m in last]}"

    # --- what was mailed ---
    inbox = env.inbox()
    assert not [m for m in inbox if mallory in m.rcpt], "the invalid subscriber record got mail"
    assert not [m for m in inbox if EVIL in m.rcpt or EVIL in " ".join(m.rcpt)], "mail went to evil@"
    for m in inbox:
        assert len(m.rcpt) == 1 and m.rcpt[0] in (victim, plain), f"unexpected recipients: {m.describe()}"
        assert "Hello" not in m.subject, f"the raw CR/LF notice was mailed: {m.describe()}"
        assert "Valid title" not in m.subject, f"the raw CR/LF-source notice was mailed: {m.describe()}"
    problems = []
    xss_mails = [m for m in inbox if XSS_TITLE in m.subject]
    assert len(xss_mails) == 2, f"the markup notice reached {len(xss_mails)} of 2 subscribers: {inbox}"
    for m in inbox:
        who = "victim" if m.to == victim else "lector"
        where = f"{who}: {m.subject[:40]!r}"
        problems += [f"{where}: {x}" for x in message_problems(
            m, to_addr=m.to, to_name=SNEAKY_NAME if who == "victim" else "Lector",
            lang="en" if who == "victim" else "es", list_unsubscribe_base=env.unsubscribe_url)]
        heads = [n.lower() for n, _ in raw_headers(m.raw)]
        if "bcc" in heads or "cc" in heads:
            problems.append(f"{where}: a Bcc/Cc header: {heads}")
        if EVIL in m.raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace"):
            problems.append(f"{where}: {EVIL} appears in the header block")
        html = m.html
        for raw in ("<script", "<img", "<b>", "<i>"):
            if raw in html:
                problems.append(f"{where}: raw {raw!r} in the HTML part")
        if m in xss_mails:
            title = XSS_TITLE if who == "victim" else XSS_TITLE + " (es)"
            if m.subject != title:
                problems.append(f"{where}: subject {m.subject!r}, expected the raw title {title!r}")
            if "&lt;script&gt;alert(1)&lt;/script&gt;" not in html or "&amp;" not in html:
                problems.append(f"{where}: the escaped title is not in the HTML part")
            if "&lt;img src=x onerror=alert(document.domain)&gt;" not in html:
                problems.append(f"{where}: the escaped summary is not in the HTML part")
            if "&lt;/p&gt;&lt;script&gt;alert(2)&lt;/script&gt;" not in html:
                problems.append(f"{where}: the escaped body is not in the HTML part")
            if "https://example.gov/notices/1?a=1&amp;b=2" not in html:
                problems.append(f"{where}: the URL's & is not escaped in href/text")
            text = m.text
            for s in (title, XSS_SUMMARY, "Para <b>one</b>", "</p><script>alert(2)</script><p>", XSS_SOURCE):
                if s not in text:
                    problems.append(f"{where}: the plain part lacks the raw text {s!r}")
            if "Bcc: evil@example.org" not in text:
                problems.append(f"{where}: the body line 'Bcc: evil@...' is not in the plain part")
        if who == "victim":
            if "&lt;b&gt;x&lt;/b&gt;" not in html:
                problems.append(f"{where}: the subscriber's name is not escaped in the HTML part")
    assert not problems, f"{len(problems)} problem(s):\n  " + "\n  ".join(problems)
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()


# An encoded-word look-alike that a careless encoder would let readers decode into a Bcc line,
# followed by one long unbreakable word (the title is at the 300-byte limit).
ODD_TITLE = "=?utf-8?q?x=0D=0ABcc=3A_evil=40example=2Eorg?= " + "Ünïcödé" * 5 + "W" * 198
ODD_NAME = "Ödön \u202eevil\u202c 🎉 \"quoted\" (comment) " + "N" * 120
LOOKALIKE_NAME = "=?utf-8?q?Security_Team_=3Cceo=40example=2Egov=3E?="
LONG_WORD = "".join(chr(0x41 + i % 26) for i in range(5000))
ODD_BODY = f"{LONG_WORD}\n\n.\n\n.hidden line\nFrom the start of a line\n\nLast paragraph."


def test_overlong_and_odd_input(ml):
    """Overlong and odd input in titles, names and bodies cannot add or change a header, and
    reaches the reader intact: a 300-byte title made of an encoded-word look-alike and one long
    word; a display name with a bidi override, an emoji, quotes and a comment; a body with a
    5,000-character line and lines "." and ".hidden" (SMTP dot-stuffing) and "From "; and a
    second subscriber whose name is an encoded-word look-alike ("Security Team <ceo@...>" once
    decoded).  The decoded Subject and To names equal the input exactly, the messages pass
    message_problems() (lines <= 998 octets among others), and both parts carry the body."""
    env = ml
    assert len(ODD_TITLE.encode()) <= 300 and len(ODD_NAME.encode()) <= 200
    odd = env.add_subscriber("odd@example.org", name=ODD_NAME, lang="en", frequency="immediate")
    spoof = env.add_subscriber("spoof@example.org", name=LOOKALIKE_NAME, lang="en", frequency="immediate")
    d = env.start()
    env.publish([notice("news", ODD_TITLE, body={"en": ODD_BODY})])
    env.wait_mail(lambda ib: len(ib) >= 2, what="the messages with odd input")
    env.wait_settled(min_jobs=2)
    (m,) = env.mail_for(odd)
    (s,) = env.mail_for(spoof)
    problems = message_problems(m, to_addr=odd, to_name=ODD_NAME, lang="en",
                                list_unsubscribe_base=env.unsubscribe_url)
    problems += [f"spoof: {x}" for x in message_problems(
        s, to_addr=spoof, to_name=LOOKALIKE_NAME, lang="en", list_unsubscribe_base=env.unsubscribe_url)]
    if m.subject != ODD_TITLE:
        problems.append(f"decoded Subject differs from the title:\n    got  {m.subject!r}\n    want {ODD_TITLE!r}")
    if [n.lower() for n, _ in raw_headers(m.raw)].count("bcc"):
        problems.append("a Bcc header")
    text = m.text.replace("\r\n", "\n")
    for piece in (LONG_WORD, "\n.\n", "\n.hidden line\n", "\nFrom the start of a line\n", "Last paragraph."):
        if piece not in text:
            problems.append(f"the plain part lost {piece[:40]!r}")
    if LONG_WORD not in m.html:
        problems.append("the HTML part lost the 5,000-character word")
    assert not problems, f"{len(problems)} problem(s):\n  " + "\n  ".join(problems)
    assert d.terminate() == 0, d.tail()
