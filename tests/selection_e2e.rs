//! End to end, tag selections: the real binary, the real SDK over HTTP against the sandbox's
//! GetResources, instances tagged and untagged while it runs, a 1 s `selection_refresh` and a
//! slot every 2 s. Tests wait for the sandbox's record (executions) or the daemon's readiness,
//! and for `selection_changed` only as the mark of a change the test itself made.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sandbox::{Sandbox, TaggedInstance};
use chrono::{DateTime, Utc};
use common::*;
use serde_json::Value;

const EVERY_2S: &str = "*/2 * * * * *";

fn id(n: u32) -> String {
    format!("i-{n:017x}")
}

fn name(n: u32) -> String {
    format!("web-{}", id(n))
}

fn tag(sb: &Sandbox, n: u32, tags: &[(&str, &str)]) {
    sb.put_instances(vec![TaggedInstance {
        arn: ec2(n),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }]);
}

/// Scheduled slots started per target (from the executions the sandbox holds).
fn started(sb: &Sandbox) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    let mut m: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    for ((target, slot), _) in slots(sb) {
        m.entry(target).or_default().push(slot);
    }
    m
}

fn count(sb: &Sandbox, target: &str) -> usize {
    started(sb).get(target).map_or(0, Vec::len)
}

fn selection_config(endpoint: &str, extra: &str) -> String {
    format!(
        r#"{}selection_refresh = "1s"
[defaults]
concurrency = "allow"

[[backup]]
name = "web"
select_tags = {{ backup = "daily" }}
exclude_tags = {{ backup-exclude = "true" }}
schedule = "{EVERY_2S}"
{extra}"#,
        header(endpoint)
    )
}

/// A `selection_changed` line whose `key` (`added`, `removed`: a list, logged as its debug text)
/// names `target`.
fn changed_with(ev: &[Value], key: &str, target: &str) -> bool {
    ev.iter().any(|v| {
        v["event"] == "selection_changed"
            && v[key]
                .as_str()
                .is_some_and(|a| a.contains(&format!("\"{target}\"")))
    })
}

/// 3 tagged instances fire; an excluded one never does; a 4th tagged fires after the next
/// refresh; an untagged one stops; after a restart the same names fire on.
#[test]
fn tagged_instances_fire_follow_refreshes_and_keep_their_names_across_a_restart() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    for n in 1..=3 {
        tag(&sb, n, &[("backup", "daily"), ("env", "prod")]);
    }
    tag(&sb, 5, &[("backup", "daily"), ("backup-exclude", "true")]);
    tag(&sb, 6, &[("backup", "weekly")]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &selection_config(&sb.endpoint_url(), ""));

    let check = std::process::Command::new(bin())
        .args(["check", "--resolve", "--config", cfg.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(out.contains("selection web: 3 instance(s) now"), "{out}");
    assert!(out.contains(&name(1)) && !out.contains(&name(5)), "{out}");

    let mut d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(20));
    d.wait_until("3 selected instances fire", Duration::from_secs(15), || {
        (1..=3).all(|n| count(&sb, &name(n)) >= 1)
    });

    // A 4th instance is tagged: it fires after the next refresh.
    tag(&sb, 4, &[("backup", "daily")]);
    d.wait_until("the 4th instance fires", Duration::from_secs(15), || {
        count(&sb, &name(4)) >= 1
    });

    // Instance 1 is untagged: once the refresh saw it, no slot of it starts any more.
    tag(&sb, 1, &[("env", "prod")]);
    d.wait_for("instance 1 removed", Duration::from_secs(15), |ev| {
        changed_with(ev, "removed", &name(1))
    });
    // The swap follows the line at once; a second of slack (slots are 2 s apart) keeps the
    // scheduler task's own moment out of the race.
    let removed_at = Utc::now() + chrono::Duration::seconds(1);
    let before = count(&sb, &name(2));
    d.wait_until(
        "three more slots of instance 2",
        Duration::from_secs(20),
        || count(&sb, &name(2)) >= before + 3,
    );
    let last_of_1 = started(&sb)[&name(1)].iter().max().copied().unwrap();
    assert!(
        last_of_1 <= removed_at,
        "instance 1 fired at {last_of_1} after its removal at {removed_at}"
    );
    for n in [5, 6] {
        assert_eq!(count(&sb, &name(n)), 0, "instance {n} is never selected");
    }
    let ev = d.events();
    let changes: Vec<&Value> = ev
        .iter()
        .filter(|v| v["event"] == "selection_changed")
        .collect();
    assert_eq!(
        changes.len(),
        3,
        "first resolution, +1, -1; nothing for unchanged refreshes: {changes:?}"
    );
    assert_eq!(changes[1]["added_count"], 1);
    assert_eq!(changes[2]["removed_count"], 1);

    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let first_run: BTreeSet<String> = started(&sb).keys().cloned().collect();

    // Restart: the same instances fire under the same names (their execution names follow).
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(20));
    let counts: Vec<usize> = (2..=4).map(|n| count(&sb, &name(n))).collect();
    d.wait_until(
        "every instance fires again",
        Duration::from_secs(15),
        || (2..=4).zip(&counts).all(|(n, c)| count(&sb, &name(n)) > *c),
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let both_runs: BTreeSet<String> = started(&sb).keys().cloned().collect();
    assert_eq!(first_run, both_runs, "no new names after the restart");
    for e in sb.executions() {
        let input: Value = serde_json::from_str(&e.input).unwrap();
        let target = input["Target"].as_str().unwrap();
        assert!(
            e.name.starts_with(&format!("{target}-2")),
            "{} of {target}",
            e.name
        );
        assert!(
            input["ResourceArn"]
                .as_str()
                .unwrap()
                .ends_with(&target[4..])
        );
    }
}

