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
  * the unit's sandbox, emulated (no systemd PID 1 here, so no systemd-run): each installed
    daemon runs as an unprivileged user, without capabilities, with no_new_privs, a read-only
    file system, private /tmp, /dev, IPC and hostname, hidden home directories, /proc with
    hidepid=invisible,subset=pid, and seccomp filters for SystemCallFilter=@system-service
    ~@privileged ~@resources (EPERM), RestrictAddressFamilies, MemoryDenyWriteExecute,
    RestrictNamespaces and RestrictSUIDSGID; it gets ready, delivers a webhook (the webhooks
    daemon), reloads on SIGHUP and stops with 0;
  * the sysusers.d and tmpfiles.d entries, applied with --root to an empty directory, make
    the noticecast user and /etc/noticecast{,/secrets} 0750 root:noticecast;
  * `make uninstall` leaves no file behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import EX_CONFIG, EX_OK, REPO, describe
from daemon_env import Daemon, DaemonEnv, READY_TIMEOUT, binary
from smtp_server import SMTPTestServer
from webhook_receiver import Always, WebhookReceiver
from webhooks_support import notice

PROGRAMS = ("noticecast", "noticecast-webhooks", "noticecast-mailer", "noticecast-inbound")
MAN_PAGES = {"man1": ["noticecast.1"], "man5": ["noticecast.conf.5"],
             "man8": ["noticecast-inbound.8", "noticecast-mailer.8", "noticecast-webhooks.8"]}
UNITS = ["noticecast-inbound.service", "noticecast-mailer.service", "noticecast-mailer@.service",
         "noticecast-webhooks.service", "noticecast-webhooks@.service"]
# The program each unit runs (noticecast-inbound.service: `noticecast inbound --serve`).
UNIT_PROGRAM = {"noticecast-inbound.service": "noticecast"}


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
    # The public pages' templates and their stylesheet.
    want |= {f"{p}/share/noticecast/templates/{t.parent.parent.name}/pages/{t.name}"
             for t in (REPO / "config" / "templates").glob("*/pages/*.mustache")}
    want.add(f"{p}/share/noticecast/templates/site.css")
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
        prog = UNIT_PROGRAM.get(u, u.split('@')[0].split('.')[0])
        assert m and m.group(1) == f"{prefix}/bin/{prog}", \
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


def test_sysusers_and_tmpfiles_entries(installed, tmp_path):
    """The installed sysusers.d and tmpfiles.d files, applied to an empty root."""
    dest, prefix, _ = installed
    if not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")):
        pytest.skip("no systemd-sysusers / systemd-tmpfiles")
    if os.geteuid() != 0:
        pytest.skip("not root: systemd-tmpfiles cannot give the directories their owner")
    p = dest / prefix.lstrip("/") / "lib"
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for f in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / f).touch()
    cp = subprocess.run(["systemd-sysusers", f"--root={root}", str(p / "sysusers.d/noticecast.conf")],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, describe(cp)
    user = [l.split(":") for l in (root / "etc/passwd").read_text().splitlines()]
    assert [u[0] for u in user] == ["noticecast"] and user[0][6] == "/usr/sbin/nologin", user
    gid = int(user[0][3])
    cp = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create",
                         str(p / "tmpfiles.d/noticecast.conf")], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, describe(cp)
    for d in ("etc/noticecast", "etc/noticecast/secrets"):
        st = (root / d).stat()
        assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o750", 0, gid), d


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
        env.create_topics(cfg)  # `noticecast topics create` first, as docs/install.md says
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


# ---- the units' sandbox, emulated ------------------------------------------------------------

SYSTEM_PYTHON = "/usr/bin/python3"

