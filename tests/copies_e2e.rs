//! End to end, copies for disaster recovery (issues 12 and 24): the real binary, the real SDK over
//! HTTP against the sandbox. The backup execution ends at StartBackupJob; the daemon, which
//! follows the job, starts the copy execution `copy-{job id}` as soon as it sees the job
//! COMPLETED, and the modelled machine starts one StartCopyJob per `copy_to` destination (with
//! the daemon's token) at once: no polling in Step Functions.

mod common;

use std::time::Duration;

use aws_sandbox::{CopyRule, HookSettings, Sandbox, SandboxConfig};
use backup_orchestrator::copies::idempotency_token;
use chrono::{Timelike, Utc};
use common::*;
use serde_json::Value;

const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";
const DR2: &str = "arn:aws:backup:eu-west-1:210987654321:backup-vault:dr-x";

/// Quick jobs (0.5 s CREATED, 1.5 s RUNNING), a machine that polls the job every 0.5 s, copies
/// 0.3 s CREATED and 1 s RUNNING; `fail`: resources whose backups fail.
async fn copy_sandbox(fail: &[String]) -> Sandbox {
    Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            execution_delay: Duration::from_millis(100),
            job_pending: Duration::from_millis(500),
            job_running: Duration::from_millis(1500),
            fail_resources: fail.to_vec(),
            hooks: HookSettings {
                end_poll: Duration::from_millis(500),
                ..HookSettings::default()
            },
            copy_pending: Duration::from_millis(300),
            copy_running: Duration::from_secs(1),
            ..SandboxConfig::default()
        },
    )
    .await
    .expect("sandbox starts")
}

/// A config with one target `web` on instance 1, one slot 3 s from now (nothing else for a
/// day), the given `copy_to` lines, and metrics on `port`.
fn config(sb: &Sandbox, port: u16, copy_to: &str, resource: &str) -> String {
    let t = Utc::now() + chrono::Duration::seconds(3);
    format!(
        "{}listen = \"127.0.0.1:{port}\"\n\n[[backup]]\nname = \"web\"\nresource_arn = \"{resource}\"\n\
         schedule = \"{} {} {} * * *\"\ndelete_after_days = 7\ncopy_to = [\n{copy_to}]\n",
        header(&sb.endpoint_url()),
        t.second(),
        t.minute(),
        t.hour(),
    )
}

fn two_destinations() -> String {
    format!(
        "{{ vault_arn = \"{DR}\", delete_after_days = 90 }},\n\
         {{ vault_arn = \"{DR2}\", delete_after_days = 365 }},\n"
    )
}

