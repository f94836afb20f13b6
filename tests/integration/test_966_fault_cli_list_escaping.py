"""Fault: `noticecast subscribers list` and `noticecast dlq list` printed stored fields raw in
their tab-separated rows, so a CR/LF or a tab in a subscriber's name, a DLQ key or a partner's
error text split one record over several rows or shifted its columns, and terminal escapes
went straight to the operator's terminal.  `dlq list --json` cut long values (a 1 KiB
buffer) and silently dropped an entry whose header was not UTF-8.

Now every TSV field is escaped (\\t \\n \\r \\\\, other C0 controls and DEL as \\xHH, C1
controls, U+2028/2029 and bidi controls as \\uHHHH, bytes that are not UTF-8 as \\xHH) and cut
at 200 characters, ending with "…": one row per record, always.  --json prints every record,
exactly (bytes that JSON cannot carry, i.e. not UTF-8, become U+FFFD).

The records are written straight to the topics with confluent_kafka: the CLI itself refuses
such names.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from confluent_kafka import Producer

from conftest import EX_OK, describe, expect_rc

pytestmark = pytest.mark.faults

ELLIPSIS = "\u2026"


def _produce(bootstrap: str, topic: str, records: list) -> None:
    """records: (key bytes|None, value bytes|None, headers list|None), in order, one partition."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
    for key, value, headers in records:
        p.produce(topic, value=value, key=key, headers=headers or [], partition=0,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(30) == 0 and not errors, errors


def _cli(nc_bin, cfg, *args) -> subprocess.CompletedProcess:
    """Runs the CLI; stdout decoded leniently (the old code printed raw bytes), so the figures
    can be counted whatever it prints.  JSON rows are split on "\\n" only: U+2028 and U+0085
    are valid raw inside a JSON string."""
    cp = subprocess.run([nc_bin, "-C", str(cfg.path), *args], stdin=subprocess.DEVNULL,
                        capture_output=True, timeout=120)
    cp.stdout = cp.stdout.decode("utf-8", "replace")
    cp.stderr = cp.stderr.decode("utf-8", "replace")
    return cp


def _json_rows(text: str) -> list:
    out = []
    for line in text.split("\n"):
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"_unparsable": line})
    return out


def _subscriber(email: str, name: str) -> dict:
    return {"id": email, "email": email, "name": name, "lang": "en", "categories": ["news"],
            "regions": [], "frequency": "daily", "tz": "UTC", "send_at": "08:00",
            "updated_at": "2026-01-01T00:00:00Z"}


def test_subscribers_list_one_row_per_subscriber(cfg, run_cli, nc_bin, bootstrap, record_property):
    expect_rc(run_cli("subscribers", "add", "--email", "plain@example.org", "--name", "Plain Name",
                      config=cfg), EX_OK)
    odd = {
        "crlf@example.org": ("Ana\r\nQuispe", "Ana\\r\\nQuispe"),
        "tab@example.org": ("Kim\tJi-woo", "Kim\\tJi-woo"),
        "esc@example.org": ("\x1b[31mred\x1b[0m\u2028\u202e\x85",
                            "\\x1B[31mred\\x1B[0m\\u2028\\u202E\\u0085"),
        "long@example.org": ("N" * 5000, "N" * 200 + ELLIPSIS),
        "evil\n@example.org": ("back\\slash", "back\\\\slash"),
    }
    recs = {email: _subscriber(email, name) for email, (name, _) in odd.items()}
    _produce(bootstrap, cfg.subscribers_topic,
             [(e.encode(), json.dumps(r).encode(), None) for e, r in recs.items()])
    n_records = len(recs) + 1

    cp = expect_rc(_cli(nc_bin, cfg, "subscribers", "list"), EX_OK)
    rows = cp.stdout.split("\n")
    assert rows[-1] == "", describe(cp)
    rows = rows[:-1]
    widths = sorted({len(r.split("\t")) for r in rows})
    cpj = expect_rc(_cli(nc_bin, cfg, "subscribers", "list", "--json"), EX_OK)
    jrows = _json_rows(cpj.stdout)
    fig = (f"{n_records} subscribers -> {len(rows)} TSV rows (field counts {widths}), "
           f"{len(jrows)} JSON rows, longest TSV row {max(len(r) for r in rows)} chars")
    print(fig)
    record_property("subscribers_list", fig)

    assert len(rows) == n_records and widths == [8], describe(cp)
    by_email = {r.split("\t")[0]: r.split("\t") for r in rows}
    for email, (_, shown) in odd.items():
        shown_email = email.replace("\n", "\\n")
        assert shown_email in by_email, f"{shown_email!r} not listed:\n{cp.stdout}"
        assert by_email[shown_email][1] == shown, (email, by_email[shown_email][1][:300])
    assert by_email["plain@example.org"][1] == "Plain Name"
    assert all(c >= " " or c == "\t" for r in rows for c in r), "a control character was printed"
    # --json: every record, exactly as stored
    assert len(jrows) == n_records
    got = {j.get("email"): j for j in jrows}
    for email, rec in recs.items():
        assert got[email] == rec, f"--json changed {email!r}"


