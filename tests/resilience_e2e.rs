//! Never miss, never double-fire, never lose a job: the real binary against the local endpoint
//! with faults injected, `kill -9` and restarts, and two replicas side by side.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_sandbox::Faults;
use chrono::{DateTime, Timelike, Utc};
use common::*;
use serde_json::Value;

/// Every slot of an every-`period`-seconds schedule between the first and last one seen has an
/// execution: nothing was lost in between.
fn assert_no_gaps(
    m: &BTreeMap<(String, DateTime<Utc>), usize>,
    target: &str,
    period: i64,
) -> usize {
    let seen: BTreeSet<DateTime<Utc>> = m
        .keys()
        .filter(|(t, _)| t == target)
        .map(|(_, s)| *s)
        .collect();
    let (first, last) = (*seen.first().unwrap(), *seen.last().unwrap());
    let mut s = first;
    while s <= last {
        assert!(
            seen.contains(&s),
            "{target}: slot {s} was lost (seen {seen:?})"
        );
        s += chrono::Duration::seconds(period);
    }
    seen.len()
}

#[test]
fn a_throttling_storm_and_an_outage_lose_no_slot_and_start_none_twice() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &fleet(&sb.endpoint_url(), "t", 10, "*/2 * * * * *"),
    );
    sb.set_faults(Faults {
        throttle_rate: 0.6,
        error_rate: 0.1,
        only_operations: Some(vec!["StartExecution".into()]),
        ..Faults::default()
    });
    let mut d = Daemon::start(&cfg, &[]);
    std::thread::sleep(Duration::from_secs(6));
    // The endpoint goes down for a while, then comes back.
    sb.set_faults(Faults {
        drop_connections: true,
        ..Faults::default()
    });
    std::thread::sleep(Duration::from_secs(4));
    sb.set_faults(Faults::default());
    std::thread::sleep(Duration::from_secs(6));
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));

    let stats = sb.stats();
    assert!(
        stats.faults_injected > 10,
        "faults were injected: {stats:?}"
    );
    let m = slots(&sb);
    let mut total = 0;
    for i in 0..10 {
        total += assert_no_gaps(&m, &format!("t{i}"), 2);
    }
    assert!(m.values().all(|n| *n == 1), "a slot started twice: {m:?}");
    let failed = d.named("execution_start_failed");
    assert!(failed.is_empty(), "starts given up: {failed:?}");
    assert!(
        !d.named("execution_start_retry").is_empty(),
        "retries happened"
    );
    eprintln!(
        "storm: {total} slots started once each, 0 duplicated, 0 lost; {} faults injected, {} retries",
        stats.faults_injected,
        d.named("execution_start_retry").len()
    );
    rt.block_on(sb.shutdown());
}

#[test]
fn kill_9_mid_backup_then_restart_logs_the_final_state_exactly_once() {
    let rt = runtime();
    let sb = rt.block_on(sandbox_running(&[], Duration::from_secs(6)));
    let dir = tempfile::tempdir().unwrap();
    // Every 30 s: one slot in flight while we kill the daemon.
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}{}",
            header(&sb.endpoint_url()),
            target("db", 1, "*/30 * * * * *")
        ),
    );
    let mut a = Daemon::start(&cfg, &[]);
    a.wait_for("the job running", Duration::from_secs(40), |ev| {
        ev.iter()
            .any(|v| v["event"] == "backup_job_state" && v["state"] == "RUNNING")
    });
    let job = a.named("backup_job_created")[0]["backup_job_id"].clone();
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(5));
    assert!(finished(&a.events(), "db").is_empty());

    let mut b = Daemon::start(&cfg, &[]);
    b.wait_for("the job's end", Duration::from_secs(20), |ev| {
        ev.iter()
            .any(|v| v["event"] == "backup_finished" && v["backup_job_id"] == job)
    });
    std::thread::sleep(Duration::from_secs(2));
    let resumed = b.named("tracking_resumed");
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    let ends: Vec<Value> = finished(&b.events(), "db")
        .into_iter()
        .filter(|v| v["backup_job_id"] == job)
        .collect();
    assert_eq!(ends.len(), 1, "final state logged exactly once");
    assert_eq!(ends[0]["state"], "COMPLETED");
    b.signal("TERM");
    assert_eq!(b.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert!(slots(&sb).values().all(|n| *n == 1));
    rt.block_on(sb.shutdown());
}

