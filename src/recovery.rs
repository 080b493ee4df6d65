//! Start-up: rebuild what was in flight from AWS alone, and apply the catch-up policy to slots
//! missed while the daemon was down. The daemon keeps no state of its own: execution names say
//! which target and slot an execution is for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use crate::aws::{BackupJobs, CopyJobFilter, ExecutionStatus, JobFilter, StepFunctions};
use crate::clock::Clock;
use crate::execution::{ParsedName, SECOND_TARGET_PART_LEN, Trigger, parse_name, target_part};
use crate::in_flight::Hold;
use crate::launcher::{Fire, Launcher};
use crate::lifecycle::Backup;
use crate::metrics::Metrics;
use crate::model::Instances;
use crate::model::{CatchUp, Config, Rule};
use crate::telemetry::event;
use crate::tracker::TrackerHandle;

/// Pages one listing may read at start-up.
const MAX_PAGES: usize = 200;
/// Slots of one target that catch-up looks at (a per-second schedule over a day is 86,400).
const MAX_SLOTS_CONSIDERED: usize = 10_000;
/// Names of new targets the start-up summary line lists (the count is complete).
const LOGGED_NAMES: usize = 20;

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Running executions picked up.
    pub executions: usize,
    /// Unfinished jobs picked up (their execution had ended).
    pub jobs: usize,
    /// Unfinished copy jobs picked up (their execution had ended).
    pub copies: usize,
    /// Missed slots started late.
    pub caught_up: usize,
    /// Missed slots not started.
    pub skipped: usize,
    /// Targets with no execution in the lookback: new to the orchestrator, nothing started.
    pub without_history: usize,
    /// Targets whose machine's executions could not be listed: nothing decided for them.
    pub unchecked: usize,
    /// The first of the new targets' names, for the summary line.
    pub new_targets: Vec<String>,
}

/// What the executions in the lookback tell: which slots ran, each rule's newest slot, the
/// instances with a running execution, and the machines that could not be listed.
#[derive(Default)]
struct History {
    /// Slots with an execution, by rule (slot key).
    ran: HashSet<(String, DateTime<Utc>)>,
    /// Each rule's newest slot with an execution.
    newest: HashMap<String, DateTime<Utc>>,
    /// Instances with a running execution (followed through it).
    busy: HashSet<String>,
    /// Machines whose executions could not be listed: their targets' history is unknown, so
    /// they are neither caught up nor called new.
    unlisted: HashSet<crate::arn::StateMachineArn>,
    /// The names of the copy executions in the lookback (`copy-{job id}`): a backup whose copy
    /// execution exists had its end reported (the daemon starts it first).
    copy_executions: HashSet<String>,
}

/// What the backup jobs in the lookback tell recovery.
#[derive(Default)]
struct Jobs {
    /// When each COMPLETED job's recovery point was made: a copy's duration counts from there.
    completed_at: HashMap<String, DateTime<Utc>>,
    /// COMPLETED jobs of rules with copies whose copy execution was never started (the daemon
    /// was down when they completed): their copies are started and their end reported now.
    to_copy: Vec<(Arc<Rule>, crate::aws::JobDetail)>,
}

/// Finds our running executions and unfinished jobs, follows them, and catches up missed slots.
#[allow(clippy::too_many_arguments)]
pub async fn recover<S: StepFunctions, B: BackupJobs>(
    config: &Config,
    sfn: &S,
    backup: &B,
    clock: &dyn Clock,
    tracker: &TrackerHandle,
    launcher: &Launcher<S>,
    metrics: &Metrics,
) -> Recovered {
    let now = clock.now();
    let since = now - chrono::Duration::from_std(config.recovery_lookback).unwrap_or_default();
    let mut out = Recovered::default();
    let mut history = History::default();
    resume_executions(config, sfn, since, tracker, metrics, &mut history, &mut out).await;
    let jobs = resume_jobs(
        config,
        backup,
        since,
        now,
        tracker,
        metrics,
        &mut history,
        &mut out,
    )
    .await;
    let copied = recover_copies(config, backup, since, &jobs, tracker, metrics, &mut out).await;
    start_missing_copies(jobs, &copied, tracker, &mut out);
    catch_up_all(config, since, now, &history, launcher, metrics, &mut out);
    log_recovered(config, &out);
    out
}

