"""make install / uninstall into a DESTDIR, and the installed programs against the real broker.

  * `make install DESTDIR=<tmp> PREFIX=<the build's prefix>` from the source tree, with the
    already-built programs ($NC_BIN_DIR, default build/; make only copies when they are up to
    date); the PREFIX is the one they were compiled with (build/.flags), as the compiled-in
    templates path comes from it;
  * the exact file list; no @VAR@ left in what was generated; the units run the installed
    programs; `-V` of each program, the man pages and CHANGELOG.md agree on config.mk's VERSION;
  * the installed noticecast-webhooks and noticecast-mailer, run from DESTDIR with the
    installed noticecast.conf.example (its secret files created, pointed at the test broker),
    pass -n and get ready (/readyz 200); the mailer's configuration has no templates key: it
    finds the installed templates at their compiled-in path.  To show it that path without
    writing outside DESTDIR, each daemon runs in its own mount namespace (unshare -m) where
    DESTDIR's share/ is overlaid on the real one;
  * -n and start-up refuse the example without any [partner.*] (webhooks) and without
    from_address (mailer: the default has no valid domain), naming the file and the key;
  * `make uninstall` leaves no file behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import EX_CONFIG, EX_OK, REPO, describe
from daemon_env import Daemon, DaemonEnv, READY_TIMEOUT, binary
from smtp_server import SMTPTestServer

PROGRAMS = ("noticecast", "noticecast-webhooks", "noticecast-mailer")
MAN_PAGES = {"man1": ["noticecast.1"], "man5": ["noticecast.conf.5"],
             "man8": ["noticecast-mailer.8", "noticecast-webhooks.8"]}
UNITS = ["noticecast-mailer.service", "noticecast-mailer@.service",
         "noticecast-webhooks.service", "noticecast-webhooks@.service"]


def config_mk(name: str) -> str:
    m = re.search(rf"^{name}\s*:?=\s*(\S+)", (REPO / "config.mk").read_text(), re.M)
    assert m, f"{name} not in config.mk"
    return m.group(1)


def build_dir() -> Path:
    return Path(binary("noticecast")).parent


def build_prefix(build: Path) -> tuple:
    """(PREFIX, SANITIZE) the build was compiled with, from its flags stamp."""
    flags = (build / ".flags").read_text()
    m = re.search(r'-DNC_DATADIR=\\"([^"\\]+)/share\\"', flags)
    assert m, f"no NC_DATADIR in {build}/.flags:\n{flags}"
    return m.group(1), "-fsanitize=" in flags


def make(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    cp = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", *args],
                        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, f"make {' '.join(args)} failed" + describe(cp)
    return cp


def files_under(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Installs once for the module; yields (destdir, prefix, make arguments)."""
    build = build_dir()
    prefix, sanitize = build_prefix(build)
    dest = tmp_path_factory.mktemp("destdir")
    args = [f"DESTDIR={dest}", f"PREFIX={prefix}", f"BUILD={os.path.relpath(build, REPO)}"]
    if sanitize:
        args.append("SANITIZE=1")
    make("install", *args)
    yield dest, prefix, args


def expected_files(prefix: str) -> set:
    p = prefix.lstrip("/")
    want = {f"{p}/bin/{b}" for b in PROGRAMS}
    want |= {f"{p}/share/man/{sec}/{m}" for sec, pages in MAN_PAGES.items() for m in pages}
    want |= {f"{p}/share/noticecast/templates/{t.parent.name}/{t.name}"
             for t in (REPO / "config" / "templates").glob("*/*.mustache")}
    want |= {f"{p}/lib/systemd/system/{u}" for u in UNITS}
    want |= {f"{p}/lib/sysusers.d/noticecast.conf", f"{p}/lib/tmpfiles.d/noticecast.conf"}
    want |= {f"{p}/share/doc/noticecast/{d}" for d in ("LICENSE", "CHANGELOG.md", "README.md",
                                                         "templates.md")}
    want.add("etc/noticecast/noticecast.conf.example")
    return want