# Run by the system python (python3-seccomp) as the unprivileged user, after no_new_privs:
# the filters systemd would install for the unit's directives, then exec of the daemon.
SECCOMP_LOADER = r"""
import errno, os, sys
import seccomp

allowed = open(sys.argv[1]).read().split()
A = seccomp.Arg
# default allow; what the Restrict*/MemoryDenyWriteExecute directives refuse
g = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
EPERM = seccomp.ERRNO(errno.EPERM)
g.add_rule(EPERM, "mmap", A(2, seccomp.MASKED_EQ, 6, 6))           # PROT_WRITE|PROT_EXEC
g.add_rule(EPERM, "mprotect", A(2, seccomp.MASKED_EQ, 4, 4))       # adding PROT_EXEC
g.add_rule(EPERM, "pkey_mprotect", A(2, seccomp.MASKED_EQ, 4, 4))
for fam in [0] + list(range(3, 10)):                              # not AF_UNIX/INET/INET6
    g.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", A(0, seccomp.EQ, fam))
g.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", A(0, seccomp.GE, 11))
g.add_rule(EPERM, "unshare")
g.add_rule(EPERM, "setns")
for bit in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
            0x40000000, 0x00000080):                              # CLONE_NEW*
    g.add_rule(EPERM, "clone", A(0, seccomp.MASKED_EQ, bit, bit))
g.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
for call, arg in (("chmod", 1), ("fchmod", 1), ("fchmodat", 2)):  # S_ISUID, S_ISGID
    for bit in (0o4000, 0o2000):
        g.add_rule(EPERM, call, A(arg, seccomp.MASKED_EQ, bit, bit))
g.load()
# SystemCallFilter: the allow list, everything else EPERM (SystemCallErrorNumber=EPERM)
f = seccomp.SyscallFilter(defaction=EPERM)
for name in allowed:
    try:
        f.add_rule(seccomp.ALLOW, name)
    except Exception:
        pass  # not a system call of this architecture
f.load()
os.execv(sys.argv[2], sys.argv[2:])
"""


def syscall_groups() -> dict:
    """systemd-analyze syscall-filter: group -> members (system calls or @groups)."""
    cp = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                        timeout=30)
    assert cp.returncode == 0, describe(cp)
    groups, cur = {}, None
    for line in cp.stdout.splitlines():
        if line.startswith("@"):
            cur = groups.setdefault(line.strip(), [])
        elif cur is not None and line.strip() and not line.strip().startswith("#"):
            cur.append(line.strip())
    return groups


def expand(groups: dict, name: str) -> set:
    out = set()
    for m in groups[name]:
        out |= expand(groups, m) if m.startswith("@") else {m}
    return out


def unit_filter(unit: str) -> set:
    """The system calls the unit's SystemCallFilter= lines allow."""
    groups = syscall_groups()
    allowed: set = set()
    for line in re.findall(r"^SystemCallFilter=(.*)$", unit, re.M):
        deny = line.startswith("~")
        names = set()
        for w in line.lstrip("~").split():
            names |= expand(groups, w) if w.startswith("@") else {w}
        allowed = allowed - names if deny else allowed | names
    return allowed


def sandbox_missing(tmp: Path) -> str | None:
    if os.geteuid() != 0:
        return "not root: cannot set up the mount namespace and change user"
    for tool in ("unshare", "setpriv", "systemd-analyze"):
        if not shutil.which(tool):
            return f"no {tool}"
    cp = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, text=True)
    if cp.returncode != 0:
        return "no python3-seccomp for the system python"
    return mount_ns_works(tmp)


SANDBOX_UID = 65534  # nobody: owns nothing but the daemon's own secret files


def sandboxed(tmp: Path, dest: Path, prefix: str, program: str, unit: str) -> Path:
    """A script that runs DESTDIR's PROGRAM (exec all the way: same pid) with the restrictions
    of UNIT (see the module docstring); the test's files stay visible at their paths."""
    for directive in ("ProtectSystem=strict", "PrivateTmp=yes", "PrivateDevices=yes",
                      "ProtectHome=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                      "ProtectProc=invisible", "ProcSubset=pid", "PrivateIPC=yes",
                      "ProtectHostname=yes", "MemoryDenyWriteExecute=yes",
                      "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces=yes",
                      "RestrictSUIDSGID=yes", "User=noticecast"):
        assert directive in unit, f"the unit no longer says {directive.strip()}: update the emulation"
    loader = tmp / "seccomp_loader.py"
    loader.write_text(SECCOMP_LOADER)
    allow = tmp / f"{program}.syscalls"
    allow.write_text("\n".join(sorted(unit_filter(unit))) + "\n")
    share = f"{prefix}/share"
    keep = [str(tmp), str(dest)]  # under /tmp: moved into the private /tmp
    inner = tmp / f"{program}.sandbox"
    lines = [
        "#!/bin/sh", "set -e",
        f"mount -n -n -t overlay noticecast-test -o lowerdir={dest}{share}:{share} {share}",
        "mount -n -t tmpfs -o mode=0755 stage /mnt",
    ]
    for i, k in enumerate(keep):
        lines += [f"mkdir /mnt/k{i}", f"mount -n -n --bind {k} /mnt/k{i}"]
    lines += [
        # PrivateDevices: a /dev with the pseudo devices only
        "mkdir /mnt/dev", "mount -n -t tmpfs -o mode=0755 dev /mnt/dev",
        "for n in null zero full random urandom tty; do touch /mnt/dev/$n; "
        "mount -n --bind /dev/$n /mnt/dev/$n; done",
        "mkdir /mnt/dev/shm /mnt/dev/pts",
        # ProtectSystem=strict (and ProtectKernelTunables, ProtectControlGroups): all read-only
        "awk '{print $2}' /proc/self/mounts | grep -v '^/mnt' | sort -u | while read -r m; do "
        "mount -n -o remount,bind,ro \"$m\" 2>/dev/null || true; done",
        "mount -n --move /mnt/dev /dev",
        # PrivateTmp, then the test's own files at their paths, read-only
        "mount -n -t tmpfs -o mode=1777 tmp /tmp", "mount -n -t tmpfs -o mode=1777 vartmp /var/tmp",
    ]
    for i, k in enumerate(keep):
        lines += [f"mkdir -p {k}", f"mount -n -n --move /mnt/k{i} {k}", f"mount -n -n -o remount,bind,ro {k}"]
    lines += [
        # ProtectHome
        "for h in /root /home /run/user; do [ -d $h ] && mount -n -t tmpfs -o ro,mode=0000 home $h; done; true",
        # ProtectProc=invisible, ProcSubset=pid
        "mount -n -t proc -o hidepid=invisible,subset=pid proc /proc",
        "umount -n -l /mnt",
        f"exec setpriv --reuid={SANDBOX_UID} --regid={SANDBOX_UID} --clear-groups --no-new-privs "
        f"--inh-caps=-all --bounding-set=-all {SYSTEM_PYTHON} -I {loader} {allow} "
        f'{dest}{prefix}/bin/{program} "$@"',
    ]
    inner.write_text("\n".join(lines) + "\n")
    outer = tmp / f"{program}.run"
    outer.write_text(f'#!/bin/sh\nexec unshare --mount --propagation private --ipc --uts {inner} "$@"\n')
    for f in (inner, outer):
        f.chmod(0o755)
    return outer


