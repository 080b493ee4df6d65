//! Replicas of the real daemon with the `[ha]` lease against the sandbox (Step Functions, Backup
//! and the DynamoDB lease table on one endpoint). Each replica signs its requests with its own
//! access key, so the sandbox tells their calls apart (`Stats::by_access_key`,
//! `StartTime::access_key`) and can cut one replica's path to the table only
//! (`Faults::only_access_keys`). One replica fires, the others stand by; `kill -9`, a lost table
//! and SIGTERM hand the work over. Every wait is for state: the lease item in the sandbox's
//! table, the executions and jobs it holds, or a line logged after the replica is ready.

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sandbox::{Faults, Sandbox};
use backup_orchestrator::lease::LEASE_NAME;
use chrono::{DateTime, Utc};
use common::*;
use serde_json::Value;

const TABLE: &str = "orchestrator-lease";
/// The lease of most tests: a holder stops 1 s (the margin) before it expires.
const LEASE: Duration = Duration::from_secs(4);

/// `count` targets `r0…` on `schedule`, with the lease (renewed every second).
fn config(endpoint: &str, owner: &str, count: u32, schedule: &str, lease: Duration) -> String {
    format!(
        "{}\n[ha]\nlease_table = \"{TABLE}\"\nlease_duration = \"{}s\"\nrenew_interval = \"1s\"\nowner_id = \"{owner}\"\n",
        fleet(endpoint, "r", count, schedule),
        lease.as_secs()
    )
}

