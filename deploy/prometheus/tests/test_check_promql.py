"""Tests of check_promql.py and rules_tool.py (and that the rule tests are not vacuous).

Run: python3 -m unittest discover -s deploy/prometheus/tests   (needs promtool on PATH)
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PROM = HERE.parent
sys.path.insert(0, str(PROM))

import check_promql as cp  # noqa: E402
import rules_tool  # noqa: E402

RULES = PROM / "alerts.yaml"
RULE_TESTS = PROM / "alerts_test.yaml"
DASHBOARD = PROM.parent / "grafana" / "orchestrator.json"
FULL = (PROM / "testdata" / "metrics-full.txt").read_text()
TODAY = (PROM / "testdata" / "metrics-today.txt").read_text()

# The names the rules and the dashboard read that today's daemon (main before issues 24-26's
# metric changes) does not export: plan §3. README's list is checked against this one.
TODAY_LACKS = {
    "orchestrator_backup_expected_interval_seconds",
    "orchestrator_execution_input_mismatches_total",
    "orchestrator_ready",
    "orchestrator_ha_lease_seconds",
    "orchestrator_restore_tests_total",
    "orchestrator_restore_duration_seconds_bucket",
    "orchestrator_last_restore_test_success_timestamp_seconds",
    "orchestrator_restore_test_expected_interval_seconds",
    "orchestrator_restore_max_duration_seconds",
    "orchestrator_last_restore_duration_seconds",
    "orchestrator_restored_resources_alive",
    "orchestrator_restored_resources_expired",
}


def without_family(text: str, family: str) -> str:
    """The exposition without one family (its HELP/TYPE lines and samples)."""
    keep = []
    for line in text.splitlines():
        name = line.split()[2] if line.startswith("# ") and len(line.split()) > 2 else re.split(r"[{ ]", line)[0]
        if name == family or (name.startswith(family + "_") and name[len(family) + 1 :] in ("total", "created", "bucket", "sum", "count")):
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def write(d: str, name: str, content) -> Path:
    p = Path(d) / name
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


class ShippedFiles(unittest.TestCase):
    def test_rules_and_dashboard_parse_and_the_full_fixture_exports_every_name(self):
        r = cp.check(RULES, DASHBOARD, FULL, "metrics-full.txt")
        self.assertTrue(r.ok, r.text())
        self.assertGreaterEqual(sum(e.origin.startswith("rules:") for e in r.exprs), 13)
        self.assertGreaterEqual(sum(e.origin.startswith("dashboard:") for e in r.exprs), 30)

    def test_every_alert_has_severity_summary_description_and_a_runbook_section(self):
        rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
        readme = (PROM / "README.md").read_text()
        anchors = {"#" + h.strip().lower().replace(" ", "-") for h in re.findall(r"^### (.+)$", readme, re.M)}
        tests = RULE_TESTS.read_text()
        for rule in rules:
            name = rule["alert"]
            with self.subTest(alert=name):
                self.assertIn(rule["labels"]["severity"], ("critical", "warning"))
                for key in ("summary", "description", "runbook_url"):
                    self.assertTrue(rule["annotations"].get(key), key)
                self.assertEqual(rule["annotations"]["runbook_url"], f"deploy/prometheus/README.md#{name.lower()}")
                self.assertIn("#" + name.lower(), anchors)
                self.assertIn(f"alertname: {name}\n", tests, "no unit test")

    def test_today_lacks_exactly_the_new_names_and_readme_lists_them(self):
        r = cp.check(RULES, DASHBOARD, TODAY, "metrics-today.txt")
        self.assertEqual(set(r.missing), TODAY_LACKS, r.text())
        readme = (PROM / "README.md").read_text()
        for name in TODAY_LACKS:
            self.assertIn(f"`{name}`", readme)

    def test_the_fixtures_pass_promtool_check_metrics_parsing(self):
        # promtool lints the Prometheus text format; the OpenMetrics `# EOF` and counters named
        # without _total are what the daemon's library writes, so only parse errors count here.
        for name, text in (("full", FULL), ("today", TODAY)):
            r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            self.assertNotIn("error while linting", r.stdout + r.stderr, name)


class Exposition(unittest.TestCase):
    def test_openmetrics_counter_histogram_gauge(self):
        types, samples = cp.parse_exposition(
            "# TYPE a counter\na_total 1\na_created 2\n"
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"
            "# TYPE g gauge\n# TYPE quiet counter\n# EOF\n"
        )
        names = cp.exported_names(types, samples)
        for n in ("a_total", "h_bucket", "h_sum", "h_count", "g", "quiet_total"):
            self.assertIn(n, names)
        self.assertNotIn("h", names)
        self.assertNotIn("a", names)

    def test_prometheus_text_counter_keeps_its_total(self):
        types, samples = cp.parse_exposition("# TYPE b_total counter\nb_total 3\n")
        self.assertIn("b_total", cp.exported_names(types, samples))

    def test_a_missing_family_is_reported_with_its_readers(self):
        text = without_family(FULL, "orchestrator_backup_expected_interval_seconds")
        r = cp.check(RULES, DASHBOARD, text, "x")
        self.assertFalse(r.ok)
        self.assertEqual(set(r.missing), {"orchestrator_backup_expected_interval_seconds"})
        self.assertIn("BackupOverdue", r.text())

    def test_a_counter_declared_without_samples_is_exported(self):
        text = re.sub(r"^orchestrator_execution_input_mismatches_total\{.*\n", "", FULL, flags=re.M)
        self.assertNotIn("orchestrator_execution_input_mismatches_total{", text)
        self.assertTrue(cp.check(RULES, DASHBOARD, text, "x").ok)

    def test_allow_absent_names_what_was_not_checked(self):
        text = without_family(FULL, "orchestrator_executions_failed")
        r = cp.check(RULES, DASHBOARD, text, "x", allow_absent=("orchestrator_executions_failed_total",))
        self.assertTrue(r.ok, r.text())
        self.assertIn("not checked: orchestrator_executions_failed_total", r.text())

    def test_a_histogram_read_without_its_suffix_is_named(self):
        with tempfile.TemporaryDirectory() as d:
            rules = write(d, "r.yaml", yaml.safe_dump(
                {"groups": [{"name": "g", "rules": [{"record": "r", "expr": "orchestrator_hook_downtime_seconds"}]}]}))
            r = cp.check(rules, None, FULL, "x")
        self.assertIn("orchestrator_hook_downtime_seconds", r.missing)
        self.assertIn("histogram", r.missing["orchestrator_hook_downtime_seconds"])


class Expressions(unittest.TestCase):
    def test_a_parse_error_is_pinned_on_its_rule(self):
        with tempfile.TemporaryDirectory() as d:
            rules = write(d, "r.yaml", yaml.safe_dump({"groups": [{"name": "g", "rules": [
                {"alert": "Fine", "expr": "orchestrator_ready == 0"},
                {"alert": "Broken", "expr": "rate(orchestrator_backups_finished_total[5m]"},
            ]}]}))
            r = cp.check(rules, None)
        self.assertFalse(r.ok)
        broken = [e for e in r.exprs if e.origin.endswith("Broken")][0]
        self.assertTrue(any("promtool" in p for p in broken.problems), r.text())
        fine = [e for e in r.exprs if e.origin.endswith("Fine")][0]
        self.assertEqual(fine.problems, [])

    def test_an_annotation_query_is_checked(self):
        with tempfile.TemporaryDirectory() as d:
            rules = write(d, "r.yaml", yaml.safe_dump({"groups": [{"name": "g", "rules": [
                {"alert": "A", "expr": "vector(1)", "annotations": {
                    "description": "{{ with printf `orchestrator_renamed{target=%q} ==` $labels.target | query }}x{{ end }}"}},
            ]}]}))
            r = cp.check(rules, None, FULL, "x")
        self.assertIn("orchestrator_renamed", r.missing)
        self.assertTrue(any(e.problems for e in r.exprs if "annotation" in e.origin), r.text())

    def test_rate_of_a_gauge_is_flagged(self):
        e = cp.Expr("t", "rate(orchestrator_ready[5m])")
        cp.substitute(e)
        cp.lint_counters(e)
        self.assertTrue(e.problems)
        types, _ = cp.parse_exposition("# TYPE orchestrator_jobs_in_flight_total gauge\n")
        e = cp.Expr("t", "rate(orchestrator_jobs_in_flight_total[5m])")
        cp.substitute(e)
        cp.lint_counters(e, types)
        self.assertIn("gauge", " ".join(e.problems))

    def test_grafana_variables_are_substituted_inside_strings_only(self):
        e = cp.Expr("t", 'sum(rate(x_total{job=~"$job", target=~"${target}"}[$__rate_interval]))')
        cp.substitute(e)
        self.assertEqual(e.promql, 'sum(rate(x_total{job=~".+", target=~".+"}[5m]))')
        self.assertEqual(e.problems, [])
        e = cp.Expr("t", "rate(x_total[$window])")
        cp.substitute(e)
        self.assertTrue(e.problems)


class Dashboard(unittest.TestCase):
    def setUp(self):
        self.dash = json.loads(DASHBOARD.read_text())

    def test_the_shipped_dashboard_has_no_finding(self):
        self.assertEqual(cp.dashboard_problems(self.dash), [])

    def test_findings(self):
        d = copy.deepcopy(self.dash)
        d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "datasource"]
        panels = [p for p in d["panels"] if p["type"] != "row"]
        panels[1]["gridPos"] = dict(panels[0]["gridPos"])
        panels[2]["datasource"] = {"type": "prometheus", "uid": "abc"}
        panels[3]["targets"][0]["expr"] = 'rate(orchestrator_aws_api_errors_total{job=~"$nope"}[5m])'
        problems = "\n".join(cp.dashboard_problems(d))
        self.assertIn("no `datasource` variable", problems)
        self.assertIn("overlap", problems)
        self.assertIn("does not use ${datasource}", problems)
        self.assertIn("not $__rate_interval", problems)
        self.assertIn("undefined $nope", problems)

    def test_it_reads_the_fleet_and_per_target_views_the_issue_asks_for(self):
        titles = " | ".join(p["title"] for p in cp._panels(self.dash["panels"]))
        for words in ("overdue", "in flight", "API errors", "Leader", "Last success age", "Backups by",
                      "Copies by", "fire delay", "Hook downtime", "Restore time"):
            self.assertIn(words.lower(), titles.lower())


class RulesTool(unittest.TestCase):
    def test_the_prometheusrule_agrees_with_alerts_yaml(self):
        self.assertEqual(rules_tool.check(), [])

    def test_drift_is_detected(self):
        rules = yaml.safe_load(RULES.read_text())
        with tempfile.TemporaryDirectory() as d:
            src = write(d, "alerts.yaml", RULES.read_text())
            out = write(d, "pr.yaml", rules_tool.render(rules))
            self.assertEqual(rules_tool.check(src, out), [])
            rules["groups"][0]["rules"][1]["expr"] = "vector(1)"
            out.write_text(rules_tool.render(rules))
            problems = rules_tool.check(src, out)
        self.assertTrue(problems)
        self.assertIn("BackupFailed", "\n".join(problems))

    def test_fast_changes_only_for(self):
        rules = yaml.safe_load(RULES.read_text())
        fast = rules_tool.fast(copy.deepcopy(rules), "5s")
        for a, b in zip(rules["groups"][0]["rules"], fast["groups"][0]["rules"]):
            self.assertEqual(b["for"], "5s")
            self.assertEqual({k: v for k, v in a.items() if k != "for"}, {k: v for k, v in b.items() if k != "for"})

    def test_fast_margins_replace_the_three_overdue_margins(self):
        rules = yaml.safe_load(RULES.read_text())
        fast = rules_tool.fast(copy.deepcopy(rules), "1s", margin=2)
        changed = {b["alert"] for a, b in zip(rules["groups"][0]["rules"], fast["groups"][0]["rules"])
                   if a["expr"] != b["expr"]}
        self.assertEqual(changed, {"BackupOverdue", "NoDrCopy", "RestoreTestOverdue"})
        for rule in fast["groups"][0]["rules"]:
            self.assertNotRegex(rule["expr"], r"\b(7200|21600)\b")
        with tempfile.TemporaryDirectory() as d:
            path = write(d, "fast.yaml", yaml.safe_dump(fast, sort_keys=False))
            r = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class RuleTestsBite(unittest.TestCase):
    """The unit tests fail when a rule loses what makes it exact (one test group each, to stay fast)."""

    def run_group(self, group: str, rules: dict) -> subprocess.CompletedProcess:
        tests = yaml.safe_load(RULE_TESTS.read_text())
        tests["tests"] = [g for g in tests["tests"] if g["name"] == group]
        self.assertEqual(len(tests["tests"]), 1, group)
        with tempfile.TemporaryDirectory() as d:
            write(d, "alerts.yaml", yaml.safe_dump(rules, sort_keys=False))
            t = write(d, "t.yaml", yaml.safe_dump(tests, sort_keys=False))
            return subprocess.run(["promtool", "test", "rules", str(t)], capture_output=True, text=True)

    def mutate(self, alert: str, old: str, new: str) -> dict:
        rules = yaml.safe_load(RULES.read_text())
        rule = [r for r in rules["groups"][0]["rules"] if r["alert"] == alert][0]
        self.assertIn(old, rule["expr"])
        rule["expr"] = rule["expr"].replace(old, new)
        return rules

    def test_unchanged_rules_pass(self):
        r = self.run_group("backup failures", yaml.safe_load(RULES.read_text()))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_readmes_old_fixed_26h_threshold_fails(self):
        rules = yaml.safe_load(RULES.read_text())
        rule = [r for r in rules["groups"][0]["rules"] if r["alert"] == "BackupOverdue"][0]
        rule["expr"] = "time() - max by (job, target) (orchestrator_last_success_timestamp_seconds) > 26 * 3600"
        self.assertNotEqual(self.run_group("overdue per target interval", rules).returncode, 0)

    def test_without_the_new_series_clause_the_first_failure_is_missed(self):
        rules = yaml.safe_load(RULES.read_text())
        rule = [r for r in rules["groups"][0]["rules"] if r["alert"] == "BackupFailed"][0]
        rule["expr"] = 'increase(orchestrator_backups_finished_total{state!="COMPLETED"}[1h]) > 0'
        r = self.run_group("backup failures", rules)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("fresh", r.stdout + r.stderr)

    def test_without_bridging_a_restart_resets_the_overdue_alert(self):
        rules = self.mutate(
            "BackupOverdue",
            "max_over_time(orchestrator_last_success_timestamp_seconds[10m])",
            "orchestrator_last_success_timestamp_seconds",
        )
        self.assertNotEqual(self.run_group("overdue across a restart", rules).returncode, 0)


if __name__ == "__main__":
    unittest.main()
