//! End to end: the real `orchestrator` binary, the real AWS SDK clients, the local endpoint over
//! HTTP, real signals. Each test asserts what an operator would see in the JSON logs.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn backups_are_started_with_slot_names_and_followed_to_completed_and_failed() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[ec2(2)]));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}[defaults]\nconcurrency = \"allow\"\n{}{}",
            header(&sb.endpoint_url()),
            target("web-1", 1, "*/2 * * * * *"),
            target("db-1", 2, "*/2 * * * * *")
        ),
    );
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for(
        "a COMPLETED and a FAILED backup",
        Duration::from_secs(30),
        |ev| {
            finished(ev, "web-1")
                .iter()
                .any(|v| v["state"] == "COMPLETED")
                && finished(ev, "db-1").iter().any(|v| v["state"] == "FAILED")
        },
    );
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");

    let ev = d.events();
    let done = finished(&ev, "web-1")
        .into_iter()
        .find(|v| v["state"] == "COMPLETED")
        .unwrap();
    for field in [
        "target",
        "resource_arn",
        "scheduled_for",
        "execution_arn",
        "backup_job_id",
        "state",
    ] {
        assert!(
            done.get(field).is_some_and(|f| f != ""),
            "{field} missing in {done}"
        );
    }
    assert_eq!(done["resource_arn"], ec2(1));
    assert_eq!(done["success"], true);
    let failed = finished(&ev, "db-1")
        .into_iter()
        .find(|v| v["state"] == "FAILED")
        .unwrap();
    assert_eq!(failed["level"], "ERROR");
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );

    // Each state change is logged once per job.
    let mut seen = HashSet::new();
    for v in ev.iter().filter(|v| v["event"] == "backup_job_state") {
        let key = (v["backup_job_id"].to_string(), v["state"].to_string());
        assert!(seen.insert(key), "state logged twice: {v}");
    }

    // Executions carry the deterministic name and the input the state machine reads.
    let execs = sb.executions();
    assert!(!execs.is_empty());
    for e in &execs {
        let input: Value = serde_json::from_str(&e.input).unwrap();
        let target = input["Target"].as_str().unwrap();
        let slot = chrono::DateTime::parse_from_rfc3339(input["ScheduledFor"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            e.name,
            backup_orchestrator::execution::scheduled_name(target, slot),
            "name derives from (target, slot)"
        );
        assert_eq!(slot.timestamp() % 2, 0, "slots are on the schedule: {slot}");
        assert!(
            input["ResourceArn"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:ec2:")
        );
        assert!(
            input["Trigger"] == "schedule" || input["Trigger"] == "catch-up",
            "{input}"
        );
    }
    // Scheduled starts reach AWS at their slot, never before it.
    let mut on_time = 0;
    for st in sb.start_times() {
        let input: Value =
            serde_json::from_str(&execs.iter().find(|e| e.name == st.name).unwrap().input).unwrap();
        if input["Trigger"] != "schedule" {
            continue;
        }
        let slot = chrono::DateTime::parse_from_rfc3339(st.input_scheduled_for.as_deref().unwrap())
            .unwrap()
            .timestamp_millis();
        let delay = st.received_at_ms - slot;
        assert!(
            delay >= 0,
            "{} reached AWS {} ms before its slot",
            st.name,
            -delay
        );
        assert!(
            delay < 3000,
            "{} reached AWS {delay} ms after its slot",
            st.name
        );
        on_time += 1;
    }
    assert!(on_time >= 2);
    rt.block_on(sb.shutdown());
}

#[test]
fn sighup_adds_and_removes_targets_and_a_broken_reload_keeps_the_old_config() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let head = header(&sb.endpoint_url());
    let cfg = write_config(
        dir.path(),
        &format!("{head}{}", target("alpha", 1, "* * * * * *")),
    );
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for("alpha started", Duration::from_secs(15), |ev| {
        ev.iter()
            .any(|v| v["event"] == "execution_started" && v["target"] == "alpha")
    });

    // A broken file: every error logged with its line, and alpha keeps firing.
    std::fs::write(
        &cfg,
        format!(
            "{head}{}\nbogus_key = 1\n",
            target("alpha", 1, "61 * * * *")
        ),
    )
    .unwrap();
    d.signal("HUP");
    // One line per error: both of them.
    d.wait_for("reload rejected", Duration::from_secs(10), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "config_reload_failed")
            .count()
            >= 2
    });
    let rejected = d.named("config_reload_failed");
    assert!(
        rejected.iter().any(|v| v["field"] == "backup[0].schedule"),
        "{rejected:?}"
    );
    assert!(
        rejected
            .iter()
            .any(|v| v["field"] == "backup[0].bogus_key" && v["line"] == 12),
        "{rejected:?}"
    );
    let before = d.named("execution_started").len();
    d.wait_for(
        "alpha still firing after a bad reload",
        Duration::from_secs(10),
        |ev| {
            ev.iter()
                .filter(|v| v["event"] == "execution_started" && v["target"] == "alpha")
                .count()
                >= before + 2
        },
    );

    // Replace alpha by beta.
    std::fs::write(&cfg, format!("{head}{}", target("beta", 2, "* * * * * *"))).unwrap();
    d.signal("HUP");
    d.wait_for("reload applied", Duration::from_secs(10), |ev| {
        ev.iter().any(|v| v["event"] == "config_reloaded")
    });
    let reloaded = d.named("config_reloaded").remove(0);
    assert_eq!(reloaded["generation"], 2);
    let cut = d.events().len();
    d.wait_for("beta firing", Duration::from_secs(10), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "execution_started" && v["target"] == "beta")
            .count()
            >= 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    let after: Vec<Value> = d.events()[cut..].to_vec();
    let alpha_after = after
        .iter()
        .filter(|v| v["event"] == "execution_started" && v["target"] == "alpha")
        .count();
    // At most the one slot that was already firing as the reload landed.
    assert!(
        alpha_after <= 1,
        "alpha still fires after removal: {alpha_after}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
    rt.block_on(sb.shutdown());
}

#[test]
fn a_config_error_at_start_exits_78_with_every_error_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "state_machine_arn = \"{SM}\"\ntimezone = \"Nowhere/Land\"\n{}",
            target("x", 1, "cron(0 3 * * * *)")
        ),
    );
    let out = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backups.toml:2:12: timezone"), "{err}");
    assert!(err.contains("backup[0].schedule"), "{err}");

    let check = Command::new(bin())
        .arg("check")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(78));
}

#[test]
fn check_and_next_describe_a_valid_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/backups.example.toml");
    let out = Command::new(bin())
        .args(["check", "--config", example])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid") && text.contains("web-1"), "{text}");

    let out = Command::new(bin())
        .args(["next", "--config", example, "--count", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    // web-1 fires at 03:00 Berlin: 02:00Z in winter, 01:00Z in summer.
    let web: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("web-1"))
        .skip(1)
        .take(3)
        .collect();
    assert_eq!(web.len(), 3, "{text}");
    for l in web {
        assert!(l.contains("T03:00:00+0"), "local time shown: {l}");
        assert!(
            l.contains("T02:00:00+00:00") || l.contains("T01:00:00+00:00"),
            "UTC shown: {l}"
        );
    }
}

#[test]
fn every_file_in_config_parses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            backup_orchestrator::config::load(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 1);
}