/// Follows every running execution of ours in the lookback, and notes which slots ran.
async fn resume_executions<S: StepFunctions>(
    config: &Config,
    sfn: &S,
    since: DateTime<Utc>,
    tracker: &TrackerHandle,
    metrics: &Metrics,
    h: &mut History,
    out: &mut Recovered,
) {
    for sm in config.state_machines() {
        // A rule's part of its first names, and of its second names (shorter when its name is
        // long): both tell the rule.
        let by_part: HashMap<String, &Arc<Rule>> = config
            .rules
            .iter()
            .filter(|t| t.settings.state_machine == sm)
            .flat_map(|t| {
                let key = t.slot_key();
                [
                    (target_part(&key, 63), t),
                    (target_part(&key, SECOND_TARGET_PART_LEN), t),
                ]
            })
            .collect();
        let mut token = None;
        'pages: for _ in 0..MAX_PAGES {
            let page = match sfn.list_executions(&sm, None, token).await {
                Ok(p) => p,
                Err(e) => {
                    metrics.api_error(&e);
                    warn!(
                        event = event::AWS_CALL_FAILED,
                        operation = e.operation,
                        state_machine_arn = %sm,
                        request_id = e.request_id.as_deref().unwrap_or(""),
                        error = %e,
                        "restart recovery could not list executions; in-flight backups of this machine are not followed and its missed slots are not caught up"
                    );
                    h.unlisted.insert(sm.clone());
                    break;
                }
            };
            for ex in page.items {
                if ex.start_date < since {
                    break 'pages;
                }
                if ex.name.starts_with(crate::execution::COPY_PREFIX) {
                    h.copy_executions.insert(ex.name.clone());
                    continue;
                }
                let Some(ParsedName::Scheduled {
                    target_part, slot, ..
                }) = parse_name(&ex.name)
                else {
                    continue;
                };
                let Some(t) = by_part.get(&target_part) else {
                    continue;
                };
                h.ran.insert((t.slot_key(), slot));
                h.newest
                    .entry(t.slot_key())
                    .and_modify(|n| *n = (*n).max(slot))
                    .or_insert(slot);
                if ex.status == ExecutionStatus::Running {
                    h.busy.insert(t.resource_arn.to_string());
                    let mut b = Backup::started(
                        t.name.to_string(),
                        t.resource_arn.to_string(),
                        sm.region.clone(),
                        Some(slot),
                        Some(ex.execution_arn.clone()),
                        t.settings.has_hooks(),
                        ex.start_date,
                    );
                    b.hold = hold_of(t);
                    b.copy_plan = t.copy_plan();
                    // Found, not started by this process: its input is checked at the first
                    // DescribeExecution, and a foreign one is not followed as the slot's.
                    b.expected_input = Some(Arc::new(
                        Fire {
                            target: (*t).clone(),
                            slot,
                            trigger: Trigger::Schedule,
                        }
                        .input(),
                    ));
                    resume(tracker, b);
                    out.executions += 1;
                }
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
    }
}

/// Follows the jobs still running whose execution has ended (the plain machine ends at
/// StartBackupJob), and finds the COMPLETED jobs whose copies were never started.
#[allow(clippy::too_many_arguments)]
async fn resume_jobs<B: BackupJobs>(
    config: &Config,
    backup: &B,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    tracker: &TrackerHandle,
    metrics: &Metrics,
    h: &mut History,
    out: &mut Recovered,
) -> Jobs {
    let mut by_resource: HashMap<String, &Arc<Rule>> = HashMap::new();
    // The rule whose copies a job of its instance gets (the first with `copy_to`).
    let mut copying: HashMap<String, &Arc<Rule>> = HashMap::new();
    let mut regions: Vec<String> = Vec::new();
    for t in &config.rules {
        by_resource.insert(t.resource_arn.to_string(), t);
        if !t.settings.copy_to.is_empty() {
            copying.entry(t.resource_arn.to_string()).or_insert(t);
        }
        if !regions.contains(&t.settings.state_machine.region) {
            regions.push(t.settings.state_machine.region.clone());
        }
    }
    let mut jobs = Jobs::default();
    for region in regions {
        let filter = JobFilter {
            created_after: Some(since),
            ..JobFilter::default()
        };
        each_row(
            metrics,
            "restart recovery could not list backup jobs",
            &region,
            |token| backup.list_backup_jobs(&region, &filter, token),
            |j: crate::aws::JobDetail| {
                let Some(resource) = j.resource_arn.clone() else {
                    return;
                };
                let Some(t) = by_resource.get(&resource) else {
                    return;
                };
                if t.settings.state_machine.region != region {
                    return;
                }
                if j.state == crate::aws::JobState::Completed {
                    if let (Some(rp), Some(done)) = (&j.recovery_point_arn, j.completion_date) {
                        jobs.completed_at.insert(rp.clone(), done);
                    }
                    let name = crate::execution::copy_name(&j.job_id);
                    if let Some(c) = copying.get(&resource)
                        && !h.copy_executions.contains(&name)
                        && !h.copy_executions.contains(&format!("{name}-2"))
                    {
                        jobs.to_copy.push(((*c).clone(), j.clone()));
                    }
                }
                if j.state.is_terminal() || h.busy.contains(&resource) {
                    return;
                }
                let mut b = Backup::started(
                    t.name.to_string(),
                    resource.clone(),
                    region.clone(),
                    None,
                    None,
                    false,
                    j.creation_date.unwrap_or(now),
                );
                b.on_job_id(j.job_id.clone());
                b.hold = hold_of(t);
                b.copy_plan = t.copy_plan();
                h.busy.insert(resource);
                resume(tracker, b);
                out.jobs += 1;
            },
        )
        .await;
    }
    jobs
}

/// Starts the copies of the COMPLETED jobs whose copy execution was never started (the daemon
/// was down when they completed), and reports their end, once: unless a copy job of that
/// recovery point is listed already (a machine of an older version copied it itself).
fn start_missing_copies(
    jobs: Jobs,
    copied: &HashSet<String>,
    tracker: &TrackerHandle,
    out: &mut Recovered,
) {
    for (t, j) in jobs.to_copy {
        if j.recovery_point_arn
            .as_ref()
            .is_some_and(|rp| copied.contains(rp))
        {
            continue;
        }
        let mut b = Backup::started(
            t.name.to_string(),
            t.resource_arn.to_string(),
            t.settings.state_machine.region.clone(),
            None,
            None,
            false,
            j.creation_date.unwrap_or_default(),
        );
        b.on_job_id(j.job_id.clone());
        b.hold = hold_of(&t);
        b.copy_plan = t.copy_plan();
        // Followed from its end: the next poll reads it COMPLETED and starts the copies.
        resume(tracker, b);
        out.jobs += 1;
    }
}

/// Applies each enabled rule's catch-up policy to the slots it missed.
fn catch_up_all<S: StepFunctions>(
    config: &Config,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    h: &History,
    launcher: &Launcher<S>,
    metrics: &Metrics,
    out: &mut Recovered,
) {
    for t in config.enabled_rules() {
        if h.unlisted.contains(&t.settings.state_machine) {
            out.unchecked += 1;
            continue;
        }
        catch_up(
            t,
            since,
            now,
            &h.ran,
            // An instance's backups may carry any of its rules' names (the overlap rule).
            match config.instances.rules_of(t) {
                Some(rules) => rules
                    .iter()
                    .filter_map(|r| h.newest.get(&r.slot_key()).copied())
                    .max(),
                None => h.newest.get(&t.slot_key()).copied(),
            },
            &config.instances,
            launcher,
            metrics,
            out,
        );
    }
}

/// The lines that close restart recovery.
fn log_recovered(config: &Config, out: &Recovered) {
    if out.without_history > 0 {
        info!(
            event = event::FIRST_START,
            targets = out.without_history,
            names = ?out.new_targets,
            lookback_seconds = config.recovery_lookback.as_secs(),
            "no execution of these targets in the recovery lookback: treated as new, nothing is caught up; each one's first backup is its next slot"
        );
    }
    info!(
        resumed_executions = out.executions,
        resumed_jobs = out.jobs,
        resumed_copies = out.copies,
        caught_up = out.caught_up,
        skipped = out.skipped,
        new_targets = out.without_history,
        unchecked = out.unchecked,
        "restart recovery done"
    );
}

/// Copy jobs still running: found with ListCopyJobs per region, attributed by instance and
/// destination vault to the rule whose `copy_to` names it (the first such rule of the target,
/// when several do), each followed with its duration counted from its backup's end. Returns the
/// recovery points that have a copy job in the lookback (whatever its state).
async fn recover_copies<B: BackupJobs>(
    config: &Config,
    backup: &B,
    since: DateTime<Utc>,
    jobs: &Jobs,
    tracker: &TrackerHandle,
    metrics: &Metrics,
    out: &mut Recovered,
) -> HashSet<String> {
    let mut by_copy: HashMap<(String, &str), &Rule> = HashMap::new();
    let mut regions: Vec<&str> = Vec::new();
    for t in config
        .rules
        .iter()
        .filter(|t| !t.settings.copy_to.is_empty())
    {
        for d in t.settings.copy_to.iter() {
            by_copy
                .entry((t.resource_arn.to_string(), d.vault.as_str()))
                .or_insert(&**t);
        }
        if !regions.contains(&t.settings.state_machine.region.as_str()) {
            regions.push(&t.settings.state_machine.region);
        }
    }
    let mut copied = HashSet::new();
    for region in regions {
        let filter = CopyJobFilter {
            created_after: Some(since),
            ..CopyJobFilter::default()
        };
        each_row(
            metrics,
            "restart recovery could not list copy jobs; copies in flight are not followed",
            region,
            |token| backup.list_copy_jobs(region, &filter, token),
            |j: crate::aws::CopyJobDetail| {
                let (Some(resource), Some(dest)) = (&j.resource_arn, &j.destination_vault_arn)
                else {
                    return;
                };
                let Some(t) = by_copy.get(&(resource.clone(), dest.as_str())) else {
                    return;
                };
                if let Some(rp) = &j.source_recovery_point_arn {
                    copied.insert(rp.clone());
                }
                if j.state.is_terminal() {
                    return;
                }
                // The backup's end, as a copy's duration counts (the copy job's creation when
                // the backup is older than the lookback).
                let backup_end = j
                    .source_recovery_point_arn
                    .as_ref()
                    .and_then(|rp| jobs.completed_at.get(rp).copied());
                let mut c = crate::copies::Copy::awaiting(
                    t.name.to_string(),
                    t.rule_name().into(),
                    region.to_string(),
                    None,
                    dest.as_str().into(),
                    j.source_recovery_point_arn.clone(),
                    backup_end.or(j.creation_date).unwrap_or(since),
                );
                c.on_job_id(j.copy_job_id.clone());
                info!(
                    event = event::TRACKING_RESUMED,
                    target = %t.name,
                    rule = %t.rule_name(),
                    resource_arn = %resource,
                    destination_vault = %dest,
                    copy_job_id = %j.copy_job_id,
                    "following a copy that was in flight before this start"
                );
                tracker.track_copy(c);
                out.copies += 1;
            },
        )
        .await;
    }
    copied
}

/// Every row of a start-up listing in `region`, page by page (up to [`MAX_PAGES`]), to `each`;
/// a failed call is counted, logged with `failed` and ends the listing.
async fn each_row<T, Fut>(
    metrics: &Metrics,
    failed: &str,
    region: &str,
    list: impl Fn(Option<String>) -> Fut,
    mut each: impl FnMut(T),
) where
    Fut: std::future::Future<Output = Result<crate::aws::Page<T>, crate::aws::ApiError>>,
{
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let page = match list(token).await {
            Ok(p) => p,
            Err(e) => {
                metrics.api_error(&e);
                warn!(
                    event = event::AWS_CALL_FAILED,
                    operation = e.operation,
                    region = %region,
                    request_id = e.request_id.as_deref().unwrap_or(""),
                    error = %e,
                    "{failed}"
                );
                return;
            }
        };
        page.items.into_iter().for_each(&mut each);
        token = page.next_token;
        if token.is_none() {
            return;
        }
    }
}

