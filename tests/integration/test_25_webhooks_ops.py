"""Operating noticecast-webhooks: -n/-h/-V, configuration errors (file:line, exit 78),
SIGHUP reload (a broken file keeps the old partners; a new partner starts receiving), and the
CLI's dlq/deliveries commands on what the daemon left in Kafka."""

import json
import re
import signal
import time

import pytest

from daemon_env import promtool_check_metrics
from webhook_receiver import Always
from webhooks_support import *  # noqa: F401,F403


def secret_of(nbytes: int) -> str:
    return make_secret(nbytes)


def test_check_config_help_version(wh):
    rx = wh.receiver()
    wh.partner("pe", rx.url("/pe"), categories="news", regions="PE, BR")
    wh.partner("ce", rx.url("/ce"), format="cloudevents", secrets=[secret_of(24), secret_of(64)])
    path = wh.write_config()
    cp = wh.run_daemon("-C", path, "-n")
    assert cp.returncode == EX_OK and "configuration OK" in cp.stdout, \
        f"-n: exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"

    cp = wh.run_daemon("-h")
    assert cp.returncode == EX_OK and re.search(r"usage", cp.stdout, re.I), cp.stdout + cp.stderr
    for opt in ("-C", "-X", "-b", "-n", "-V"):
        assert opt in cp.stdout, f"-h does not mention {opt}"
    cp = wh.run_daemon("-V")
    assert cp.returncode == EX_OK
    for lib in ("noticecast", "librdkafka", "curl"):
        assert lib in cp.stdout.lower(), f"-V does not mention {lib}:\n{cp.stdout}"


# Each case breaks one thing in an otherwise good file.  It returns where the error is:
# ("config", section, key) -> the config file's line of that key (key None: any line of the section);
# ("secret", line) -> that line of the partner's secret file (the config file's secret_file line
# is accepted too).
def _secret_lines(*lines):
    def f(wh, p):
        p.secret_file.write_text("".join(l + "\n" for l in lines))
        return [("secret", len(lines))]
    return f


def _partner_opt(key, value):
    def f(wh, p):
        p.options[key] = value
        return [("config", "partner.pe", key)]
    return f


def _webhooks_opt(key, value):
    def f(wh, p):
        wh.webhooks[key] = value
        return [("config", "webhooks", key)]
    return f


def _missing_secret_file(wh, p):
    p.secret_file = wh.tmp / "no-such-dir" / "pe.secret"
    return [("config", "partner.pe", "secret_file")]


def _no_url(wh, p):
    p.url = None
    return [("config", "partner.pe", None)]


BAD_CONFIGS = {
    "secret-10-bytes": _secret_lines("# rotated 2024-01", secret_of(10)),
    "secret-65-bytes": _secret_lines(secret_of(32), secret_of(65)),
    "secret-not-base64": _secret_lines("whsec_!!!not*base64!!!"),
    "unknown-format": _partner_opt("format", "xml"),
    "unknown-partner-key": _partner_opt("colour", "blue"),
    "bad-partner-id": None,  # [partner.PE]: upper case is not allowed
    "unknown-webhooks-key": _webhooks_opt("retry_schedul", "1s"),
    "bad-duration": _webhooks_opt("retry_schedule", "1s, 5 parsecs"),
    "missing-secret-file": _missing_secret_file,
    "no-url": _no_url,
}