def test_installed_daemons_under_the_unit_sandbox(installed, tmp_path, bootstrap, record_property,
                                                 monkeypatch):
    dest, prefix, _ = installed
    why = sandbox_missing(tmp_path)
    if why:
        pytest.skip(f"cannot emulate the systemd sandbox here: {why}")
    if build_prefix(build_dir())[1]:
        # LeakSanitizer's exit check needs ptrace, which SystemCallFilter refuses (@debug);
        # AddressSanitizer itself keeps checking.
        opts = os.environ.get("ASAN_OPTIONS", "")
        monkeypatch.setenv("ASAN_OPTIONS", (opts + ":" if opts else "") + "detect_leaks=0")
    # the unprivileged user reads the test's files like noticecast reads /etc/noticecast
    for d in (tmp_path, dest):
        d.chmod(0o755)
    nc = str(dest / prefix.lstrip("/") / "bin/noticecast")
    env = DaemonEnv(tmp_path, bootstrap, nc, "")
    smtp = SMTPTestServer().start()
    rx = WebhookReceiver().start()
    try:
        cfg = example_config(dest, tmp_path, env, smtp.port)
        env.create_topics(cfg)  # `noticecast topics create` first, as docs/install.md says
        text = cfg.read_text()
        # the partner: the local receiver, every category and region
        text = re.sub(r"^url = https://webhooks\.pcm\..*$", f"url = {rx.url('/pe')}", text, flags=re.M)
        text = re.sub(r"^(categories|regions) = .*\n", "", text, count=0, flags=re.M)
        cfg.write_text(text)
        secret = (tmp_path / "secrets/pe-pcm.secret").read_text().strip()
        rx.route("/pe", Always(204), secrets=[secret])
        for f in (tmp_path / "secrets").iterdir():
            os.chown(f, SANDBOX_UID, SANDBOX_UID)
        os.chown(tmp_path / "secrets", SANDBOX_UID, SANDBOX_UID)
        units = dest / prefix.lstrip("/") / "lib/systemd/system"
        figures = []
        for prog in ("noticecast-webhooks", "noticecast-mailer"):
            unit = (units / f"{prog}.service").read_text()
            run = sandboxed(tmp_path, dest, prefix, prog, unit)
            d = Daemon(str(run), cfg, tmp_path / f"{prog}-sandbox.log")
            env.daemons.append(d)
            d.wait_ready(READY_TIMEOUT)
            if prog == "noticecast-webhooks":
                n = notice("news", "Under the sandbox")
                env.publish([n])
                rx.wait_for_ids("/pe", {n["id"]}, extra=d.tail)
            off = d.log_size()
            d.signal(signal.SIGHUP)
            d.wait_log(r"reload", since=off, timeout=30, what="the reload after SIGHUP")
            st, _ = d.get("/readyz")
            assert st == 200 and d.alive(), f"{prog} after SIGHUP: /readyz {st}\n{d.tail()}"
            rc = d.terminate(60)
            log = d.log()
            assert rc == EX_OK, f"{prog} under the sandbox exited {rc}\n{d.tail()}"
            for bad in ("Operation not permitted", "Permission denied", "Read-only file system",
                        "Address family not supported"):
                assert bad not in log, f"{prog}: {bad!r} under the sandbox\n{d.tail(80)}"
            figures.append(f"{prog}: ready, reload, exit {rc}")
        record_property("sandbox", "; ".join(figures))
        print("; ".join(figures))
    finally:
        env.close()
        rx.stop()
        smtp.close()


