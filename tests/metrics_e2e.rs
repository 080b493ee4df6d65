//! The real daemon's `/metrics` against the alert rules and the dashboard, and the series the
//! rules judge a target by: scraped from the binary running against the sandbox, every wait for
//! state (the sandbox's records, the lease item, `/readyz`, a scrape), never for a log line.
//!
//! - every `orchestrator_*` name `deploy/prometheus/alerts.yaml` and the Grafana dashboard read
//!   is exported, with copies, hooks, a tag selection and `[ha]` all on
//!   (`deploy/prometheus/check_promql.py --metrics`): a renamed metric fails here;
//! - the last-success gauge is seeded from AWS Backup at start (the newest COMPLETED job's
//!   creation, what `status` reads) and is 0 for a target that never succeeded; a standby
//!   exports no per-target series; a replica that takes over after `kill -9` seeds again.

mod common;
mod monitoring;

use std::time::{Duration, Instant};

use aws_sandbox::{JobState, Sandbox, TaggedInstance};
use backup_orchestrator::lease::LEASE_NAME;
use common::*;
use monitoring::*;

const TABLE: &str = "orchestrator-lease";
const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:orchestrator-dr";

/// Waits until `state` holds, or panics after `timeout` naming `what`.
fn until(what: &str, timeout: Duration, state: impl Fn() -> bool) {
    let start = Instant::now();
    while !state() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon's `/metrics` (empty while it does not answer yet).
fn metrics(port: u16) -> String {
    get(port, "/metrics").map(|(_, b)| b).unwrap_or_default()
}

fn holder(sb: &Sandbox) -> Option<String> {
    sb.dynamodb_items(TABLE)
        .into_iter()
        .find(|i| i["pk"]["S"] == LEASE_NAME)
        .and_then(|i| i["owner"]["S"].as_str().map(str::to_string))
}

fn ha(owner: &str, lease_seconds: u64) -> String {
    format!(
        "\n[ha]\nlease_table = \"{TABLE}\"\nlease_duration = \"{lease_seconds}s\"\nrenew_interval = \"1s\"\nowner_id = \"{owner}\"\n"
    )
}

/// Every feature: a copied and hooked target, a failing one, a tag selection, `[ha]`.
fn every_feature(sb: &Sandbox, port: u16) -> String {
    let mut text = header(&sb.endpoint_url());
    text.push_str(&format!(
        "listen = \"127.0.0.1:{port}\"\nselection_refresh = \"5s\"\n[defaults]\nconcurrency = \"allow\"\n"
    ));
    text.push_str(&target("web-1", 1, "*/5 * * * * *"));
    text.push_str(&format!(
        "copy_to = [{{ vault_arn = \"{DR}\", delete_after_days = 90 }}]\n\
         pre_document = {{ name = \"orchestrator-systemd-unit\", parameters = {{ action = \"stop\", unit = \"app\" }} }}\n\
         post_document = {{ name = \"orchestrator-systemd-unit\", parameters = {{ action = \"start\", unit = \"app\" }} }}\n"
    ));
    text.push_str(&target("db-1", 2, "*/5 * * * * *"));
    text.push_str(&target("weekly", 3, "0 3 * * 1"));
    text.push_str(
        "\n[[backup]]\nname = \"fleet\"\nselect_tags = { backup = \"e2e\" }\nschedule = \"*/10 * * * * *\"\n",
    );
    text.push_str(&ha("a", 30));
    text
}

#[test]
fn every_metric_the_rules_and_the_dashboard_read_is_exported_with_every_feature_on() {
    let python = match deploy_python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: cannot run deploy/prometheus/check_promql.py: {why}");
            return;
        }
    };
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[ec2(2)]));
    sb.put_instances(vec![TaggedInstance {
        arn: ec2(9),
        tags: [("backup".to_string(), "e2e".to_string())].into(),
    }]);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(dir.path(), &every_feature(&sb, port)), &[]);
    until("the lease held", Duration::from_secs(20), || {
        holder(&sb).as_deref() == Some("a")
    });
    // A backup of each kind ended: web-1's completed (with its hooks), db-1's failed.
    until(
        "a completed and a failed backup",
        Duration::from_secs(40),
        || {
            let jobs = sb.jobs();
            let ended = |arn: &str, state| {
                jobs.iter()
                    .any(|j| j.resource_arn == arn && j.state == state)
            };
            ended(&ec2(1), JobState::Completed) && ended(&ec2(2), JobState::Failed)
        },
    );
    until(
        "the daemon saw web-1 succeed",
        Duration::from_secs(20),
        || {
            sample(
                &metrics(port),
                "orchestrator_last_success_timestamp_seconds{target=\"web-1\"}",
            )
            .is_some_and(|v| v > 0.0)
        },
    );
    let text = metrics(port);
    let (ok, report) = check_promql(&python, &text);
    eprintln!("check_promql.py --metrics on the daemon's scrape:\n{report}");
    if !ok {
        d.dump();
    }
    assert!(
        ok,
        "names the rules or the dashboard read are not exported:\n{report}\n{text}"
    );
    // What the rules rely on beyond the names.
    let v = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(v("orchestrator_ready"), 1.0);
    assert_eq!(v("orchestrator_ha_lease_seconds"), 30.0);
    assert_eq!(v("orchestrator_leader"), 1.0);
    assert_eq!(
        v("orchestrator_backup_expected_interval_seconds{target=\"web-1\"}"),
        5.0
    );
    assert_eq!(
        v("orchestrator_backup_expected_interval_seconds{target=\"weekly\"}"),
        7.0 * 86_400.0
    );
    assert_eq!(
        v("orchestrator_last_success_timestamp_seconds{target=\"weekly\"}"),
        0.0
    );
    assert_eq!(
        v("orchestrator_executions_failed_total{target=\"weekly\"}"),
        0.0
    );
    assert_eq!(
        v("orchestrator_backups_finished_total{target=\"weekly\",state=\"FAILED\"}"),
        0.0
    );
    assert!(v("orchestrator_backups_finished_total{target=\"db-1\",state=\"FAILED\"}") >= 1.0);
    assert!(text.contains(&format!(
        "orchestrator_last_copy_success_timestamp_seconds{{target=\"web-1\",destination=\"{DR}\"}}"
    )));
    let fleet = format!("fleet-{}", &ec2(9)[ec2(9).rfind('/').unwrap() + 1..]);
    assert!(
        text.contains(&format!(
            "orchestrator_last_success_timestamp_seconds{{target=\"{fleet}\"}}"
        )),
        "the selection's instance is covered:\n{text}"
    );
    rt.block_on(sb.shutdown());
}

