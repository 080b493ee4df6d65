//! Two real daemons with the `[ha]` lease against the sandbox (Step Functions, Backup and the
//! DynamoDB lease table on one endpoint): one fires, the other stands by; `kill -9` and SIGTERM
//! hand the work over.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

const LEASE: &str = "\n[ha]\nlease_table = \"orchestrator-lease\"\nlease_duration = \"4s\"\nrenew_interval = \"1s\"\n";

fn config(endpoint: &str, owner: &str) -> String {
    format!(
        "{}{LEASE}owner_id = \"{owner}\"\n",
        fleet(endpoint, "r", 5, "*/2 * * * * *")
    )
}

fn start_calls(sb: &aws_sandbox::Sandbox) -> u64 {
    sb.stats()
        .by_operation
        .get("StartExecution")
        .copied()
        .unwrap_or(0)
}

fn jobs(d: &Daemon) -> BTreeSet<String> {
    d.named("backup_finished")
        .iter()
        .map(|v| v["backup_job_id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until the sandbox holds `n` executions.
fn wait_executions(sb: &aws_sandbox::Sandbox, n: usize, timeout: Duration) {
    let start = Instant::now();
    while sb.executions().len() < n {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {n} executions"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_replicas_with_the_lease_start_each_slot_about_once_and_log_it_once() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let dir = tempfile::tempdir().unwrap();
    let ca = write_config(dir.path(), &config(&sb.endpoint_url(), "a"));
    let db = tempfile::tempdir().unwrap();
    let cb = write_config(db.path(), &config(&sb.endpoint_url(), "b"));
    let mut a = Daemon::start(&ca, &[]);
    let mut b = Daemon::start(&cb, &[]);
    wait_executions(&sb, 30, Duration::from_secs(30));
    a.signal("TERM");
    b.signal("TERM");
    assert_eq!(a.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert_eq!(b.wait_exit(Duration::from_secs(15)).code(), Some(0));

    let m = slots(&sb);
    assert!(m.values().all(|n| *n == 1), "a slot started twice: {m:?}");
    let per_slot = start_calls(&sb) as f64 / m.len() as f64;
    eprintln!(
        "lease: {} slots, {per_slot:.3} StartExecution calls per slot",
        m.len()
    );
    assert!(per_slot <= 1.05, "{per_slot} calls per slot");
    let (ja, jb) = (jobs(&a), jobs(&b));
    assert!(ja.is_disjoint(&jb), "a backup logged by both replicas");
    assert!(!(ja.is_empty() && jb.is_empty()));
    let leaders = [&a, &b]
        .iter()
        .filter(|d| !d.named("leadership_acquired").is_empty())
        .count();
    // The one that stood by took over only at the other's SIGTERM, after its last slot.
    assert!(leaders >= 1);
    rt.block_on(sb.shutdown());
}

#[test]
fn kill_9_of_the_leader_hands_over_within_the_lease_and_no_slot_starts_twice() {
    let rt = runtime();
    let sb = rt.block_on(sandbox_running(&[], Duration::from_secs(4)));
    let dir = tempfile::tempdir().unwrap();
    let ca = write_config(dir.path(), &config(&sb.endpoint_url(), "a"));
    let db = tempfile::tempdir().unwrap();
    let cb = write_config(db.path(), &config(&sb.endpoint_url(), "b"));
    let mut a = Daemon::start(&ca, &[]);
    // a holds the lease (its executions arrive) before b starts: a is the leader.
    wait_executions(&sb, 5, Duration::from_secs(30));
    let mut b = Daemon::start(&cb, &[]);
    wait_executions(&sb, 15, Duration::from_secs(30));
    assert!(b.named("leadership_acquired").is_empty(), "b stood by");
    a.child.kill().unwrap();
    let _ = a.child.wait();
    let killed = Instant::now();
    let before = sb.executions().len();
    b.wait_for("b takes over", Duration::from_secs(15), |e| {
        e.iter().any(|v| v["event"] == "leadership_acquired")
    });
    let takeover = killed.elapsed();
    eprintln!("lease: takeover {takeover:?} after kill -9 (lease 4s)");
    assert!(takeover <= Duration::from_secs(4 + 4), "{takeover:?}");
    wait_executions(&sb, before + 10, Duration::from_secs(30));
    // Jobs run 4.5 s: let b follow what is in flight to its end.
    std::thread::sleep(Duration::from_secs(6));
    b.signal("TERM");
    assert_eq!(b.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let m = slots(&sb);
    assert!(m.values().all(|n| *n == 1), "a slot started twice: {m:?}");
    assert!(!b.named("backup_finished").is_empty());
    rt.block_on(sb.shutdown());
}
