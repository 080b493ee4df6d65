//! Restore tests end to end (issue 26): the real binary against the sandbox's model of the
//! restore machine. A scheduled test restores the target's latest recovery point, waits for the
//! instance's status checks, runs the validation document, reports, and deletes the instance;
//! failures (validation, restore, impaired instance) are each reported and cleaned up; two
//! replicas with the lease test each slot once; `kill -9` mid-test is followed to one end after a
//! restart; the sweeper deletes an instance whose termination failed once it has expired, also
//! after a reload dropped its test, and leaves one that has not expired; `orchestrator restore`
//! picks the recovery point of a chosen moment, and the same command twice restores once.
//!
//! The daemon's tests expire 40 minutes and more after their slot (`restore::expires_at`), so
//! the sweeper's expired leftovers are restore tests started here by hand with an expiry a few
//! seconds away; the daemon's own leftovers, beside them, must be left alone.
//!
//! Time runs fast: restore jobs wait 0.3 s PENDING and run 0.7 s, the machine polls the job and
//! the instance every 0.2 s (60 s and 15 s in the template), status checks pass 0.4 s after the
//! instance runs. Every wait is for state (the sandbox's records, or a log line); a short
//! window after an end is only left where the test asserts that nothing more comes.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_sandbox::{
    CommandRule, ExecutionRecord, ExecutionStatus, HookSettings, RestoreRule, RestoreSettings,
    Sandbox, SandboxConfig,
};
use backup_orchestrator::lease::LEASE_NAME;
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use common::*;
use serde_json::Value;

const RESTORE_SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orchestrator-restore";
const SUBNET: &str = "subnet-0123456789abcdef0";
const SG: &str = "sg-0123456789abcdef0";
const TABLE: &str = "orchestrator-lease";

/// Quick backups (0.3 s CREATED, 0.7 s RUNNING) and quick restores, with the restore machine
/// polling every 0.2 s.
async fn restore_sandbox() -> Sandbox {
    Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            execution_delay: Duration::from_millis(100),
            job_pending: Duration::from_millis(300),
            job_running: Duration::from_millis(700),
            hooks: HookSettings {
                command_duration: Duration::from_millis(200),
                ..HookSettings::default()
            },
            restore: RestoreSettings {
                job_pending: Duration::from_millis(300),
                job_running: Duration::from_millis(700),
                instance_pending: Duration::from_millis(200),
                status_checks: Duration::from_millis(400),
                shutting_down: Duration::from_millis(200),
                job_poll: Duration::from_millis(200),
                instance_poll: Duration::from_millis(200),
                accept_validation_results: true,
            },
            ..SandboxConfig::default()
        },
    )
    .await
    .expect("sandbox starts")
}

/// The config's top: the sandbox, fast polling, the restore machine, `extra` top-level keys.
fn head(sb: &Sandbox, extra: &str) -> String {
    format!(
        "{}restore_state_machine_arn = \"{RESTORE_SM}\"\n{extra}",
        header(&sb.endpoint_url())
    )
}

/// A daily 6-field schedule whose next slot is `secs` from now (the slot, whole seconds).
fn slot_in(secs: i64) -> (String, DateTime<Utc>) {
    let t = (Utc::now() + chrono::Duration::seconds(secs))
        .with_nanosecond(0)
        .unwrap();
    (
        format!("{} {} {} * * *", t.second(), t.minute(), t.hour()),
        t,
    )
}

/// A target backed up every 2 s, restored into the test subnet, its restore test on
/// `test_schedule` with `test_extra` keys (`max_restore_minutes = 5` unless given).
fn restore_target(name: &str, n: u32, test_schedule: &str, test_extra: &str) -> String {
    let max = if test_extra.contains("max_restore_minutes") {
        String::new()
    } else {
        "max_restore_minutes = 5, ".to_string()
    };
    format!(
        "{}restore = {{ subnet_id = \"{SUBNET}\", security_group_ids = [\"{SG}\"], instance_type = \"t3.micro\" }}\n\
         restore_test = {{ schedule = \"{test_schedule}\", keep_minutes = 0, {max}{test_extra} }}\n",
        target(name, n, "*/2 * * * * *")
    )
}

/// The validation document every test here runs unless it says otherwise.
fn validate(document: &str) -> String {
    format!("validate_document = {{ name = \"{document}\" }}")
}

/// `test-{target}-{slot}`, the scheduled test's execution name.
fn test_name(target: &str, slot: DateTime<Utc>) -> String {
    format!("test-{target}-{}", slot.format("%Y%m%dT%H%M%SZ"))
}