/// `ok` every `ok_schedule`, `never` once a year, both with the lease on `port`.
fn seed_config(sb: &Sandbox, owner: &str, port: u16, ok_schedule: &str) -> String {
    let mut text = header(&sb.endpoint_url());
    text.push_str(&format!("listen = \"127.0.0.1:{port}\"\n"));
    text.push_str(&target("ok", 1, ok_schedule));
    text.push_str(&target("never", 2, "0 0 1 1 *"));
    text.push_str(&ha(owner, 4));
    text
}

/// The creation of `arn`'s newest COMPLETED job, in seconds, as the sandbox holds it.
fn newest_completed(sb: &Sandbox, arn: &str) -> Option<f64> {
    sb.jobs()
        .iter()
        .filter(|j| j.resource_arn == arn && j.state == JobState::Completed)
        .map(|j| j.creation_date.timestamp_millis() as f64 / 1000.0)
        .reduce(f64::max)
}

#[test]
fn last_successes_are_seeded_from_aws_backup_and_a_standby_exports_no_per_target_series() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    // First life: `ok` backs up every 2 s.
    let (pa, pb) = (free_port(), free_port());
    let mut first = Daemon::start(
        &write_config(dir.path(), &seed_config(&sb, "a", pa, "*/2 * * * * *")),
        &[],
    );
    until("a completed backup of ok", Duration::from_secs(30), || {
        newest_completed(&sb, &ec2(1)).is_some()
    });
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(20)).code(), Some(0));
    until("no job running", Duration::from_secs(20), || {
        sb.jobs().iter().all(|j| j.state.is_terminal())
    });
    let seeded = newest_completed(&sb, &ec2(1)).unwrap();

    // Second life, two replicas: `ok` now fires once a year, so only the seed can know its
    // last success.
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let yearly = "0 0 1 1 *";
    let a = Daemon::start_signed(
        &write_config(a_dir.path(), &seed_config(&sb, "a", pa, yearly)),
        &[],
        "KEY-a",
    );
    until("a holds the lease", Duration::from_secs(20), || {
        holder(&sb).as_deref() == Some("a")
    });
    let b = Daemon::start_signed(
        &write_config(b_dir.path(), &seed_config(&sb, "b", pb, yearly)),
        &[],
        "KEY-b",
    );
    until("b ready (standing by)", Duration::from_secs(20), || {
        get(pb, "/readyz").is_some_and(|(code, _)| code == 200)
    });
    let ok = "orchestrator_last_success_timestamp_seconds{target=\"ok\"}";
    let never = "orchestrator_last_success_timestamp_seconds{target=\"never\"}";
    until(
        "a seeded ok's last success",
        Duration::from_secs(20),
        || sample(&metrics(pa), ok).is_some_and(|v| (v - seeded).abs() < 0.002),
    );
    let text = metrics(pa);
    assert_eq!(sample(&text, never), Some(0.0), "{text}");
    let standby = metrics(pb);
    assert!(
        !standby.contains("target=\""),
        "a standby exports no per-target series:\n{standby}"
    );
    assert_eq!(sample(&standby, "orchestrator_leader"), Some(0.0));
    assert_eq!(sample(&standby, "orchestrator_ha_lease_seconds"), Some(4.0));
    assert_eq!(sample(&standby, "orchestrator_ready"), Some(1.0));

    // kill -9 of the leader: b takes over and seeds again.
    let mut a = a;
    a.child.kill().unwrap();
    let _ = a.child.wait();
    until("b holds the lease", Duration::from_secs(20), || {
        holder(&sb).as_deref() == Some("b")
    });
    until(
        "b seeded ok's last success",
        Duration::from_secs(20),
        || sample(&metrics(pb), ok).is_some_and(|v| (v - seeded).abs() < 0.002),
    );
    assert_eq!(sample(&metrics(pb), never), Some(0.0));
    let seeds = b.named("coverage_seeded");
    assert_eq!(seeds.len(), 1, "{seeds:?}");
    assert_eq!(seeds[0]["with_success"], 1);
    drop(b);
    rt.block_on(sb.shutdown());
}
