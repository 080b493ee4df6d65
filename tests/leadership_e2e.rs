//! `leadership_acquired` after a `kill -9` of the leader carries the gap an operator cares
//! about: `since_previous_leader_ms` is at least the real time from the kill to the new leader's
//! winning claim (read from the lease item it wrote), and at most that plus one renewal
//! interval (the killed leader's last renewal came at most that long before the kill). Waits
//! are for state: the lease item in the sandbox's table; the line is read after it.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sandbox::Sandbox;
use backup_orchestrator::lease::LEASE_NAME;
use common::*;

const TABLE: &str = "orchestrator-lease";
const LEASE_MS: i64 = 4_000;
const RENEW_MS: i64 = 1_000;

fn config(endpoint: &str, owner: &str) -> String {
    format!(
        "{}\n[ha]\nlease_table = \"{TABLE}\"\nlease_duration = \"{}s\"\nrenew_interval = \"{}s\"\nowner_id = \"{owner}\"\n",
        fleet(endpoint, "t", 2, "*/2 * * * * *"),
        LEASE_MS / 1000,
        RENEW_MS / 1000
    )
}

/// The lease item: (owner, expires_at_ms).
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

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn after_kill_9_the_new_leader_reports_at_least_the_real_gap_since_the_old_one() {
    let rt = runtime();
    let sb = rt.block_on(sandbox(&[]));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Daemon::start_signed(
        &write_config(da.path(), &config(&sb.endpoint_url(), "a")),
        &[],
        "KEY-a",
    );
    until("a holds the lease", Duration::from_secs(20), || {
        holder(&sb).is_some_and(|(o, _)| o == "a")
    });
    let b = Daemon::start_signed(
        &write_config(db.path(), &config(&sb.endpoint_url(), "b")),
        &[],
        "KEY-b",
    );
    b.wait_for("b stands by", Duration::from_secs(20), |ev| {
        ev.iter().any(|v| v["event"] == "standby")
    });
    // A few renewals of a's, then the kill.
    std::thread::sleep(Duration::from_millis(2_500));
    a.child.kill().unwrap();
    let killed_ms = wall_ms();
    let _ = a.child.wait();
    until(
        "b holds the lease",
        Duration::from_millis(LEASE_MS as u64 + 6_000),
        || holder(&sb).is_some_and(|(o, _)| o == "b"),
    );
    // b's winning claim was sent at its item's expiry minus the lease (b's clock: this one).
    let (_, b_expires) = holder(&sb).unwrap();
    let claimed_ms = b_expires - LEASE_MS;
    let real_gap = claimed_ms - killed_ms;
    b.wait_for(
        "b's leadership_acquired line",
        Duration::from_secs(5),
        |ev| ev.iter().any(|v| v["event"] == "leadership_acquired"),
    );
    let line = b.named("leadership_acquired").remove(0);
    eprintln!("leadership_acquired after kill -9: {line}; real gap kill -> claim {real_gap} ms");
    let gap = line["since_previous_leader_ms"]
        .as_i64()
        .expect("the gap is known");
    assert!(
        gap >= real_gap,
        "since_previous_leader_ms {gap} < the real gap {real_gap} ms"
    );
    assert!(
        gap <= real_gap + RENEW_MS + 500,
        "since_previous_leader_ms {gap} much larger than the real gap {real_gap} ms"
    );
    assert_eq!(line["previous_owner"], "a");
    let after = line["after_lease_expiry_ms"].as_i64().unwrap();
    assert!(after < gap && gap - after == LEASE_MS, "{line}");
    assert!(line.get("leaderless_ms").is_none(), "{line}");
    drop(b);
    rt.block_on(sb.shutdown());
}