/// The executions of the restore machine.
fn restore_executions(sb: &Sandbox) -> Vec<ExecutionRecord> {
    sb.executions()
        .into_iter()
        .filter(|e| e.state_machine_arn == RESTORE_SM)
        .collect()
}

/// Log lines named `event` whose `key` is `value`, over several daemons' logs.
fn lines_of(daemons: &[&Daemon], event: &str, key: &str, value: &str) -> Vec<Value> {
    daemons
        .iter()
        .flat_map(|d| d.named(event))
        .filter(|l| l[key] == value)
        .collect()
}

fn restore_finished_of(d: &Daemon, target: &str) -> Vec<Value> {
    lines_of(&[d], "restore_finished", "target", target)
}

/// `orchestrator ARGS…` to its end, with test credentials and no instance metadata.
fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("ORCHESTRATOR_CONFIG_TOML")
        .env_remove("ORCHESTRATOR_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("orchestrator runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Every test execution, its restore job and its instance: one job per execution (the
/// execution name is the StartRestoreJob token), each instance terminated.
fn assert_each_test_restored_once_and_deleted(sb: &Sandbox) {
    let tests: Vec<_> = restore_executions(sb)
        .into_iter()
        .filter(|e| e.name.starts_with("test-"))
        .collect();
    let jobs = sb.restore_jobs();
    assert_eq!(
        jobs.len(),
        tests.len(),
        "one restore job per test: {jobs:#?}"
    );
    for e in &tests {
        let of: Vec<_> = jobs
            .iter()
            .filter(|j| j.idempotency_token.as_deref() == Some(e.name.as_str()))
            .collect();
        assert_eq!(of.len(), 1, "{}: {jobs:#?}", e.name);
    }
    let alive: Vec<_> = sb
        .restored_instances()
        .into_iter()
        .filter(|i| i.alive())
        .collect();
    assert!(
        alive.is_empty(),
        "every restored instance deleted: {alive:#?}"
    );
}

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn a_scheduled_restore_test_restores_checks_validates_reports_and_deletes() {
    let rt = runtime();
    let sb = rt.block_on(restore_sandbox());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (schedule, slot) = slot_in(8);
    let text = format!(
        "{}{}",
        head(&sb, &format!("listen = \"127.0.0.1:{port}\"\n")),
        restore_target("web", 1, &schedule, &validate("orchestrator-validate"))
    );
    let cfg = write_config(dir.path(), &text);
    let d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(10));
    d.wait_until("a backup COMPLETED", Duration::from_secs(20), || {
        sb.jobs().iter().any(|j| j.state == "COMPLETED")
    });
    d.wait_for("restore_finished", Duration::from_secs(40), |_| {
        !restore_finished_of(&d, "web").is_empty()
    });
    d.wait_until(
        "the restored instance terminated",
        Duration::from_secs(10),
        || sb.restored_instances().iter().all(|i| !i.alive()),
    );

    // One execution, named for the slot, with the target's restore settings.
    let name = test_name("web", slot);
    let execs = restore_executions(&sb);
    assert_eq!(execs.len(), 1, "{execs:#?}");
    let e = &execs[0];
    assert_eq!(e.name, name);
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:#?}");
    let input: Value = serde_json::from_str(&e.input).unwrap();
    assert_eq!(input["Action"], "test");
    assert_eq!(input["Target"], "web");
    assert_eq!(input["ResourceArn"], ec2(1).as_str());
    assert_eq!(input["InstanceType"], "t3.micro");
    assert_eq!(input["SubnetId"], SUBNET);
    assert_eq!(input["SecurityGroupIds"], serde_json::json!([SG]));
    assert_eq!(input["MaxRestoreSeconds"].as_f64(), Some(300.0));
    assert_eq!(input["ValidateDocument"]["Name"], "orchestrator-validate");
    let scheduled = DateTime::parse_from_rfc3339(input["ScheduledFor"].as_str().unwrap()).unwrap();
    assert_eq!(scheduled, slot);

    // The latest recovery point: at least as new as every one completed by the slot.
    let started = lines_of(&[&d], "restore_test_started", "execution_name", &name);
    assert_eq!(started.len(), 1, "{started:#?}");
    let rp = started[0]["recovery_point_arn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(input["RecoveryPointArn"], rp.as_str());
    assert_eq!(started[0]["target"], "web");
    assert_eq!(started[0]["execution_arn"], e.arn.as_str());
    assert!(started[0]["recovery_point_age_seconds"].as_f64().unwrap() >= 0.0);
    let points: Vec<_> = sb
        .recovery_points()
        .into_iter()
        .filter(|p| p.resource_arn == ec2(1))
        .collect();
    let chosen = points
        .iter()
        .find(|p| p.arn == rp)
        .unwrap_or_else(|| panic!("{rp} among {points:#?}"));
    let newest_by_slot = points
        .iter()
        .filter(|p| p.completion_date <= slot - chrono::Duration::milliseconds(500))
        .map(|p| p.creation_date)
        .max()
        .expect("a point completed before the slot");
    assert!(chosen.creation_date >= newest_by_slot, "{chosen:#?}");

    // The restore job: the allow-listed metadata, the execution name as token, the result.
    let jobs = sb.restore_jobs();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let job = &jobs[0];
    assert_eq!(job.status, "COMPLETED");
    assert_eq!(job.recovery_point_arn, rp);
    assert_eq!(job.idempotency_token.as_deref(), Some(name.as_str()));
    assert_eq!(job.metadata["InstanceType"], "t3.micro");
    assert_eq!(job.metadata["SubnetId"], SUBNET);
    assert_eq!(job.metadata["SecurityGroupIds"], format!("[\"{SG}\"]"));
    assert_eq!(job.validation_status.as_deref(), Some("SUCCESSFUL"));
    let created = lines_of(&[&d], "restore_job_created", "execution_arn", &e.arn);
    assert_eq!(created.len(), 1, "{created:#?}");
    assert_eq!(created[0]["restore_job_id"], job.id.as_str());
    assert_eq!(created[0]["target"], "web");

    // The instance: tagged with its test, validated, then deleted.
    let instances = sb.restored_instances();
    assert_eq!(instances.len(), 1, "{instances:#?}");
    let instance = &instances[0];
    assert_eq!(instance.state, "terminated");
    assert_eq!(instance.tags["orchestrator:restore-test"], name);
    assert_eq!(instance.tags["orchestrator:target"], "web");
    assert!(instance.tags.contains_key("orchestrator:restore-expires"));
    let validations: Vec<_> = sb
        .ssm_commands()
        .into_iter()
        .filter(|c| c.phase == "validate")
        .collect();
    assert_eq!(validations.len(), 1, "{validations:#?}");
    assert_eq!(validations[0].document_name, "orchestrator-validate");
    assert_eq!(validations[0].instance_id, instance.instance_id);

    // One line at the end, saying all of it.
    let fin = restore_finished_of(&d, "web");
    assert_eq!(fin.len(), 1, "{fin:#?}");
    let f = &fin[0];
    assert_eq!(f["execution_arn"], e.arn.as_str());
    assert_eq!(f["kind"], "test");
    assert_eq!(f["result"], "passed", "{f}");
    assert_eq!(f["recovery_point_arn"], rp.as_str());
    assert_eq!(f["restore_status"], "COMPLETED");
    assert_eq!(f["status_checks"], "passed");
    assert_eq!(f["validation_status"], "SUCCESSFUL");
    assert_eq!(f["cleanup_status"], "DELETED");
    assert_eq!(f["created_resource_arn"], instance.arn.as_str());
    assert_eq!(f["max_restore_seconds"].as_f64(), Some(300.0), "{f}");
    let took = f["restore_seconds"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&took), "restore_seconds {took}");
    for event in [
        "restore_test_started",
        "restore_job_created",
        "restore_finished",
    ] {
        let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
        for l in d.named(event) {
            let key = l["execution_arn"].as_str().unwrap_or_default().to_string();
            *per_name.entry(key).or_default() += 1;
        }
        assert!(per_name.values().all(|&n| n == 1), "{event}: {per_name:?}");
    }

    // Metrics, as the lines say.
    let (_, text) = scrape(port, "/metrics");
    assert_eq!(
        metric(
            &text,
            "orchestrator_restore_tests_total{target=\"web\",result=\"passed\"}"
        ),
        1.0
    );
    assert!(
        metric(
            &text,
            "orchestrator_last_restore_test_success_timestamp_seconds{target=\"web\"}"
        ) >= slot.timestamp() as f64
    );
    assert_eq!(
        metric(
            &text,
            "orchestrator_restore_max_duration_seconds{target=\"web\"}"
        ),
        300.0
    );

    // `status` reads the test back from AWS.
    let out = run(&["status", "--config", cfg.to_str().unwrap(), "--json"]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let status: Value = serde_json::from_str(&stdout(&out)).expect("status --json parses");
    let web = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "web")
        .unwrap();
    let r = &web["restore_test"];
    assert!(r["last_success"].is_string(), "{r}");
    let last = DateTime::parse_from_rfc3339(r["last_success"].as_str().unwrap()).unwrap();
    assert!(last >= slot, "{r}");
    assert!(r["last_restore_seconds"].as_f64().is_some(), "{r}");
    assert_eq!(r["max_restore_seconds"].as_f64(), Some(300.0), "{r}");
    assert_eq!(r["last_validation"], "SUCCESSFUL", "{r}");
    assert_eq!(r["overdue"], false, "{r}");
    assert_eq!(r["too_slow"], false, "{r}");
}

#[test]
#[allow(clippy::too_many_lines)] // three failures, each checked the same way
fn a_failed_validation_restore_or_instance_is_reported_and_its_instance_deleted() {
    let rt = runtime();
    let sb = rt.block_on(restore_sandbox());
    sb.set_command_rules(vec![CommandRule {
        document: Some("orchestrator-validate-fails".into()),
        phase: Some("validate".into()),
        status: Some("Failed".into()),
        ..CommandRule::default()
    }]);
    sb.set_restore_rules(vec![
        RestoreRule {
            resource: ec2(2),
            fail: true,
            leaves_instance: true,
            ..RestoreRule::default()
        },
        RestoreRule {
            resource: ec2(3),
            impaired: true,
            ..RestoreRule::default()
        },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (schedule, _) = slot_in(8);
    let text = format!(
        "{}{}{}{}",
        head(&sb, &format!("listen = \"127.0.0.1:{port}\"\n")),
        restore_target(
            "validation",
            1,
            &schedule,
            &validate("orchestrator-validate-fails")
        ),
        restore_target("restore", 2, &schedule, &validate("orchestrator-validate")),
        restore_target("impaired", 3, &schedule, &validate("orchestrator-validate")),
    );
    let cfg = write_config(dir.path(), &text);
    let d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(10));
    d.wait_for(
        "three restore_finished lines",
        Duration::from_secs(45),
        |_| d.named("restore_finished").len() >= 3,
    );
    d.wait_until(
        "every restored instance terminated",
        Duration::from_secs(10),
        || {
            let i = sb.restored_instances();
            i.len() == 3 && i.iter().all(|i| !i.alive())
        },
    );

    let one = |target: &str| {
        let fin = restore_finished_of(&d, target);
        assert_eq!(fin.len(), 1, "{target}: {fin:#?}");
        let f = fin[0].clone();
        assert_eq!(f["kind"], "test", "{f}");
        assert_eq!(f["result"], "failed", "{f}");
        assert_eq!(f["cleanup_status"], "DELETED", "{f}");
        let instance = sb
            .restored_instances()
            .into_iter()
            .find(|i| f["created_resource_arn"] == i.arn.as_str())
            .unwrap_or_else(|| panic!("{target}'s instance: {f}"));
        assert_eq!(instance.state, "terminated", "{target}");
        assert!(!f["error"].as_str().unwrap_or_default().is_empty(), "{f}");
        f
    };
    let v = one("validation");
    assert_eq!(v["validation_status"], "FAILED", "{v}");
    assert_eq!(v["restore_status"], "COMPLETED", "{v}");
    assert_eq!(v["status_checks"], "passed", "{v}");
    let r = one("restore");
    assert_eq!(r["restore_status"], "FAILED", "{r}");
    assert_ne!(r["validation_status"], "SUCCESSFUL", "{r}");
    let i = one("impaired");
    assert_eq!(i["status_checks"], "impaired", "{i}");
    assert_eq!(i["restore_status"], "COMPLETED", "{i}");
    assert_ne!(i["validation_status"], "SUCCESSFUL", "{i}");

    // The failed validation was put on its job; the others validated nothing.
    let jobs = sb.restore_jobs();
    assert_eq!(jobs.len(), 3, "{jobs:#?}");
    let job_of = |n: u32| {
        jobs.iter()
            .find(|j| j.source_resource_arn == ec2(n))
            .unwrap()
    };
    assert_eq!(job_of(1).validation_status.as_deref(), Some("FAILED"));
    assert_eq!(job_of(2).status, "FAILED");
    assert_eq!(job_of(3).validation_status, None);
    assert_each_test_restored_once_and_deleted(&sb);

    let (_, text) = scrape(port, "/metrics");
    for target in ["validation", "restore", "impaired"] {
        assert_eq!(
            metric(
                &text,
                &format!(
                    "orchestrator_restore_tests_total{{target=\"{target}\",result=\"failed\"}}"
                )
            ),
            1.0,
            "{target}"
        );
        assert_eq!(
            metric(
                &text,
                &format!(
                    "orchestrator_last_restore_test_success_timestamp_seconds{{target=\"{target}\"}}"
                )
            ),
            0.0,
            "{target} never passed"
        );
    }
}

/// `[ha]` for one replica: the lease table of the sandbox, 4 s, renewed every second.
fn ha(owner: &str) -> String {
    format!(
        "\n[ha]\nlease_table = \"{TABLE}\"\nlease_duration = \"4s\"\nrenew_interval = \"1s\"\nowner_id = \"{owner}\"\n"
    )
}

/// The owner of the lease item in the sandbox's table.
fn lease_holder(sb: &Sandbox) -> Option<String> {
    sb.dynamodb_items(TABLE)
        .into_iter()
        .find(|i| i["pk"]["S"] == LEASE_NAME)
        .and_then(|i| i["owner"]["S"].as_str().map(str::to_string))
}

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn two_replicas_test_each_slot_once() {
    let rt = runtime();
    let sb = rt.block_on(restore_sandbox());
    let text = |owner: &str| {
        format!(
            "{}{}{}",
            head(&sb, ""),
            restore_target(
                "web",
                1,
                "*/5 * * * * *",
                &validate("orchestrator-validate")
            ),
            ha(owner)
        )
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Daemon::start_signed(&write_config(da.path(), &text("a")), &[], "KEY-a");
    a.wait_until("a holds the lease", Duration::from_secs(20), || {
        lease_holder(&sb).as_deref() == Some("a")
    });
    let b = Daemon::start_signed(&write_config(db.path(), &text("b")), &[], "KEY-b");
    b.wait_for("b stands by", Duration::from_secs(20), |ev| {
        ev.iter().any(|v| v["event"] == "standby")
    });
    a.wait_for("two passed tests", Duration::from_secs(60), |_| {
        lines_of(&[&a, &b], "restore_finished", "result", "passed").len() >= 2
    });
    assert_eq!(lease_holder(&sb).as_deref(), Some("a"), "no hand-over");

    // Every slot tested once: one execution per (target, slot), started by the holder only.
    let tests: Vec<_> = restore_executions(&sb)
        .into_iter()
        .filter(|e| e.name.starts_with("test-"))
        .collect();
    assert!(tests.len() >= 2, "{tests:#?}");
    let mut per_slot: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &tests {
        let input: Value = serde_json::from_str(&e.input).unwrap();
        *per_slot
            .entry((
                input["Target"].as_str().unwrap().to_string(),
                input["ScheduledFor"].as_str().unwrap().to_string(),
            ))
            .or_default() += 1;
    }
    assert!(per_slot.values().all(|&n| n == 1), "{per_slot:#?}");
    let names: Vec<&str> = tests.iter().map(|e| e.name.as_str()).collect();
    let from_b: Vec<_> = sb
        .start_times()
        .into_iter()
        .filter(|s| s.access_key.as_deref() == Some("KEY-b"))
        .collect();
    assert!(
        from_b.is_empty(),
        "the standby started nothing: {from_b:#?}"
    );
    let b_calls = sb
        .stats()
        .by_access_key
        .get("KEY-b")
        .cloned()
        .unwrap_or_default();
    assert!(
        b_calls
            .keys()
            .all(|op| matches!(op.as_str(), "PutItem" | "GetItem" | "DeleteItem")),
        "the standby made only lease calls: {b_calls:?}"
    );
    for name in &names {
        let started = lines_of(&[&a, &b], "restore_test_started", "execution_name", name);
        assert_eq!(started.len(), 1, "{name}: {started:#?}");
        let arn = started[0]["execution_arn"].as_str().unwrap();
        let ended = lines_of(&[&a, &b], "restore_finished", "execution_arn", arn);
        assert!(ended.len() <= 1, "{name}: {ended:#?}");
    }
    for event in [
        "restore_test_started",
        "restore_job_created",
        "restore_finished",
    ] {
        assert!(b.named(event).is_empty(), "the standby logs no {event}");
    }
    assert!(sb.restore_jobs().len() <= tests.len());
}

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn kill_9_mid_test_then_restart_logs_its_end_once_and_deletes_the_instance() {
    let rt = runtime();
    let sb = rt.block_on(restore_sandbox());
    sb.set_restore_rules(vec![RestoreRule {
        resource: ec2(1),
        pending_ms: Some(500),
        running_ms: Some(6_000),
        ..RestoreRule::default()
    }]);
    let dir = tempfile::tempdir().unwrap();
    let (schedule, slot) = slot_in(8);
    let text = format!(
        "{}{}",
        head(&sb, ""),
        restore_target("web", 1, &schedule, &validate("orchestrator-validate"))
    );
    let cfg = write_config(dir.path(), &text);
    let mut first = Daemon::start(&cfg, &[]);
    first.wait_ready(Duration::from_secs(10));
    first.wait_until("the restore job RUNNING", Duration::from_secs(30), || {
        sb.restore_jobs().iter().any(|j| j.status == "RUNNING")
    });
    first.wait_for("restore_job_created", Duration::from_secs(10), |_| {
        !first.named("restore_job_created").is_empty()
    });
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5));
    assert_eq!(sb.restore_jobs()[0].status, "RUNNING", "killed mid-restore");

    let second = Daemon::start(&cfg, &[]);
    second.wait_ready(Duration::from_secs(10));
    second.wait_for("restore_finished", Duration::from_secs(40), |_| {
        !second.named("restore_finished").is_empty()
    });
    second.wait_until("the instance terminated", Duration::from_secs(10), || {
        let i = sb.restored_instances();
        i.len() == 1 && !i[0].alive()
    });
    // Two poll rounds of the second run (max_poll_interval 1 s): a repeated line would come now.
    std::thread::sleep(Duration::from_secs(2));

    let name = test_name("web", slot);
    let execs = restore_executions(&sb);
    assert_eq!(execs.len(), 1, "one test execution: {execs:#?}");
    assert_eq!(execs[0].name, name);
    assert_eq!(sb.restore_jobs().len(), 1, "one restore");
    let both = [&first, &second];
    let ends = lines_of(&both, "restore_finished", "execution_arn", &execs[0].arn);
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0]["result"], "passed", "{}", ends[0]);
    assert_eq!(ends[0]["cleanup_status"], "DELETED");
    let all_ends: usize = both.iter().map(|d| d.named("restore_finished").len()).sum();
    assert_eq!(all_ends, 1);
    let starts: usize = both
        .iter()
        .map(|d| d.named("restore_test_started").len())
        .sum();
    assert_eq!(starts, 1, "the test started once across both runs");
    let created = lines_of(&both, "restore_job_created", "execution_arn", &execs[0].arn);
    assert_eq!(
        created.len(),
        1,
        "its job's creation logged once: {created:#?}"
    );
}

