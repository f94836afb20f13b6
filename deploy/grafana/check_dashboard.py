#!/usr/bin/env python3
"""Checks the monitoring files against what the daemons export (make check-monitoring).

* deploy/grafana/noticecast.json is valid JSON, every panel has a unique id, and every query
  parses as PromQL (promtool check rules on a rules file made of the queries);
* every metric the dashboard or the alert rules query is one the daemons define: the names
  registered with nc_metrics_counter/gauge/histogram() in common/ and consumer/ (for a
  histogram also its _bucket, _sum and _count), plus Prometheus' own `up`;
* docs/monitoring.md describes every metric the daemons define and every alert of
  deploy/prometheus/noticecast.rules.yml, whose runbook_url points to its heading there.

Metrics another part of the tree exports but that are not in the sources yet are named in
EXPECTED_ELSEWHERE: reported, not failed, while they are missing.  Exit 0 when clean, 1 with
the problems on stderr.
"""
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy/grafana/noticecast.json"
RULES = REPO / "deploy/prometheus/noticecast.rules.yml"
DOC = REPO / "docs/monitoring.md"
# noticecast_kafka_broker_up: exported by the Kafka connectivity code (nc_health).
EXPECTED_ELSEWHERE = {"noticecast_kafka_broker_up"}
BUILTIN = {"up"}

REGISTER_RE = re.compile(r'nc_metrics_(counter|gauge|histogram)\(\s*[^,]+,\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"',
                         re.S)
NAME_RE = re.compile(r"\b((?:noticecast|process)_[a-zA-Z0-9_:]*|up)\b")


def defined_metrics() -> dict:
    """{name: type} of every metric registered in the C sources."""
    out = {}
    for src in sorted([*REPO.glob("common/*.c"), *REPO.glob("consumer/*/*.c")]):
        for kind, name in REGISTER_RE.findall(src.read_text(errors="replace")):
            out[name] = kind
    return out


def queried(expr: str) -> set:
    """Metric names in a PromQL expression (ours and `up`; label values in quotes excluded)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(NAME_RE.findall(expr))


def exposed_names(defined: dict) -> set:
    names = set(defined)
    for n, kind in defined.items():
        if kind == "histogram":
            names |= {n + "_bucket", n + "_sum", n + "_count"}
    return names


def rule_exprs() -> list:
    """(alert, expr, runbook_url) of the rules file, read without a YAML library: the file's
    own layout (`- alert:`, `expr: |` blocks, `runbook_url:`)."""
    out, cur, block = [], None, None
    for line in RULES.read_text().splitlines():
        m = re.match(r"\s*- alert:\s*(\S+)", line)
        if m:
            cur = {"alert": m.group(1), "expr": "", "runbook": None}
            out.append(cur)
            block = None
            continue
        if cur is None:
            continue
        m = re.match(r"(\s*)expr:\s*(.*)$", line)
        if m:
            if m.group(2).strip() in ("|", ">"):
                block = len(m.group(1))
            else:
                cur["expr"] = m.group(2)
                block = None
            continue
        if block is not None:
            if line.strip() and len(line) - len(line.lstrip()) <= block:
                block = None
            else:
                cur["expr"] += line.strip() + " "
                continue
        m = re.match(r'\s*runbook_url:\s*"?([^"]+)"?', line)
        if m:
            cur["runbook"] = m.group(1).strip()
    return out


def doc_anchors(text: str) -> set:
    """GitHub's anchors of the Markdown headings."""
    out = set()
    for line in text.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            a = re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(a)
    return out


def promql_parses(exprs: list) -> list:
    """Problems promtool finds in EXPRS (as recording rules); [] if promtool is missing."""
    promtool = shutil.which("promtool")
    if not promtool:
        return ["promtool not found: the dashboard's queries were not parsed"]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, e in enumerate(exprs):
            f.write(f"      - record: dashboard:query{i}\n        expr: {json.dumps(e)}\n")
        path = f.name
    cp = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    Path(path).unlink()
    return [] if cp.returncode == 0 else [f"dashboard queries: promtool:\n{cp.stdout}{cp.stderr}"]


def main() -> int:
    problems, notes = [], []
    defined = defined_metrics()
    exposed = exposed_names(defined) | BUILTIN
    if not defined:
        problems.append("no metric registration found in common/ and consumer/")

    try:
        dash = json.loads(DASHBOARD.read_text())
    except (OSError, ValueError) as e:
        print(f"{DASHBOARD}: {e}", file=sys.stderr)
        return 1
    exprs, ids = [], []

    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            for t in p.get("targets", []):
                if t.get("expr"):
                    exprs.append(t["expr"])
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    if not exprs:
        problems.append("the dashboard has no query")
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"panel ids missing or not unique: {ids}")
    # Grafana's variables are not PromQL: $job stands for a regular expression.
    problems += promql_parses([e.replace("$job", ".*") for e in exprs])

    rules = rule_exprs()
    if not rules:
        problems.append(f"{RULES}: no alert found")
    sources = [("dashboard", e) for e in exprs] + [(f"alert {r['alert']}", r["expr"]) for r in rules]
    for where, e in sources:
        for name in sorted(queried(e) - exposed):
            if name in EXPECTED_ELSEWHERE:
                notes.append(f"{where}: {name} is not defined in this tree (exported elsewhere)")
            else:
                problems.append(f"{where}: {name} is not a metric the daemons export")

    doc = DOC.read_text() if DOC.exists() else ""
    if not doc:
        problems.append(f"{DOC} is missing")
    anchors = doc_anchors(doc)
    for name in sorted(defined):
        if f"`{name}`" not in doc:
            problems.append(f"docs/monitoring.md does not describe `{name}`")
    for r in rules:
        want = f"docs/monitoring.md#{r['alert'].lower()}"
        if r["runbook"] != want:
            problems.append(f"alert {r['alert']}: runbook_url {r['runbook']!r}, expected {want!r}")
        elif r["alert"].lower() not in anchors:
            problems.append(f"alert {r['alert']}: no heading {r['alert']} in docs/monitoring.md")

    for n in notes:
        print(f"check_dashboard: note: {n}", file=sys.stderr)
    for p in problems:
        print(f"check_dashboard: {p}", file=sys.stderr)
    if not problems:
        print(f"check_dashboard: {len(exprs)} dashboard queries, {len(rules)} alerts, "
              f"{len(defined)} metrics: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