/// What a recovered backup of `t` holds on its instance (its rule's current retention).
fn hold_of(t: &Rule) -> Hold {
    Hold {
        rule: t.slot_key().into(),
        delete_after_days: t.settings.delete_after_days,
    }
}

fn resume(tracker: &TrackerHandle, b: Backup) {
    info!(
        event = event::TRACKING_RESUMED,
        target = %b.target,
        resource_arn = %b.resource_arn,
        scheduled_for = %b.scheduled_for.map(|s| s.to_rfc3339()).unwrap_or_default(),
        execution_arn = b.execution_arn.as_deref().unwrap_or(""),
        backup_job_id = b.job_id.as_deref().unwrap_or(""),
        "following a backup that was in flight before this start"
    );
    tracker.in_flight.add(&b.resource_arn, b.hold.clone());
    tracker.track(b);
}

/// Missed slots of one target: the latest within its deadline starts under its own slot name
/// (so a second replica or restart cannot run it twice); the others are logged as skipped, one
/// line per reason with the count and the first and last slot.
///
/// A target with no execution in the lookback is new to the orchestrator (a first start, or a
/// target just added): like a Kubernetes CronJob, which does not run the slots from before it
/// existed, nothing is started for it and its first backup is its next slot.
#[allow(clippy::too_many_arguments)]
fn catch_up<S: StepFunctions>(
    t: &Arc<Rule>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    ran: &HashSet<(String, DateTime<Utc>)>,
    newest: Option<DateTime<Utc>>,
    instances: &Instances,
    launcher: &Launcher<S>,
    metrics: &Metrics,
    out: &mut Recovered,
) {
    let Some(newest) = newest else {
        debug!(
            target = %t.name,
            next_slot = %t.settings.schedule.next_after(now).map(|s| s.to_rfc3339()).unwrap_or_default(),
            "no execution of this target in the recovery lookback: new, its first backup is its next slot"
        );
        out.without_history += 1;
        if out.new_targets.len() < LOGGED_NAMES {
            out.new_targets.push(t.name.to_string());
        }
        return;
    };
    // Slots older than the target's newest execution were not missed by downtime.
    let from = newest.max(since);
    let Some(latest) = t.settings.schedule.latest_in(from, now) else {
        return;
    };
    let key = t.slot_key();
    // The overlap rule: the backup that covers the slot is the one to look for and start.
    let covering = instances.decide(t, latest);
    let (_, into, start) = covering.covering();
    if ran.contains(&(key.clone(), latest)) || ran.contains(&(into.slot_key(), start)) {
        return;
    }
    let missed: Vec<DateTime<Utc>> = t
        .settings
        .schedule
        .iter_after(from)
        .take_while(|s| *s < latest)
        .take(MAX_SLOTS_CONSIDERED)
        .filter(|s| !ran.contains(&(key.clone(), *s)))
        .collect();
    let deadline = chrono::Duration::from_std(t.settings.starting_deadline).unwrap_or_default();
    let latest_reason = match t.settings.catch_up {
        CatchUp::None => Some("catch_up_disabled"),
        CatchUp::Latest if now - latest > deadline => Some("past_starting_deadline"),
        CatchUp::Latest => None,
    };
    match latest_reason {
        None => {
            let Some(fire) = crate::scheduler::decide(instances, t, latest, metrics) else {
                return;
            };
            info!(
                target = %fire.target.name,
                rule = %fire.target.rule_name(),
                scheduled_for = %fire.slot.to_rfc3339(),
                last_execution_slot = %newest.to_rfc3339(),
                trigger = Trigger::CatchUp.as_str(),
                "starting the latest slot missed while the orchestrator was down"
            );
            launcher.launch(Fire {
                trigger: Trigger::CatchUp,
                ..fire
            });
            out.caught_up += 1;
        }
        Some(reason) => skip(t, &[latest], reason, metrics, out),
    }
    skip(t, &missed, "superseded", metrics, out);
}

