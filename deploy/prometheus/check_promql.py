#!/usr/bin/env python3
"""Checks every PromQL expression of the alert rules and the Grafana dashboard.

    check_promql.py [--rules FILE] [--dashboard FILE] [--metrics FILE] [--promtool PATH] [--json]

1. Collects the expressions: each rule's `expr` (alerts.yaml) and the queries its annotations
   run (`printf `QUERY` ... | query`), each panel target's `expr` and each query variable's
   selector (`label_values(SELECTOR, label)`) of the dashboard.
2. Replaces Grafana's variables the way Grafana would before sending a query: `$__rate_interval`,
   `$__interval`, `$__range` become a duration; a dashboard variable (`$job`, `${target}`) must
   stand inside a quoted label value and becomes `.+`.
3. Parses them all with promtool: one generated rules file, one recording rule per expression
   (`promtool check rules`; Debian's promtool 2.42 has no `promql` subcommand). The rules file
   itself is checked too (templates included).
4. Lints counter use: what `rate`/`increase`/`irate`/`resets` read must be a counter
   (`_total`) or part of a histogram/summary (`_bucket`, `_sum`, `_count`).
5. With `--metrics FILE` (a scrape of the daemon's /metrics: OpenMetrics or Prometheus text),
   checks that every `orchestrator_*` name the expressions read is exported: a counter family
   `x` exports `x_total` (and `x_created`), a histogram `x` exports `x_bucket`, `x_sum`,
   `x_count`; a family declared by `# TYPE` counts even before it has a sample. The daemon's
   library (prometheus-client 0.26) writes no `# TYPE` for a labelled family without a series
   (a failure counter before the first failure): such names are reported missing unless the
   scrape was taken after their events, or they are named with `--allow-absent NAME` (listed as
   not checked).

Exit status 0 when everything holds, 1 on any finding, 2 on a usage error. Only the standard
library and PyYAML.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_RULES = HERE / "alerts.yaml"
DEFAULT_DASHBOARD = HERE.parent / "grafana" / "orchestrator.json"

PREFIX = "orchestrator_"
COUNTER_FUNCTIONS = ("rate", "irate", "increase", "resets")
COUNTERISH_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
# What Grafana puts in place of its interval variables before it queries.
GRAFANA_BUILTINS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
}


@dataclass
class Expr:
    """One expression and where it comes from."""

    origin: str
    text: str  # as written
    promql: str = ""  # after Grafana's substitutions
    problems: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- collect


# A query an annotation runs: {{ with printf `QUERY` $labels.x ... | query }} (%q -> "x").
_TEMPLATE_QUERY = re.compile(r"printf\s+`([^`]*)`[^}]*\|\s*query")


def rule_exprs(rules: dict) -> list[Expr]:
    out = []
    for group in rules.get("groups") or []:
        for i, rule in enumerate(group.get("rules") or []):
            name = rule.get("alert") or rule.get("record") or f"rule {i}"
            origin = f"rules: group {group.get('name')!r}, {name}"
            out.append(Expr(origin, str(rule.get("expr", ""))))
            for key, text in sorted((rule.get("annotations") or {}).items()):
                for q in _TEMPLATE_QUERY.findall(str(text)):
                    out.append(Expr(f"{origin}, annotation {key}", q.replace("%q", '"x"')))
    return out


def _panels(panels: list) -> list:
    for p in panels or []:
        yield p
        yield from _panels(p.get("panels"))  # collapsed rows keep their panels inside


def dashboard_exprs(dash: dict) -> list[Expr]:
    out = []
    for p in _panels(dash.get("panels")):
        for t in p.get("targets") or []:
            if "expr" in t:
                out.append(Expr(f"dashboard: panel {p.get('title')!r} ({t.get('refId')})", t["expr"]))
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else str(q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", q, re.S)
        if m:
            q = m.group(1)
        else:
            m = re.fullmatch(r"\s*(?:query_result|metrics)\((.*)\)\s*", q, re.S)
            if m:
                q = m.group(1)
        out.append(Expr(f"dashboard: variable ${v.get('name')}", q))
    return out


# ----------------------------------------------------------------------------------- grafana


def dashboard_problems(dash: dict) -> list[str]:
    """What Grafana (and its dashboard linter's rules) would trip on, without a Grafana."""
    out = []
    for key in ("title", "uid", "schemaVersion", "panels", "templating"):
        if key not in dash:
            out.append(f"dashboard: no {key!r}")
    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list") or []}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        out.append("dashboard: no `datasource` variable of type datasource for prometheus")
    if "target" not in variables:
        out.append("dashboard: no `target` variable")
    want_ds = {"type": "prometheus", "uid": "${datasource}"}
    for name, v in variables.items():
        if v.get("type") == "query" and v.get("datasource") != want_ds:
            out.append(f"dashboard: variable ${name} does not query ${{datasource}}")
    ids, boxes = set(), []
    for p in _panels(dash.get("panels")):
        title = p.get("title")
        pid = p.get("id")
        if pid in ids:
            out.append(f"dashboard: panel id {pid} used twice")
        ids.add(pid)
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "xywh"):
            out.append(f"dashboard: panel {title!r} has no complete gridPos")
            continue
        if g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24:
            out.append(f"dashboard: panel {title!r} is outside the 24 columns")
        for other, og in boxes:
            if g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"] and g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]:
                out.append(f"dashboard: panels {other!r} and {title!r} overlap")
        boxes.append((title, g))
        if p.get("type") == "row":
            continue
        if p.get("datasource") != want_ds:
            out.append(f"dashboard: panel {title!r} does not use ${{datasource}}")
        if not p.get("targets"):
            out.append(f"dashboard: panel {title!r} has no query")
        refs = [t.get("refId") for t in p.get("targets") or []]
        if len(refs) != len(set(refs)):
            out.append(f"dashboard: panel {title!r} repeats a refId")
        for t in p.get("targets") or []:
            if t.get("datasource", want_ds) != want_ds:
                out.append(f"dashboard: panel {title!r} ({t.get('refId')}) does not use ${{datasource}}")
            expr = t.get("expr", "")
            for m in re.finditer(r"\b(rate|irate|increase)\s*\(.*?\[([^\]]+)\]", expr, re.S):
                if m.group(2) not in ("$__rate_interval", "$__range", "$__interval"):
                    out.append(f"dashboard: panel {title!r}: {m.group(1)}() over [{m.group(2)}], not $__rate_interval")
            for v in _VAR.finditer(expr):
                name = v.group(1) or v.group(2) or v.group(3)
                if name not in variables and name not in GRAFANA_BUILTINS:
                    out.append(f"dashboard: panel {title!r} uses undefined ${name}")
    return out

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VAR = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]")