#[test]
fn two_replicas_start_each_slot_once_and_both_follow_it() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &fleet(&sb.endpoint_url(), "r", 5, "*/2 * * * * *"),
    );
    let mut a = Daemon::start(&cfg, &[]);
    let mut b = Daemon::start(&cfg, &[]);
    std::thread::sleep(Duration::from_secs(9));
    a.signal("TERM");
    b.signal("TERM");
    assert_eq!(a.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert_eq!(b.wait_exit(Duration::from_secs(15)).code(), Some(0));

    let m = slots(&sb);
    assert!(m.values().all(|n| *n == 1), "a slot started twice: {m:?}");
    for i in 0..5 {
        assert_no_gaps(&m, &format!("r{i}"), 2);
    }
    // Both replicas report the same finished jobs, with no error noise.
    let done = |d: &Daemon| -> BTreeSet<String> {
        d.named("backup_finished")
            .iter()
            .map(|v| v["backup_job_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (da, db) = (done(&a), done(&b));
    assert!(!da.is_empty());
    assert!(!da.is_disjoint(&db), "both follow the same jobs");
    for d in [&a, &b] {
        let errors: Vec<Value> = d
            .events()
            .into_iter()
            .filter(|v| v["level"] == "ERROR" || v["event"] == "aws_call_failed")
            .collect();
        assert!(errors.is_empty(), "error noise: {errors:?}");
    }
    let starts: HashMap<&str, usize> = [
        ("a_started", a.named("execution_started").len()),
        ("b_started", b.named("execution_started").len()),
        ("a_already", a.named("execution_already_started").len()),
        ("b_already", b.named("execution_already_started").len()),
    ]
    .into_iter()
    .collect();
    eprintln!("replicas: {} slots, each started once: {starts:?}", m.len());
    rt.block_on(sb.shutdown());
}

#[test]
fn a_burst_is_paced_and_a_reload_in_the_middle_of_it_loses_nothing() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    // 300 targets on the same second, paced at 100 starts/s with a burst of 10.
    let slot = Utc::now() + chrono::Duration::seconds(4);
    let sched = format!(
        "{} {} {} * * *",
        chrono::Timelike::second(&slot),
        chrono::Timelike::minute(&slot),
        chrono::Timelike::hour(&slot)
    );
    let body = |extra: &str| {
        let mut text = header(&sb.endpoint_url());
        text.push_str("start_rate = 100\nstart_burst = 10\ncatch_up = \"none\"\n");
        text.push_str(extra);
        for i in 0..300 {
            text.push_str(&target(&format!("b{i}"), i + 1, &sched));
        }
        text.replace("catch_up = \"none\"\n", "")
    };
    let cfg = write_config(dir.path(), &body(""));
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for("the burst to begin", Duration::from_secs(15), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "execution_started")
            .count()
            >= 50
    });
    // A reload lands mid-burst (a harmless change: the poll interval).
    std::fs::write(
        &cfg,
        body("").replace("poll_interval = \"200ms\"", "poll_interval = \"300ms\""),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("all 300 started", Duration::from_secs(30), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "execution_started")
            .count()
            >= 300
    });
    assert!(!d.named("config_reloaded").is_empty());
    std::thread::sleep(Duration::from_millis(500));
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));

    let m = slots(&sb);
    assert_eq!(m.len(), 300, "every target's slot started");
    assert!(m.values().all(|n| *n == 1), "none twice");
    // Pacing: no one-second window saw more than rate + burst requests.
    let mut times: Vec<i64> = sb.start_times().iter().map(|s| s.received_at_ms).collect();
    times.sort_unstable();
    let worst = times
        .iter()
        .enumerate()
        .map(|(i, t)| times[i..].iter().take_while(|u| **u < t + 1000).count())
        .max()
        .unwrap();
    assert!(
        worst <= 110 + 5,
        "{worst} StartExecution calls within one second"
    );
    let spread = times.last().unwrap() - times.first().unwrap();
    assert!(
        spread >= 2500,
        "300 starts at 100/s take about 3 s, took {spread} ms"
    );
    eprintln!(
        "burst: 300 slots, 300 started once, busiest second {worst} calls, spread {spread} ms"
    );
    rt.block_on(sb.shutdown());
}