/// Logs `slots` (oldest first) as skipped for `reason`: one line, whatever their number.
fn skip(t: &Rule, slots: &[DateTime<Utc>], reason: &str, metrics: &Metrics, out: &mut Recovered) {
    let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
        return;
    };
    let count = slots.len() as u64;
    out.skipped += slots.len();
    metrics.slots_skipped(&t.name, reason, count);
    warn!(
        event = event::SLOT_SKIPPED,
        target = %t.name,
        resource_arn = %t.resource_arn,
        scheduled_for = %first.to_rfc3339(),
        first_slot = %first.to_rfc3339(),
        last_slot = %last.to_rfc3339(),
        count,
        reason,
        "missed slots not started"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::StartRequest;
    use crate::aws::fake::FakeAws;
    use chrono::TimeZone;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:b";

    fn config(extra: &str) -> Config {
        let text = format!(
            "state_machine_arn = \"{SM}\"\n[defaults]\n{extra}\n\
             [[backup]]\nname = \"hourly\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-00000001\"\nschedule = \"0 * * * *\"\n"
        );
        crate::config::parse(&text, "t.toml").unwrap()
    }

    /// Runs recovery at `now` with `ran` slots already executed; returns what it did and the
    /// executions that exist afterwards.
    async fn recover_at(
        config: &Config,
        now: DateTime<Utc>,
        ran: &[DateTime<Utc>],
    ) -> (Recovered, Vec<String>) {
        let fake = Arc::new(FakeAws::new());
        let sm = crate::arn::StateMachineArn::parse(SM).unwrap();
        for slot in ran {
            let started = fake
                .start_execution(&StartRequest {
                    state_machine: sm.clone(),
                    name: crate::execution::scheduled_name("hourly", *slot),
                    input: "{}".into(),
                })
                .await
                .unwrap();
            fake.finish_execution(
                &started.execution_arn,
                ExecutionStatus::Succeeded,
                Some(r#"{"BackupJobId":"x"}"#),
                None,
            );
        }
        let rig = crate::launcher::testing::rig(&fake, now);
        let out = recover(
            config,
            &*fake,
            &*fake,
            &*rig.clock,
            &rig.handle,
            &rig.launcher,
            &rig.metrics,
        )
        .await;
        rig.launcher.settle().await;
        (out, fake.execution_names())
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, h, m, 0).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_latest_missed_slot_runs_once_and_older_ones_are_skipped() {
        // Ran at 06:00; down from 06:30 to 09:10: 07:00 and 08:00 superseded, 09:00 caught up.
        let (out, names) = recover_at(&config(""), at(9, 10), &[at(6, 0)]).await;
        assert_eq!(out.caught_up, 1);
        assert_eq!(out.skipped, 2);
        assert!(
            names.contains(&"hourly-20261129T090000Z".to_string()),
            "{names:?}"
        );
        assert_eq!(names.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_that_ran_is_not_caught_up_again() {
        let (out, names) = recover_at(&config(""), at(9, 10), &[at(9, 0)]).await;
        assert_eq!(out, Recovered::default());
        assert_eq!(names, vec!["hourly-20261129T090000Z"]);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_deadline_or_disabled_nothing_starts() {
        let (out, names) = recover_at(
            &config("starting_deadline = \"5m\""),
            at(9, 10),
            &[at(6, 0)],
        )
        .await;
        assert_eq!((out.caught_up, out.skipped), (0, 3));
        assert_eq!(names.len(), 1);
        let (out, _) = recover_at(&config("catch_up = \"none\""), at(9, 10), &[at(6, 0)]).await;
        assert_eq!((out.caught_up, out.skipped), (0, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_start_runs_no_missed_slot_and_says_so_in_one_line() {
        let (logs, _guard) = crate::telemetry::capture::start();
        // 09:00 is within the deadline, but the target never ran: it is new, nothing starts.
        let (out, names) = recover_at(&config(""), at(9, 10), &[]).await;
        assert_eq!((out.caught_up, out.skipped, out.without_history), (0, 0, 1));
        assert_eq!(out.new_targets, vec!["hourly"]);
        assert!(names.is_empty(), "{names:?}");
        let first = logs.named(event::FIRST_START);
        assert_eq!(first.len(), 1, "{:?}", logs.lines());
        assert_eq!(first[0]["targets"], 1);
        assert!(logs.named(event::SLOT_SKIPPED).is_empty());
        assert!(
            !logs
                .lines()
                .iter()
                .any(|l| l["message"].as_str().is_some_and(|m| m.contains("down"))),
            "a first start does not claim the daemon was down: {:?}",
            logs.lines()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlisted_machine_makes_no_target_new() {
        let (logs, _guard) = crate::telemetry::capture::start();
        let fake = Arc::new(FakeAws::new());
        fake.fail_next("ListExecutions", crate::aws::ErrorKind::AccessDenied);
        let rig = crate::launcher::testing::rig(&fake, at(9, 10));
        let out = recover(
            &config(""),
            &*fake,
            &*fake,
            &*rig.clock,
            &rig.handle,
            &rig.launcher,
            &rig.metrics,
        )
        .await;
        assert_eq!(
            (out.unchecked, out.without_history, out.caught_up),
            (1, 0, 0)
        );
        assert!(logs.named(event::FIRST_START).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn many_superseded_slots_are_one_line_with_their_count() {
        let (logs, _guard) = crate::telemetry::capture::start();
        // Ran at 00:00; down until 09:10: 01:00 … 08:00 superseded, 09:00 caught up.
        let (out, _) = recover_at(&config(""), at(9, 10), &[at(0, 0)]).await;
        assert_eq!((out.caught_up, out.skipped), (1, 8));
        let skipped = logs.named(event::SLOT_SKIPPED);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0]["reason"], "superseded");
        assert_eq!(skipped[0]["count"], 8);
        assert_eq!(skipped[0]["first_slot"], "2026-11-29T01:00:00+00:00");
        assert_eq!(skipped[0]["last_slot"], "2026-11-29T08:00:00+00:00");
        let started: Vec<_> = logs
            .lines()
            .into_iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("starting the latest slot missed"))
            })
            .collect();
        assert_eq!(started.len(), 1);
        assert_eq!(
            started[0]["last_execution_slot"],
            "2026-11-29T00:00:00+00:00"
        );
    }
}
