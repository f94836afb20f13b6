"""Operating noticecast-mailer: -n / -h / -V and configuration errors, --preview, the HTTP
endpoint and SIGTERM, STARTTLS + AUTH against the real SMTP server.

* -n prints `configuration OK` (exit 0); a missing `unsubscribe_secret_file` key, a secret file
  that does not exist or is shorter than 16 bytes, a templates directory that does not exist
  and an unknown [mailer] key all exit 78 naming what is wrong; -h exits 0 with the usage on
  stdout, -V 0 with the versions, an unknown option 64.
* --preview EMAIL for a daily subscriber prints, on stdout, the .eml of the digest they would
  get now: it parses (email.policy.default) and passes message_problems(); it has the
  matching notice in the subscriber's language and not the urgent one nor the one for another
  region; nothing is sent.  With nothing in the window: exit 0, empty stdout, a note on stderr.
  An address that is not a subscriber: non-zero exit and a message.
* /healthz, /readyz, /metrics (Prometheus text with the subscriber gauge and sent counter);
  SIGTERM: exit 0.
* STARTTLS (required, verified against the server's certificate) + AUTH: the message arrives
  over TLS, authenticated as the configured user; with a wrong password nothing is sent and
  nothing is recorded as a bounce (it is the relay's problem, not the recipient's).
"""

import email
import email.policy
import os
import re
import signal
import time

from daemon_env import promtool_check_metrics
from mailer_support import *  # noqa: F401,F403
from smtp_server import PASSWORD, USER, SMTPTestServer
from webhooks_support import config_line


def test_config_check_and_errors(ml):
    env = ml
    path = env.write_config()
    cp = env.run_daemon("-n")
    assert cp.returncode == EX_OK and cp.stdout.decode().strip() == "configuration OK", \
        f"-n: exit {cp.returncode}\n{cp.stdout!r}\n{cp.stderr!r}"

    cases = {
        "no unsubscribe_secret_file": (dict(unsubscribe_secret_file=None), "unsubscribe_secret_file"),
        "secret file missing": (dict(unsubscribe_secret_file=str(env.tmp / "nope.secret")), "nope.secret"),
        "templates missing": (dict(templates=str(env.tmp / "no-templates")), "no-templates"),
    }
    short = env.tmp / "short.secret"
    short.write_text("tooshort\n")
    os.chmod(short, 0o600)  # secret files must be owner-only, else refused for their mode
    cases["secret too short"] = (dict(unsubscribe_secret_file=str(short)), "short.secret")
    for i, (what, (over, must)) in enumerate(cases.items()):
        bad = env.write_config(env.tmp / f"bad-{i}.conf", mailer=over)
        cp = env.run_daemon("-n", config=bad)
        err = cp.stderr.decode()
        assert cp.returncode == EX_CONFIG, f"{what}: exit {cp.returncode}, expected 78\n{err}"
        assert must in err, f"{what}: the error does not name {must!r}: {err}"
        assert cp.stdout.decode().strip() == "", f"{what}: stdout {cp.stdout!r}"

    bad = env.write_config(env.tmp / "unknown-key.conf", mailer={"colour": "blue"})
    cp = env.run_daemon("-n", config=bad)
    line = config_line(bad, "mailer", "colour")
    assert cp.returncode == EX_CONFIG and f"{bad}:{line}:" in cp.stderr.decode(), \
        f"unknown key: exit {cp.returncode}: {cp.stderr!r}"

    cp = env.run_daemon("-h", config=False)
    assert cp.returncode == 0 and b"usage" in cp.stdout.lower(), cp
    cp = env.run_daemon("-V", config=False)
    assert cp.returncode == 0 and re.search(rb"noticecast-mailer \d+\.\d+\.\d+", cp.stdout), cp
    assert b"librdkafka" in cp.stdout, cp.stdout
    cp = env.run_daemon("--no-such-option", config=path)
    assert cp.returncode == 64, f"unknown option: exit {cp.returncode}"


def test_preview(ml):
    env = ml
    joao = env.add_subscriber("joao@example.com.br", name="João Conceição", lang="pt", frequency="daily",
                              tz="America/Sao_Paulo", send_at="07:30", regions=["BR"])
    nobody = env.add_subscriber("ar@example.com.ar", name="Argentina Reader", lang="es", frequency="daily",
                                regions=["AR"])
    n1 = example_notice()
    kr = notice("news", {"ko": "한국 전용 공지"}, regions=["KR"], lang="ko")
    urgent = notice("alerts", {"en": "Heat alert", "pt": "Alerta de calor"}, priority="urgent")
    env.publish([n1])
    env.publish([kr])
    env.publish([urgent])
    env.write_config()

    cp = env.run_daemon("--preview", "joao@example.com.br")
    assert cp.returncode == EX_OK, f"--preview exit {cp.returncode}\n{cp.stderr.decode()}"
    assert cp.stdout, f"--preview printed nothing\n{cp.stderr.decode()}"

    class Rec:  # the shape Mail() reads
        rcpt_tos = [joao]
        data = cp.stdout

    m = Mail(Rec, 0)
    problems = message_problems(m, to_addr="joao@example.com.br", to_name="João Conceição", lang="pt",
                                list_unsubscribe_base=env.unsubscribe_url)
    if m.subject != "Resumo diário: " + n1["title"]["pt"]:
        problems.append(f"subject {m.subject!r}")
    if n1["title"]["pt"] not in m.text or n1["title"]["pt"] not in m.html:
        problems.append("the notice's Portuguese title is not in both parts")
    for t in ("Heat alert", "Alerta de calor", "한국 전용 공지"):
        if t in m.text:
            problems.append(f"--preview has {t!r}, which is not for this digest")
    assert not problems, f"--preview output: {len(problems)} problem(s):\n  " + "\n  ".join(problems)
    assert env.smtp.count() == 0, "--preview sent mail"
    assert not env.jobs(), "--preview planned jobs"

    cp = env.run_daemon("--preview", nobody)
    assert cp.returncode == EX_OK and cp.stdout == b"", f"empty window: exit {cp.returncode}, stdout {cp.stdout[:200]!r}"
    assert cp.stderr.strip(), "empty window: no note on stderr"
    cp = env.run_daemon("--preview", "stranger@example.org")
    assert cp.returncode != 0 and cp.stdout == b"" and b"stranger@example.org" in cp.stderr, cp