fn copy_lines(d: &Daemon, event: &str) -> Vec<Value> {
    d.named(event)
}

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn a_backup_is_copied_to_two_destinations_with_stable_tokens_and_their_own_retention() {
    let rt = runtime();
    let sb = rt.block_on(copy_sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &config(&sb, port, &two_destinations(), &ec2(1)));
    let d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(10));
    d.wait_until("two copy jobs COMPLETED", Duration::from_secs(30), || {
        let c = sb.copy_jobs();
        c.len() == 2 && c.iter().all(|j| j.state == "COMPLETED")
    });
    d.wait_for("two copy_finished lines", Duration::from_secs(15), |_| {
        copy_lines(&d, "copy_finished").len() == 2
    });

    let executions = sb.executions();
    assert_eq!(executions.len(), 2, "the backup and its copy execution");
    let backup_job = &sb.jobs()[0];
    let backup_exec = executions
        .iter()
        .find(|e| e.backup_job_id.is_some())
        .unwrap();
    assert!(
        !backup_exec.input.contains("CopyTo"),
        "the backup's input carries no copies"
    );
    assert_eq!(
        sb.state_transitions(&backup_exec.arn),
        Some(2),
        "a plain backup: Validate, StartBackupJob"
    );
    let e = executions
        .iter()
        .find(|e| e.name == format!("copy-{}", backup_job.id))
        .unwrap_or_else(|| panic!("copy-{{job id}}: {executions:#?}"));
    let input: Value = serde_json::from_str(&e.input).unwrap();
    assert_eq!(input["Action"], "copy");
    assert_eq!(input["BackupJobId"], backup_job.id.as_str());
    // Started when the daemon saw the job COMPLETED (it polls every second here; at most
    // every 30 s with copies in production).
    let late = e.start_date - backup_job.completion_date.expect("completed");
    assert!(
        late < chrono::Duration::seconds(5),
        "copy execution {late} after the backup job completed"
    );
    let jobs = sb.copy_jobs();
    for (dest, days) in [(DR, 90), (DR2, 365)] {
        let job = jobs
            .iter()
            .find(|j| j.destination_backup_vault_arn == dest)
            .unwrap_or_else(|| panic!("a copy to {dest}: {jobs:#?}"));
        assert_eq!(job.delete_after_days, Some(days), "{dest}'s own retention");
        let token = idempotency_token(&e.name, dest);
        assert_eq!(job.idempotency_token.as_deref(), Some(token.as_str()));
        let sent = input["CopyTo"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["DestinationBackupVaultArn"] == dest)
            .unwrap();
        assert_eq!(sent["IdempotencyToken"], token.as_str());
        assert_eq!(
            job.source_recovery_point_arn,
            sb.jobs()[0].recovery_point_arn
        );

        let created: Vec<Value> = copy_lines(&d, "copy_job_created")
            .into_iter()
            .filter(|l| l["destination_vault"] == dest)
            .collect();
        assert_eq!(created.len(), 1, "{created:?}");
        assert_eq!(created[0]["copy_job_id"], job.id.as_str());
        assert_eq!(created[0]["target"], "web");
        assert_eq!(created[0]["rule"], "web");
        let fin: Vec<Value> = copy_lines(&d, "copy_finished")
            .into_iter()
            .filter(|l| l["destination_vault"] == dest)
            .collect();
        assert_eq!(fin.len(), 1);
        assert_eq!(fin[0]["state"], "COMPLETED");
        assert_eq!(fin[0]["copy_job_id"], job.id.as_str());
        assert_eq!(fin[0]["level"], "INFO");
        assert_eq!(
            fin[0]["destination_recovery_point_arn"],
            job.destination_recovery_point_arn.as_str()
        );
    }
    // The same copy execution name and destination always give the same token: a retried task
    // (or a second replica's duplicate) cannot copy twice.
    assert_eq!(
        idempotency_token(&e.name, DR),
        idempotency_token(&e.name, DR)
    );
    let backup = finished(&d.events(), "web");
    assert_eq!(backup.len(), 1);
    assert_eq!(backup[0]["state"], "COMPLETED");

    let (_, text) = scrape(port, "/metrics");
    for dest in [DR, DR2] {
        let labels = format!("{{target=\"web\",destination=\"{dest}\"");
        assert_eq!(
            metric(
                &text,
                &format!("orchestrator_copies_finished_total{labels},state=\"COMPLETED\"}}")
            ),
            1.0
        );
        assert!(
            metric(
                &text,
                &format!("orchestrator_last_copy_success_timestamp_seconds{labels}}}")
            ) > 0.0
        );
    }
}

