//! The operator's view, end to end with the real binary: `status` against the sandbox (verdicts,
//! `--json`, exit codes, the calls 1,000 targets cost), `next --from`, one `slot_skipped` line
//! per real stall (SIGSTOP/SIGCONT), and a demo that starts without a warning.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sandbox::{JobState, Sandbox};
use aws_sdk_backup::config::{BehaviorVersion, Credentials, Region};
use common::*;
use serde_json::Value;

fn write(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("backups.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A real SDK client for the sandbox, to make the jobs `status` then reads.
fn backup_client(sb: &Sandbox) -> aws_sdk_backup::Client {
    aws_sdk_backup::Client::from_conf(
        aws_sdk_backup::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(sb.endpoint_url())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build(),
    )
}

async fn start_job(client: &aws_sdk_backup::Client, resource: &str) -> String {
    client
        .start_backup_job()
        .backup_vault_name("orchestrator")
        .resource_arn(resource)
        .iam_role_arn("arn:aws:iam::123456789012:role/backup")
        .send()
        .await
        .expect("StartBackupJob")
        .backup_job_id()
        .unwrap()
        .to_string()
}

/// `orchestrator ARGS…` to its end, with test credentials and no instance metadata.
fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("ORCHESTRATOR_CONFIG_TOML")
        .env_remove("ORCHESTRATOR_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("orchestrator runs")
}

fn wait_until(what: &str, timeout: Duration, pred: impl Fn() -> bool) {
    let start = Instant::now();
    while !pred() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn status_reports_recent_old_failed_and_missing_backups_and_exits_by_coverage() {
    let rt = runtime();
    let sb = rt.block_on(sandbox_running(&[ec2(3)], Duration::from_millis(300)));
    let client = backup_client(&sb);
    let dir = tempfile::tempdir().unwrap();
    let mut text = header(&sb.endpoint_url());
    // recent: daily, just backed up. old: every 2 s, backed up 4 s ago (allowed 2 s + 1 s).
    // failed: daily, its only attempt FAILED. none: daily, never backed up.
    text.push_str(&target("recent", 1, "0 3 * * *"));
    text.push_str(&target("old", 2, "*/2 * * * * *"));
    text.push_str(&target("failed", 3, "0 3 * * *"));
    text.push_str(&target("none", 4, "0 3 * * *"));
    let cfg = write(dir.path(), &text);
    let old_job = rt.block_on(start_job(&client, &ec2(2)));
    let failed_job = rt.block_on(start_job(&client, &ec2(3)));
    // `old` is past its allowed age once its job is over 3 s old; `recent` is made after.
    std::thread::sleep(Duration::from_secs(4));
    let recent_job = rt.block_on(start_job(&client, &ec2(1)));
    wait_until("every job ended", Duration::from_secs(10), || {
        sb.jobs().iter().all(|j| j.state.is_terminal())
    });
    let cfg_s = cfg.to_str().unwrap();

    let out = run(&["status", "--config", cfg_s, "--margin", "1s"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{table}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "overdue targets exit 1");
    assert!(!table.contains('\x1b'), "no colour into a pipe: {table}");
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("TARGET"), "{table}");
    // Overdue first, in config order; the covered one after.
    let names: Vec<&str> = rows[1..5]
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["old", "failed", "none", "recent"], "{table}");
    for r in &rows[1..4] {
        assert!(r.contains("OVERDUE"), "{r}");
    }
    assert!(rows[1].contains(&old_job), "{table}");
    assert!(
        rows[2].contains("never") && rows[2].contains("FAILED"),
        "{table}"
    );
    assert!(
        rows[4].contains(" ok ") && rows[4].contains(&recent_job),
        "{table}"
    );
    assert!(rows[5].starts_with("3 of 4 target(s) overdue"), "{table}");

    let out = run(&["status", "--config", cfg_s, "--margin", "1s", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["overdue"], 3);
    assert_eq!(report["total"], 4);
    assert_eq!(report["margin_seconds"], 1);
    assert_eq!(report["lookback_days"], 30);
    // One region listing for the four (the plan prefers it: 4 calls by resource).
    assert_eq!(report["api_calls"], 1);
    let by_name = |n: &str| {
        report["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == n)
            .unwrap()
            .clone()
    };
    let recent = by_name("recent");
    assert_eq!(recent["verdict"], "covered");
    assert_eq!(recent["overdue"], false);
    assert_eq!(recent["resource_arn"], ec2(1));
    assert_eq!(recent["last_success"]["backup_job_id"], recent_job.as_str());
    assert_eq!(recent["last_success"]["state"], "COMPLETED");
    assert!(
        recent["last_success"]["recovery_point_arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:ec2:")
            || recent["last_success"]["recovery_point_arn"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:backup:"),
        "{recent}"
    );
    assert!(recent["last_success"]["age_seconds"].as_i64().unwrap() < 30);
    assert_eq!(recent["longest_gap_seconds"], 86_400);
    assert_eq!(recent["allowed_age_seconds"], 86_401);
    assert!(
        recent["next_slot"]
            .as_str()
            .unwrap()
            .ends_with("T03:00:00Z")
    );
    assert_eq!(recent["rules"][0]["schedule"], "0 3 * * *");
    assert_eq!(recent["rules"][0]["timezone"], "UTC");
    assert_eq!(recent["copies"], Value::Array(vec![]));
    let old = by_name("old");
    assert_eq!(old["verdict"], "overdue");
    assert_eq!(old["last_success"]["backup_job_id"], old_job.as_str());
    assert_eq!(old["allowed_age_seconds"], 3);
    let failed = by_name("failed");
    assert_eq!(failed["last_success"], Value::Null);
    assert_eq!(failed["last_attempt"]["state"], "FAILED");
    assert_eq!(failed["last_attempt"]["backup_job_id"], failed_job.as_str());
    let none = by_name("none");
    assert_eq!(none["last_success"], Value::Null);
    assert_eq!(none["last_attempt"], Value::Null);

    // All covered: exit 0.
    let mut only_recent = header(&sb.endpoint_url());
    only_recent.push_str(&target("recent", 1, "0 3 * * *"));
    let cfg2 = dir.path().join("recent.toml");
    std::fs::write(&cfg2, only_recent).unwrap();
    let out = run(&["status", "--config", cfg2.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A bad config: 78, with the error.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "state_machine_arn = 1\n").unwrap();
    let out = run(&["status", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config invalid"));

    // AWS unreachable (a closed port): 2, after retries, with the error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let mut unreachable = header(&format!("http://{closed}"));
    unreachable.push_str(&target("recent", 1, "0 3 * * *"));
    let cfg3 = dir.path().join("unreachable.toml");
    std::fs::write(&cfg3, unreachable).unwrap();
    let out = run(&["status", "--config", cfg3.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read AWS Backup jobs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.block_on(sb.shutdown());
}

#[test]
fn status_of_1000_targets_costs_two_listing_pages() {
    let rt = runtime();
    let sb = rt.block_on(sandbox_running(&[], Duration::from_millis(200)));
    let client = backup_client(&sb);
    let dir = tempfile::tempdir().unwrap();
    let mut text = header(&sb.endpoint_url());
    text.push_str("backup_read_rate = 5\n");
    for i in 0..1000 {
        text.push_str(&target(&format!("t{i}"), i + 1, "0 3 * * *"));
    }
    let cfg = write(dir.path(), &text);
    // A job for each target, and 500 of instances the config does not name: 1,500 jobs.
    rt.block_on(async {
        for i in 0..1500 {
            start_job(&client, &ec2(i + 1)).await;
        }
    });
    wait_until("every job ended", Duration::from_secs(20), || {
        sb.jobs().iter().all(|j| j.state == JobState::Completed)
    });
    sb.reset_stats();
    let out = run(&["status", "--config", cfg.to_str().unwrap(), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["total"], 1000);
    assert_eq!(report["overdue"], 0);
    // 1,500 jobs in the region: two pages of 1,000, not 1,000 calls by resource.
    let stats = sb.stats();
    assert_eq!(stats.requests, 2, "{stats:?}");
    assert_eq!(stats.by_operation.get("ListBackupJobs"), Some(&2));
    assert_eq!(report["api_calls"], 2);
    rt.block_on(sb.shutdown());
}

#[test]
fn next_from_a_local_time_and_one_target() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = header("http://127.0.0.1:9");
    text.push_str(&target("ny", 1, "30 2 * * *"));
    text.push_str("timezone = \"America/New_York\"\n");
    text.push_str(&target("berlin", 2, "0 * * * *"));
    text.push_str("timezone = \"Europe/Berlin\"\n");
    let cfg = write(dir.path(), &text);
    let cfg = cfg.to_str().unwrap();
    let out = run(&[
        "next",
        "--config",
        cfg,
        "--from",
        "2027-03-13",
        "--count",
        "2",
        "--target",
        "ny",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    // 02:30 does not exist on 2027-03-14 in New York: the 13th, then the 15th.
    assert_eq!(
        text,
        "ny (30 2 * * * in America/New_York)\n  2027-03-13T02:30:00-05:00  2027-03-13T07:30:00+00:00\n  2027-03-15T02:30:00-04:00  2027-03-15T06:30:00+00:00\n"
    );
    let out = run(&[
        "next",
        "--config",
        cfg,
        "--from",
        "2026-10-25T01:30",
        "--count",
        "3",
        "--target",
        "berlin",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "2026-10-25T02:00:00+02:00  2026-10-25T00:00:00+00:00\n  2026-10-25T03:00:00+01:00"
        ),
        "the repeated 02:00 fires once: {text}"
    );
    let out = run(&["next", "--config", cfg, "--target", "nobody"]);
    assert_eq!(out.status.code(), Some(78));
    let out = run(&["next", "--config", cfg, "--from", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

#[test]
fn a_real_stall_logs_one_slot_skipped_line_per_target() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &fleet(&sb.endpoint_url(), "s", 2, "* * * * * *"),
    );
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for("both targets started once", Duration::from_secs(20), |ev| {
        ["s0", "s1"].iter().all(|t| {
            ev.iter()
                .any(|v| v["event"] == "execution_started" && v["target"] == *t)
        })
    });
    // The stall itself: the process is frozen for 5 s (every 1 s slot of it is missed).
    d.signal("STOP");
    std::thread::sleep(Duration::from_secs(5));
    d.signal("CONT");
    let stalled = |ev: &[Value], t: &str| {
        ev.iter()
            .filter(|v| {
                v["event"] == "slot_skipped" && v["reason"] == "process_stalled" && v["target"] == t
            })
            .count()
    };
    // After the stall line, the next scheduled start shows the scheduler went on.
    d.wait_for(
        "the stall reported, then a later start",
        Duration::from_secs(20),
        |ev| {
            let Some(i) = ev.iter().position(|v| v["reason"] == "process_stalled") else {
                return false;
            };
            stalled(ev, "s0") >= 1
                && stalled(ev, "s1") >= 1
                && ev[i..].iter().any(|v| v["event"] == "execution_started")
        },
    );
    let events = d.events();
    for t in ["s0", "s1"] {
        let lines: Vec<&Value> = events
            .iter()
            .filter(|v| v["event"] == "slot_skipped" && v["target"] == t)
            .collect();
        assert_eq!(lines.len(), 1, "one line for the stall: {lines:?}");
        let count = lines[0]["count"].as_i64().unwrap();
        let first =
            chrono::DateTime::parse_from_rfc3339(lines[0]["first_slot"].as_str().unwrap()).unwrap();
        let last =
            chrono::DateTime::parse_from_rfc3339(lines[0]["last_slot"].as_str().unwrap()).unwrap();
        assert!(count >= 3, "a 5 s stall of a 1 s schedule: {}", lines[0]);
        assert_eq!((last - first).num_seconds(), count - 1, "{}", lines[0]);
    }
    d.signal("TERM");
    assert!(d.wait_exit(Duration::from_secs(15)).success());
    rt.block_on(sb.shutdown());
}

#[test]
fn the_demo_starts_without_a_warning() {
    // As a new user runs it: no AWS settings at all, instance metadata not disabled.
    let mut cmd = Command::new(bin());
    cmd.args(["demo", "--seconds", "10"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    let out = cmd.output().expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(!line.contains("WARN"), "a warning in the demo: {line}");
        assert!(
            !line.contains("IMDS"),
            "instance metadata in the demo: {line}"
        );
        assert!(
            !line.contains("was down"),
            "the demo never was down: {line}"
        );
    }
    assert!(
        stdout.contains("execution_started"),
        "the demo ran backups: {stdout}"
    );
    assert!(stdout.contains("first_start"), "{stdout}");
}
