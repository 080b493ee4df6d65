//! The tracker's rounds against the in-memory fake: calls per round, batching, backoff.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::calls::MAX_FAILURE_STREAK;
use super::*;
use crate::aws::fake::FakeAws;
use crate::aws::{CopyJobDetail, JobDetail, JobState, StartRequest};
use crate::clock::TokioClock;
use chrono::TimeZone;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap()
}

fn resource(i: usize) -> String {
    format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{i:017x}")
}

fn job(i: usize, state: &str) -> JobDetail {
    JobDetail {
        job_id: format!("job-{i}"),
        resource_arn: Some(resource(i)),
        state: JobState::parse(state),
        percent_done: None,
        backup_size_bytes: None,
        status_message: None,
        recovery_point_arn: None,
        creation_date: Some(t0() + chrono::Duration::seconds(1)),
        completion_date: None,
    }
}

fn setup(fake: &Arc<FakeAws>) -> (Tracker<FakeAws, FakeAws>, TrackerHandle) {
    setup_paced(fake, 1000.0)
}

fn setup_paced(fake: &Arc<FakeAws>, rate: f64) -> (Tracker<FakeAws, FakeAws>, TrackerHandle) {
    Tracker::new(
        fake.clone(),
        fake.clone(),
        Arc::new(TokioClock::starting_at(t0())),
        TrackerSettings {
            poll_interval: Duration::from_secs(1),
            max_poll_interval: Duration::from_secs(8),
            describe_rate: rate,
            backup_read_rate: rate,
        },
        Arc::new(Metrics::new()),
    )
}

/// A tracker (calls paced at `rate`) following `n` RUNNING jobs, due after 1 s.
fn following_running_jobs(
    fake: &Arc<FakeAws>,
    rate: f64,
    n: usize,
) -> (Tracker<FakeAws, FakeAws>, TrackerHandle) {
    let (mut tracker, handle) = setup_paced(fake, rate);
    for i in 0..n {
        fake.set_job(job(i, "RUNNING"));
        let mut b = backup(i, None);
        b.on_job_id(format!("job-{i}"));
        handle.in_flight.add(&b.resource_arn, b.hold.clone());
        handle.track(b);
    }
    drain(&mut tracker);
    (tracker, handle)
}