#[test]
fn a_failing_copy_is_its_own_failure_and_the_backup_stays_completed() {
    let rt = runtime();
    let sb = rt.block_on(copy_sandbox(&[]));
    sb.set_copy_rules(vec![
        CopyRule {
            destination: DR.into(),
            fail: true,
            ..CopyRule::default()
        },
        CopyRule {
            destination: DR2.into(),
            refuse: true,
            ..CopyRule::default()
        },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &config(&sb, port, &two_destinations(), &ec2(1)));
    let d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(10));
    d.wait_until("the copy to DR FAILED", Duration::from_secs(30), || {
        sb.copy_jobs().iter().any(|j| j.state == "FAILED")
    });
    d.wait_for("two copy_finished lines", Duration::from_secs(15), |_| {
        copy_lines(&d, "copy_finished").len() == 2
    });
    let lines = copy_lines(&d, "copy_finished");
    let of = |dest: &str| {
        lines
            .iter()
            .find(|l| l["destination_vault"] == dest)
            .unwrap()
    };
    let failed = of(DR);
    assert_eq!(failed["state"], "FAILED");
    assert_eq!(failed["level"], "ERROR");
    assert!(
        failed["error"].as_str().unwrap().contains("fail copies"),
        "{failed}"
    );
    let refused = of(DR2);
    assert_eq!(refused["state"], "FAILED");
    assert_eq!(refused["copy_job_id"], "", "no copy job was made");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{refused}"
    );
    assert_eq!(sb.copy_jobs().len(), 1, "the refused destination has none");
    let backup = finished(&d.events(), "web");
    assert_eq!(backup.len(), 1);
    assert_eq!(
        (backup[0]["state"].as_str(), backup[0]["success"].as_bool()),
        (Some("COMPLETED"), Some(true))
    );
    let (_, text) = scrape(port, "/metrics");
    assert_eq!(
        metric(
            &text,
            "orchestrator_backups_finished_total{target=\"web\",state=\"COMPLETED\"}"
        ),
        1.0
    );
    for dest in [DR, DR2] {
        assert_eq!(
            metric(
                &text,
                &format!(
                    "orchestrator_copies_finished_total{{target=\"web\",destination=\"{dest}\",state=\"FAILED\"}}"
                )
            ),
            1.0
        );
    }
    // No copy completed: 0 (never), not missing (issue 25).
    for dest in [DR, DR2] {
        assert_eq!(
            metric(
                &text,
                &format!(
                    "orchestrator_last_copy_success_timestamp_seconds{{target=\"web\",destination=\"{dest}\"}}"
                )
            ),
            0.0
        );
    }
}

#[test]
fn a_failed_backup_starts_no_copy() {
    let rt = runtime();
    let sb = rt.block_on(copy_sandbox(&[ec2(2)]));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &config(&sb, free_port(), &two_destinations(), &ec2(2)),
    );
    let d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(10));
    d.wait_until("the backup job FAILED", Duration::from_secs(30), || {
        sb.jobs().iter().any(|j| j.state == "FAILED")
    });
    d.wait_for("backup_finished", Duration::from_secs(15), |ev| {
        !finished(ev, "web").is_empty()
    });
    assert_eq!(finished(&d.events(), "web")[0]["state"], "FAILED");
    // One more poll round of the daemon (max_poll_interval 1 s) after the backup's end.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sb.executions().len(), 1, "no copy execution");
    assert!(sb.copy_jobs().is_empty(), "{:?}", sb.copy_jobs());
    assert!(copy_lines(&d, "copy_job_created").is_empty());
    assert!(copy_lines(&d, "copy_finished").is_empty());
}

#[test]
fn kill_9_while_a_copy_runs_then_restart_logs_its_end_once() {
    let rt = runtime();
    let sb = rt.block_on(copy_sandbox(&[]));
    sb.set_copy_rules(vec![CopyRule {
        destination: DR.into(),
        running_ms: Some(6_000),
        ..CopyRule::default()
    }]);
    let dir = tempfile::tempdir().unwrap();
    let copy_to = format!("{{ vault_arn = \"{DR}\", delete_after_days = 90 }},\n");
    let cfg = write_config(dir.path(), &config(&sb, free_port(), &copy_to, &ec2(1)));
    let mut first = Daemon::start(&cfg, &[]);
    first.wait_ready(Duration::from_secs(10));
    first.wait_until("the copy job RUNNING", Duration::from_secs(30), || {
        sb.copy_jobs().iter().any(|j| j.state == "RUNNING")
    });
    first.wait_for("copy_job_created", Duration::from_secs(10), |_| {
        !copy_lines(&first, "copy_job_created").is_empty()
    });
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5));
    let id = sb.copy_jobs()[0].id.clone();
    assert_eq!(sb.copy_jobs()[0].state, "RUNNING", "killed while it runs");

    let second = Daemon::start(&cfg, &[]);
    second.wait_ready(Duration::from_secs(10));
    second.wait_until("the copy COMPLETED", Duration::from_secs(30), || {
        sb.copy_jobs()[0].state == "COMPLETED"
    });
    second.wait_for("copy_finished", Duration::from_secs(15), |_| {
        !copy_lines(&second, "copy_finished").is_empty()
    });
    // One more poll round: a second line would come now.
    std::thread::sleep(Duration::from_secs(2));
    let ends: Vec<Value> = copy_lines(&first, "copy_finished")
        .into_iter()
        .chain(copy_lines(&second, "copy_finished"))
        .filter(|l| l["copy_job_id"] == id.as_str())
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["state"], "COMPLETED");
    assert_eq!(ends[0]["target"], "web");
    assert_eq!(ends[0]["destination_vault"], DR);
    assert!(
        second
            .named("tracking_resumed")
            .iter()
            .any(|l| l["copy_job_id"] == id.as_str()),
        "recovery found the copy in flight"
    );
}