def test_install_file_list_and_version(installed, record_property):
    dest, prefix, _ = installed
    got, want = files_under(dest), expected_files(prefix)
    assert got == want, f"missing: {sorted(want - got)}\nunexpected: {sorted(got - want)}"
    record_property("installed_files", len(got))
    print(f"{len(got)} files installed under {dest}")

    p = dest / prefix.lstrip("/")
    for rel in got:
        text = (dest / rel).read_bytes()
        if b"\0" not in text:
            assert not re.search(rb"@[A-Z]+@", text), f"{rel}: a @VAR@ was not substituted"
    for b in PROGRAMS:
        assert os.access(p / "bin" / b, os.X_OK), f"{b} not executable"
    for u in UNITS:
        unit = (p / "lib/systemd/system" / u).read_text()
        m = re.search(r"^ExecStart=(\S+)", unit, re.M)
        assert m and m.group(1) == f"{prefix}/bin/{u.split('@')[0].split('.')[0]}", \
            f"{u}: ExecStart {m and m.group(1)} is not the installed program"
        assert re.search(r"^Type=notify$", unit, re.M), f"{u} is not Type=notify"
        assert "%i.conf" in unit if "@" in u else "%i" not in unit.split("[Service]")[1]

    version = config_mk("VERSION")
    for b in PROGRAMS:
        cp = subprocess.run([str(p / "bin" / b), "-V"], capture_output=True, text=True, timeout=30)
        assert cp.returncode == EX_OK, describe(cp)
        assert cp.stdout.splitlines()[0] == f"{b} {version}", \
            f"{b} -V says {cp.stdout.splitlines()[0]!r}, config.mk VERSION {version}"
    for sec, pages in MAN_PAGES.items():
        for m in pages:
            th = (p / "share/man" / sec / m).read_text().splitlines()[0]
            assert th.startswith(".TH ") and f'"noticecast {version}"' in th, f"{m}: {th}"
    assert f"## {version} " in (REPO / "CHANGELOG.md").read_text(), "CHANGELOG.md lacks " + version
    assert "Apache License" in (p / "share/doc/noticecast/LICENSE").read_text()


# ---- the installed daemons ------------------------------------------------------------------

def mount_ns_works(tmp: Path) -> str | None:
    """None if an overlay can be mounted in a private mount namespace here, else why not."""
    if not shutil.which("unshare"):
        return "no unshare(1)"
    (tmp / "probe-upper").mkdir(exist_ok=True)
    cp = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                         f"mount -t overlay probe -o lowerdir={tmp}/probe-upper:/usr/share /usr/share"],
                        capture_output=True, text=True, timeout=30)
    return None if cp.returncode == 0 else f"cannot mount an overlay in a mount namespace: {cp.stderr.strip()}"


def wrapper(tmp: Path, dest: Path, prefix: str, program: str) -> Path:
    """A script that runs DESTDIR's PROGRAM (same pid, exec all the way) in a private mount
    namespace where DESTDIR's <prefix>/share is overlaid on <prefix>/share."""
    share = f"{prefix}/share"
    inner = tmp / f"{program}.inner"
    inner.write_text("#!/bin/sh\nset -e\n"
                     f"mount -t overlay noticecast-test -o lowerdir={dest}{share}:{share} {share}\n"
                     f'exec {dest}{prefix}/bin/{program} "$@"\n')
    outer = tmp / program
    outer.write_text(f'#!/bin/sh\nexec unshare --mount --propagation private {inner} "$@"\n')
    for f in (inner, outer):
        f.chmod(0o755)
    return outer