def substitute(e: Expr) -> None:
    """Grafana's variables -> what a query would carry; a dashboard variable outside a quoted
    label value is a finding (its value would be spliced into the PromQL itself)."""

    def builtin(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        e.problems.append(f"dashboard variable ${name} outside a quoted label value")
        return m.group(0)

    def in_string(m: re.Match) -> str:
        def var(v: re.Match) -> str:
            name = v.group(1) or v.group(2) or v.group(3)
            return GRAFANA_BUILTINS.get(name, ".+")

        return _VAR.sub(var, m.group(0))

    pieces, last = [], 0
    for m in _STRING.finditer(e.text):
        pieces.append(_VAR.sub(builtin, e.text[last : m.start()]))
        pieces.append(in_string(m))
        last = m.end()
    pieces.append(_VAR.sub(builtin, e.text[last:]))
    e.promql = "".join(pieces)


# ----------------------------------------------------------------------------------- names


def without_strings(promql: str) -> str:
    return _STRING.sub('""', promql)


def metric_names(promql: str) -> set[str]:
    """The `orchestrator_*` names an expression reads (label names never start with it)."""
    return set(re.findall(r"(?<![A-Za-z0-9_:])(" + PREFIX + r"[A-Za-z0-9_:]*)", without_strings(promql)))


def counter_function_args(promql: str) -> list[tuple[str, str]]:
    """(function, metric name) for each rate/increase/irate/resets that reads a selector."""
    text = without_strings(promql)
    out = []
    for m in re.finditer(r"\b(" + "|".join(COUNTER_FUNCTIONS) + r")\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", text):
        out.append((m.group(1), m.group(2)))
    return out


def lint_counters(e: Expr, types: dict[str, str] | None = None) -> None:
    for fn, name in counter_function_args(e.promql):
        if not name.endswith(COUNTERISH_SUFFIXES):
            e.problems.append(f"{fn}() of {name}: not a counter (_total) nor a histogram part")
            continue
        if types is not None:
            family = exported_family(name, types)
            if family is not None and types[family] not in ("counter", "histogram", "summary", "gaugehistogram"):
                e.problems.append(f"{fn}() of {name}: its family {family} is a {types[family]}")


# ----------------------------------------------------------------------------------- /metrics


def parse_exposition(text: str) -> tuple[dict[str, str], set[str]]:
    """Families declared by `# TYPE` (name -> type) and the names of the samples present."""
    types: dict[str, str] = {}
    samples: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)", line)
        if m:
            samples.add(m.group(1))
    return types, samples