/// Starts, as the daemon would, a restore test of instance `n` whose instance expires at
/// `expires` (the daemon's own expire 40 minutes and more after their slot, past what a test
/// here can wait for): its leftover is what the sweeper finds.
fn start_test_by_hand(
    rt: &tokio::runtime::Runtime,
    sb: &Sandbox,
    target: &str,
    n: u32,
    expires: DateTime<Utc>,
) -> String {
    let point = sb
        .recovery_points()
        .into_iter()
        .rfind(|p| p.resource_arn == ec2(n))
        .expect("a recovery point");
    let slot = (Utc::now() - chrono::Duration::hours(3))
        .with_nanosecond(0)
        .unwrap();
    let utc = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let input = serde_json::json!({
        "Action": "test", "Target": target, "ResourceArn": ec2(n),
        "RecoveryPointArn": point.arn, "InstanceType": "t3.micro", "SubnetId": SUBNET,
        "SecurityGroupIds": [SG], "ScheduledFor": utc(slot), "ExpiresAt": utc(expires),
        "MaxRestoreSeconds": 60, "KeepSeconds": 0,
    });
    let name = test_name(target, slot);
    rt.block_on(async {
        let sfn = aws_sdk_sfn::Client::new(&sdk_config(&sb.endpoint_url()).await);
        sfn.start_execution()
            .state_machine_arn(RESTORE_SM)
            .name(&name)
            .input(input.to_string())
            .send()
            .await
            .expect("StartExecution")
            .execution_arn()
            .to_string()
    })
}

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn the_sweeper_deletes_an_expired_leftover_also_after_its_test_left_the_config() {
    let rt = runtime();
    let sb = rt.block_on(restore_sandbox());
    // Each restored instance's first termination (its test's own) fails.
    sb.set_restore_rules(vec![RestoreRule {
        terminate_failures: 1,
        ..RestoreRule::default()
    }]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (schedule, slot) = slot_in(8);
    let top = format!(
        "listen = \"127.0.0.1:{port}\"\nrestore_sweep_interval = \"1s\"\nrestore_sweep_grace = \"1s\"\n"
    );
    let test = format!(
        "max_restore_minutes = 1, {}",
        validate("orchestrator-validate")
    );
    let text = format!(
        "{}{}{}",
        head(&sb, &top),
        restore_target("kept", 1, &schedule, &test),
        restore_target("dropped", 2, &schedule, &test),
    );
    let cfg = write_config(dir.path(), &text);
    let d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(10));
    d.wait_until("a backup of each instance", Duration::from_secs(20), || {
        let p = sb.recovery_points();
        [1, 2]
            .iter()
            .all(|&n| p.iter().any(|p| p.resource_arn == ec2(n)))
    });
    // Two leftovers that expire soon, one per target, tested by hand.
    let expires = slot + chrono::Duration::seconds(12);
    let by_hand = [
        start_test_by_hand(&rt, &sb, "kept", 1, expires),
        start_test_by_hand(&rt, &sb, "dropped", 2, expires),
    ];
    d.wait_for(
        "the daemon's two tests ended",
        Duration::from_secs(45),
        |_| d.named("restore_finished").len() >= 2,
    );
    for target in ["kept", "dropped"] {
        let fin = restore_finished_of(&d, target);
        assert_eq!(fin.len(), 1, "{fin:#?}");
        assert_eq!(fin[0]["cleanup_status"], "FAILED", "{}", fin[0]);
    }
    d.wait_until("the tests by hand ended", Duration::from_secs(20), || {
        restore_executions(&sb)
            .iter()
            .filter(|e| by_hand.contains(&e.arn))
            .all(|e| e.status != ExecutionStatus::Running)
    });
    let instances = sb.restored_instances();
    assert_eq!(instances.len(), 4, "{instances:#?}");
    assert!(instances.iter().all(|i| i.alive()), "{instances:#?}");
    let (leftovers, own): (Vec<_>, Vec<_>) = instances.into_iter().partition(|i| {
        i.tags["orchestrator:restore-expires"] == expires.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    });
    assert_eq!(leftovers.len(), 2, "{leftovers:#?}");

    // The config drops `dropped`'s test before its leftover expires.
    let text = format!(
        "{}{}{}restore = {{ subnet_id = \"{SUBNET}\", security_group_ids = [\"{SG}\"], instance_type = \"t3.micro\" }}\n",
        head(&sb, &top),
        restore_target("kept", 1, &schedule, &test),
        target("dropped", 2, "*/2 * * * * *"),
    );
    std::fs::write(&cfg, text).unwrap();
    d.signal("HUP");
    d.wait_for("config_reloaded", Duration::from_secs(10), |ev| {
        ev.iter().any(|v| v["event"] == "config_reloaded")
    });
    assert!(Utc::now() < expires, "reloaded before the expiry");

    d.wait_until("both leftovers terminated", Duration::from_secs(40), || {
        sb.restored_instances()
            .iter()
            .filter(|i| leftovers.iter().any(|l| l.arn == i.arn))
            .all(|i| !i.alive())
    });
    d.wait_for("two restore_swept lines", Duration::from_secs(10), |_| {
        d.named("restore_swept").len() >= 2
    });
    let sweeps: Vec<_> = restore_executions(&sb)
        .into_iter()
        .filter(|e| e.name.starts_with("sweep-"))
        .collect();
    let mut names = Vec::new();
    for i in &leftovers {
        let swept = lines_of(&[&d], "restore_swept", "resource_arn", &i.arn);
        assert_eq!(swept.len(), 1, "{swept:#?}");
        assert_eq!(swept[0]["cleanup_status"], "DELETED", "{}", swept[0]);
        let started = lines_of(&[&d], "restore_sweep_started", "resource_arn", &i.arn);
        assert_eq!(started.len(), 1, "{started:#?}");
        let mine: Vec<_> = sweeps
            .iter()
            .filter(|e| e.name.starts_with(&format!("sweep-{}-", i.instance_id)))
            .collect();
        assert_eq!(mine.len(), 1, "one sweep of {}: {sweeps:#?}", i.arn);
        assert_eq!(started[0]["execution_arn"], mine[0].arn.as_str());
        assert_eq!(mine[0].status, ExecutionStatus::Succeeded, "{:#?}", mine[0]);
        // Not before its expiry plus the grace.
        assert!(
            mine[0].start_date >= expires + chrono::Duration::seconds(1),
            "{} swept at {}, expired {expires}",
            i.arn,
            mine[0].start_date
        );
        names.push((mine[0].name.clone(), i.instance_id.clone()));
    }
    assert_eq!(sweeps.len(), 2, "one sweep per leftover: {sweeps:#?}");
    // The daemon's own leftovers have not expired: left alone, and counted alive.
    for i in &own {
        assert!(
            sb.restored_instances()
                .iter()
                .any(|now| now.arn == i.arn && now.alive()),
            "{} is kept until its expiry",
            i.arn
        );
    }
    d.wait_until(
        "the sweeper counts the two unexpired instances",
        Duration::from_secs(10),
        || {
            let (_, text) = scrape(port, "/metrics");
            metric(&text, "orchestrator_restored_resources_alive") == 2.0
                && metric(&text, "orchestrator_restored_resources_expired") == 0.0
        },
    );
    // The sweep's name is the instance and its expiry (restore-spec.md): one name per leftover,
    // so a second look cannot start a second sweep of it.
    for (name, id) in names {
        assert_eq!(
            name,
            format!("sweep-{id}-{}", expires.format("%Y%m%dT%H%M%SZ")),
            "the sweep is named for the instance's expiry"
        );
    }
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

/// Waits until the job `id` has COMPLETED; returns its creation time and recovery point.
fn completed(sb: &Sandbox, id: &str) -> (DateTime<Utc>, String) {
    let start = std::time::Instant::now();
    loop {
        if let Some(j) = sb.jobs().into_iter().find(|j| j.id == id)
            && j.state == "COMPLETED"
        {
            return (j.creation_date, j.recovery_point_arn);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "job {id} COMPLETED"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the wall clock has passed `t` (less than a second here).
fn wait_past(t: DateTime<Utc>) {
    while Utc::now() <= t {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stdout as one JSON document.
fn json_out(out: &Output) -> Value {
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| {
        panic!(
            "--json prints JSON ({e}): {}\nstderr: {}",
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn restore_picks_the_point_of_the_chosen_moment_and_the_same_command_restores_once() {
    let rt = runtime();
    let sb = rt.block_on(restore_sandbox());
    // A real SDK client for the sandbox, to make the backups `restore` then picks from.
    let client = aws_sdk_backup::Client::new(&rt.block_on(sdk_config(&sb.endpoint_url())));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}{}restore = {{ subnet_id = \"{SUBNET}\", security_group_ids = [\"{SG}\"], instance_type = \"t3.micro\" }}\n",
        head(&sb, ""),
        target("web", 1, "0 3 * * *"),
    );
    let cfg = write_config(dir.path(), &text);
    let cfg_s = cfg.to_str().unwrap();
    let before = Utc::now() - chrono::Duration::seconds(5);
    let older = rt.block_on(start_job(&client, &ec2(1)));
    let (older_created, older_rp) = completed(&sb, &older);
    // A whole second after the older backup completed; the newer one begins after it.
    let at = (Utc::now() + chrono::Duration::seconds(1))
        .with_nanosecond(0)
        .unwrap();
    wait_past(at);
    let newer = rt.block_on(start_job(&client, &ec2(1)));
    let (newer_created, newer_rp) = completed(&sb, &newer);
    assert!(older_created <= at && at < newer_created);
    let at_s = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "--config", cfg_s, "web", "--at", at_s.as_str()];
        args.extend_from_slice(extra);
        let out = run(&args);
        eprintln!(
            "restore {extra:?}: {}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    let dry = restore(&["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0));
    let text_out = stdout(&dry);
    assert!(text_out.contains(&older_rp), "{text_out}");
    assert!(!text_out.contains(&newer_rp), "{text_out}");
    let dry_json = json_out(&restore(&["--dry-run", "--json"]));
    let dry_s = dry_json.to_string();
    assert!(dry_s.contains(&older_rp), "{dry_s}");
    assert!(!dry_s.contains(&newer_rp), "{dry_s}");
    assert!(
        restore_executions(&sb).is_empty(),
        "a dry run restores nothing"
    );

    let first = restore(&["--yes", "--json"]);
    assert_eq!(first.status.code(), Some(0));
    let first_json = json_out(&first);
    let second = restore(&["--yes", "--json"]);
    assert_eq!(second.status.code(), Some(0));
    let second_json = json_out(&second);

    let jobs = sb.restore_jobs();
    assert_eq!(jobs.len(), 1, "the same command restores once: {jobs:#?}");
    assert_eq!(jobs[0].recovery_point_arn, older_rp);
    assert_eq!(jobs[0].status, "COMPLETED");
    for j in [&first_json, &second_json] {
        assert!(j.to_string().contains(&jobs[0].id), "{j}");
    }
    let execs = restore_executions(&sb);
    assert_eq!(execs.len(), 1, "{execs:#?}");
    assert!(
        execs[0].name.starts_with("restore-web-"),
        "{}",
        execs[0].name
    );
    let input: Value = serde_json::from_str(&execs[0].input).unwrap();
    assert_eq!(input["Action"], "restore");
    assert_eq!(input["RecoveryPointArn"], older_rp.as_str());
    assert_eq!(input["InstanceType"], "t3.micro");
    assert_eq!(input["SubnetId"], SUBNET);
    // An on-demand restore keeps its instance, tagged as such.
    let instances = sb.restored_instances();
    assert_eq!(instances.len(), 1);
    assert!(instances[0].alive());
    assert_eq!(instances[0].tags["orchestrator:restore"], execs[0].name);
    assert!(!instances[0].tags.contains_key("orchestrator:restore-test"));

    // Nothing to restore at a moment before every backup: exit 2, nothing started.
    let none = run(&[
        "restore",
        "--config",
        cfg_s,
        "web",
        "--at",
        &before.to_rfc3339_opts(SecondsFormat::Secs, true),
        "--dry-run",
    ]);
    assert_eq!(
        none.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    assert_eq!(restore_executions(&sb).len(), 1);
}