def example_config(dest: Path, tmp: Path, env: DaemonEnv, smtp_port: int, drop=()) -> Path:
    """The installed example, pointed at the test broker, with its secret files created."""
    secrets = tmp / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    for name, text in (("pe-pcm.secret", "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"),
                       ("unsubscribe.key", os.urandom(24).hex() + "\n"), ("smtp.password", "pw\n")):
        f = secrets / name
        f.write_text(text)
        f.chmod(0o600)
    text = (dest / "etc/noticecast/noticecast.conf.example").read_text()
    text = text.replace("/etc/noticecast/secrets/", f"{secrets}/")
    subs = {
        "topic_prefix": env.prefix, "bootstrap.servers": env.bootstrap, "replication_factor": "1",
        "partitions": "3", "listen": "127.0.0.1:0", "host": "127.0.0.1", "port": str(smtp_port),
        "starttls": "off",
    }
    for key, value in subs.items():
        text, n = re.subn(rf"^{re.escape(key)} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n, f"no {key} in the example"
    text = re.sub(r"^group_id = (noticecast-\w+)$", rf"group_id = \1-{env.group}", text, flags=re.M)
    # no AUTH: the test relay has no TLS, and AUTH is only sent over TLS
    drop = ("username", "password_file", *drop)
    text = re.sub(rf"^({'|'.join(map(re.escape, drop))}) = .*\n", "", text, flags=re.M)
    assert not re.search(r"^templates\s*=", text, re.M), "the example must not set templates"
    path = tmp / ("example" + ("-" + "-".join(drop[2:]) if drop[2:] else "") + ".conf")
    path.write_text(text)
    return path


def without_partners(config: Path) -> Path:
    text = re.sub(r"^\[partner\.[^\]]+\]\n(?:(?!\[).*\n)*", "", config.read_text(), flags=re.M)
    assert "[partner." not in text and "[mailer]" in text
    out = config.with_name("no-partner.conf")
    out.write_text(text)
    return out


def test_installed_daemons_run_against_the_broker(installed, tmp_path, bootstrap):
    dest, prefix, _ = installed
    why = mount_ns_works(tmp_path)
    if why:
        pytest.skip(f"the installed daemons need their compiled-in {prefix}/share: {why}")
    nc = str(dest / prefix.lstrip("/") / "bin/noticecast")
    env = DaemonEnv(tmp_path, bootstrap, nc, "")
    smtp = SMTPTestServer().start()
    try:
        cfg = example_config(dest, tmp_path, env, smtp.port)
        cp = subprocess.run([nc, "-C", str(cfg), "topics", "list"], capture_output=True, text=True,
                            timeout=60)
        assert cp.returncode == EX_OK, "the CLI refuses the example" + describe(cp)
        daemons = {}
        for prog in ("noticecast-webhooks", "noticecast-mailer"):
            run = str(wrapper(tmp_path, dest, prefix, prog))
            cp = subprocess.run([run, "-C", str(cfg), "-n"], capture_output=True, text=True, timeout=60)
            assert cp.returncode == EX_OK and "configuration OK" in cp.stdout, \
                f"installed {prog} -n on the example" + describe(cp)
            d = Daemon(run, cfg, tmp_path / f"{prog}.log")
            env.daemons.append(d)
            daemons[prog] = d
        for prog, d in daemons.items():
            d.wait_ready(READY_TIMEOUT)
            assert d.alive(), d.tail()
        # Without the overlay, the same installed mailer looks at the same compiled-in path
        # and does not find them there (unless this machine has them installed for real).
        if not Path(f"{prefix}/share/noticecast/templates").exists():
            cp = subprocess.run([str(dest / prefix.lstrip("/") / "bin/noticecast-mailer"), "-C",
                                 str(cfg), "-n"], capture_output=True, text=True, timeout=60)
            assert cp.returncode == EX_CONFIG and \
                f"templates: {prefix}/share/noticecast/templates/" in cp.stderr, describe(cp)
        for prog, d in daemons.items():
            assert d.terminate(60) == EX_OK, f"{prog} did not stop cleanly\n{d.tail()}"
    finally:
        env.close()
        smtp.close()


def test_check_refuses_configs_that_lose_work(installed, tmp_path, bootstrap):
    """-n and start-up: no partner (webhooks), no valid from_address (mailer)."""
    dest, prefix, _ = installed
    env = DaemonEnv(tmp_path, bootstrap, binary("noticecast"), "")
    try:
        cfg = example_config(dest, tmp_path, env, 2525)
        cases = [
            ("noticecast-webhooks", without_partners(cfg), "no [partner.<id>] section"),
            ("noticecast-mailer", example_config(dest, tmp_path, env, 2525, drop=("from_address",)),
             "mailer.from_address: 'notices@localhost' has an invalid domain"),
        ]
        for prog, bad, want in cases:
            for args in (["-n"], []):
                cp = subprocess.run([binary(prog), "-C", str(bad), *args], capture_output=True,
                                    text=True, timeout=60, stdin=subprocess.DEVNULL)
                what = f"{prog} {' '.join(args) or '(start)'} on {bad.name}"
                assert cp.returncode == EX_CONFIG, f"{what}: expected exit 78" + describe(cp)
                assert f"{bad}: " in cp.stderr and want in cp.stderr, \
                    f"{what}: the error must name the file and {want!r}" + describe(cp)
                assert "configuration OK" not in cp.stdout, what + describe(cp)
        # and the example itself, as shipped (but pointed here), is accepted by both
        for prog in ("noticecast-webhooks",):
            cp = subprocess.run([binary(prog), "-C", str(cfg), "-n"], capture_output=True, text=True,
                                timeout=60)
            assert cp.returncode == EX_OK, describe(cp)
    finally:
        env.close()


def test_uninstall_leaves_no_file(installed):
    dest, _, args = installed
    assert files_under(dest), "nothing installed"
    make("uninstall", *args)
    left = files_under(dest)
    assert not left, f"left behind by make uninstall: {sorted(left)}"