def family_series(name: str, kind: str) -> set[str]:
    """The sample names a family of that type exports (OpenMetrics or Prometheus text)."""
    if kind == "counter":
        base = name[: -len("_total")] if name.endswith("_total") else name
        return {base + "_total", base + "_created"}
    if kind == "histogram":
        return {name + "_bucket", name + "_sum", name + "_count", name + "_created"}
    if kind == "gaugehistogram":
        return {name + "_bucket", name + "_gsum", name + "_gcount"}
    if kind == "summary":
        return {name, name + "_sum", name + "_count", name + "_created"}
    if kind == "info":
        return {name + "_info", name}
    return {name}  # gauge, unknown, stateset, untyped


def exported_family(series: str, types: dict[str, str]) -> str | None:
    for fam, kind in types.items():
        if series in family_series(fam, kind):
            return fam
    return None


def exported_names(types: dict[str, str], samples: set[str]) -> set[str]:
    names = set(samples)
    for fam, kind in types.items():
        names |= family_series(fam, kind)
    return names


def missing_hint(name: str, types: dict[str, str]) -> str:
    for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
        if name.endswith(suffix) and name[: -len(suffix)] in types:
            base = name[: -len(suffix)]
            return f" ({base} is exported as a {types[base]})"
    if name in types:
        return f" (declared as a {types[name]}: read {sorted(family_series(name, types[name]))})"
    if name + "_total" in types or name in {f[: -len('_total')] for f in types if f.endswith('_total')}:
        return " (a counter: read it with the _total suffix)"
    return ""


# ----------------------------------------------------------------------------------- promtool


def find_promtool(explicit: str | None) -> str:
    p = explicit or shutil.which("promtool")
    if not p:
        raise SystemExit("check_promql: promtool not found (apt-get install prometheus, or --promtool)")
    return p


