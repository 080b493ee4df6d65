//! End to end, several rules per instance: the real binary (two replicas), the real SDK over
//! HTTP against the sandbox, short schedules whose slots all fall inside each other's start
//! windows (60 minutes), so the overlap rule folds them.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// A plan with a "daily" every 4 s (35 d) and a "weekly" every 8 s from second 2 (365 d), on
/// one instance, 60-minute windows: every daily slot leads a backup, which carries the weekly's
/// retention and name while weekly slots are left in its window; every weekly slot is folded
/// into one; nothing is skipped; two replicas agree on every name.
#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn overlapping_rules_make_one_backup_with_the_longest_retention_and_replicas_agree() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{}
[[plan]]
name = "gfs"
[[plan.rule]]
name = "daily"
schedule = "*/4 * * * * *"
delete_after_days = 35
[[plan.rule]]
name = "weekly"
schedule = "2/8 * * * * *"
delete_after_days = 365

[[backup]]
name = "db"
resource_arn = "{}"
plan = "gfs"
concurrency = "allow"
"#,
        header(&sb.endpoint_url()),
        ec2(1)
    );
    let cfg = write_config(dir.path(), &text);
    let check = std::process::Command::new(bin())
        .args(["next", "--config", cfg.to_str().unwrap(), "--count", "3"])
        .output()
        .unwrap();
    let next = String::from_utf8_lossy(&check.stdout);
    assert!(
        next.contains("merged into db-weekly-"),
        "`next` says which slots merge:\n{next}"
    );

    let mut a = Daemon::start(&cfg, &[]);
    let mut b = Daemon::start(&cfg, &[]);
    a.wait_for("four merged weekly slots", Duration::from_secs(40), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "slot_merged" && v["rule"] == "weekly")
            .count()
            >= 4
    });
    b.wait_for("four merged weekly slots", Duration::from_secs(20), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "slot_merged" && v["rule"] == "weekly")
            .count()
            >= 4
    });
    a.signal("TERM");
    b.signal("TERM");
    assert_eq!(a.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert_eq!(b.wait_exit(Duration::from_secs(15)).code(), Some(0));

    // What the overlap rule says each started slot is (its maths has its own unit tests and
    // proptests; here: the daemon does what it says, on both replicas).
    let config = backup_orchestrator::config::parse(&text, "t.toml").unwrap();
    let daily = &config.rules[0];
    let execs = sb.executions();
    assert!(execs.len() >= 4, "{} executions", execs.len());
    for e in &execs {
        let input: Value = serde_json::from_str(&e.input).unwrap();
        let slot = chrono::DateTime::parse_from_rfc3339(input["ScheduledFor"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(slot.timestamp() % 4, 0, "starts at a daily slot: {slot}");
        let decision = config.instances.decide(daily, slot);
        let (name, into, _) = decision.covering();
        assert_eq!(e.name, name, "the name every replica derives");
        assert_eq!(
            input["DeleteAfterDays"], into.settings.delete_after_days,
            "the winner's retention"
        );
    }
    let names: HashSet<&str> = execs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.len(), execs.len(), "no slot started twice");

    let first_slot = execs
        .iter()
        .map(|e| {
            let input: Value = serde_json::from_str(&e.input).unwrap();
            at(input["ScheduledFor"].as_str().unwrap())
        })
        .min()
        .unwrap();
    for d in [&a, &b] {
        let ev = d.events();
        assert!(
            !ev.iter().any(|v| v["event"] == "slot_skipped"),
            "no slot skipped: every one is started or merged"
        );
        // Each slot is merged once, into an execution that exists, under the weekly rule.
        let mut merged: HashMap<(String, String), usize> = HashMap::new();
        for v in ev.iter().filter(|v| v["event"] == "slot_merged") {
            let covering = v["covering_execution"].as_str().unwrap();
            assert_eq!(v["covering_rule"], "weekly", "{v}");
            assert_eq!(v["level"], "INFO");
            *merged
                .entry((v["rule"].to_string(), v["scheduled_for"].to_string()))
                .or_default() += 1;
            // Here the windows chain (slots every few seconds, 60-minute windows): a weekly
            // slot may be folded into a backup whose slot passed before the daemons started.
            let before_start = at(v["covering_slot"].as_str().unwrap()) < first_slot;
            assert!(
                names.contains(covering) || before_start,
                "covering execution {covering} exists"
            );
        }
        assert!(merged.values().all(|n| *n == 1), "{merged:?}");
        // The replicas derive the same names: each started execution is one of the sandbox's.
        for v in ev.iter().filter(|v| {
            v["event"] == "execution_started" || v["event"] == "execution_already_started"
        }) {
            let arn = v["execution_arn"].as_str().unwrap();
            assert!(
                names.iter().any(|n| arn.ends_with(&format!(":{n}"))),
                "{arn}"
            );
        }
    }
    // Step Functions answers a second start of a running execution (same name, same input)
    // with the same ARN: both replicas may log it, but no name makes a second execution.
    let arns: HashSet<String> = [&a, &b]
        .iter()
        .flat_map(|d| d.named("execution_started"))
        .map(|v| v["execution_arn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(arns.len(), execs.len(), "one execution per name");
}

/// Today's form: two `[[backup]]` blocks naming one instance keep their own execution names
/// (an upgrade must not start a slot twice), and the longer retention wins where they meet.
#[test]
fn todays_blocks_on_one_instance_keep_their_names_and_merge() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}[defaults]\nconcurrency = \"allow\"\n{}{}delete_after_days = 365\n",
        header(&sb.endpoint_url()),
        target("daily", 1, "*/3 * * * * *"),
        target("monthly", 1, "*/6 * * * * *"),
    );
    let cfg = write_config(dir.path(), &text);
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for("three executions", Duration::from_secs(30), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "execution_started")
            .count()
            >= 3
    });
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let config = backup_orchestrator::config::parse(&text, "t.toml").unwrap();
    for e in sb.executions() {
        let input: Value = serde_json::from_str(&e.input).unwrap();
        let target = input["Target"].as_str().unwrap();
        let slot = chrono::DateTime::parse_from_rfc3339(input["ScheduledFor"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            e.name,
            backup_orchestrator::execution::scheduled_name(target, slot),
            "today's names: {{target}}-{{slot}}"
        );
        let decision = config.instances.decide(&config.rules[0], slot);
        let (name, into, _) = decision.covering();
        assert_eq!(e.name, name);
        assert_eq!(input["DeleteAfterDays"], into.settings.delete_after_days);
    }
    // Every slot_merged line names the backup the overlap rule says (which one depends on the
    // time of the hour here: these windows chain, so groups restart every UTC hour).
    let merged = d.named("slot_merged");
    assert!(!merged.is_empty(), "monthly slots fold into backups");
    for v in merged {
        let t = config.first_rule_of(v["target"].as_str().unwrap()).unwrap();
        let slot = at(v["scheduled_for"].as_str().unwrap());
        let decision = config.instances.decide(t, slot);
        assert!(decision.is_merged(), "{v}");
        assert_eq!(v["covering_execution"], decision.covering().0, "{v}");
    }
}
