"""Fault: an empty `bootstrap.servers` (`bootstrap.servers =` in [kafka], `-b ''`,
`-X bootstrap.servers=`) passed every configuration check (librdkafka accepts an empty
list), so `-n` said "configuration OK" and the daemons then waited for a broker that could
never be found.

Now all three programs refuse it: `file:line: kafka: bootstrap.servers: must not be empty`
(or `-b:` / `-X:` for the command line), exit 78.
"""

from __future__ import annotations

import pytest

from config_faults import EX_CONFIG, PROGRAMS, check, full_config, line_of, summary

pytestmark = pytest.mark.faults


def test_empty_bootstrap_servers_fails_the_check(tmp_path, record_property):
    figures, failures = [], []
    for i, value in enumerate(("", " , ,")):
        path = full_config(tmp_path, name=f"empty-{i}.conf")
        text = path.read_text()
        lines = text.split("\n")
        n = line_of(path, "bootstrap.servers = ")
        lines[n - 1] = "bootstrap.servers =" + value
        path.write_text("\n".join(lines))
        res = {p: check(p, path, tmp_path) for p in PROGRAMS}
        figures.append(f"'bootstrap.servers ={value}': {summary(res)}")
        want = f"{path}:{n}: kafka: bootstrap.servers: must not be empty"
        for prog, cp in res.items():
            if cp.returncode != EX_CONFIG or want not in cp.stderr:
                failures.append(f"{prog}: exit {cp.returncode}, stderr {cp.stderr.strip()[:300]!r}"
                                f"\n  expected {want!r}")
    fig = "; ".join(figures)
    print(fig)
    record_property("empty_bootstrap_file", fig)
    assert not failures, "\n".join(failures)


def test_empty_brokers_on_the_command_line(tmp_path, record_property):
    import subprocess

    from daemon_env import binary

    path = full_config(tmp_path)
    notice = tmp_path / "n.json"
    notice.write_text('{"category": "news", "title": "t"}')
    figures, failures = [], []
    for opt, origin in ((["-b", ""], "-b"), (["-X", "bootstrap.servers="], "-X")):
        for prog in PROGRAMS:
            tail = ["validate", str(notice)] if prog == "noticecast" else ["-n"]
            cp = subprocess.run([binary(prog), "-C", str(path), *opt, *tail], capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=60)
            figures.append(f"{prog} {' '.join(opt)!r}: {cp.returncode}")
            want = f"{origin}: kafka: bootstrap.servers: must not be empty"
            if cp.returncode != EX_CONFIG or want not in cp.stderr:
                failures.append(f"{prog} {opt}: exit {cp.returncode}, stderr {cp.stderr.strip()[:300]!r}")
    fig = ", ".join(figures)
    print(fig)
    record_property("empty_bootstrap_cli", fig)
    assert not failures, "\n".join(failures)
