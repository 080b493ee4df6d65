//! A real Prometheus (Debian's `prometheus`, on 127.0.0.1) loads `deploy/prometheus/alerts.yaml`
//! with short `for`s and margins (`rules_tool.py fast`), scrapes the real daemon running against
//! the sandbox, and its own `/api/v1/alerts` must show BackupFailed for the target whose backups
//! fail, BackupOverdue (and BackupNotStarted: its slots are skipped while its backup runs) for
//! the target that never completes one, and nothing for the healthy target, ever. Skipped, saying why, only where the package cannot be installed (or no Python
//! with PyYAML runs the rules tool). Every wait is for state: the sandbox's records, a scrape,
//! Prometheus's API.

mod common;
mod monitoring;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sandbox::{JobState, JobTiming};
use common::*;
use monitoring::*;
use serde_json::Value;

/// Seconds in place of the overdue margins (2 h, 6 h): well above the healthy target's 5 s
/// interval plus the time a backup takes to be seen completed.
const MARGIN: u64 = 30;

/// A Prometheus child process, killed when dropped.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` scraping 127.0.0.1:`target` every second with `rules`, as README's
    /// "Running a local Prometheus against the daemon" does; waits until it is ready.
    fn start(binary: &std::path::Path, rules: &std::path::Path, target: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: orchestrator\n    static_configs:\n      - targets: [\"127.0.0.1:{target}\"]\n",
                rules.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while get(port, "/-/ready").is_none_or(|(code, _)| code != 200) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus not ready"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn api(&self, path: &str) -> Value {
        get(self.port, path)
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// (alertname, state, target or "-", value) of every pending or firing alert.
    fn alerts(&self) -> Vec<(String, String, String, String)> {
        let v = self.api("/api/v1/alerts");
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
                (
                    s(&a["labels"]["alertname"]),
                    s(&a["state"]),
                    s(&a["labels"]["target"]),
                    s(&a["value"]),
                )
            })
            .collect()
    }

    /// Rules whose evaluation failed: (name, health, error).
    fn rule_errors(&self) -> Vec<String> {
        let v = self.api("/api/v1/rules?type=alert");
        v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{} {} {}", r["name"], r["health"], r["lastError"]))
            .collect()
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn a_real_prometheus_fires_backup_failed_and_backup_overdue_for_the_right_targets_only() {
    let prometheus = match prometheus() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: no real Prometheus: {why}");
            return;
        }
    };
    let python = match deploy_python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: cannot run deploy/prometheus/rules_tool.py: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts-fast.yaml");
    let made = Command::new(&python)
        .arg(root().join("deploy/prometheus/rules_tool.py"))
        .args(["fast", "--for", "2s", "--margin", &MARGIN.to_string()])
        .arg(&rules)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .unwrap();
    assert!(made.success(), "rules_tool.py fast");

    let rt = runtime();
    // `broken`'s backups end FAILED; `stale`'s run for ten minutes, so it never succeeds.
    let sb = rt.block_on(sandbox(&[ec2(2)]));
    sb.set_job_timings(vec![JobTiming {
        resource: ec2(3),
        created_ms: 500,
        running_ms: 600_000,
    }]);
    let port = free_port();
    let mut text = header(&sb.endpoint_url());
    text.push_str(&format!("listen = \"127.0.0.1:{port}\"\n"));
    text.push_str(&target("ok", 1, "*/5 * * * * *"));
    text.push_str(&target("broken", 2, "*/5 * * * * *"));
    text.push_str(&target("stale", 3, "*/10 * * * * *"));
    let d = Daemon::start(&write_config(dir.path(), &text), &[]);
    // Prometheus starts once `ok` has a success the daemon saw (before that, "never" is
    // overdue for it too, rightly) and `broken` has failed.
    let start = Instant::now();
    let ready = |state: &dyn Fn(&str) -> bool| {
        let m = get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
        state(&m)
    };
    while !ready(&|m| {
        sample(
            m,
            "orchestrator_last_success_timestamp_seconds{target=\"ok\"}",
        )
        .is_some_and(|v| v > 0.0)
            && sample(
                m,
                "orchestrator_backups_finished_total{target=\"broken\",state=\"FAILED\"}",
            )
            .is_some_and(|v| v >= 1.0)
    }) {
        if start.elapsed() > Duration::from_secs(40) {
            d.dump();
            panic!("ok never succeeded or broken never failed");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let p = Prometheus::start(&prometheus, &rules, port);

    // `stale` also skips its slots while its backup runs (`previous_backup_running`).
    let want = [
        ("BackupFailed", "broken"),
        ("BackupOverdue", "stale"),
        ("BackupNotStarted", "stale"),
    ];
    let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
    let start = Instant::now();
    let alerts = loop {
        let alerts = p.alerts();
        for (name, state, target, _) in &alerts {
            seen.insert((name.clone(), state.clone(), target.clone()));
        }
        let firing = |n: &str, t: &str| {
            alerts
                .iter()
                .any(|(name, state, target, _)| name == n && state == "firing" && target == t)
        };
        if want.iter().all(|(n, t)| firing(n, t)) {
            break alerts;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "alerts not firing in time; seen: {seen:?}; rule errors: {:?}",
            p.rule_errors()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Some more evaluations: the healthy target stays silent while `ok` keeps backing up.
    std::thread::sleep(Duration::from_secs(5));
    for (name, state, target, _) in p.alerts() {
        seen.insert((name, state, target));
    }
    eprintln!("Prometheus /api/v1/alerts (alertname state target value):");
    for (name, state, target, value) in &alerts {
        eprintln!("  {name} {state} {target} {value}");
    }
    eprintln!("every (alertname, state, target) seen: {seen:?}");
    assert!(
        !seen.iter().any(|(_, _, t)| t == "ok"),
        "an alert for the healthy target: {seen:?}"
    );
    assert!(
        seen.contains(&("BackupOverdue".into(), "firing".into(), "broken".into())),
        "broken never succeeded either: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|(n, _, t)| n == "BackupFailed" && t == "stale"),
        "stale's backups did not fail: {seen:?}"
    );
    let errors = p.rule_errors();
    assert!(
        errors.is_empty(),
        "rules that failed to evaluate: {errors:?}"
    );
    // The sandbox agrees: ok completed, broken failed, stale never completed.
    let jobs = sb.jobs();
    let any = |arn: &str, state| {
        jobs.iter()
            .any(|j| j.resource_arn == arn && j.state == state)
    };
    assert!(any(&ec2(1), JobState::Completed) && !any(&ec2(1), JobState::Failed));
    assert!(any(&ec2(2), JobState::Failed) && !any(&ec2(2), JobState::Completed));
    assert!(!any(&ec2(3), JobState::Completed));
    drop(p);
    drop(d);
    rt.block_on(sb.shutdown());
}