/// A failing refresh (access denied) keeps the previous set, is logged once per streak and
/// retried; a newly tagged instance joins once the API answers again. Before the first
/// resolution, explicit targets fire and `/readyz` names the missing selection.
#[test]
fn a_failing_refresh_keeps_the_previous_set_and_recovers() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    tag(&sb, 1, &[("backup", "daily")]);
    tag(&sb, 2, &[("backup", "daily")]);
    sb.set_tagging_denied(true);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\n{}\n[[backup]]\nname = \"pinned\"\nresource_arn = \"{}\"\nschedule = \"{EVERY_2S}\"\n",
        selection_config(&sb.endpoint_url(), ""),
        ec2(9)
    );
    let cfg = write_config(dir.path(), &text);
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(20));
    let (code, body) = scrape(port, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("not resolved yet") && body.contains("web"),
        "{body}"
    );
    d.wait_until(
        "the explicit target fires meanwhile",
        Duration::from_secs(10),
        || count(&sb, "pinned") >= 1,
    );
    assert_eq!(count(&sb, &name(1)), 0);

    // The API answers: the selection resolves, /readyz is ready.
    sb.set_tagging_denied(false);
    d.wait_until("both instances fire", Duration::from_secs(20), || {
        (1..=2).all(|n| count(&sb, &name(n)) >= 1)
    });
    d.wait_until("/readyz ready", Duration::from_secs(10), || {
        scrape(port, "/readyz").0 == 200
    });

    // It fails again (throttled for good): the set stays and keeps firing; a 3rd tagged
    // instance is not seen until the API is back.
    sb.set_faults(aws_sandbox::Faults {
        throttle_rate: 1.0,
        only_operations: Some(vec!["GetResources".into()]),
        ..Default::default()
    });
    let failed_before = d.named("selection_refresh_failed").len();
    d.wait_for("a failed refresh", Duration::from_secs(15), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "selection_refresh_failed")
            .count()
            > failed_before
    });
    tag(&sb, 3, &[("backup", "daily")]);
    let counts: Vec<usize> = (1..=2).map(|n| count(&sb, &name(n))).collect();
    let calls = requests(&sb, "GetResources");
    d.wait_until(
        "the set keeps firing, refreshes retried",
        Duration::from_secs(20),
        || {
            (1..=2)
                .zip(&counts)
                .all(|(n, c)| count(&sb, &name(n)) >= c + 2)
                && requests(&sb, "GetResources") >= calls + 2
        },
    );
    assert_eq!(count(&sb, &name(3)), 0, "not resolved while failing");
    assert_eq!(
        d.named("selection_refresh_failed").len(),
        failed_before + 1,
        "once per failure streak"
    );
    assert_eq!(
        d.named("selection_refresh_failed")[failed_before]["error_kind"],
        "throttled"
    );

    sb.set_faults(aws_sandbox::Faults::default());
    d.wait_until(
        "the 3rd instance fires after recovery",
        Duration::from_secs(20),
        || count(&sb, &name(3)) >= 1,
    );
    assert!(!d.named("selection_refresh_recovered").is_empty());
    let (_, metrics) = scrape(port, "/metrics");
    assert_eq!(
        metric(
            &metrics,
            "orchestrator_selection_instances{selection=\"web\"}"
        ),
        3.0
    );
    assert!(
        metric(
            &metrics,
            "orchestrator_selection_refreshes_total{selection=\"web\",result=\"failed\"}"
        ) >= 2.0
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

/// An instance both named by a target and selected by tag: one backup per slot, with the
/// longest retention of the two.
#[test]
fn a_selected_instance_with_an_explicit_target_gets_one_backup_per_slot_with_the_longest_retention()
{
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    tag(&sb, 1, &[("backup", "daily")]);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}delete_after_days = 7\n\n[[backup]]\nname = \"pinned\"\nresource_arn = \"{}\"\nschedule = \"{EVERY_2S}\"\ndelete_after_days = 90\n",
        selection_config(&sb.endpoint_url(), ""),
        ec2(1)
    );
    let cfg = write_config(dir.path(), &text);
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(20));
    // Slots after the first resolution (which happens before `ready`) merge.
    let ready_at = Utc::now();
    d.wait_until("three backups", Duration::from_secs(20), || {
        sb.executions().len() >= 4
    });
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let mut per_slot: BTreeMap<DateTime<Utc>, Vec<(String, u64)>> = BTreeMap::new();
    for e in sb.executions() {
        let input: Value = serde_json::from_str(&e.input).unwrap();
        let slot = DateTime::parse_from_rfc3339(input["ScheduledFor"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        per_slot.entry(slot).or_default().push((
            input["Target"].as_str().unwrap().to_string(),
            input["DeleteAfterDays"].as_u64().unwrap(),
        ));
    }
    let merged: Vec<_> = per_slot.iter().filter(|(s, _)| **s > ready_at).collect();
    assert!(merged.len() >= 3, "{per_slot:?}");
    for (slot, backups) in merged {
        assert_eq!(
            backups,
            &vec![("pinned".to_string(), 90)],
            "one backup at {slot}, the 90-day rule's"
        );
    }
    assert!(!d.named("slot_merged").is_empty());
}

/// `run-now web` resolves the selection and backs up every instance it matches now; `next`
/// says a selection needs `--resolve`, and with it lists its instances.
#[test]
fn run_now_of_a_selection_runs_every_instance_it_matches() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    for n in 1..=2 {
        tag(&sb, n, &[("backup", "daily")]);
    }
    tag(&sb, 3, &[("backup", "daily"), ("backup-exclude", "true")]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &selection_config(&sb.endpoint_url(), ""));
    let run = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    let next = run(&["next", "--count", "1"]);
    let text = String::from_utf8_lossy(&next.stdout);
    assert!(
        next.status.success() && text.contains("run `next --resolve`"),
        "{text}"
    );
    assert_eq!(
        requests(&sb, "GetResources"),
        0,
        "`next` alone makes no AWS call"
    );
    let next = run(&["next", "--count", "1", "--resolve", "--target", "web"]);
    let text = String::from_utf8_lossy(&next.stdout);
    assert!(text.contains(&name(1)) && text.contains(&name(2)), "{text}");
    assert!(!text.contains(&name(3)), "{text}");

    let out = run(&["run-now", "web"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut targets: Vec<String> = sb
        .executions()
        .iter()
        .map(|e| {
            let input: Value = serde_json::from_str(&e.input).unwrap();
            input["Target"].as_str().unwrap().to_string()
        })
        .collect();
    targets.sort();
    assert_eq!(targets, vec![name(1), name(2)]);
}