/// Kill -9 while the backup job runs, restart after it COMPLETED: the second run finds the job
/// whose copy execution was never started, starts it, and reports the backup's end; a third
/// start, after that, reports nothing again. Each backup's end is logged once across the runs,
/// and the copy's duration counts from the backup's end.
#[test]
fn kill_9_before_the_copies_start_then_restarts_log_the_backup_s_end_once() {
    let rt = runtime();
    let sb = rt
        .block_on(Sandbox::start(
            "127.0.0.1:0".parse().unwrap(),
            SandboxConfig {
                execution_delay: Duration::from_millis(100),
                job_pending: Duration::from_millis(500),
                job_running: Duration::from_secs(6),
                copy_pending: Duration::from_millis(300),
                copy_running: Duration::from_secs(1),
                ..SandboxConfig::default()
            },
        ))
        .expect("sandbox starts");
    let dir = tempfile::tempdir().unwrap();
    let copy_to = format!("{{ vault_arn = \"{DR}\", delete_after_days = 90 }},\n");
    let cfg = write_config(dir.path(), &config(&sb, free_port(), &copy_to, &ec2(1)));
    let mut first = Daemon::start(&cfg, &[]);
    first.wait_ready(Duration::from_secs(10));
    first.wait_until("the backup job RUNNING", Duration::from_secs(30), || {
        sb.jobs().iter().any(|j| j.state == "RUNNING")
    });
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5));
    let job = sb.jobs()[0].id.clone();
    first.wait_until("the backup job COMPLETED", Duration::from_secs(30), || {
        sb.jobs()[0].state == "COMPLETED"
    });
    assert_eq!(
        sb.executions().len(),
        1,
        "no copy execution while no daemon runs"
    );

    let mut second = Daemon::start(&cfg, &[]);
    second.wait_ready(Duration::from_secs(10));
    second.wait_until("the copy COMPLETED", Duration::from_secs(30), || {
        sb.copy_jobs().iter().any(|j| j.state == "COMPLETED")
    });
    second.wait_for("copy_finished", Duration::from_secs(15), |_| {
        !copy_lines(&second, "copy_finished").is_empty()
    });
    second.signal("TERM");
    second.wait_exit(Duration::from_secs(15));

    let third = Daemon::start(&cfg, &[]);
    third.wait_ready(Duration::from_secs(10));
    // Two poll rounds of the third run: a repeated line would come now.
    std::thread::sleep(Duration::from_secs(2));
    let ends: Vec<Value> = [&first, &second, &third]
        .iter()
        .flat_map(|d| finished(&d.events(), "web"))
        .filter(|l| l["backup_job_id"] == job.as_str())
        .collect();
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0]["state"], "COMPLETED");
    let copies: Vec<_> = sb
        .executions()
        .into_iter()
        .filter(|e| e.name.starts_with("copy-"))
        .collect();
    assert_eq!(copies.len(), 1, "one copy execution: {copies:#?}");
    assert_eq!(sb.copy_jobs().len(), 1);
    let copy_ends: Vec<Value> = [&first, &second, &third]
        .iter()
        .flat_map(|d| copy_lines(d, "copy_finished"))
        .collect();
    assert_eq!(copy_ends.len(), 1, "{copy_ends:#?}");
    // Counted from the backup's end, not from the copy job's creation: the copy waited for
    // the second start (some seconds) and then took 1.3 s.
    let took = copy_ends[0]["duration_seconds"].as_f64().unwrap();
    let completion = sb.jobs()[0].completion_date.unwrap();
    let copy = &sb.copy_jobs()[0];
    let expected = (copy.completion_date.unwrap() - completion).num_milliseconds() as f64 / 1000.0;
    assert!(
        (took - expected).abs() < 1.5,
        "copy_finished.duration_seconds {took} vs backup end to copy end {expected}"
    );
}
