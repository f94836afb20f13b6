"""A private Postfix instance for the inbound-mail tests and benchmark (real Debian Postfix).

`PrivatePostfix` writes a main.cf and master.cf of its own into a temp dir and runs
`postfix -c DIR start` on them: its own config, queue and data directories, syslog_name and
maillog_file, listening only on 127.0.0.1 on a free port (no port 25, no pickup of the
system's maildrop).  It never reads or writes /etc/postfix (the package's main.cf is absent
here) and never starts the system instance; `stop()` runs `postfix -c DIR stop` and, if the
master outlives that, kills its process group by the pid in its own master.pid (checked to be
our master: its cwd is our queue directory).  Stdlib only, so tests/bench/inbound.sh can run
it as a script too (see `main()` at the end).

What it can do (constructor arguments):
  virtual_domains   {"inbox.test": ["alice", "bob"]}: virtual(8) Maildir delivery under
                    <base>/mail/<domain>/<user>/ as `mailbox_user`.  Unknown users of those
                    domains are ACCEPTED at RCPT time (smtpd_reject_unlisted_recipient = no)
                    and then bounced by Postfix itself: virtual(8) finds no mailbox
                    ("unknown user", 5.1.1) and bounce(8) sends an RFC 3464 DSN
                    (multipart/report) to the envelope sender, asynchronously.
  relay             "127.0.0.1:PORT" (or (host, port)): every other domain goes there by
                    smtp(8) (relayhost = [host]:port); without it they bounce (error:).
  bounce_domain     "bounces.test": every address of it (bounces+TOKEN@..., recipient_delimiter
                    = +) goes to the pipe(8) transport `inbound`; `pipe_addresses` adds single
                    addresses of other domains (unsubscribe@news.test) to the same transport.
  pipe_argv         the command, e.g. [nc, "-c", conf, "inbound", "--recipient",
                    "${original_recipient}"], run as `pipe_user` (pipe(8) refuses root) with
                    `pipe_flags`; one recipient per run (inbound_destination_recipient_limit
                    = 1).  Exit 0 delivered, 75 (EX_TEMPFAIL) deferred and retried, other
                    sysexits codes bounce (see pipe(8) DIAGNOSTICS).
  pipe_concurrency / pipe_process_limit / default_process_limit: the benchmark's knobs.
  retry_seconds     (minimal, maximal backoff, queue_run_delay): short retries for tests.

Files the pipe command reads must be readable by `pipe_user`: pytest's tmp_path lives under
/tmp/pytest-of-root (mode 0700), so the base dir here is a /tmp/nc-postfix-* dir of mode 0755,
and `pipe_dir` (<base>/pipe) belongs to the pipe user for whatever it writes; `share()` hands a
file (a config with secrets, mode 0600) to the pipe user.  The repository (/work/...) must be
world-searchable for the pipe user to run build/noticecast from it.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", "")) \
    or "/usr/sbin/postfix"
POSTQUEUE = str(Path(POSTFIX).with_name("postqueue"))
POSTCONF = str(Path(POSTFIX).with_name("postconf"))
PIPE_TRANSPORT = "inbound"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PostfixError(RuntimeError):
    pass


class PrivatePostfix:
    def __init__(
        self,
        base_dir: str | os.PathLike | None = None,
        *,
        name: str | None = None,
        virtual_domains: dict[str, Sequence[str]] | None = None,
        mailbox_user: str = "nobody",
        relay: str | tuple[str, int] | None = None,
        bounce_domain: str | None = None,
        pipe_addresses: Sequence[str] = (),
        pipe_argv: Sequence[str] | None = None,
        pipe_user: str = "nobody",
        pipe_flags: str = "DRX",
        pipe_concurrency: int = 10,
        pipe_process_limit: int | None = None,
        default_process_limit: int = 100,
        pipe_time_limit: int = 60,
        retry_seconds: tuple[int, int, int] = (2, 4, 1),
        smtpd_port: int | None = None,
        main_cf_extra: dict[str, str] | None = None,
    ):
        if bounce_domain or pipe_addresses:
            if not pipe_argv:
                raise ValueError("bounce_domain / pipe_addresses need pipe_argv")
        if pipe_user == "root" or pwd.getpwnam(pipe_user).pw_uid == 0:
            raise ValueError("pipe(8) refuses to run commands as root")
        if base_dir is None:
            # /tmp itself, not pytest's tmp_path: that is under a 0700 dir of root's, where the
            # pipe and mailbox users could not reach their files.
            base_dir = tempfile.mkdtemp(prefix="nc-postfix-", dir="/tmp")
        self.base = Path(base_dir).resolve()
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        # syslog_name: unique per instance (our pid + the temp dir's random suffix)
        suffix = re.sub(r"[^A-Za-z0-9]", "", self.base.name[-6:])
        self.name = name or f"ncpf{os.getpid()}x{suffix}"
        self.conf_dir = self.base / "etc"
        self.queue_dir = self.base / "queue"
        self.data_dir = self.base / "data"
        self.log_file = self.base / "log" / "maillog"
        self.mail_dir = self.base / "mail"
        self.pipe_dir = self.base / "pipe"
        self.virtual_domains = {d: list(u) for d, u in (virtual_domains or {}).items()}
        self.mailbox_user = mailbox_user
        if isinstance(relay, tuple):
            relay = f"{relay[0]}:{relay[1]}"
        self.relay = relay
        self.bounce_domain = bounce_domain
        self.pipe_addresses = list(pipe_addresses)
        self.pipe_argv = list(pipe_argv or [])
        self.pipe_user = pipe_user
        self.pipe_flags = pipe_flags
        self.pipe_concurrency = pipe_concurrency
        self.pipe_process_limit = pipe_process_limit
        self.default_process_limit = default_process_limit
        self.pipe_time_limit = pipe_time_limit
        self.retry_seconds = retry_seconds
        self.port = smtpd_port
        self._fixed_port = smtpd_port is not None
        self.main_cf_extra = dict(main_cf_extra or {})
        self.started = False

    # ---- configuration ------------------------------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        min_backoff, max_backoff, run_delay = self.retry_seconds
        relay_domains = []
        if self.bounce_domain:
            relay_domains.append(self.bounce_domain)
        others = {a.rsplit("@", 1)[1] for a in self.pipe_addresses} - set(relay_domains)
        relay_domains += sorted(others)
        cf = {
            "compatibility_level": "3.6",
            # ours alone: nothing shared with the system instance or a parallel one
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "syslog_name": self.name,
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.base),  # default /var, /dev/stdout only
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            # no DNS: a fixed name, no peer name lookup, local-only destinations
            "myhostname": f"{self.name}.postfix.test",
            "mydomain": "postfix.test",
            "myorigin": "$myhostname",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "mydestination": "$myhostname, localhost",
            # postmaster notices and anything else local: logged and discarded
            "local_transport": "discard:local delivery is off in this instance",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "recipient_delimiter": "+",
            "smtpd_banner": "$myhostname ESMTP",
            # unknown virtual users are accepted, then bounced with a DSN by Postfix itself
            "smtpd_reject_unlisted_recipient": "no",
            "relay_domains": ", ".join(relay_domains),
            "relay_recipient_maps": "",
            "transport_maps": f"texthash:{self.conf_dir}/transport",
            "default_transport": f"smtp:[{self.relay_host()}]:{self.relay_port()}" if self.relay
            else "error:5.4.4 no relay in this test instance",
            "relay_transport": "$default_transport",
            # tests: retries within seconds, not minutes
            "minimal_backoff_time": f"{min_backoff}s",
            "maximal_backoff_time": f"{max_backoff}s",
            "queue_run_delay": f"{run_delay}s",
            "transport_retry_time": f"{min_backoff}s",
            "default_process_limit": str(self.default_process_limit),
            "delay_warning_time": "0",
            "smtputf8_enable": "no",
        }
        if self.virtual_domains:
            uid = pwd.getpwnam(self.mailbox_user)
            cf.update({
                "virtual_mailbox_domains": ", ".join(self.virtual_domains),
                "virtual_mailbox_maps": f"texthash:{self.conf_dir}/vmailbox",
                "virtual_mailbox_base": str(self.mail_dir),
                "virtual_uid_maps": f"static:{uid.pw_uid}",
                "virtual_gid_maps": f"static:{uid.pw_gid}",
                "virtual_minimum_uid": str(min(uid.pw_uid, 100)),
            })
        if self.pipe_argv:
            t = PIPE_TRANSPORT
            cf.update({
                f"{t}_destination_recipient_limit": "1",  # one recipient (argv) per run
                f"{t}_destination_concurrency_limit": str(self.pipe_concurrency),
                f"{t}_initial_destination_concurrency": str(min(self.pipe_concurrency, 5)),
                f"{t}_time_limit": f"{self.pipe_time_limit}s",
            })
        cf.update(self.main_cf_extra)
        return cf

    def relay_host(self) -> str:
        return self.relay.rsplit(":", 1)[0] if self.relay else ""

    def relay_port(self) -> str:
        return self.relay.rsplit(":", 1)[1] if self.relay else ""

    def master_cf(self) -> str:
        # chroot "n" everywhere: Debian's master.cf.proto chroots most daemons into the queue
        # directory, which would need copies of /etc files there.
        lines = [
            f"127.0.0.1:{self.port} inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        if self.pipe_argv:
            maxproc = "-" if self.pipe_process_limit is None else str(self.pipe_process_limit)
            for a in self.pipe_argv:
                if any(c.isspace() for c in a):
                    raise ValueError(f"pipe argv element with white space: {a!r}")
            lines.append(f"{PIPE_TRANSPORT} unix - n n - {maxproc} pipe")
            lines.append(f"  flags={self.pipe_flags} user={self.pipe_user} null_sender= "
                         f"argv={' '.join(self.pipe_argv)}")
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        for d in (self.conf_dir, self.queue_dir, self.log_file.parent):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        cf = self.main_cf()
        (self.conf_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in cf.items()))
        (self.conf_dir / "master.cf").write_text(self.master_cf())
        transport = []
        if self.bounce_domain:
            transport.append(f"{self.bounce_domain} {PIPE_TRANSPORT}:")
        transport += [f"{a} {PIPE_TRANSPORT}:" for a in self.pipe_addresses]
        (self.conf_dir / "transport").write_text("".join(t + "\n" for t in transport))
        vm = [f"{u}@{d} {d}/{u}/" for d, users in self.virtual_domains.items() for u in users]
        (self.conf_dir / "vmailbox").write_text("".join(v + "\n" for v in vm))
        if self.virtual_domains:
            mb = pwd.getpwnam(self.mailbox_user)
            self.mail_dir.mkdir(exist_ok=True)
            os.chown(self.mail_dir, mb.pw_uid, mb.pw_gid)
            os.chmod(self.mail_dir, 0o755)
        if self.pipe_argv:
            pu = pwd.getpwnam(self.pipe_user)
            self.pipe_dir.mkdir(exist_ok=True)
            os.chown(self.pipe_dir, pu.pw_uid, pu.pw_gid)
            os.chmod(self.pipe_dir, 0o755)

    def share(self, path: str | os.PathLike) -> None:
        """Let the pipe user read `path` (a file the pipe command needs, e.g. a 0600 config)."""
        pu = pwd.getpwnam(self.pipe_user)
        os.chown(path, pu.pw_uid, pu.pw_gid)

    # ---- running --------------------------------------------------------------------------------

    def _env(self) -> dict:
        env = dict(os.environ)
        env["MAIL_CONFIG"] = str(self.conf_dir)
        return env

    def _postfix(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([POSTFIX, "-c", str(self.conf_dir), *args], env=self._env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, timeout: float = 60) -> "PrivatePostfix":
        """Writes the config and starts the instance; returns once smtpd accepts connections.
        A port found free can be taken before the master binds it: 3 tries (new port each)."""
        for attempt in range(3):
            if not self._fixed_port:
                self.port = free_port()
            self._write_config()
            cp = self._postfix("start", timeout=timeout)
            if cp.returncode == 0:
                self.started = True
                if self._wait_port(timeout):
                    return self
                self.stop()
                raise PostfixError(f"smtpd not listening on {self.port}:\n{self.log_tail()}")
            self.stop()
            if self._fixed_port or "in use" not in (cp.stderr + self.log_text()):
                break
        raise PostfixError(f"postfix start failed ({cp.returncode}):\n{cp.stdout}{cp.stderr}\n"
                           f"{self.log_tail()}")

    def _wait_port(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.recv(512)  # the banner: smtpd answers, not only the master's listen queue
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def master_pid(self) -> int | None:
        """The pid in our master.pid, if that process is alive and is our master (its cwd is
        our queue directory), else None."""
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")) != self.queue_dir:
                return None
        except OSError:
            return None
        return pid

    def stop(self, timeout: float = 20) -> None:
        """`postfix -c DIR stop` (which itself waits 5 s then SIGKILLs the master's process
        group); then, bounded, SIGKILL of our master's process group if it still runs."""
        pid = self.master_pid()
        if pid is None:
            self.started = False
            return
        try:
            self._postfix("stop", timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while self.master_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = self.master_pid()
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)  # the master is its process group's leader
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.started = False

    def cleanup(self) -> None:
        """stop() and remove the base dir."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "PrivatePostfix":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- using it -------------------------------------------------------------------------------

    def send(self, mail_from: str, rcpt: str | Sequence[str], data: bytes | str,
             timeout: float = 30) -> dict:
        """One message over SMTP to our smtpd; returns smtplib's refused-recipients dict."""
        rcpts = [rcpt] if isinstance(rcpt, str) else list(rcpt)
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test",
                          timeout=timeout) as s:
            return s.sendmail(mail_from, rcpts, data)

    def flush(self) -> None:
        """postqueue -f: deliver the deferred mail now (also resets dead destinations)."""
        cp = subprocess.run([POSTQUEUE, "-c", str(self.conf_dir), "-f"], env=self._env(),
                            capture_output=True, text=True, timeout=30)
        if cp.returncode != 0:
            raise PostfixError(f"postqueue -f failed: {cp.stderr}")

    def queue(self) -> list[dict]:
        """postqueue -j: one dict per queued message (queue_name, queue_id, sender,
        recipients [{address, delay_reason?}], ...)."""
        cp = subprocess.run([POSTQUEUE, "-c", str(self.conf_dir), "-j"], env=self._env(),
                            capture_output=True, text=True, timeout=30)
        if cp.returncode != 0:
            raise PostfixError(f"postqueue -j failed: {cp.stderr}")
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]

    def wait_queue_empty(self, timeout: float = 30, poll: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while True:
            q = self.queue()
            if not q:
                return
            if time.monotonic() >= deadline:
                raise PostfixError(f"queue not empty after {timeout} s: {q}\n{self.log_tail()}")
            time.sleep(poll)

    def wait_for(self, predicate, timeout: float = 30, poll: float = 0.1, what: str = "condition"):
        """Polls predicate() until it returns something true (returned), at most timeout s."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() >= deadline:
                raise PostfixError(f"timed out after {timeout} s waiting for {what}\n"
                                   f"{self.log_tail()}")
            time.sleep(poll)

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 30) -> list[str]:
        """Until `count` maillog lines match the regex; returns the matching lines."""
        rx = re.compile(pattern)

        def hits():
            m = [line for line in self.log_text().splitlines() if rx.search(line)]
            return m if len(m) >= count else None

        return self.wait_for(hits, timeout, what=f"{count} log line(s) matching {pattern!r}")

    def maildir_messages(self, user: str, domain: str | None = None) -> list:
        """The messages virtual(8) delivered to user's Maildir (new/ and cur/), parsed."""
        if domain is None:
            domain = next(d for d, users in self.virtual_domains.items() if user in users)
        root = self.mail_dir / domain / user
        out = []
        for sub in ("new", "cur"):
            d = root / sub
            if d.is_dir():
                for f in sorted(d.iterdir()):
                    out.append(email.message_from_bytes(f.read_bytes(),
                                                        policy=email.policy.default))
        return out

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:]) or "(empty maillog)"

    def postconf(self, *args: str) -> str:
        cp = subprocess.run([POSTCONF, "-c", str(self.conf_dir), *args], env=self._env(),
                            capture_output=True, text=True, timeout=30)
        return cp.stdout


# ---- command line (tests/bench/inbound.sh) ------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="a private Postfix instance on loopback")
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start", help="configure and start; prints PORT")
    st.add_argument("--base", required=True)
    st.add_argument("--bounce-domain", default="bounces.test")
    st.add_argument("--pipe-user", default="nobody")
    st.add_argument("--pipe-flags", default="DRX")
    st.add_argument("--pipe-concurrency", type=int, default=10)
    st.add_argument("--pipe-process-limit", type=int)
    st.add_argument("--default-process-limit", type=int, default=100)
    st.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="more main.cf settings")
    st.add_argument("pipe_argv", nargs="+")
    sp = sub.add_parser("stop", help="stop the instance in BASE")
    sp.add_argument("--base", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "start":
        pf = PrivatePostfix(a.base, bounce_domain=a.bounce_domain, pipe_argv=a.pipe_argv,
                            pipe_user=a.pipe_user, pipe_flags=a.pipe_flags,
                            pipe_concurrency=a.pipe_concurrency,
                            pipe_process_limit=a.pipe_process_limit,
                            default_process_limit=a.default_process_limit,
                            main_cf_extra=dict(s.split("=", 1) for s in a.set))
        pf.start()
        print(pf.port)
    else:
        PrivatePostfix(a.base).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