#[test]
fn ten_seconds_of_latency_delay_starts_but_lose_none() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &fleet(&sb.endpoint_url(), "l", 3, "*/5 * * * * *"),
    );
    sb.set_faults(Faults {
        latency: Duration::from_secs(10),
        only_operations: Some(vec!["StartExecution".into()]),
        ..Faults::default()
    });
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for(
        "slow starts to land and finish",
        Duration::from_secs(40),
        |ev| (0..3).all(|i| !finished(ev, &format!("l{i}")).is_empty()),
    );
    sb.set_faults(Faults::default());
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
    let m = slots(&sb);
    assert!(m.values().all(|n| *n == 1), "{m:?}");
    for i in 0..3 {
        assert_no_gaps(&m, &format!("l{i}"), 5);
    }
    assert!(d.named("execution_start_failed").is_empty());
    rt.block_on(sb.shutdown());
}

#[test]
fn an_endpoint_down_for_a_minute_then_back_loses_no_slot() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &fleet(&sb.endpoint_url(), "o", 3, "*/5 * * * * *"),
    );
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for("first starts", Duration::from_secs(15), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "execution_started")
            .count()
            >= 3
    });
    sb.set_faults(Faults {
        drop_connections: true,
        ..Faults::default()
    });
    let down_at = Utc::now();
    std::thread::sleep(Duration::from_secs(60));
    sb.set_faults(Faults::default());
    let up_at = Utc::now();
    // Every slot due while it was down must start once the endpoint is back (backoff ≤ 60 s).
    let due_while_down = |m: &BTreeMap<(String, DateTime<Utc>), usize>| {
        m.keys().filter(|(_, s)| *s > down_at && *s < up_at).count()
    };
    // Slots on multiples of 5 s strictly inside the outage, for each of the 3 targets.
    let (a, b) = (
        down_at.timestamp_millis() / 5000,
        (up_at.timestamp_millis() - 1) / 5000,
    );
    let expected = 3 * (b - a) as usize;
    // A successful start wakes the waiting retries, so the backlog clears in seconds, not after
    // the longest backoff (60 s).
    d.wait_for("the slots of the outage", Duration::from_secs(30), |_| {
        due_while_down(&slots(&sb)) >= expected
    });
    let cleared = (Utc::now() - up_at).num_milliseconds();
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
    let m = slots(&sb);
    assert!(m.values().all(|n| *n == 1));
    let failed = d.named("execution_start_failed");
    if !failed.is_empty() {
        d.dump();
    }
    assert!(failed.is_empty(), "{failed:?}");
    let mut total = 0;
    for i in 0..3 {
        total += assert_no_gaps(&m, &format!("o{i}"), 5);
    }
    assert!(d.named("execution_start_failed").is_empty());
    eprintln!(
        "outage: 60 s down, {} slots due meanwhile started within {cleared} ms of its end, {total} slots in all, 0 lost, 0 duplicated",
        due_while_down(&m)
    );
    rt.block_on(sb.shutdown());
}

#[test]
fn sigterm_in_the_middle_of_a_slow_poll_round_exits_at_once() {
    let rt = runtime();
    let sb = rt.block_on(sandbox_running(&[], Duration::from_secs(60)));
    let dir = tempfile::tempdir().unwrap();
    // Eight backups are described one by one (batching starts above eight) at one call every
    // 5 s: a poll round of about 40 s.
    let t = Utc::now() + chrono::Duration::seconds(3);
    let schedule = format!("{} {} {} * * *", t.second(), t.minute(), t.hour());
    let mut text = header(&sb.endpoint_url());
    text.push_str("describe_rate = 0.2\nbackup_read_rate = 0.2\n");
    for i in 0..8 {
        text.push_str(&target(&format!("s{i}"), i + 1, &schedule));
    }
    let cfg = write_config(dir.path(), &text);
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for("eight starts", Duration::from_secs(15), |ev| {
        ev.iter()
            .filter(|v| v["event"] == "execution_started")
            .count()
            == 8
    });
    std::thread::sleep(Duration::from_secs(3));
    let described = |sb: &aws_sandbox::Sandbox| {
        sb.stats()
            .by_operation
            .get("DescribeExecution")
            .copied()
            .unwrap_or(0)
    };
    let before = described(&sb);
    assert!(
        (1..8).contains(&before),
        "the round is under way: {before} of 8 described"
    );
    let asked = std::time::Instant::now();
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(3)).code(), Some(0));
    eprintln!(
        "SIGTERM mid-round: exited in {:?}, {before} of 8 executions described",
        asked.elapsed()
    );
    assert_eq!(described(&sb), before, "no call after SIGTERM");
    rt.block_on(sb.shutdown());
}
