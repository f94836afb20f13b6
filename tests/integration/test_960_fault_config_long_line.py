"""Fault: a configuration line over 198 bytes was refused (`line is longer than 198 bytes`,
inih's default line buffer), so a long partner URL, a CA path or a broker list could not be
configured at all.

Now lines of any sensible length load whole, up to 64 KiB; a longer line is a clear
`file:line: line is longer than 65536 bytes` (exit 78) in all three programs.  The end-to-end
test shows a 4 KiB partner URL configured and a signed webhook delivered to exactly that URL.
"""

from __future__ import annotations

import pytest

from config_faults import EX_CONFIG, EX_OK, check_all, full_config, line_of, summary
from webhooks_support import *  # noqa: F401,F403
from webhook_receiver import Always

pytestmark = pytest.mark.faults


def test_long_lines_load_in_all_programs(tmp_path, record_property):
    brokers = ",".join(f"kafka-{i:02d}.broker-pool.internal.example.org:9093" for i in range(40))
    deep = tmp_path / "/".join(f"directory-level-{i:02d}" for i in range(30))
    deep.mkdir(parents=True)
    ca = deep / "partner-certificate-authority.pem"
    ca.write_text("(not read by -n)\n")
    url = "https://partner.example/hooks/noticecast?" + "&".join(f"param{i}=value{i}" for i in range(300))
    path = full_config(tmp_path, partner_url=url, kafka={"bootstrap.servers": brokers},
                       **{"partner.pe": {"ca_file": str(ca)}},
                       extra="# " + "a long comment line " * 100 + "\n")
    lens = {k: len(v) for k, v in (("url", url), ("bootstrap.servers", brokers), ("ca_file", str(ca)))}
    res = check_all(path, tmp_path)
    fig = f"value lengths {lens}: {summary(res)}"
    print(fig)
    record_property("long_lines", fig)
    for prog, cp in res.items():
        assert cp.returncode == EX_OK, f"{prog} refused long lines: exit {cp.returncode}\n{cp.stderr}"


def _partner_url_line(tmp_path, nbytes: int, name: str):
    """A full config whose [partner.pe] url line is exactly NBYTES bytes long."""
    head = "url = https://partner.example/"
    url = "https://partner.example/" + "a" * (nbytes - len(head))
    path = full_config(tmp_path, name=name, partner_url=url)
    lineno = line_of(path, "url = https://partner.example/")
    line = path.read_bytes().split(b"\n")[lineno - 1]
    assert len(line) == nbytes, len(line)
    return path, lineno


def test_line_limit_is_64k_with_a_clear_error(tmp_path, record_property):
    ok_path, _ = _partner_url_line(tmp_path, 65536, "at-limit.conf")
    at_limit = check_all(ok_path, tmp_path)
    bad_path, bad_line = _partner_url_line(tmp_path, 65537, "over-limit.conf")
    over = check_all(bad_path, tmp_path)
    fig = f"65536-byte line: {summary(at_limit)}; 65537-byte line: {summary(over)}"
    print(fig)
    record_property("line_limit", fig)
    for prog, cp in at_limit.items():
        assert cp.returncode == EX_OK, f"{prog}: a 65536-byte line was refused\n{cp.stderr}"
    want = f"{bad_path}:{bad_line}: line is longer than 65536 bytes"
    for prog, cp in over.items():
        assert cp.returncode == EX_CONFIG and want in cp.stderr, \
            f"{prog}: exit {cp.returncode}, expected 78 and {want!r}\n{cp.stderr}"


def test_long_partner_url_gets_its_webhook(wh, record_property):
    rx = wh.receiver()
    long_path = "/hooks/" + "/".join(f"segment-{i:04d}" for i in range(330))
    assert len(long_path) > 4000
    p = wh.partner("pe", rx.url(long_path))
    rx.route(long_path, Always(204), secrets=p.secrets)
    path = wh.write_config()
    line = max(len(l) for l in path.read_bytes().split(b"\n"))
    cp = wh.run_daemon("-C", path, "-n")
    got = []
    if cp.returncode == EX_OK:
        wh.start()
        n = notice("news", "Long URL")
        wh.publish([n])
        rx.wait_for_ids(long_path, {n["id"]}, extra=wh.logs)
        got = rx.delivered(long_path)
    fig = (f"config line of {line} bytes: -n exit {cp.returncode}; webhooks delivered to the "
           f"{len(long_path)}-char path: {len(got)}")
    print(fig)
    record_property("long_url", fig)
    assert cp.returncode == EX_OK, f"-n refused a {line}-byte url line:\n{cp.stderr}"
    assert len(got) == 1 and got[0].verified, rx.summary(long_path)
