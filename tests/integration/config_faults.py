"""Helpers of the configuration fault tests (test_96*_fault_*.py): one complete configuration
that all three programs accept, and running each program's configuration check on it.

The check of each program, none of which needs a broker:
  * noticecast:          `noticecast -C FILE validate NOTICE.json` (loads the configuration
                         first, as every command does; 0 = the notice is valid);
  * noticecast-webhooks: `-n` (configuration and every partner's secrets);
  * noticecast-mailer:   `-n` (configuration, unsubscribe key, SMTP password, templates).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from conftest import write_config
from daemon_env import binary
from mailer_support import MAILER_DEFAULTS, SMTP_DEFAULTS
from webhooks_support import make_secret

EX_OK, EX_CONFIG = 0, 78
PROGRAMS = ("noticecast", "noticecast-webhooks", "noticecast-mailer")


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def full_config(tmp: Path, name: str = "full.conf", bootstrap: str = "127.0.0.1:9092",
                extra: str = "", partner_url: str = "https://partner.example/hooks/noticecast",
                **overrides) -> Path:
    """Writes a configuration with every section the programs use: [webhooks] with one
    partner (secret file mode 0600), [mailer] (unsubscribe key mode 0600) and [smtp].
    overrides: section -> {key: value} merged over these (None drops a key)."""
    tmp.mkdir(parents=True, exist_ok=True)
    psecret = secret_file(tmp / "pe.secret", make_secret() + "\n")
    ukey = secret_file(tmp / "unsubscribe.secret", uuid.uuid4().hex * 2 + "\n")
    sections = {
        "webhooks": {"group_id": "cfg-faults", "listen": "127.0.0.1:0"},
        "partner.pe": {"url": partner_url, "secret_file": str(psecret)},
        "mailer": dict(MAILER_DEFAULTS, group_id="cfg-faults-ml", listen="127.0.0.1:0",
                       public_listen="127.0.0.1:0", unsubscribe_url="http://127.0.0.1:9/unsubscribe",
                       unsubscribe_secret_file=str(ukey)),
        "smtp": dict(SMTP_DEFAULTS, port=2525),
    }
    for sec, kv in overrides.items():
        sections.setdefault(sec, {})
        for k, v in kv.items():
            if v is None:
                sections[sec].pop(k, None)
            else:
                sections[sec][k] = v
    path = tmp / name
    write_config(path, bootstrap, extra=extra, **sections)
    return path


def check(program: str, config: Path, tmp: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs PROGRAM's configuration check on CONFIG (see the module docstring)."""
    if program == "noticecast":
        n = tmp / "check-notice.json"
        n.write_text(json.dumps({"category": "news", "title": "Configuration check"}))
        argv = [binary(program), "-C", str(config), "validate", str(n)]
    else:
        argv = [binary(program), "-C", str(config), "-n"]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=timeout)


def check_all(config: Path, tmp: Path) -> dict:
    """{program: CompletedProcess} of every program's check."""
    return {p: check(p, config, tmp) for p in PROGRAMS}


def summary(results: dict) -> str:
    """'program=exit' for each program (the figure a test prints)."""
    return ", ".join(f"{p}={cp.returncode}" for p, cp in results.items())


def first_error_line(cp: subprocess.CompletedProcess) -> str:
    lines = [l for l in cp.stderr.splitlines() if l.strip()]
    return lines[0] if lines else "(no stderr)"


def line_of(path: Path, needle: str) -> int:
    """1-based number of the first line of PATH that contains NEEDLE."""
    for i, line in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        if needle.encode() in line:
            return i
    raise AssertionError(f"{path}: no line contains {needle!r}")


def insert_after(path: Path, anchor: str, text: str) -> Path:
    """Inserts TEXT (one or more lines) right after the first line that starts with ANCHOR."""
    lines = Path(path).read_text().split("\n")
    for i, line in enumerate(lines):
        if line.startswith(anchor):
            lines[i + 1:i + 1] = text.rstrip("\n").split("\n")
            Path(path).write_text("\n".join(lines))
            return path
    raise AssertionError(f"{path}: no line starts with {anchor!r}")