def section_lines(path, section):
    lines = path.read_text().splitlines()
    start = lines.index(f"[{section}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    return range(start + 1, end + 1)


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_exit_78_with_file_line(wh, case):
    pid = "PE" if case == "bad-partner-id" else "pe"
    p = wh.partner(pid, "http://127.0.0.1:9/pe")
    where = BAD_CONFIGS[case](wh, p) if BAD_CONFIGS[case] else [("config", "partner.PE", None)]
    path = wh.write_config()  # (a key set to None, like url in no-url, is left out)

    cp = wh.run_daemon("-C", path, "-n")
    assert cp.returncode == EX_CONFIG, f"{case}: exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    assert "configuration OK" not in cp.stdout
    print(f"{case}: {cp.stderr.strip()}")

    allowed = set()
    for w in where:
        if w[0] == "secret":
            allowed.add((p.secret_file.name, w[1]))
            allowed.add((path.name, config_line(path, f"partner.{pid}", "secret_file")))
        elif w[2] is None:  # about the whole section: its header or any line in it
            allowed |= {(path.name, n) for n in section_lines(path, w[1])}
        else:
            allowed.add((path.name, config_line(path, w[1], w[2])))
    found = {(f.rsplit("/", 1)[-1], int(n)) for f, n in re.findall(r"([^\s:'\"=]+):(\d+):", cp.stderr)}
    assert found & allowed, f"{case}: stderr should say file:line: for one of {sorted(allowed)}:\n{cp.stderr}"
    for line in (p.secret_file.read_text().splitlines() if p.secret_file.exists() else []):
        if line.startswith("whsec_"):
            assert line not in cp.stderr and line[6:] not in cp.stderr, "a secret is echoed on stderr"


def test_sighup_reload_keeps_old_config_when_broken_and_adds_partners(wh):
    rx = wh.receiver()
    pe = wh.partner("pe", rx.url("/pe"))
    rx.route("/pe", Always(204), secrets=pe.secrets)
    d = wh.start()

    n1 = notice("news", "Before reload")
    wh.publish([n1])
    rx.wait_for_ids("/pe", {n1["id"]}, extra=wh.logs)

    # a broken file: the new partner's secret decodes to 10 bytes
    good_text = wh.config_path.read_text()
    br_rx_path = "/br"
    br = wh.partner("br", rx.url(br_rx_path), secrets=[secret_of(10)])
    wh.write_config()
    offset = d.log_size()
    d.signal(signal.SIGHUP)
    # the rejection is logged, naming the file (which tells us the reload was processed)
    d.wait_log(re.escape(wh.config_path.name) + r"|" + re.escape(br.secret_file.name), since=offset,
               timeout=60, what="a log line about the rejected configuration")
    assert d.alive(), "SIGHUP with a broken config killed the daemon\n" + d.tail()

    n2 = notice("news", "After a broken reload")
    wh.publish([n2])
    rx.wait_for_ids("/pe", {n2["id"]}, extra=wh.logs)
    assert rx.snapshot(br_rx_path) == [], "a partner of the rejected configuration got requests"
    r = [x for x in rx.delivered("/pe") if x.notice_id == n2["id"]][0]
    assert r.verified, "old partner's secret no longer used after a rejected reload"

    # a good file that adds partner br: after SIGHUP it starts receiving (notices consumed
    # around the reload itself may or may not reach it: publish until one does, bounded)
    br = wh.partner("br", rx.url(br_rx_path))
    rx.route(br_rx_path, Always(204), secrets=br.secrets)
    wh.write_config()
    assert wh.config_path.read_text() != good_text
    d.signal(signal.SIGHUP)
    sent = []
    for i in range(10):
        n = notice("press", f"After a good reload {i}")
        wh.publish([n])
        sent.append(n["id"])
        rx.wait_for_ids("/pe", {n["id"]}, extra=wh.logs)
        if rx.delivered_ids(br_rx_path):
            break
        try:
            rx.wait_for_ids(br_rx_path, {n["id"]}, timeout=5)
            break
        except AssertionError:
            continue
    assert rx.delivered_ids(br_rx_path), "the partner added by SIGHUP got nothing\n" + rx.summary() + wh.logs()
    # once br has one notice, it gets every later one
    n3 = notice("news", "After br is live")
    wh.publish([n3])
    rx.wait_for_ids(br_rx_path, {n3["id"]}, extra=wh.logs)
    rx.wait_for_ids("/pe", set(sent) | {n1["id"], n2["id"], n3["id"]}, extra=wh.logs)
    assert all(r.verified for r in rx.snapshot(br_rx_path))
    assert d.alive()
    assert d.terminate() == 0, d.tail()


def test_cli_accepts_the_daemon_config(wh):
    """The daemon's sections live in the same file as the CLI's: the CLI must accept it."""
    rx = wh.receiver()
    wh.partner("pe", rx.url("/pe"))
    path = wh.write_config()
    cp = wh.cli("topics", "list", config=path)
    assert cp.returncode == 0, f"noticecast rejects the webhooks config:\n{cp.stderr}"


def _cli_or_skip(cp):
    if re.search(r"unknown command", cp.stdout + cp.stderr, re.I):
        pytest.skip(f"CLI has no such command yet: {cp.args[3:]}")
    return cp


def test_cli_dlq_list_replay_and_deliveries(wh):
    rx = wh.receiver()
    ok = wh.partner("ok", rx.url("/ok"))
    bad = wh.partner("bad", rx.url("/bad"))
    rx.route("/ok", Always(204), secrets=ok.secrets)
    rx.route("/bad", Always(400), secrets=bad.secrets)
    d = wh.start()

    n = notice("news", "Rejected by bad")
    wh.publish([n])
    rx.wait_for_ids("/ok", {n["id"]}, extra=wh.logs)
    wh.wait_dlq("bad", {n["id"]})

    # dlq list --json: one entry with the key, partner and reason (field names not fixed yet:
    # look for the values)
    cp = _cli_or_skip(wh.cli("dlq", "list", "--json"))
    assert cp.returncode == 0, cp.stderr
    text = cp.stdout.strip()
    try:
        entries = json.loads(text)
        if isinstance(entries, dict):
            entries = [entries]
    except ValueError:
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    mine = [e for e in entries if n["id"] in json.dumps(e)]
    assert len(mine) == 1, f"dlq list --json:\n{text}"
    vals = json.dumps(mine[0])
    assert "bad" in vals and "HTTP 400" in vals and wh.topic("news") in vals, mine[0]

    cp = _cli_or_skip(wh.cli("dlq", "list"))
    assert cp.returncode == 0 and n["id"] in cp.stdout and "HTTP 400" in cp.stdout, cp.stdout + cp.stderr

    # deliveries NOTICE_ID: one line per partner with its outcome
    cp = _cli_or_skip(wh.cli("deliveries", n["id"]))
    assert cp.returncode == 0, cp.stderr
    lines = {pid: [l for l in cp.stdout.splitlines() if re.search(rf"\b{pid}\b", l)] for pid in ("ok", "bad")}
    assert lines["ok"] and any("delivered" in l for l in lines["ok"]), cp.stdout
    assert lines["bad"] and any("dlq" in l.lower() for l in lines["bad"]), cp.stdout

    # the partner fixed its endpoint: replaying the DLQ record delivers the notice to it
    rx.route("/bad", Always(204))
    cp = _cli_or_skip(wh.cli("dlq", "replay", "--id", n["id"]))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    rx.wait_for_ids("/bad", {n["id"]}, extra=wh.logs)
    r = rx.delivered("/bad")[0]
    assert r.verified
    first = [x for x in rx.snapshot("/bad") if x.status == 400][0]
    assert r.webhook_id == first.webhook_id, "a replayed delivery should keep its webhook-id"
    assert d.terminate() == 0, d.tail()


def test_metrics_from_the_start_and_promtool_clean(wh):
    """Every partner's outcome series exist at 0 before any notice (alerts have something to
    match), build info and process_* are there, and the exposition passes promtool."""
    rx = wh.receiver()
    for pid in ("pe", "ce"):
        p = wh.partner(pid, rx.url(f"/{pid}"))
        rx.route(f"/{pid}", Always(204), secrets=p.secrets)
    d = wh.start()
    st, text = d.get("/metrics")
    assert st == 200, text
    samples = parse_metrics(text)
    for pid in ("pe", "ce"):
        for outcome in ("delivered", "retry", "dlq", "disabled"):
            assert metric_value(samples, "noticecast_webhook_attempts_total", partner=pid,
                                outcome=outcome) == 0, (pid, outcome)
        for outcome in ("delivered", "dlq", "disabled"):
            assert metric_value(samples, "noticecast_webhook_deliveries_total", partner=pid,
                                outcome=outcome) == 0, (pid, outcome)
        assert metric_value(samples, "noticecast_webhook_partner_disabled", partner=pid) == 0
    assert metric_value(samples, "noticecast_webhook_deliveries_total", outcome="retry") is None, \
        "retry is not a final outcome"
    assert metric_value(samples, "noticecast_build_info", program="noticecast-webhooks") == 1
    assert metric_value(samples, "process_resident_memory_bytes") > 0
    assert metric_value(samples, "process_open_fds") > 0
    assert metric_value(samples, "process_start_time_seconds") > time.time() - 3600
    promtool_check_metrics(text)

    n = notice("news", "Counted once")
    wh.publish([n])
    rx.wait_for_ids("/pe", {n["id"]}, extra=wh.logs)
    rx.wait_for_ids("/ce", {n["id"]}, extra=wh.logs)
    wait_for(lambda: metric_value(d.metrics(), "noticecast_webhook_deliveries_total",
                                  outcome="delivered") == 2, 30, "two deliveries counted")
    st, text = d.get("/metrics")
    promtool_check_metrics(text)
    assert d.terminate() == 0, d.tail()