def test_dlq_list_one_row_per_entry(cfg, nc_bin, bootstrap, record_property):
    def h(**kv):
        return [(f"noticecast-dlq-{k.replace('_', '-')}", v if isinstance(v, bytes) else v.encode())
                for k, v in kv.items()]

    base = dict(time="2026-01-01T00:00:00Z", stage="webhook", source_topic=cfg.topic("news"),
                source_partition="0", source_offset="7")
    long_reason = "R" * 3000
    entries = [
        (b"k-crlf", dict(base, partner="pe", reason="HTTP 400\r\n<html>\n\tbad request</html>")),
        (b"key\nwith\nnewlines", dict(base, partner="p\tq", reason="x")),
        (b"k-long", dict(base, partner="pe", reason=long_reason)),
        (b"k-bytes", dict(base, stage=b"nul\x00inside", partner="pe", reason=b"bad \xff\xfe bytes")),
        (b"k-bare", None),
    ]
    _produce(bootstrap, cfg.dlq_topic,
             [(k, json.dumps({"id": str(uuid.uuid4())}).encode(), h(**hd) if hd else None)
              for k, hd in entries])

    cp = expect_rc(_cli(nc_bin, cfg, "dlq", "list"), EX_OK)
    rows = cp.stdout.split("\n")[:-1]
    widths = sorted({len(r.split("\t")) for r in rows})
    cpj = expect_rc(_cli(nc_bin, cfg, "dlq", "list", "--json"), EX_OK)
    jrows = _json_rows(cpj.stdout)
    by_key = {j.get("key"): j for j in jrows}
    long_json = len(by_key.get("k-long", {}).get("reason") or "")
    fig = (f"{len(entries)} DLQ entries -> {len(rows)} TSV rows (field counts {widths}), "
           f"{len(jrows)} JSON rows; 3000-char reason: {long_json} chars in JSON")
    print(fig)
    record_property("dlq_list", fig)

    assert len(rows) == len(entries) and widths == [6], describe(cp)
    tsv = {r.split("\t")[3]: r.split("\t") for r in rows}
    assert tsv["k-crlf"][5] == "HTTP 400\\r\\n<html>\\n\\tbad request</html>", tsv["k-crlf"]
    assert tsv["key\\nwith\\nnewlines"][4] == "p\\tq"
    assert tsv["k-long"][5] == "R" * 200 + ELLIPSIS
    assert tsv["k-bytes"][1] == "nul\\x00inside" and tsv["k-bytes"][5] == "bad \\xFF\\xFE bytes"
    assert tsv["k-bare"][:3] == ["-", "-", "-[?]@?"] and tsv["k-bare"][4:] == ["-", "-"]
    assert tsv["k-crlf"][2] == f"{cfg.topic('news')}[0]@7"
    # --json: every entry, whole and exact
    assert len(jrows) == len(entries), cpj.stdout
    assert by_key["k-crlf"]["reason"] == "HTTP 400\r\n<html>\n\tbad request</html>"
    assert by_key["key\nwith\nnewlines"]["partner"] == "p\tq"
    assert by_key["k-long"]["reason"] == long_reason
    assert by_key["k-bytes"]["stage"] == "nul\x00inside"
    assert by_key["k-bytes"]["reason"] == "bad \ufffd\ufffd bytes"
    assert by_key["k-bare"]["reason"] is None and by_key["k-bare"]["source_offset"] == "?"