def test_http_endpoint_metrics_and_sigterm(ml):
    env = ml
    env.add_subscriber("one@example.org", frequency="immediate")
    env.add_subscriber("two@example.org", frequency="daily")
    d = env.start()
    assert d.http_addr() == f"127.0.0.1:{env.port}"
    for path in ("/healthz", "/readyz"):
        st, body = http_request(env.base_url + path)
        assert st == 200, f"{path}: {st} {body[:200]}"
    # before any mail: every outcome at 0 (alerts have series to match), build info, process
    st, text = d.get("/metrics")
    assert st == 200, text
    samples = parse_metrics(text)
    for outcome in ("sent", "bounce", "failed", "skipped"):
        assert metric_value(samples, "noticecast_mail_messages_total", outcome=outcome) == 0, outcome
    assert metric_value(samples, "noticecast_build_info", program="noticecast-mailer") == 1
    assert metric_value(samples, "process_resident_memory_bytes") > 0
    assert metric_value(samples, "noticecast_mail_smtp_transaction_seconds_count") == 0
    promtool_check_metrics(text)
    env.publish([notice("news", "Metrics notice")])
    env.wait_mail(lambda ib: len(ib) >= 1, what="the immediate email")
    env.wait_settled(min_jobs=1)
    samples = []

    def sent():
        nonlocal samples
        samples = d.metrics()
        return metric_value(samples, "noticecast_mail_messages_total", outcome="sent") == 1

    wait_for(sent, 30, "noticecast_mail_messages_total{outcome=\"sent\"} = 1", 0.5, lambda: samples)
    assert metric_value(samples, "noticecast_mail_subscribers") == 2, samples
    # the one email was one SMTP transaction; the planner planned the notice
    assert metric_value(samples, "noticecast_mail_smtp_transaction_seconds_count") == 1, samples
    assert metric_value(samples, "noticecast_mail_notices_planned_total") == 1, samples
    assert metric_value(samples, "noticecast_mail_planner_last_notice_timestamp_seconds") > time.time() - 600
    wait_for(lambda: metric_value(d.metrics(), "noticecast_mail_consumer_lag", consumer="planner") == 0
             and metric_value(d.metrics(), "noticecast_mail_consumer_lag", consumer="sender") == 0,
             30, "consumer lag series of the planner and the sender at 0")
    st, text = d.get("/metrics")
    promtool_check_metrics(text)
    # a sent message is a debug line; the outcome lines carry their own keys
    assert not re.search(r'msg="?smtp: sent', d.log()), "sent logged at info"
    d.signal(signal.SIGTERM)
    assert d.wait_exit(60) == 0, d.tail()


def test_starttls_and_auth(ml_factory):
    env = ml_factory(smtp=SMTPTestServer(tls=True, require_tls=True, auth=True))
    pw = env.tmp / "smtp.password"
    pw.write_text(PASSWORD + "\n")
    os.chmod(pw, 0o600)
    env.smtp_cfg.update(starttls="required", ca_file=str(env.smtp.cert_file), username=USER,
                        password_file=str(pw))
    a = env.add_subscriber("secure@example.org", frequency="immediate")
    d = env.start()
    env.publish([notice("news", "Over TLS")])
    m = env.wait_mail(lambda ib: ib[:1], what="the message over STARTTLS")[0]
    assert m.rec.tls is True and m.rec.auth_user == USER, (m.rec.tls, m.rec.auth_user)
    assert m.rcpt == [a]
    parsed = email.message_from_bytes(m.raw, policy=email.policy.default)
    assert "Over TLS" in str(parsed["Subject"])
    assert d.terminate() == 0, d.tail()

    # a wrong password: nothing sent, never a bounce
    pw.write_text("wrong-password\n")
    d = env.start()
    wrong = notice("news", "Wrong password")
    env.publish([wrong])
    jobs, events = env.wait_settled(min_jobs=2, timeout=60)
    (job,) = [j for j in jobs if j["notices"] == [wrong["id"]]]
    evs = [e for e in events if e["message_id"] == job["message_id"]]
    assert env.smtp.count() == 1, "a message was accepted with a wrong password"
    assert [e["type"] for e in evs] == ["mail.failed"], f"outcome with a wrong password: {evs}"
    assert evs[0]["attempt"] > 1, f"not retried before giving up: {evs}"
    assert d.alive(), d.tail()
