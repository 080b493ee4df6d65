#!/usr/bin/env python3
"""alerts.yaml is the source; this derives the other forms of it.

    rules_tool.py prometheusrule [--check]   write (or check) prometheusrule.yaml, the same
                                             groups as a Prometheus Operator PrometheusRule
    rules_tool.py fast --for 5s [--margin 2] OUT
                                             a copy of alerts.yaml whose every `for` is 5s (and,
                                             with --margin, whose overdue margins of 2 h / 6 h
                                             are 2 s), for an end-to-end test against a real
                                             Prometheus that cannot wait 15 minutes or 2 hours;
                                             nothing else changes (`for` and the margins
                                             themselves are covered by alerts_test.yaml)

`--check` exits 1 when prometheusrule.yaml's groups differ from alerts.yaml's (someone edited
one and not the other), or the wrapper is not a PrometheusRule. Standard library + PyYAML.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "alerts.yaml"
TARGET = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from alerts.yaml by `python3 deploy/prometheus/rules_tool.py prometheusrule`: do not
# edit (deploy/validate.sh fails when the two differ). The same rule groups as a Prometheus
# Operator resource: `kubectl apply -n monitoring -f prometheusrule.yaml`. Your Prometheus
# resource's ruleSelector must match its labels (kube-prometheus-stack, for one, selects
# `release: <its release name>` by default: add that label with `kubectl label` or a kustomize
# patch rather than editing this file).
"""

METADATA = {
    "name": "orchestrator",
    "labels": {
        "app.kubernetes.io/name": "orchestrator",
        "app.kubernetes.io/component": "alert-rules",
    },
}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the expressions) as literal blocks, as alerts.yaml writes them."""


def _str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    if "\n" in s:
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", s)


_Dumper.add_representer(str, _str)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def prometheusrule(rules: dict) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": METADATA,
        "spec": {"groups": rules["groups"]},
    }


def render(rules: dict) -> str:
    return HEADER + yaml.dump(prometheusrule(rules), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def check(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    problems = []
    if not target.exists():
        return [f"{target} is missing: run rules_tool.py prometheusrule"]
    pr = load(target)
    if pr.get("apiVersion") != "monitoring.coreos.com/v1" or pr.get("kind") != "PrometheusRule":
        problems.append(f"{target}: not a monitoring.coreos.com/v1 PrometheusRule")
    if not (pr.get("metadata") or {}).get("name"):
        problems.append(f"{target}: metadata.name missing")
    want = load(source).get("groups")
    got = (pr.get("spec") or {}).get("groups")
    if got != want:
        problems.append(
            f"{target}: spec.groups differ from {source.name}'s groups: regenerate with "
            "`python3 deploy/prometheus/rules_tool.py prometheusrule`"
        )
        for g_want, g_got in zip(want or [], got or []):
            for r_want, r_got in zip(g_want.get("rules", []), g_got.get("rules", [])):
                if r_want != r_got:
                    problems.append(f"  first difference: rule {r_want.get('alert') or r_want.get('record')}")
                    return problems
    return problems


# The overdue rules' margins: `+ 7200` (backups, restore tests) and `+ 21600` (copies).
MARGINS = re.compile(r"\+ (7200|21600)\b")


def fast(rules: dict, duration: str, margin: int | None = None) -> dict:
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = duration
                if margin is not None:
                    rule["expr"] = MARGINS.sub(f"+ {margin}", rule["expr"])
    return rules


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prometheusrule", help="write or --check prometheusrule.yaml")
    p.add_argument("--check", action="store_true")
    f = sub.add_parser("fast", help="a copy of alerts.yaml with every `for` replaced")
    f.add_argument("--for", dest="duration", default="5s")
    f.add_argument("--margin", type=int, help="seconds in place of the overdue margins (2 h, 6 h)")
    f.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "prometheusrule":
        if args.check:
            problems = check()
            for line in problems:
                print(line)
            if not problems:
                print(f"{TARGET.name} agrees with {SOURCE.name}")
            return 1 if problems else 0
        TARGET.write_text(render(load(SOURCE)))
        print(f"wrote {TARGET}")
        return 0
    args.out.write_text(
        f"# alerts.yaml with every `for` set to {args.duration}"
        + (f" and margins of {args.margin} s" if args.margin is not None else "")
        + " (rules_tool.py fast): tests only\n"
        + yaml.dump(fast(load(SOURCE), args.duration, args.margin), Dumper=_Dumper, sort_keys=False, width=100,
                    allow_unicode=True)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
