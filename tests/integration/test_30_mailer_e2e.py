"""noticecast-mailer end to end, on the real clock: subscribers in four languages, three
frequencies and four time zones get the right notices, in the right language, at the right time.

Subscribers (added with `noticecast subscribers add`):
  es  America/Lima       immediate  region PE
  pt  America/Sao_Paulo  daily      region BR   send_at = local time of minute M
  ko  Asia/Seoul         daily      all         send_at = local time of minute M
  en  UTC                weekly     all         send_at = local time of M, weekly_day = M's day
  press-desk             immediate  category press only (gets nothing: no press notice)
The digest subscribers are first added with a send time 12 h away and moved to minute M (about
a minute ahead, in each one's own zone) once the notices are out: the change must take effect
without a restart.

Notices:
  N1  config/examples/moi-egov-latam.json: news, en/es/pt, regions KR PE BR
  N2  ko-only news for KR
  N4  news for BR, then withdrawn                 -> in nobody's digest
  N5a news for BR (en/pt), N5b corrects it         -> only N5b in digests
  N6  news for PE, published (raw) with a Kafka timestamp two days old: no immediate email,
      outside the daily window, inside the weekly one
  N3  urgent alert (category alerts, no regions, en/es): to everyone of the category at once,
      daily/weekly subscribers included, and in nobody's digest

Expected mail: es: N1 (es) and N3 (es) at once;  pt: N3 (en, fallback) at once, at M a daily
digest [N5b, N1] (pt);  ko: N3 at once, at M a daily digest [N5b (en), N2 (ko), N1 (en)];
en: N3 at once, at M a weekly digest [N5b, N2 (ko), N1, N6];  press-desk: nothing.
No digest may arrive before M (checked at every poll, and on the Date header).  Every message
is parsed with email.policy.default and checked by message_problems() (structure, charsets,
headers exactly once, CRLF, line length, List-Unsubscribe on the wire, ...); every
Message-ID is the one its job carries on the jobs topic and in its delivery event.
"""

import json
import time

from mailer_support import *  # noqa: F401,F403

LEAD = 40  # seconds between the last notice and the digest minute M (at least)

SUBS = {
    "es": dict(email_addr="Ana.Quispe@example.pe", name="Ana Quispe Ñahui", lang="es",
               tz="America/Lima", frequency="immediate", regions=["PE"]),
    "pt": dict(email_addr="joao.conceicao@example.com.br", name="João Conceição", lang="pt",
               tz="America/Sao_Paulo", frequency="daily", regions=["BR"]),
    "ko": dict(email_addr="minji.kim@example.kr", name="김민지", lang="ko", tz="Asia/Seoul",
               frequency="daily"),
    "en": dict(email_addr="editor@example.org", name="Pat Editor", lang="en", tz="UTC",
               frequency="weekly"),
    "press": dict(email_addr="press-desk@example.org", name="Press Desk", lang="en",
                  frequency="immediate", categories=["press"]),
}
DIGEST_SUBS = ("pt", "ko", "en")

# Words of the templates (config/templates/<lang>/subject.mustache) the subjects must carry.
URGENT_MARK = {"es": "URGENTE: ", "pt": "URGENTE: ", "ko": "[긴급] ", "en": "URGENT: "}
DIGEST_SUBJECT = {"pt": "Resumo diário: 2 novos avisos", "ko": "[일일 요약] 새 공지 3건",
                  "en": "Weekly digest: 4 new notices"}


def title_in(n: dict, lang: str) -> str:
    return n["title"].get(lang) or n["title"][n.get("lang", "en")]


def all_titles(n: dict) -> list:
    return list(n["title"].values())


def positions(text: str, titles: list) -> list:
    return [text.find(t) for t in titles]


