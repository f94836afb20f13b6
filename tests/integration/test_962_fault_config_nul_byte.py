"""Fault: a NUL byte in the configuration file (a botched edit, a binary paste) made every
program read the file only up to it: the rest was silently ignored, keys and mistakes alike
(`colour = blue` after the NUL was accepted, and so was the loss of every later section).

Now the line with the NUL is reported: `file:line: contains a NUL byte`, exit 78, in all
three programs, whether the NUL is alone on its line or inside a value.
"""

from __future__ import annotations

import pytest

from config_faults import EX_CONFIG, check_all, full_config, summary

pytestmark = pytest.mark.faults


def _with_nul(path, anchor: str, inline: bool):
    """Puts a NUL byte after the line starting with ANCHOR (inline: inside that line's value)
    and an unknown key right after it; returns the 1-based line of the NUL."""
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(anchor.encode()):
            if inline:
                lines[i] = line + b"\x00, press"
                lines.insert(i + 1, b"colour = blue")
                nul_line = i + 1
            else:
                lines[i + 1:i + 1] = [b"\x00", b"colour = blue"]
                nul_line = i + 2
            path.write_bytes(b"\n".join(lines))
            return nul_line
    raise AssertionError(anchor)


def test_nul_byte_is_reported_at_its_line(tmp_path, record_property):
    figures, failures = [], []
    for what, anchor, inline in (("NUL on a line of its own", "categories = ", False),
                                 ("NUL inside a value", "categories = ", True)):
        path = full_config(tmp_path, name=f"nul-{int(inline)}.conf")
        nul_line = _with_nul(path, anchor, inline)
        res = check_all(path, tmp_path)
        figures.append(f"{what} (line {nul_line}): {summary(res)}")
        want = f"{path}:{nul_line}: contains a NUL byte"
        for prog, cp in res.items():
            if cp.returncode != EX_CONFIG or want not in cp.stderr:
                failures.append(f"{what}/{prog}: exit {cp.returncode}, stderr {cp.stderr.strip()[:300]!r}"
                                f"\n  expected {want!r}")
    fig = "; ".join(figures)
    print(fig)
    record_property("nul_byte", fig)
    assert not failures, "\n".join(failures)