#[tokio::test(start_paused = true)]
async fn an_outage_costs_a_few_calls_per_round_not_one_per_backup() {
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, handle) = following_running_jobs(&fake, 1000.0, 200);
    // The listing fails, then the first describes of the fallback: the round stops there.
    fake.fail_next("ListBackupJobs", crate::aws::ErrorKind::Transient);
    for _ in 0..10 {
        fake.fail_next("DescribeBackupJob", crate::aws::ErrorKind::Transient);
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(fake.calls("ListBackupJobs"), 1);
    assert_eq!(
        fake.calls("DescribeBackupJob") as u32,
        MAX_FAILURE_STREAK - 1,
        "three failures in a row end the round"
    );
    assert_eq!(tracker.len(), 200, "nothing dropped");

    // Back to normal: one listing reports every job again.
    for i in 0..200 {
        fake.set_job(job(i, "COMPLETED"));
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    tracker.poll_due().await;
    assert_eq!(fake.calls("ListBackupJobs"), 2);
    assert!(tracker.is_empty(), "all finished");
    assert!(handle.in_flight.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_listing_refused_falls_back_to_describing_each_job() {
    // ListBackupJobs denied (a policy without it), DescribeBackupJob allowed: slower, but
    // every job is still followed.
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, _handle) = following_running_jobs(&fake, 1000.0, 20);
    for i in 0..20 {
        fake.set_job(job(i, "COMPLETED"));
    }
    fake.fail_next("ListBackupJobs", crate::aws::ErrorKind::AccessDenied);
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(fake.calls("DescribeBackupJob"), 20);
    assert!(tracker.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_cuts_a_long_poll_round_short() {
    // 200 jobs described one by one at 0.1/s would take 2,000 s.
    let fake = Arc::new(FakeAws::new());
    let (tracker, handle) = following_running_jobs(&fake, 0.1, 200);
    fake.fail_next("ListBackupJobs", crate::aws::ErrorKind::AccessDenied);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(tracker.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        fake.calls("DescribeBackupJob") >= 1,
        "the round is under way"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the tracker stops within a second of shutdown")
        .unwrap();
    drop(handle);
}

fn drain(tracker: &mut Tracker<FakeAws, FakeAws>) {
    while let Ok(b) = tracker.rx.try_recv() {
        tracker.insert_backup(b);
    }
}

fn backup(i: usize, execution_arn: Option<String>) -> Backup {
    Backup::started(
        format!("t{i}"),
        resource(i),
        "us-east-1".into(),
        Some(t0()),
        execution_arn,
        false,
        t0(),
    )
}

#[tokio::test(start_paused = true)]
async fn many_jobs_are_polled_with_one_listing_not_one_call_each() {
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, handle) = following_running_jobs(&fake, 1000.0, 200);
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(fake.calls("ListBackupJobs"), 1);
    assert_eq!(fake.calls("DescribeBackupJob"), 0);

    for i in 0..200 {
        fake.set_job(job(i, "COMPLETED"));
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(fake.calls("ListBackupJobs"), 2);
    assert_eq!(fake.calls("DescribeBackupJob"), 0);
    assert!(tracker.is_empty(), "all finished");
    assert!(
        tracker.backups.capacity() < 64,
        "room for the burst is given back"
    );
    assert!(handle.in_flight.is_empty());
}

#[tokio::test(start_paused = true)]
async fn executions_find_their_jobs_by_listing_when_many_are_waiting() {
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, handle) = setup(&fake);
    let sm =
        crate::arn::StateMachineArn::parse("arn:aws:states:us-east-1:123456789012:stateMachine:b")
            .unwrap();
    for i in 0..20 {
        let started = fake
            .start_execution(&StartRequest {
                state_machine: sm.clone(),
                name: format!("t{i}-20261129T030000Z"),
                input: "{}".into(),
            })
            .await
            .unwrap();
        fake.set_job(job(i, "CREATED"));
        handle.track(backup(i, Some(started.execution_arn)));
    }
    drain(&mut tracker);
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(
        fake.calls("DescribeExecution"),
        0,
        "listing found every job"
    );
    assert_eq!(fake.calls("ListBackupJobs"), 1);
    for (_, b) in tracker.backups.iter() {
        let i: usize = b.target[1..].parse().unwrap();
        assert_eq!(b.job_id.as_deref(), Some(format!("job-{i}").as_str()));
    }
}

/// Issue 11 §4: ten executions of ONE instance started in the same second, their jobs
/// created in the reverse order. A listing cannot tell whose job is whose (it guessed by
/// resource and creation time, and named other executions' jobs); each must learn its job
/// from its own record. Fails without the fix: jobs attributed in creation order.
#[tokio::test(start_paused = true)]
async fn executions_sharing_an_instance_learn_their_job_from_their_own_record() {
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, handle) = setup(&fake);
    let sm =
        crate::arn::StateMachineArn::parse("arn:aws:states:us-east-1:123456789012:stateMachine:b")
            .unwrap();
    let n = 10;
    let mut arns = Vec::new();
    for i in 0..n {
        let started = fake
            .start_execution(&StartRequest {
                state_machine: sm.clone(),
                name: format!("r{i}-20261129T030000Z"),
                input: "{}".into(),
            })
            .await
            .unwrap();
        // Job i is created later the earlier its execution started.
        let mut j = job(i, "CREATED");
        j.resource_arn = Some(resource(0));
        j.creation_date = Some(t0() + chrono::Duration::seconds((n - i) as i64));
        fake.set_job(j);
        fake.finish_execution(
            &started.execution_arn,
            crate::aws::ExecutionStatus::Succeeded,
            Some(&format!("{{\"BackupJobId\":\"job-{i}\"}}")),
            None,
        );
        let mut b = backup(i, Some(started.execution_arn.clone()));
        b.resource_arn = resource(0);
        handle.in_flight.add(&b.resource_arn, b.hold.clone());
        handle.track(b);
        arns.push(started.execution_arn);
    }
    drain(&mut tracker);
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    for (_, b) in tracker.backups.iter() {
        let i: usize = b.target[1..].parse().unwrap();
        assert_eq!(
            b.job_id.as_deref(),
            Some(format!("job-{i}").as_str()),
            "{}",
            b.target
        );
    }
    assert_eq!(
        fake.calls("DescribeExecution"),
        n,
        "the fallback costs one DescribeExecution per execution"
    );
}

#[tokio::test(start_paused = true)]
async fn a_few_backups_are_described_one_by_one_and_back_off_while_quiet() {
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, handle) = setup(&fake);
    for i in 0..2 {
        fake.set_job(job(i, "RUNNING"));
        let mut b = backup(i, None);
        b.on_job_id(format!("job-{i}"));
        handle.track(b);
    }
    drain(&mut tracker);
    // Polls at 1 s (change: first state seen), then 2 s later, 4 s, 8 s, 8 s: 5 rounds in 23 s.
    for _ in 0..23 {
        tokio::time::advance(Duration::from_secs(1)).await;
        tracker.poll_due().await;
    }
    assert_eq!(fake.calls("ListBackupJobs"), 0);
    assert_eq!(fake.calls("DescribeBackupJob"), 2 * 5);
}

const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";

fn copy_plan() -> Arc<crate::copies::CopyPlan> {
    Arc::new(crate::copies::CopyPlan {
        rule: "daily".into(),
        destinations: vec![crate::copies::Destination {
            vault: crate::arn::BackupVaultArn::parse(DR).unwrap(),
            delete_after_days: 90,
        }]
        .into(),
        state_machine: crate::arn::StateMachineArn::parse(
            "arn:aws:states:us-east-1:123456789012:stateMachine:backup",
        )
        .unwrap(),
    })
}

fn completed(i: usize) -> JobDetail {
    let mut j = job(i, "COMPLETED");
    j.recovery_point_arn = Some(format!("rp-{i}"));
    j.completion_date = Some(t0() + chrono::Duration::seconds(10));
    j
}

fn copy_job(i: usize, state: &str) -> CopyJobDetail {
    CopyJobDetail {
        copy_job_id: format!("c-{i}"),
        state: JobState::parse(state),
        status_message: None,
        resource_arn: Some(resource(i)),
        source_recovery_point_arn: Some(format!("rp-{i}")),
        destination_vault_arn: Some(DR.into()),
        destination_recovery_point_arn: None,
        creation_date: Some(t0() + chrono::Duration::seconds(20)),
        completion_date: None,
    }
}

/// 20 backups with a copy each: one ListCopyJobs finds every copy job (by source recovery
/// point and destination, no execution read), one more reports their ends.
#[tokio::test(start_paused = true)]
async fn copies_of_many_backups_are_found_and_followed_by_listing() {
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, handle) = setup(&fake);
    for i in 0..20 {
        fake.set_job(job(i, "RUNNING"));
        let mut b = backup(
            i,
            Some(format!("arn:aws:states:us-east-1:1:execution:b:e{i}")),
        );
        b.copy_plan = Some(copy_plan());
        b.on_job_id(format!("job-{i}"));
        handle.in_flight.add(&b.resource_arn, b.hold.clone());
        handle.track(b);
    }
    drain(&mut tracker);
    for i in 0..20 {
        fake.set_job(completed(i));
        fake.set_copy_job(copy_job(i, "RUNNING"));
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert!(tracker.is_empty(), "every backup finished");
    assert!(handle.in_flight.is_empty(), "copies hold no instance");
    assert_eq!(tracker.copies_len(), 20);
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(fake.calls("ListCopyJobs"), 1);
    assert!(tracker.copies.iter().all(|(_, c)| c.copy_job_id.is_some()));
    for i in 0..20 {
        fake.set_copy_job(copy_job(i, "COMPLETED"));
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(tracker.copies_len(), 0, "every copy finished");
    assert_eq!(fake.calls("ListCopyJobs"), 2);
    assert_eq!(fake.calls("DescribeCopyJob"), 0);
    assert_eq!(fake.calls("DescribeExecution"), 0);
}

/// A backup that did not complete waits for no copy; a COMPLETED one gets its copy execution
/// (`copy-{job id}`, started by the tracker), and a refused copy ends FAILED from that
/// execution's output.
#[tokio::test(start_paused = true)]
async fn only_completed_backups_wait_for_copies_and_a_refusal_ends_the_copy() {
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, handle) = setup(&fake);
    let sm =
        crate::arn::StateMachineArn::parse("arn:aws:states:us-east-1:123456789012:stateMachine:b")
            .unwrap();
    let mut arns = Vec::new();
    for (i, state) in [(0, "COMPLETED"), (1, "FAILED")] {
        let started = fake
            .start_execution(&StartRequest {
                state_machine: sm.clone(),
                name: format!("t{i}-20261129T030000Z"),
                input: "{}".into(),
            })
            .await
            .unwrap();
        let mut j = completed(i);
        j.state = JobState::parse(state);
        fake.set_job(j);
        let mut b = backup(i, Some(started.execution_arn.clone()));
        b.copy_plan = Some(copy_plan());
        b.on_job_id(format!("job-{i}"));
        handle.track(b);
        arns.push(started.execution_arn);
    }
    drain(&mut tracker);
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(tracker.copies_len(), 1, "only the COMPLETED backup's copy");
    assert_eq!(fake.calls("StartExecution"), 2 + 1, "one copy execution");
    let copy_arn = copy_plan().state_machine.execution_arn("copy-job-0");
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(tracker.copies_len(), 1, "the copy execution still runs");
    fake.finish_execution(
        &copy_arn,
        crate::aws::ExecutionStatus::Succeeded,
        Some(&format!(
            r#"{{"BackupJobId":"job-0","Copies":[{{"DestinationBackupVaultArn":"{DR}","Error":"Backup.AccessDeniedException","Cause":"no"}}]}}"#
        )),
        None,
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    tracker.poll_due().await;
    assert_eq!(tracker.copies_len(), 0, "the refusal ended it");
    assert_eq!(fake.calls("DescribeCopyJob"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_call_is_retried_at_the_next_poll() {
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, handle) = setup(&fake);
    fake.set_job(job(0, "COMPLETED"));
    let mut b = backup(0, None);
    b.on_job_id("job-0".into());
    handle.in_flight.add(&b.resource_arn, b.hold.clone());
    handle.track(b);
    drain(&mut tracker);
    fake.fail_next("DescribeBackupJob", crate::aws::ErrorKind::Throttled);
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(tracker.len(), 1, "not dropped");
    tokio::time::advance(Duration::from_secs(2)).await;
    tracker.poll_due().await;
    assert!(tracker.is_empty());
    assert!(handle.in_flight.is_empty());
}

/// An execution found running at start under a slot's name but backing up another instance
/// (someone else started it) is not followed as the slot's: no summary line, nothing held.
#[tokio::test(start_paused = true)]
async fn a_foreign_execution_found_at_start_is_not_followed_as_the_slot_s() {
    let fake = Arc::new(FakeAws::new());
    let (mut tracker, handle) = setup(&fake);
    let sm =
        crate::arn::StateMachineArn::parse("arn:aws:states:us-east-1:123456789012:stateMachine:b")
            .unwrap();
    let ours = crate::execution::ExecutionInput {
        resource_arn: resource(0),
        target: "t0".into(),
        scheduled_for: "2026-11-29T03:00:00Z".into(),
        trigger: crate::execution::Trigger::Schedule,
        start_window_minutes: 60,
        complete_window_minutes: 10080,
        delete_after_days: 35,
        pre_command: None,
        post_command: None,
        pre_document: None,
        post_document: None,
        post_hook_when: None,
        hook_max_downtime_seconds: None,
        on_pre_hook_failure: None,
        backup_options: None,
    };
    let theirs = crate::execution::ExecutionInput {
        resource_arn: resource(9),
        ..ours.clone()
    };
    let mut arns = Vec::new();
    for (i, input) in [(0, &ours), (1, &theirs)] {
        let started = fake
            .start_execution(&StartRequest {
                state_machine: sm.clone(),
                name: format!("t0-2026112{i}T030000Z"),
                input: input.to_json(),
            })
            .await
            .unwrap();
        let mut b = backup(0, Some(started.execution_arn.clone()));
        b.expected_input = Some(Arc::new(ours.clone()));
        handle.in_flight.add(&b.resource_arn, b.hold.clone());
        handle.track(b);
        arns.push(started.execution_arn);
    }
    drain(&mut tracker);
    tokio::time::advance(Duration::from_secs(1)).await;
    tracker.poll_due().await;
    assert_eq!(tracker.len(), 1, "only our own execution is followed");
    assert_eq!(
        handle.in_flight.holds(&resource(0)).len(),
        1,
        "the foreign one holds nothing"
    );
}
