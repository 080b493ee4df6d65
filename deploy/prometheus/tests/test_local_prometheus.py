"""Runs README's "Running a local Prometheus against the daemon" snippet, as written, against a
stand-in /metrics (testdata/metrics-full.txt with fresh timestamps) and Debian's prometheus
binary: the alert of the never-succeeded target fires, the healthy target's does not, no rule
fails to evaluate. Loopback only; Prometheus is stopped by the snippet's own last block.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROM = HERE.parent
sys.path.insert(0, str(PROM))

import rules_tool  # noqa: E402
import yaml  # noqa: E402

HEADING = "## Running a local Prometheus against the daemon"


def snippet_blocks() -> list[str]:
    readme = (PROM / "README.md").read_text()
    section = readme.split(HEADING, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def fresh_metrics() -> bytes:
    """The full fixture, its non-zero last-success timestamps moved to a minute ago."""
    now = time.time() - 60
    out = []
    for line in (PROM / "testdata" / "metrics-full.txt").read_text().splitlines():
        m = re.match(r"(orchestrator_last_\w*success_timestamp_seconds\{.*\}) (\S+)$", line)
        if m and float(m.group(2)) != 0:
            line = f"{m.group(1)} {now:.3f}"
        out.append(line)
    return ("\n".join(out) + "\n").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802
        if self.path != "/metrics":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@unittest.skipUnless(shutil.which("prometheus") and shutil.which("curl"), "needs prometheus (Debian package) and curl")
class LocalPrometheus(unittest.TestCase):
    def test_readme_snippet_runs_and_shows_the_alerts(self):
        start, stop = snippet_blocks()
        Handler.body = fresh_metrics()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with tempfile.TemporaryDirectory() as d:
                rules = Path(d) / "fast.yaml"
                rules.write_text(yaml.safe_dump(rules_tool.fast(yaml.safe_load((PROM / "alerts.yaml").read_text()), "1s")))
                script = "\n".join([
                    "set -u",
                    start,
                    'trap \'kill "$PROM_PID" 2>/dev/null; rm -rf "$PROM_DIR"\' EXIT',
                    "echo READY",
                    "wait_firing BackupOverdue db-1 60 || echo TIMEOUT",
                    "sleep 3",  # a few more evaluations: what should stay silent stays silent
                    "echo ALERTS; alerts; echo RULE_ERRORS; rule_errors; echo SCRAPE; scrape_health",
                    stop,
                    'test ! -e "$PROM_DIR" && echo STOPPED',
                ])
                env = dict(os.environ, PORT=str(server.server_address[1]), RULES=str(rules))
                r = subprocess.run(["bash", "-c", script], cwd=PROM.parent.parent, env=env,
                                   capture_output=True, text=True, timeout=180)
        finally:
            server.shutdown()
            server.server_close()
        out = r.stdout
        self.assertEqual(r.returncode, 0, out + r.stderr)
        self.assertNotIn("TIMEOUT", out, out + r.stderr)
        alerts = out.split("ALERTS\n", 1)[1].split("RULE_ERRORS\n", 1)[0]
        rule_errors = out.split("RULE_ERRORS\n", 1)[1].split("SCRAPE\n", 1)[0]
        scrape = out.split("SCRAPE\n", 1)[1]
        self.assertRegex(alerts, r"(?m)^BackupOverdue firing db-1 1\.\d+e\+09$")
        self.assertNotRegex(alerts, r"(?m)^BackupOverdue \w+ web-1 ")
        self.assertNotIn("OrchestratorNotReady", alerts)
        self.assertEqual(rule_errors.strip(), "")
        self.assertRegex(scrape, r"/metrics up \n")
        self.assertIn("STOPPED", out)


if __name__ == "__main__":
    unittest.main()
