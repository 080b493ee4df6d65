//! End to end, every backup job tied to its own execution: the real binary and the real SDK over
//! HTTP against the sandbox. The case: after an outage, many executions of one instance
//! start within the same second; the sandbox then creates their jobs in the reverse order of
//! their starts (real Step Functions gives no order between two executions' tasks). A guess from
//! resource and creation time would hand each execution another one's job.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sandbox::Faults;
use common::*;
use serde_json::Value;

/// Executions the test checks: the backlog of an outage of this many slots. Enough that a
/// tracker round sees more than its batch threshold (8) of them waiting for their jobs at once,
/// so that the batching paths (listing) are in play and must step aside for executions that
/// share an instance (with 12, rounds saw at most 7).
const CHECKED: usize = 24;

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
fn jobs_created_in_another_order_than_their_executions_are_each_reported_under_their_own() {
    let rt = runtime();
    let sb = rt.block_on(sandbox_running(&[], Duration::from_secs(3)));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[backup]]\nname = \"db\"\nresource_arn = \"{}\"\nschedule = \"* * * * * *\"\nconcurrency = \"allow\"\n",
        header(&sb.endpoint_url()),
        ec2(1)
    );
    let cfg = write_config(dir.path(), &text);
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_ready(Duration::from_secs(30));

    // An outage of StartExecution until CHECKED slots are waiting to start...
    sb.set_faults(Faults {
        throttle_rate: 1.0,
        only_operations: Some(vec!["StartExecution".into()]),
        ..Faults::default()
    });
    let throttled_slots = || {
        sb.start_times()
            .iter()
            .filter(|s| s.outcome == "throttled")
            .map(|s| s.name.clone())
            .collect::<HashSet<_>>()
            .len()
    };
    d.wait_until(
        "slots held up by the outage",
        Duration::from_secs(60),
        || throttled_slots() > CHECKED,
    );
    // ...then the backlog starts at once; the first CHECKED to arrive get their jobs created in
    // the reverse order (each waits 400 ms less before its task than the one before).
    sb.set_task_delays((0..CHECKED as u64).rev().map(|k| k * 400).collect());
    sb.set_faults(Faults::default());

    // The executions of the backlog, in the order they started.
    let backlog = || {
        let held: HashSet<String> = sb
            .start_times()
            .into_iter()
            .filter(|s| s.outcome == "throttled")
            .map(|s| s.name)
            .collect();
        let mut executions: Vec<_> = sb
            .executions()
            .into_iter()
            .filter(|e| held.contains(&e.name))
            .collect();
        executions.sort_by_key(|e| e.start_date);
        executions.truncate(CHECKED);
        executions
    };
    // The state needed: the backlog's jobs have all ended at the endpoint, and three poll rounds
    // (max_poll_interval = 1 s) have passed since the last one ended.
    let backlog_done = || {
        let jobs: HashMap<String, _> = sb.jobs().into_iter().map(|j| (j.id.clone(), j)).collect();
        let executions = backlog();
        executions.len() == CHECKED
            && executions.iter().all(|e| {
                e.backup_job_id
                    .as_ref()
                    .and_then(|id| jobs.get(id))
                    .and_then(|j| j.completion_date)
                    .is_some_and(|end| chrono::Utc::now() - end > chrono::TimeDelta::seconds(3))
            })
    };
    d.wait_until(
        "the backlog's jobs ended",
        Duration::from_secs(90),
        backlog_done,
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));

    let backlog = backlog();
    let own_job: HashMap<String, String> = sb
        .executions()
        .into_iter()
        .filter_map(|e| Some((e.arn.clone(), e.backup_job_id.clone()?)))
        .collect();
    // The backlog started at once, and the sandbox really created its jobs out of order (else
    // this test proves nothing).
    let spread = backlog[CHECKED - 1].start_date - backlog[0].start_date;
    assert!(
        spread < chrono::TimeDelta::seconds(2),
        "backlog started within {spread}"
    );
    let jobs = sb.jobs();
    let created: HashMap<&str, _> = jobs
        .iter()
        .map(|j| (j.id.as_str(), j.creation_date))
        .collect();
    let order: Vec<_> = backlog
        .iter()
        .map(|e| created[e.backup_job_id.as_deref().unwrap()])
        .collect();
    let inverted = order.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(
        inverted >= CHECKED * 3 / 4,
        "jobs of the backlog created mostly in reverse order ({inverted} of {}): {order:?}",
        CHECKED - 1
    );

    let events = d.events();
    let lines = |event: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|v| v["event"] == event)
            .cloned()
            .collect()
    };
    // Every line that names a job names the job of its own execution.
    let mut checked_lines = 0;
    for event in ["backup_job_created", "backup_job_state", "backup_finished"] {
        for v in lines(event) {
            let (Some(arn), Some(job)) = (v["execution_arn"].as_str(), v["backup_job_id"].as_str())
            else {
                continue;
            };
            assert_eq!(
                own_job.get(arn).map(String::as_str),
                Some(job),
                "{event} names another execution's job: {v}"
            );
            checked_lines += 1;
        }
    }
    assert!(
        checked_lines >= 2 * CHECKED,
        "{checked_lines} lines checked"
    );
    // Every job of the backlog ended and was reported exactly once, COMPLETED.
    for e in &backlog {
        let job = e.backup_job_id.as_deref().unwrap();
        let reports: Vec<Value> = lines("backup_finished")
            .into_iter()
            .filter(|v| v["backup_job_id"] == job)
            .collect();
        assert_eq!(reports.len(), 1, "job {job} of {} reported once", e.name);
        assert_eq!(reports[0]["state"], "COMPLETED", "{}", reports[0]);
    }
}