def promtool_parse(exprs: list[Expr], promtool: str) -> None:
    """One recording rule per expression; promtool names the failing one by its record name."""
    rules = [{"record": f"check_expr_{i:04d}", "expr": e.promql} for i, e in enumerate(exprs)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "exprs.rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "check_promql", "rules": rules}]}, sort_keys=False))
        r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    if r.returncode == 0:
        return
    output = r.stdout + r.stderr
    hit = False
    for line in output.splitlines():
        m = re.search(r'"check_expr_(\d{4})":\s*(.*)', line)
        if m:
            exprs[int(m.group(1))].problems.append("promtool: " + m.group(2).strip())
            hit = True
    if not hit:  # a failure we cannot pin on one expression
        exprs[0].problems.append("promtool check rules failed:\n" + output.strip())


def promtool_check_file(path: Path, promtool: str) -> list[str]:
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    return [] if r.returncode == 0 else [(r.stdout + r.stderr).strip()]


# ----------------------------------------------------------------------------------- main


@dataclass
class Report:
    exprs: list[Expr]
    file_problems: list[str]
    referenced: dict[str, list[str]]  # name -> origins
    missing: dict[str, str]  # name -> hint
    metrics_file: str | None
    allowed_absent: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.file_problems and not self.missing and not any(e.problems for e in self.exprs)

    def text(self) -> str:
        lines = []
        for p in self.file_problems:
            lines.append(p)
        for e in self.exprs:
            for p in e.problems:
                lines.append(f"{e.origin}: {p}")
        for name in self.allowed_absent:
            lines.append(f"not checked: {name} (absent from the scrape, allowed by --allow-absent)")
        for name, hint in sorted(self.missing.items()):
            readers = sorted(set(self.referenced[name]), key=lambda o: (not o.startswith("rules:"), o))
            where = "; ".join(readers[:3])
            more = len(readers) - 3
            lines.append(
                f"not exported: {name}{hint} (read by {where}{f' and {more} more' if more > 0 else ''})"
            )
        n_rules = sum(e.origin.startswith("rules:") for e in self.exprs)
        lines.append(
            f"{len(self.exprs)} expressions ({n_rules} from the rules and their annotations, "
            f"{len(self.exprs) - n_rules} from the dashboard), "
            f"{len(self.referenced)} orchestrator_* names"
            + (f", {len(self.missing)} not in {self.metrics_file}" if self.metrics_file else "")
            + (": OK" if self.ok else ": FAILED")
        )
        return "\n".join(lines)

    def as_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "expressions": len(self.exprs),
                "problems": [f"{e.origin}: {p}" for e in self.exprs for p in e.problems] + self.file_problems,
                "referenced": sorted(self.referenced),
                "missing": sorted(self.missing),
                "allowed_absent": self.allowed_absent,
            },
            indent=2,
        )


def check(
    rules_path: Path | None,
    dashboard_path: Path | None,
    metrics_text: str | None = None,
    metrics_file: str | None = None,
    promtool: str | None = None,
    allow_absent: tuple[str, ...] = (),
) -> Report:
    exprs: list[Expr] = []
    file_problems: list[str] = []
    tool = find_promtool(promtool)
    if rules_path:
        file_problems += promtool_check_file(rules_path, tool)
        exprs += rule_exprs(yaml.safe_load(rules_path.read_text()) or {})
    if dashboard_path:
        try:
            dash = json.loads(dashboard_path.read_text())
        except json.JSONDecodeError as err:
            raise SystemExit(f"check_promql: {dashboard_path}: not JSON: {err}")
        file_problems += dashboard_problems(dash)
        exprs += dashboard_exprs(dash)
    for e in exprs:
        if not e.text.strip():
            e.problems.append("empty expression")
        substitute(e)
    promtool_parse(exprs, tool)
    types = samples = None
    if metrics_text is not None:
        types, samples = parse_exposition(metrics_text)
    for e in exprs:
        lint_counters(e, types)
    referenced: dict[str, list[str]] = {}
    for e in exprs:
        for n in metric_names(e.promql):
            referenced.setdefault(n, []).append(e.origin)
    missing: dict[str, str] = {}
    allowed: list[str] = []
    if types is not None:
        have = exported_names(types, samples)
        for n in sorted(referenced):
            if n in have:
                continue
            if n in allow_absent:
                allowed.append(n)
            else:
                missing[n] = missing_hint(n, types)
    return Report(exprs, file_problems, referenced, missing, metrics_file, allowed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", type=Path, default=DEFAULT_RULES, help="alert rules (default: %(default)s)")
    ap.add_argument("--dashboard", type=Path, default=DEFAULT_DASHBOARD, help="Grafana dashboard JSON")
    ap.add_argument("--metrics", help="a scrape of /metrics (file path, or - for stdin)")
    ap.add_argument("--promtool", help="promtool binary (default: on PATH)")
    ap.add_argument("--allow-absent", action="append", default=[], metavar="NAME",
                    help="a name the scrape may lack (its event did not happen); repeatable")
    ap.add_argument("--list-names", action="store_true", help="print the orchestrator_* names read, one a line")
    ap.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    args = ap.parse_args(argv)
    metrics_text = None
    if args.metrics:
        metrics_text = sys.stdin.read() if args.metrics == "-" else Path(args.metrics).read_text()
    report = check(args.rules, args.dashboard, metrics_text, args.metrics, args.promtool, tuple(args.allow_absent))
    if args.list_names:
        print("\n".join(sorted(report.referenced)))
    elif args.json:
        print(report.as_json())
    else:
        print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