def test_languages_frequencies_time_zones(ml, nc_bin):
    env = ml
    now_min = int(time.time() // 60)
    # weekly_day must be the UTC day of M; M is a few minutes ahead (checked again below)
    env.mailer["weekly_day"] = weekday_name(future_minute(LEAD + 120))
    ids = {}
    for k, s in SUBS.items():
        kw = dict(s)
        if k in DIGEST_SUBS:
            kw["send_at"] = local_hhmm(now_min + 720, s["tz"])  # 12 h away: not during the test
        ids[k] = env.add_subscriber(**kw)
    d = env.start()

    # --- notices ---
    n1 = example_notice()
    n2 = notice("news", {"ko": "행정안전부, 중남미 전자정부 협력 포럼 개최"}, regions=["KR"], lang="ko",
                summary={"ko": "리마와 상파울루에서 협력 포럼이 열립니다."},
                body={"ko": "첫째 문단입니다.\n\n둘째 문단입니다."}, source="행정안전부")
    n4 = notice("news", {"en": "Road closure on Avenida Paulista", "pt": "Interdição na Avenida Paulista"},
                regions=["BR"])
    n5a = notice("news", {"en": "Visa office hours 9 to 17", "pt": "Horário do escritório de vistos: 9h às 17h"},
                 regions=["BR"])
    n5b = notice("news", {"en": "Visa office hours 8 to 16 (corrected)",
                          "pt": "Horário do escritório de vistos: 8h às 16h (corrigido)"},
                 regions=["BR"], supersedes=n5a["id"])
    n6 = notice("news", {"en": "Archive: census results published", "es": "Archivo: resultados del censo publicados"},
                regions=["PE"])
    n3 = notice("alerts", {"en": "Flood warning for coastal areas", "es": "Alerta de inundación en zonas costeras"},
                priority="urgent")
    for n in (n1, n2, n4, n5a, n5b):
        env.publish([n])
    env.withdraw(n4["id"], "news")
    # N6: the CLI's normalised record, produced raw with a Kafka timestamp two days old
    f = env.tmp / "n6.json"
    f.write_text(json.dumps(n6, ensure_ascii=False))
    cp = env.cli("publish", "-n", f)
    assert cp.returncode == 0, cp.stderr
    n6_value = cp.stdout.strip().splitlines()[0].encode()
    assert json.loads(n6_value)["id"] == n6["id"], cp.stdout
    p = env.producer()
    p.produce(env.topic("news"), value=n6_value, key=n6["id"], headers=PUBLISHED_HEADERS,
              timestamp=int((time.time() - 2 * 86400) * 1000))
    assert p.flush(30) == 0
    env.publish([n3])

    # --- move the digest subscribers to minute M ---
    M = future_minute(LEAD)
    slot = M * 60
    if weekday_name(M) != env.mailer["weekly_day"]:  # crossed midnight UTC meanwhile
        assert d.terminate() == 0, d.tail()
        env.mailer["weekly_day"] = weekday_name(M)
        d = env.start()
    send_at = {k: local_hhmm(M, SUBS[k]["tz"]) for k in DIGEST_SUBS}
    for k in DIGEST_SUBS:
        env.add_subscriber(**dict(SUBS[k], send_at=send_at[k]))
    listed = env.subscribers()
    for k in DIGEST_SUBS:
        assert listed[ids[k]]["send_at"] == send_at[k], listed[ids[k]]
    print(f"digest minute M = {minute_iso(M)} (UTC); send_at: {send_at}; "
          f"weekly_day {env.mailer['weekly_day']}")

    urgent_titles = set(all_titles(n3))
    addr = {k: SUBS[k]["email_addr"].lower() for k in SUBS}
    early = []

    def is_urgent(m):
        return any(t in m.text for t in urgent_titles)

    def watch(inbox):
        # a digest (anything but the urgent alert to a digest subscriber) seen before M
        for m in inbox:
            if m.to in (addr[k] for k in DIGEST_SUBS) and not is_urgent(m) and m.seen_at < slot:
                early.append(m)
        assert not early, (f"digest(s) arrived before their send time {minute_iso(M)}: "
                           f"{[x.describe() for x in early]}")

    def count(k, urgent=None):
        return lambda inbox: [m for m in inbox if m.to == addr[k]
                              and (urgent is None or is_urgent(m) == urgent)]

    # immediate and urgent emails: at once (bounded wait, before and regardless of M)
    env.wait_mail(lambda ib: len(count("es")(ib)) >= 2 and all(len(count(k, True)(ib)) >= 1 for k in DIGEST_SUBS),
                  what="the immediate (N1 to es) and urgent (N3 to es, pt, ko, en) emails", watch=watch)
    # the digests, once the clock passes M
    env.wait_mail(lambda ib: all(len(count(k, False)(ib)) >= 1 for k in DIGEST_SUBS),
                  timeout=max(0, slot - time.time()) + MAIL_TIMEOUT,
                  what=f"the digests of minute {minute_iso(M)} to pt, ko and en", watch=watch)
    jobs, events = env.wait_settled(min_jobs=8)
    inbox = env.inbox()
    watch(inbox)

    # --- exactly the expected messages ---
    expect = {  # subscriber -> [(kind, [notices newest first], language of the notice texts)]
        "es": [("immediate", [n1]), ("urgent", [n3])],
        "pt": [("urgent", [n3]), ("digest", [n5b, n1])],
        "ko": [("urgent", [n3]), ("digest", [n5b, n2, n1])],
        "en": [("urgent", [n3]), ("digest", [n5b, n2, n1, n6])],
        "press": [],
    }
    got = {k: [m for m in inbox if m.to == addr[k]] for k in SUBS}
    strays = [m for m in inbox if m.to not in addr.values() or len(m.rcpt) != 1]
    summary = {k: [m.subject for m in v] for k, v in got.items()}
    assert not strays, f"messages to unexpected recipients: {[m.describe() for m in strays]}"
    for k, exp in expect.items():
        assert len(got[k]) == len(exp), (f"{k} ({addr[k]}) got {len(got[k])} message(s), expected "
                                         f"{[e[0] for e in exp]}; all subjects: {summary}")

    problems = []
    jobs_by_id = {}
    for j in jobs:
        jobs_by_id.setdefault(j["message_id"], []).append(j)
    events_by_id = {}
    for e in events:
        events_by_id.setdefault(e.get("message_id"), []).append(e)
    excluded_always = all_titles(n4) + all_titles(n5a)
    for k, exp in expect.items():
        lang = SUBS[k]["lang"]
        for kind, notices in exp:
            urgent = kind == "urgent"
            ms = [m for m in got[k] if is_urgent(m) == urgent]
            if len(ms) != 1:
                problems.append(f"{k}: {len(ms)} {kind} message(s), expected 1: {summary[k]}")
                continue
            m = ms[0]
            where = f"{k} {kind} ({m.message_id})"
            problems += [f"{where}: {x}" for x in message_problems(
                m, to_addr=SUBS[k]["email_addr"], to_name=SUBS[k]["name"], lang=lang,
                list_unsubscribe_base=env.unsubscribe_url)]
            # the notices, in the subscriber's language (or the notice's own), newest first
            titles = [title_in(n, lang) for n in notices]
            for part, body in (("text/plain", m.text), ("text/html", m.html)):
                pos = positions(body, titles)
                if -1 in pos:
                    problems.append(f"{where}: {part} lacks title(s) "
                                    f"{[t for t, p in zip(titles, pos) if p < 0]}")
                elif pos != sorted(pos):
                    problems.append(f"{where}: {part} notices not newest first: {titles} at {pos}")
                others = [t for t in excluded_always
                          + (all_titles(n3) if kind == "digest" else [])
                          + [t for n in (n1, n2, n6) if n not in notices for t in all_titles(n)]
                          if t not in titles]
                bad = [t for t in others if t in body]
                if bad:
                    problems.append(f"{where}: {part} contains notices that do not belong: {bad}")
            subj = m.subject
            if kind == "digest":
                if subj != DIGEST_SUBJECT[k]:
                    problems.append(f"{where}: subject {subj!r}, expected {DIGEST_SUBJECT[k]!r}")
                d_ = m.msg["Date"].datetime.timestamp() if m.header("Date") else 0
                if d_ < slot:
                    problems.append(f"{where}: Date {m.header('Date')} is before the send time "
                                    f"{minute_iso(M)}")
            else:
                want = (URGENT_MARK[lang] if urgent else "") + titles[0]
                if subj != want:
                    problems.append(f"{where}: subject {subj!r}, expected {want!r}")
            # the job it came from, and its delivery event, carry the same Message-ID
            js = jobs_by_id.get(m.bare_id, [])
            if len(js) != 1 or js[0].get("subscriber") != ids[k]:
                problems.append(f"{where}: {len(js)} job(s) with this Message-ID for "
                                f"{ids[k]}: {js}")
            evs = events_by_id.get(m.bare_id, [])
            if not any(e.get("type") == "mail.sent" and e.get("_key") == ids[k]
                       and e.get("subscriber") == ids[k] and e.get("code") == 250 for e in evs):
                problems.append(f"{where}: no mail.sent event (key {ids[k]}, code 250): {evs}")
    # fallbacks: texts not in the subscriber's language are shown in the notice's own, marked
    ko_digest = next((m for m in got["ko"] if not is_urgent(m)), None)
    en_digest = next((m for m in got["en"] if not is_urgent(m)), None)
    if ko_digest and 'lang="en"' not in ko_digest.html:
        problems.append("ko digest: the English fallback texts are not marked lang=\"en\"")
    if en_digest and 'lang="ko"' not in en_digest.html:
        problems.append("en digest: the Korean notice is not marked lang=\"ko\"")
    ids_seen = [m.message_id for m in inbox]
    if len(set(ids_seen)) != len(ids_seen):
        problems.append(f"two different messages share a Message-ID: {ids_seen}")
    # nothing else was planned: no job for press-desk, none for N6 as an immediate email
    if any(j.get("subscriber") == ids["press"] for j in jobs):
        problems.append(f"a job was planned for press-desk: {[j for j in jobs if j.get('subscriber') == ids['press']]}")
    if any(n6["id"] in j.get("notices", []) and j.get("type") != "digest" for j in jobs):
        problems.append("N6 (two days old) was planned as an immediate email")
    if len(jobs) != 8:
        problems.append(f"{len(jobs)} jobs planned, expected 8: {[(j.get('subscriber'), j.get('type')) for j in jobs]}")

    assert not problems, f"{len(problems)} problem(s):\n  " + "\n  ".join(problems) + "\n" + env.logs(20)
    assert d.alive(), d.tail()
    assert d.terminate() == 0, d.tail()