# ---- Type=notify: what systemd would be told ----------------------------------------------------

class NotifySocket:
    """An AF_UNIX datagram socket like systemd's $NOTIFY_SOCKET; records every message."""

    def __init__(self, path: Path):
        import socket
        import threading

        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list = []  # (monotonic time, {key: value})
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import time

        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            kv = dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l)
            self.messages.append((time.monotonic(), kv))

    def keys(self, since: int = 0) -> list:
        return [k for _, kv in self.messages[since:] for k in kv]

    def wait(self, key: str, since: int = 0, timeout: float = READY_TIMEOUT) -> int:
        """Index of the first message from SINCE on that has KEY."""
        from daemon_env import wait_for

        def found():
            for i, (_, kv) in enumerate(self.messages[since:], since):
                if key in kv:
                    return i + 1  # (so that 0 is never returned)
            return None

        return wait_for(found, timeout, f"{key} on $NOTIFY_SOCKET",
                        extra=lambda: f"got: {[kv for _, kv in self.messages]}") - 1

    def close(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()


def test_installed_daemons_notify_like_type_notify(installed, tmp_path, bootstrap, monkeypatch):
    """READY=1 when /readyz turns 200, WATCHDOG=1 at WATCHDOG_USEC/2, RELOADING=1 and READY=1
    again around SIGHUP, STOPPING=1 then exit 0 on SIGTERM."""
    dest, prefix, _ = installed
    p = dest / prefix.lstrip("/") / "bin"
    if b"NOTIFY_SOCKET" not in (p / "noticecast-webhooks").read_bytes():
        pytest.skip("these programs have no sd_notify support yet (the Type=notify units need it)")
    why = mount_ns_works(tmp_path)
    if why:
        pytest.skip(f"the installed mailer needs its compiled-in {prefix}/share: {why}")
    env = DaemonEnv(tmp_path, bootstrap, str(p / "noticecast"), "")
    smtp = SMTPTestServer().start()
    sockets = []
    try:
        cfg = example_config(dest, tmp_path, env, smtp.port)
        env.create_topics(cfg)  # `noticecast topics create` first, as docs/install.md says
        for prog in ("noticecast-webhooks", "noticecast-mailer"):
            ns = NotifySocket(tmp_path / f"{prog}.notify")
            sockets.append(ns)
            monkeypatch.setenv("NOTIFY_SOCKET", str(ns.path))
            monkeypatch.setenv("WATCHDOG_USEC", "2000000")
            d = Daemon(str(wrapper(tmp_path, dest, prefix, prog)), cfg, tmp_path / f"{prog}-notify.log")
            env.daemons.append(d)
            monkeypatch.delenv("NOTIFY_SOCKET")
            monkeypatch.delenv("WATCHDOG_USEC")
            i = ns.wait("READY")
            st, _ = d.get("/readyz")
            assert st == 200, f"{prog}: READY=1 sent while /readyz says {st}\n{d.tail()}"
            w0 = len(ns.messages)
            import time

            time.sleep(3.2)
            pings = ns.keys(w0).count("WATCHDOG")
            assert pings >= 2, f"{prog}: {pings} WATCHDOG=1 in 3.2 s with WATCHDOG_USEC=2 s\n{d.tail()}"
            n0 = len(ns.messages)
            d.signal(signal.SIGHUP)
            r = ns.wait("RELOADING", since=n0, timeout=30)
            ns.wait("READY", since=r + 1, timeout=30)
            n1 = len(ns.messages)
            d.signal(signal.SIGTERM)
            ns.wait("STOPPING", since=n1, timeout=30)
            assert d.wait_exit(60) == EX_OK, d.tail()
    finally:
        env.close()
        smtp.close()
        for ns in sockets:
            ns.close()


def test_uninstall_leaves_no_file(installed):
    dest, _, args = installed
    assert files_under(dest), "nothing installed"
    make("uninstall", *args)
    left = files_under(dest)
    assert not left, f"left behind by make uninstall: {sorted(left)}"
