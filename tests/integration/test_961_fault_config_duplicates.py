"""Fault: a key given twice in a section was silently taken from its last occurrence (inih
calls the handler once per line), so a stale `bootstrap.servers` or partner `url` further
down a long file quietly replaced the one the operator was looking at.

Now a second occurrence is `file:line: key 'x' already set at line N in [section]` (exit 78)
in all three programs, [kafka] and [partner.*] included.  No key is list-valued by repetition
(lists are comma-separated on one line), so there is no exception.  A section header given
twice (`[kafka]` ... `[kafka]`, `[partner.pe]` twice) is refused the same way:
`file:line: section [x] already defined at line N`.
"""

from __future__ import annotations

import pytest

from config_faults import EX_CONFIG, EX_OK, check_all, full_config, insert_after, line_of, summary

pytestmark = pytest.mark.faults

# (section, anchor line the duplicate goes after, duplicate line, key)
DUPLICATES = {
    "noticecast.default_language": ("noticecast", "default_language = en", "default_language = es",
                                    "default_language"),
    "kafka.bootstrap.servers": ("kafka", "bootstrap.servers = ", "bootstrap.servers = 10.9.9.9:9092",
                                "bootstrap.servers"),
    "partner.pe.url": ("partner.pe", "url = ", "url = https://stale.example/old-endpoint", "url"),
    "mailer.from_address": ("mailer", "from_address = ", "from_address = old@example.gov",
                            "from_address"),
}


def test_duplicate_key_is_an_error(tmp_path, record_property):
    good = full_config(tmp_path, name="good.conf")
    base = check_all(good, tmp_path)
    assert all(cp.returncode == EX_OK for cp in base.values()), summary(base)
    accepted, figures = 0, []
    failures = []
    for i, (what, (section, anchor, dup, key)) in enumerate(DUPLICATES.items()):
        path = full_config(tmp_path, name=f"dup-{i}.conf")
        first = line_of(path, anchor)
        insert_after(path, anchor, "# the same key again, further down\n" + dup)
        second = line_of(path, dup)
        res = check_all(path, tmp_path)
        accepted += sum(cp.returncode == EX_OK for cp in res.values())
        figures.append(f"{what}: {summary(res)}")
        want = f"{path}:{second}: key '{key}' already set at line {first} in [{section}]"
        for prog, cp in res.items():
            if cp.returncode != EX_CONFIG or want not in cp.stderr:
                failures.append(f"{what}/{prog}: exit {cp.returncode}, stderr {cp.stderr.strip()[:300]!r}"
                                f"\n  expected {want!r}")
    fig = f"{accepted} of {3 * len(DUPLICATES)} checks accepted a duplicate key; " + "; ".join(figures)
    print(fig)
    record_property("duplicate_keys", fig)
    assert not failures, "\n".join(failures)


def test_repeated_section_is_an_error(tmp_path, record_property):
    cases = {
        "[kafka] twice": ("\n[kafka]\nlinger.ms = 5\n", "kafka", "[kafka]"),
        "[partner.pe] twice": ("\n[partner.pe]\nmax_in_flight = 2\n", "partner.pe", "[partner.pe]"),
    }
    figures, failures = [], []
    for i, (what, (extra, section, header)) in enumerate(cases.items()):
        path = full_config(tmp_path, name=f"rep-{i}.conf", extra=extra)
        lines = path.read_text().split("\n")
        at = [n for n, l in enumerate(lines, 1) if l == header]
        assert len(at) == 2, at
        res = check_all(path, tmp_path)
        figures.append(f"{what}: {summary(res)}")
        want = f"{path}:{at[1]}: section [{section}] already defined at line {at[0]}"
        for prog, cp in res.items():
            if cp.returncode != EX_CONFIG or want not in cp.stderr:
                failures.append(f"{what}/{prog}: exit {cp.returncode}, stderr {cp.stderr.strip()[:300]!r}"
                                f"\n  expected {want!r}")
    fig = "; ".join(figures)
    print(fig)
    record_property("repeated_sections", fig)
    assert not failures, "\n".join(failures)