/// One replica: its owner id, the access key it signs with, its process and its config file.
struct Replica {
    owner: &'static str,
    key: String,
    d: Daemon,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

fn replica(owner: &'static str, text: &str, args: &[&str]) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), text);
    let key = format!("KEY-{owner}");
    let d = Daemon::start_signed(&config, args, &key);
    Replica {
        owner,
        key,
        d,
        config,
        _dir: dir,
    }
}

/// The lease item in the sandbox's table: (owner, expires_at_ms).
fn holder(sb: &Sandbox) -> Option<(String, i64)> {
    sb.dynamodb_items(TABLE)
        .into_iter()
        .find(|i| i["pk"]["S"] == LEASE_NAME)
        .map(|i| {
            (
                i["owner"]["S"].as_str().unwrap().to_string(),
                i["expires_at_ms"]["N"].as_str().unwrap().parse().unwrap(),
            )
        })
}

fn held_by(sb: &Sandbox, owner: &str) -> bool {
    holder(sb).is_some_and(|(o, _)| o == owner)
}

/// Waits until `state` holds, or panics after `timeout`.
fn until(what: &str, timeout: Duration, state: impl Fn() -> bool) {
    let start = Instant::now();
    while !state() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the sandbox holds `n` executions.
fn wait_executions(sb: &Sandbox, n: usize, timeout: Duration) {
    until(&format!("{n} executions"), timeout, || {
        sb.executions().len() >= n
    });
}

/// Waits for a standby's readiness: its `standby` line, written once its config is valid, its
/// lease task runs and `/readyz` answers ready.
fn wait_standby(r: &Replica) {
    r.d.wait_for("standby", Duration::from_secs(20), |ev| {
        ev.iter().any(|v| v["event"] == "standby")
    });
}

/// The calls a replica made, by operation (as the sandbox counted them by access key).
fn calls(sb: &Sandbox, r: &Replica) -> BTreeMap<String, u64> {
    sb.stats()
        .by_access_key
        .get(&r.key)
        .cloned()
        .unwrap_or_default()
}

/// A replica's calls other than the lease's own (PutItem, DeleteItem).
fn work_calls(sb: &Sandbox, r: &Replica) -> u64 {
    calls(sb, r)
        .iter()
        .filter(|(op, _)| !matches!(op.as_str(), "PutItem" | "DeleteItem"))
        .map(|(_, n)| n)
        .sum()
}

/// The backups a replica logged `backup_finished` for: `exec:ARN` for a backup it started or
/// resumed by its execution, `job:ID` for a job its start-up recovery picked up by itself.
fn backups(d: &Daemon) -> BTreeSet<String> {
    d.named("backup_finished")
        .iter()
        .map(|v| match v["execution_arn"].as_str() {
            Some(arn) if !arn.is_empty() => format!("exec:{arn}"),
            _ => format!("job:{}", v["backup_job_id"].as_str().unwrap_or_default()),
        })
        .collect()
}

/// The job ids in a replica's `backup_finished` lines.
fn finished_jobs(d: &Daemon) -> BTreeSet<String> {
    d.named("backup_finished")
        .iter()
        .filter_map(|v| v["backup_job_id"].as_str().map(|j| format!("job:{j}")))
        .collect()
}

fn terminate(r: &mut Replica) -> Option<i32> {
    r.d.signal("TERM");
    r.d.wait_exit(Duration::from_secs(20)).code()
}

fn rfc(v: &Value, field: &str) -> Option<DateTime<Utc>> {
    v[field]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Every slot of every target, from its first execution to its last, every `period(target)`: started
/// exactly once, or logged `slot_skipped` by `by` (inside the line's first..last slot range)
/// with its reason. Returns (slots started late by `by`'s catch-up, slots skipped).
fn every_slot_started_once_or_skipped(
    sb: &Sandbox,
    by: &Daemon,
    period: impl Fn(&str) -> chrono::Duration,
) -> (usize, usize) {
    let m = slots(sb);
    assert!(m.values().all(|n| *n == 1), "a slot started twice: {m:?}");
    let skipped = by.named("slot_skipped");
    let mut per_target: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
    for (t, s) in m.keys() {
        per_target.entry(t).or_default().push(*s);
    }
    let mut missing = 0;
    for (t, started) in &per_target {
        let (first, last) = (started[0], *started.last().unwrap());
        let mut s = first;
        while s <= last {
            if !m.contains_key(&(t.to_string(), s)) {
                let line = skipped.iter().find(|v| {
                    v["target"] == *t
                        && rfc(v, "first_slot").unwrap_or_else(|| rfc(v, "scheduled_for").unwrap())
                            <= s
                        && s <= rfc(v, "last_slot")
                            .unwrap_or_else(|| rfc(v, "scheduled_for").unwrap())
                });
                let line = line.unwrap_or_else(|| {
                    by.dump();
                    panic!("{t} {s}: neither started nor logged skipped")
                });
                assert!(
                    line["reason"].as_str().is_some_and(|r| !r.is_empty()),
                    "{line}"
                );
                missing += 1;
            }
            s += period(t);
        }
    }
    let caught_up = by
        .named("execution_started")
        .iter()
        .filter(|v| v["trigger"] == "catch-up")
        .count();
    (caught_up, missing)
}

/// `n` replicas with the lease, 10 targets every 2 s: one fires, the others make no Step
/// Functions or Backup call; about one StartExecution call per slot.
fn replicas_share_the_work(n: usize) {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let owners = ["a", "b", "c"];
    let mut rs: Vec<Replica> = owners[..n]
        .iter()
        .map(|o| {
            let text = config(&sb.endpoint_url(), o, 10, "*/2 * * * * *", LEASE);
            replica(o, &text, &[])
        })
        .collect();
    until("a holder", Duration::from_secs(20), || {
        holder(&sb).is_some()
    });
    wait_executions(&sb, 60, Duration::from_secs(40));
    let leader = holder(&sb).unwrap().0;
    // Standbys first (they release nothing), then the holder: no takeover at the end.
    rs.sort_by_key(|r| r.owner == leader);
    for r in &mut rs {
        assert_eq!(terminate(r), Some(0), "{} exits cleanly", r.owner);
    }

    let m = slots(&sb);
    assert!(m.values().all(|n| *n == 1), "a slot started twice: {m:?}");
    let per_slot = requests(&sb, "StartExecution") as f64 / m.len() as f64;
    eprintln!(
        "lease, {n} replicas: {} slots, {per_slot:.3} StartExecution calls per slot",
        m.len()
    );
    assert!(per_slot <= 1.05, "{per_slot} calls per slot");
    let mut seen = BTreeSet::new();
    for r in &rs {
        let acquired = r.d.named("leadership_acquired").len();
        let jobs = backups(&r.d);
        if r.owner == leader {
            assert_eq!(acquired, 1, "the holder took the lease once");
            assert!(!jobs.is_empty());
        } else {
            assert_eq!(acquired, 0, "{} stood by", r.owner);
            assert_eq!(work_calls(&sb, r), 0, "{}: {:?}", r.owner, calls(&sb, r));
            assert!(r.d.named("execution_started").is_empty());
            assert!(calls(&sb, r)["PutItem"] > 0, "{} tried the lease", r.owner);
        }
        assert!(seen.is_disjoint(&jobs), "a backup logged by two replicas");
        seen.extend(jobs);
    }
    rt.block_on(sb.shutdown());
}

#[test]
fn two_replicas_with_the_lease_start_each_slot_about_once_and_log_it_once() {
    replicas_share_the_work(2);
}

#[test]
fn three_replicas_with_the_lease_start_each_slot_about_once_and_log_it_once() {
    replicas_share_the_work(3);
}

/// The kill test's fleet: `g0…g4` every 2 s with quick jobs (slots fall due in the gap) and
/// `l0…l4` every 10 s whose jobs run 9 s (still running when the standby takes over).
fn kill_config(endpoint: &str, owner: &str) -> String {
    let mut text = header(endpoint);
    text.push_str("[defaults]\nconcurrency = \"allow\"\n");
    for i in 0..5 {
        text.push_str(&target(&format!("g{i}"), i + 1, "*/2 * * * * *"));
        text.push_str(&target(&format!("l{i}"), i + 11, "*/10 * * * * *"));
    }
    format!(
        "{text}\n[ha]\nlease_table = \"{TABLE}\"\nlease_duration = \"{}s\"\nrenew_interval = \"1s\"\nowner_id = \"{owner}\"\n",
        LEASE.as_secs()
    )
}

fn executions_of(sb: &Sandbox, prefix: &str) -> usize {
    slots(sb)
        .keys()
        .filter(|(t, _)| t.starts_with(prefix))
        .count()
}

#[test]
fn kill_9_of_the_leader_hands_over_with_every_gap_slot_caught_up_or_skipped_and_its_backups_followed()
 {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    sb.set_job_timings(
        (11..16)
            .map(|n| aws_sandbox::JobTiming {
                resource: ec2(n),
                created_ms: 500,
                running_ms: 9_000,
            })
            .collect(),
    );
    let mut a = replica("a", &kill_config(&sb.endpoint_url(), "a"), &[]);
    until("a holds the lease", Duration::from_secs(20), || {
        held_by(&sb, "a")
    });
    let mut b = replica("b", &kill_config(&sb.endpoint_url(), "b"), &[]);
    wait_standby(&b);
    // One second into a 10 s slot: the long jobs it started run for 9 s more.
    let long = executions_of(&sb, "l");
    until("a 10 s slot", Duration::from_secs(25), || {
        executions_of(&sb, "l") >= (long / 5 + 1) * 5
    });
    std::thread::sleep(Duration::from_secs(1));
    let long_arns: Vec<String> = (11..16).map(ec2).collect();
    let running: BTreeSet<String> = sb
        .jobs()
        .iter()
        .filter(|j| !j.state.is_terminal() && long_arns.contains(&j.resource_arn))
        .map(|j| format!("job:{}", j.id))
        .collect();
    assert_eq!(running.len(), 5, "the long jobs run at the kill");
    a.d.child.kill().unwrap();
    let _ = a.d.child.wait();
    let killed = Instant::now();
    until("b holds the lease", LEASE + Duration::from_secs(6), || {
        held_by(&sb, "b")
    });
    let takeover = killed.elapsed();
    eprintln!("lease: takeover {takeover:?} after kill -9 (lease {LEASE:?})");
    assert!(takeover <= LEASE + Duration::from_secs(4), "{takeover:?}");
    // b fires its own slots, and follows each backup a left running to its end.
    let at = sb.executions().len();
    wait_executions(&sb, at + 15, Duration::from_secs(20));
    b.d.wait_for(
        "b follows a's running backups to their end",
        Duration::from_secs(20),
        |_| running.is_subset(&finished_jobs(&b.d)),
    );
    assert_eq!(terminate(&mut b), Some(0));

    let period = |t: &str| chrono::Duration::seconds(if t.starts_with('g') { 2 } else { 10 });
    let (caught_up, skipped) = every_slot_started_once_or_skipped(&sb, &b.d, period);
    eprintln!(
        "lease: after kill -9, {caught_up} gap slots started by catch-up, {skipped} logged skipped, {} of a's running backups followed to their end by b",
        running.len()
    );
    assert!(
        caught_up >= 5,
        "the latest missed slot of each 2 s target is caught up"
    );
    rt.block_on(sb.shutdown());
}

#[test]
fn a_leader_that_loses_only_the_table_stops_firing_within_its_lease_and_no_backup_runs_twice() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let text = |o| config(&sb.endpoint_url(), o, 10, "*/2 * * * * *", LEASE);
    let mut a = replica("a", &text("a"), &[]);
    until("a holds the lease", Duration::from_secs(20), || {
        held_by(&sb, "a")
    });
    let mut b = replica("b", &text("b"), &[]);
    wait_standby(&b);
    wait_executions(&sb, 30, Duration::from_secs(30));
    // a's path to DynamoDB fails (connections dropped); its path to Step Functions and Backup,
    // and b's to everything, work.
    sb.set_faults(Faults {
        drop_connections: true,
        only_operations: Some(vec!["PutItem".into(), "DeleteItem".into()]),
        only_access_keys: Some(vec![a.key.clone()]),
        ..Faults::default()
    });
    let cut = Instant::now();
    // The last expiry a wrote, watched until b's claim replaces it.
    let a_expiry_cell = Cell::new(0_i64);
    until(
        "b holds the lease",
        LEASE + Duration::from_secs(6),
        || match holder(&sb) {
            Some((o, e)) if o == "a" => {
                a_expiry_cell.set(e);
                false
            }
            Some((o, _)) => o == "b",
            None => false,
        },
    );
    eprintln!(
        "lease: b took over {:?} after a lost the table",
        cut.elapsed()
    );
    // a stopped firing on its own clock and exits non-zero for its supervisor to restart it.
    assert_eq!(a.d.wait_exit(Duration::from_secs(20)).code(), Some(1));
    let lost = a.d.named("leadership_lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["reason"], "renewal_deadline_passed");
    let at = sb.executions().len();
    wait_executions(&sb, at + 20, Duration::from_secs(20));
    assert_eq!(terminate(&mut b), Some(0));

    let a_expiry = a_expiry_cell.get();
    assert!(a_expiry > 0);
    let starts = sb.start_times();
    let by = |key: &str| -> Vec<&aws_sandbox::StartTime> {
        starts
            .iter()
            .filter(|s| s.access_key.as_deref() == Some(key))
            .collect()
    };
    let (sa, sb_) = (by(&a.key), by(&b.key));
    let a_last = sa.iter().map(|s| s.received_at_ms).max().unwrap();
    let b_first = sb_.iter().map(|s| s.received_at_ms).min().unwrap();
    eprintln!(
        "lease: a's last StartExecution {} ms before its lease expired on the table; b's first {} ms after",
        a_expiry - a_last,
        b_first - a_expiry
    );
    assert!(a_last < a_expiry, "a fired after its lease expired");
    assert!(b_first >= a_expiry, "b fired before a's lease expired");
    // The overlap: names both replicas asked for.
    let names_a: BTreeSet<&str> = sa.iter().map(|s| s.name.as_str()).collect();
    let duplicates = sb_
        .iter()
        .filter(|s| names_a.contains(s.name.as_str()))
        .count();
    eprintln!("lease: {duplicates} duplicate StartExecution calls during the overlap");
    let (caught_up, skipped) =
        every_slot_started_once_or_skipped(&sb, &b.d, |_| chrono::Duration::seconds(2));
    eprintln!("lease: after the table loss, {caught_up} slots caught up, {skipped} skipped");
    // Each backup's end is logged by one replica: by execution, and no job b's recovery picked
    // up had been logged finished by a.
    let (ea, eb) = (backups(&a.d), backups(&b.d));
    let both: Vec<&String> = ea.intersection(&eb).collect();
    assert!(
        both.is_empty(),
        "backups finished in both replicas' logs: {both:?}"
    );
    let recovered: BTreeSet<String> = eb
        .iter()
        .filter(|k| k.starts_with("job:"))
        .cloned()
        .collect();
    let a_jobs = finished_jobs(&a.d);
    let both: Vec<&String> = recovered.intersection(&a_jobs).collect();
    assert!(
        both.is_empty(),
        "jobs finished in both replicas' logs: {both:?}"
    );
    rt.block_on(sb.shutdown());
}

#[test]
fn sigterm_on_the_leader_hands_over_well_under_the_lease_and_a_standby_applies_reloads() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    // A long lease: a takeover well under it can only come from the release.
    let lease = Duration::from_secs(8);
    let text = |o, count| config(&sb.endpoint_url(), o, count, "*/2 * * * * *", lease);
    let mut a = replica("a", &text("a", 5), &[]);
    until("a holds the lease", Duration::from_secs(20), || {
        held_by(&sb, "a")
    });
    let mut b = replica("b", &text("b", 5), &["--watch"]);
    wait_standby(&b);
    // A reload on the standby: a watched change, then SIGHUP, each with its usual line.
    std::fs::write(&b.config, text("b", 6)).unwrap();
    b.d.wait_for(
        "b reloads the watched change",
        Duration::from_secs(15),
        |ev| {
            ev.iter()
                .any(|v| v["event"] == "config_reloaded" && v["added"] == "[\"r5\"]")
        },
    );
    std::fs::write(&b.config, text("b", 7)).unwrap();
    b.d.signal("HUP");
    b.d.wait_for("b reloads on SIGHUP", Duration::from_secs(15), |ev| {
        ev.iter()
            .any(|v| v["event"] == "config_reloaded" && v["added"] == "[\"r6\"]")
    });
    let reloaded = b.d.named("config_reloaded");
    assert_eq!(reloaded.len(), 2, "{reloaded:?}");
    assert_eq!(reloaded[1]["generation"], 3);
    assert_eq!(
        work_calls(&sb, &b),
        0,
        "the standby made no Step Functions or Backup call"
    );
    wait_executions(&sb, 10, Duration::from_secs(20));

    a.d.signal("TERM");
    let termed = Instant::now();
    until("b holds the lease", lease, || held_by(&sb, "b"));
    let handover = termed.elapsed();
    eprintln!("lease: hand-over {handover:?} after SIGTERM (lease {lease:?})");
    assert!(handover < Duration::from_secs(3), "{handover:?}");
    assert_eq!(a.d.wait_exit(Duration::from_secs(20)).code(), Some(0));
    assert_eq!(a.d.named("lease_released").len(), 1);
    // b runs the config it reloaded while standing by: r5 and r6 fire.
    until("r5 and r6 start", Duration::from_secs(20), || {
        let m = slots(&sb);
        ["r5", "r6"].iter().all(|t| m.keys().any(|(n, _)| n == t))
    });
    let loaded = b.d.named("config_loaded");
    assert_eq!(loaded[0]["generation"], 3);
    assert_eq!(terminate(&mut b), Some(0));
    let m = slots(&sb);
    assert!(m.values().all(|n| *n == 1), "a slot started twice: {m:?}");
    rt.block_on(sb.shutdown());
}

#[test]
fn demo_with_two_replicas_shows_a_standby_taking_over_from_a_killed_leader() {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["demo", "--replicas", "2", "--seconds", "24"]);
    let mut d = Daemon::spawn(cmd);
    assert_eq!(d.wait_exit(Duration::from_secs(60)).code(), Some(0));
    let lines: Vec<String> = d
        .events()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    // The demo's own lines (the replicas' are relayed with their names in front).
    let said = |s: &str| {
        lines
            .iter()
            .find(|l| l.starts_with("demo: ") && l.contains(s))
            .cloned()
    };
    let held = said("holds the lease and fires").unwrap_or_else(|| {
        d.dump();
        panic!("no holder")
    });
    let killed = said("(kill -9)").unwrap();
    let took = said("took over").unwrap();
    let leader = held.split_whitespace().nth(1).unwrap().to_string();
    assert!(killed.contains(&leader), "{killed}");
    let next = took.split_whitespace().nth(1).unwrap();
    assert_ne!(next, leader, "{took}");
    // Both replicas' own lines are relayed with their names.
    assert!(lines.iter().any(|l| l.starts_with("[replica-1] ")));
    assert!(lines.iter().any(|l| l.starts_with("[replica-2] ")));
    assert!(said("StartExecution duplicates refused by name").is_some());
}
