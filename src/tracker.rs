//! Follows executions and backup jobs to their end, and logs each change once.
//!
//! Polling is paced: each backup is asked about after `poll_interval`, doubling while nothing
//! changes (up to `max_poll_interval`), and every call takes a token from its API's bucket.
//! When many backups are due at once the tracker batches: one ListBackupJobs page reports up to
//! 1000 jobs, so calls per poll grow with pages, not with jobs (DescribeExecution refills at
//! only 10-15/s).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::aws::{
    ApiError, BackupJobs, CopyJobDetail, CopyJobFilter, ExecutionStatus, JobDetail, JobFilter,
    JobState, StepFunctions,
};
use crate::clock::Clock;
use crate::copies::{self, Copy, CopyChange};
use crate::hooks;
use crate::lifecycle::{Backup, Change, Summary, job_id_from_output};
use crate::metrics::Metrics;
use crate::pacing::TokenBucket;
use crate::telemetry::event;

/// Above this many due backups in one phase, the tracker lists instead of describing each.
pub const BATCH_THRESHOLD: usize = 8;
/// Clock skew allowed between an execution's start and its job's creation date.
const CREATION_SKEW: chrono::Duration = chrono::Duration::minutes(5);
/// Pages one ListBackupJobs sweep may read.
const MAX_LIST_PAGES: usize = 100;
/// Failed calls in a row after which a poll round stops calling: the rest wait for the next
/// round. Without it an outage turned one round into a call per backup (10,000 failing calls
/// at 5/s: half an hour, and as many log lines).
const MAX_FAILURE_STREAK: u32 = 3;

/// What one backup in flight holds on its instance: which rule runs it and how long its
/// recovery point is kept (the overlap rule of a slot that fires meanwhile reads it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hold {
    /// The running rule's [`crate::config::Target::slot_key`]; empty when not known.
    pub rule: Arc<str>,
    /// Its `delete_after_days`; 0 when not known (then treated as the shortest).
    pub delete_after_days: u32,
}

/// Resources with a backup in flight (the `concurrency = "forbid"` rule reads it).
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    held: Arc<Mutex<HashMap<String, Vec<Hold>>>>,
    freed: Arc<tokio::sync::Notify>,
}

impl InFlight {
    /// Marks one more backup of `resource` in flight.
    pub fn add(&self, resource: &str, hold: Hold) {
        self.held
            .lock()
            .expect("in-flight lock")
            .entry(resource.to_string())
            .or_default()
            .push(hold);
    }

    /// Marks one backup of `resource` done (the one holding `hold`, else any).
    pub fn remove(&self, resource: &str, hold: &Hold) {
        let mut m = self.held.lock().expect("in-flight lock");
        if let Some(v) = m.get_mut(resource) {
            let i = v.iter().position(|h| h == hold).unwrap_or(0);
            if i < v.len() {
                v.remove(i);
            }
            if v.is_empty() {
                m.remove(resource);
            }
        }
        drop(m);
        self.freed.notify_waiters();
    }

    /// True when a backup of `resource` is in flight.
    pub fn contains(&self, resource: &str) -> bool {
        self.held
            .lock()
            .expect("in-flight lock")
            .contains_key(resource)
    }

    /// What the backups of `resource` in flight hold.
    pub fn holds(&self, resource: &str) -> Vec<Hold> {
        self.held
            .lock()
            .expect("in-flight lock")
            .get(resource)
            .cloned()
            .unwrap_or_default()
    }

    /// Resolves at the next removal (make it before checking, so that none is missed).
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Backups in flight.
    pub fn len(&self) -> usize {
        self.held
            .lock()
            .expect("in-flight lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends backups to the tracker. The sender must already have marked them in [`InFlight`].
#[derive(Clone)]
pub struct TrackerHandle {
    tx: mpsc::UnboundedSender<Backup>,
    copy_tx: mpsc::UnboundedSender<Copy>,
    /// Resources in flight.
    pub in_flight: InFlight,
}

impl TrackerHandle {
    /// Follows `b` until it ends. A backup the tracker follows already is ignored.
    pub fn track(&self, b: Backup) {
        if let Err(e) = self.tx.send(b) {
            // Only after shutdown: the backup is still in AWS; a restart recovers it.
            self.in_flight.remove(&e.0.resource_arn, &e.0.hold);
        }
    }

    /// Follows a copy until it ends (restart recovery: a copy job in flight). A copy the
    /// tracker follows already is ignored.
    pub fn track_copy(&self, c: Copy) {
        // After shutdown the copy is still in AWS; a restart recovers it.
        let _ = self.copy_tx.send(c);
    }
}

struct CopyEntry {
    copy: Copy,
    next_poll: Instant,
    interval: Duration,
}

struct Entry {
    backup: Backup,
    next_poll: Instant,
    interval: Duration,
}

/// Polling settings.
#[derive(Debug, Clone, Copy)]
pub struct TrackerSettings {
    /// First poll delay.
    pub poll_interval: Duration,
    /// Backoff ceiling.
    pub max_poll_interval: Duration,
    /// DescribeExecution / GetExecutionHistory per second.
    pub describe_rate: f64,
    /// DescribeBackupJob / ListBackupJobs per second.
    pub backup_read_rate: f64,
}

/// The tracking loop.
pub struct Tracker<S, B> {
    sfn: Arc<S>,
    backup: Arc<B>,
    clock: Arc<dyn Clock>,
    rx: mpsc::UnboundedReceiver<Backup>,
    copy_rx: mpsc::UnboundedReceiver<Copy>,
    /// Copies of completed backups, keyed by execution ARN (or copy job id) and destination.
    copies: HashMap<Arc<str>, Box<CopyEntry>>,
    /// Keyed by execution ARN (or job id); shared keys, so that a poll round's lists and sets
    /// of 10,000 keys are pointers, not copies. Boxed: a burst's map then holds pointers, not
    /// ~500-byte entries in every bucket.
    entries: HashMap<Arc<str>, Box<Entry>>,
    settings: TrackerSettings,
    describe_bucket: TokenBucket,
    backup_bucket: TokenBucket,
    in_flight: InFlight,
    metrics: Arc<Metrics>,
    finished_tx: Option<mpsc::UnboundedSender<(Backup, Summary)>>,
    /// The earliest `next_poll`, kept as entries come and go: recomputing it on every insert
    /// made a 10,000-backup burst quadratic.
    next_due: Option<Instant>,
    /// Calls failed in a row in this poll round (see [`MAX_FAILURE_STREAK`]); atomic only
    /// because the polling futures borrow the tracker shared.
    failure_streak: AtomicU32,
    /// Calls this round did not make because of the streak.
    calls_held: AtomicU32,
}

fn key_of(b: &Backup) -> Arc<str> {
    b.execution_arn
        .clone()
        .or_else(|| b.job_id.clone())
        .unwrap_or_else(|| format!("{}@{}", b.resource_arn, b.started_at))
        .into()
}

fn log_api_error(b: &Backup, e: &ApiError) {
    warn!(
        event = event::AWS_CALL_FAILED,
        target = %b.target,
        operation = e.operation,
        error_kind = e.kind.as_str(),
        request_id = e.request_id.as_deref().unwrap_or(""),
        error = %e,
        "tracking call failed; retried at the next poll"
    );
}

impl<S: StepFunctions, B: BackupJobs> Tracker<S, B> {
    /// A tracker and the handle that feeds it.
    pub fn new(
        sfn: Arc<S>,
        backup: Arc<B>,
        clock: Arc<dyn Clock>,
        settings: TrackerSettings,
        metrics: Arc<Metrics>,
    ) -> (Self, TrackerHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (copy_tx, copy_rx) = mpsc::unbounded_channel();
        let in_flight = InFlight::default();
        let burst = |rate: f64| (rate.ceil() as u32).max(1);
        let tracker = Tracker {
            sfn,
            backup,
            clock,
            rx,
            copy_rx,
            copies: HashMap::new(),
            entries: HashMap::new(),
            settings,
            describe_bucket: TokenBucket::new(
                settings.describe_rate,
                burst(settings.describe_rate),
            ),
            backup_bucket: TokenBucket::new(
                settings.backup_read_rate,
                burst(settings.backup_read_rate),
            ),
            in_flight: in_flight.clone(),
            metrics,
            finished_tx: None,
            next_due: None,
            failure_streak: AtomicU32::new(0),
            calls_held: AtomicU32::new(0),
        };
        (
            tracker,
            TrackerHandle {
                tx,
                copy_tx,
                in_flight,
            },
        )
    }

    /// Runs until `shutdown`, or until every handle is dropped and nothing is left to follow.
    /// A poll round in progress is cut short by `shutdown`: what it did not ask about is still
    /// in AWS, and the next start's recovery follows it.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut open = true;
        loop {
            if !open && self.entries.is_empty() && self.copies.is_empty() {
                break;
            }
            let next = self.next_due;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                b = self.rx.recv(), if open => match b {
                    Some(b) => self.insert(b),
                    None => open = false,
                },
                Some(c) = self.copy_rx.recv(), if open => self.insert_copy(c),
                () = sleep_until_opt(next) => {
                    if !self.poll_until(&shutdown).await {
                        break;
                    }
                }
            }
        }
    }

    /// One poll round, or less if `shutdown` comes first; false if it did.
    async fn poll_until(&mut self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => false,
            () = self.poll_due() => true,
        }
    }

    fn insert(&mut self, b: Backup) {
        let key = key_of(&b);
        if self.entries.contains_key(&key) {
            // Already followed (a replica's or a retry's duplicate): one summary only.
            self.in_flight.remove(&b.resource_arn, &b.hold);
            return;
        }
        self.metrics.set_in_flight(self.entries.len() + 1);
        let next_poll = Instant::now() + self.settings.poll_interval;
        self.next_due = Some(self.next_due.map_or(next_poll, |n| n.min(next_poll)));
        self.entries.insert(
            key,
            Box::new(Entry {
                backup: b,
                next_poll,
                interval: self.settings.poll_interval,
            }),
        );
    }

    fn insert_copy(&mut self, c: Copy) {
        let key: Arc<str> = format!(
            "{}|{}",
            c.execution_arn
                .as_deref()
                .or(c.copy_job_id.as_deref())
                .unwrap_or(&c.target),
            c.destination_vault
        )
        .into();
        if self.copies.contains_key(&key) {
            return;
        }
        let next_poll = Instant::now() + self.settings.poll_interval;
        self.next_due = Some(self.next_due.map_or(next_poll, |n| n.min(next_poll)));
        self.copies.insert(
            key,
            Box::new(CopyEntry {
                copy: c,
                next_poll,
                interval: self.settings.poll_interval,
            }),
        );
        self.metrics.set_copies_in_flight(self.copies.len());
    }

    /// The copies a backup that just COMPLETED is waiting for (none without `copy_to`).
    fn expect_copies(&mut self, b: &Backup) {
        let (Some(plan), Some(_)) = (&b.copy_plan, &b.execution_arn) else {
            // Without its execution a backup has no copies to wait for: the machine that
            // copies runs until the copies are started.
            return;
        };
        if b.job_state != Some(JobState::Completed) {
            // A failed or expired backup starts no copy: the machine only copies COMPLETED ones.
            return;
        }
        let rp = b.job.as_ref().and_then(|j| j.recovery_point_arn.clone());
        // The job's end: its copies are created after it (a listing looks from there on).
        let since = b
            .job
            .as_ref()
            .and_then(|j| j.completion_date)
            .unwrap_or_else(|| self.clock.now());
        for d in plan.destinations.iter() {
            self.insert_copy(Copy::awaiting(
                b.target.clone(),
                plan.rule.clone(),
                b.region.clone(),
                b.execution_arn.clone(),
                d.vault.as_str().into(),
                rp.clone(),
                since,
            ));
        }
    }

    /// Copies followed right now.
    pub fn copies_len(&self) -> usize {
        self.copies.len()
    }

    /// Also sends each backup's summary to `tx` when it ends (`run-now` waits on these).
    pub fn report_finished_to(&mut self, tx: mpsc::UnboundedSender<(Backup, Summary)>) {
        self.finished_tx = Some(tx);
    }

    /// Backups followed right now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is followed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Polls every due backup once (batched where that saves calls).
    pub async fn poll_due(&mut self) {
        self.failure_streak.store(0, Ordering::Relaxed);
        self.calls_held.store(0, Ordering::Relaxed);
        self.poll_backups().await;
        self.poll_copies().await;
        let held = self.calls_held.load(Ordering::Relaxed);
        if held > 0 {
            warn!(
                event = event::AWS_CALL_FAILED,
                calls_held = held,
                "tracking calls kept failing; the other backups due are asked about at the next poll"
            );
        }
        self.next_due = self
            .entries
            .values()
            .map(|e| e.next_poll)
            .chain(self.copies.values().map(|e| e.next_poll))
            .min();
    }

    async fn poll_backups(&mut self) {
        let due = due_keys(&self.entries, |e| e.next_poll);
        if due.is_empty() {
            return;
        }
        let mut changed: HashSet<Arc<str>> = HashSet::new();

        let awaiting: Vec<Arc<str>> = due
            .iter()
            .filter(|k| self.entries[*k].backup.awaits_job())
            .cloned()
            .collect();
        // Jobs a listing already reported this round are not asked about again.
        let mut described: HashSet<Arc<str>> = HashSet::new();
        // Executions of an instance that has others in flight: a listing cannot tell whose job
        // is whose, so these learn theirs only from their own record (output or history).
        let shared = self.sharing_an_instance(&awaiting);
        let listable: Vec<Arc<str>> = awaiting
            .iter()
            .filter(|k| !shared.contains(*k))
            .cloned()
            .collect();
        if awaiting.len() > BATCH_THRESHOLD && !listable.is_empty() {
            self.discover_jobs_by_listing(&listable, &mut changed, &mut described)
                .await;
        }
        for k in &due {
            let needs = self
                .entries
                .get(k)
                .is_some_and(|e| e.backup.needs_execution());
            let batched_and_young = awaiting.len() > BATCH_THRESHOLD
                && !shared.contains(k)
                && self.entries.get(k).is_some_and(|e| {
                    e.backup.awaits_job() && e.interval < self.settings.max_poll_interval
                });
            // In batch mode an execution is described only once listing has not found its
            // job for a while (it may have failed): failures are rare, listing is cheap.
            if needs && !batched_and_young && !changed.contains(k) {
                self.poll_execution(k, shared.contains(k), &mut changed)
                    .await;
            }
        }

        let job_due: Vec<Arc<str>> = due
            .iter()
            .filter(|k| !described.contains(*k))
            .filter(|k| self.entries.get(*k).is_some_and(|e| e.backup.needs_job()))
            .cloned()
            .collect();
        if job_due.len() > BATCH_THRESHOLD {
            self.sweep_jobs_by_listing(&job_due, &mut changed, &mut described)
                .await;
        }
        for k in &job_due {
            if !described.contains(k) {
                self.poll_job(k, &mut changed).await;
            }
        }

        let now = Instant::now();
        for k in &due {
            let Some(e) = self.entries.get_mut(k) else {
                continue;
            };
            if e.backup.is_finished() {
                let b = self.entries.remove(k).expect("present").backup;
                self.in_flight.remove(&b.resource_arn, &b.hold);
                self.expect_copies(&b);
                continue;
            }
            e.interval = next_interval(&self.settings, e.interval, changed.contains(k));
            e.next_poll = now + e.interval;
        }
        // After a burst the map would keep room for every backup of it (8 MiB at 10,000).
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
        self.metrics.set_in_flight(self.entries.len());
    }

    /// False once this round saw [`MAX_FAILURE_STREAK`] failed calls in a row (counted as held).
    fn may_call(&self) -> bool {
        if self.failure_streak.load(Ordering::Relaxed) < MAX_FAILURE_STREAK {
            return true;
        }
        self.calls_held.fetch_add(1, Ordering::Relaxed);
        false
    }

    fn call_ok(&self) {
        self.failure_streak.store(0, Ordering::Relaxed);
        self.metrics.api_ok();
    }

    fn call_failed(&self, e: &ApiError) {
        self.failure_streak.fetch_add(1, Ordering::Relaxed);
        self.metrics.api_error(e);
    }

    /// The keys among `awaiting` whose instance has another backup followed (in flight).
    fn sharing_an_instance(&self, awaiting: &[Arc<str>]) -> HashSet<Arc<str>> {
        let mut per_resource: HashMap<&str, usize> = HashMap::new();
        for e in self.entries.values() {
            *per_resource
                .entry(e.backup.resource_arn.as_str())
                .or_default() += 1;
        }
        awaiting
            .iter()
            .filter(|k| per_resource[self.entries[*k].backup.resource_arn.as_str()] > 1)
            .cloned()
            .collect()
    }

    /// Asks about one execution; `own_record`: while it runs, read its job from its own history
    /// (the hook variant outlives the job; an execution sharing its instance must not guess).
    async fn poll_execution(
        &mut self,
        key: &str,
        own_record: bool,
        changed: &mut HashSet<Arc<str>>,
    ) {
        let Some(arn) = self.entries[key].backup.execution_arn.clone() else {
            return;
        };
        if !self.may_call() {
            return;
        }
        self.describe_bucket.acquire().await;
        let detail = match self.sfn.describe_execution(&arn).await {
            Ok(d) => {
                self.call_ok();
                d
            }
            Err(e) => {
                self.call_failed(&e);
                log_api_error(&self.entries[key].backup, &e);
                return;
            }
        };
        let now = self.clock.now();
        let entry = self.entries.get_mut(key).expect("present");
        let was_closed = entry.backup.execution_status.as_ref().is_some_and(|s| {
            !matches!(
                s,
                crate::aws::ExecutionStatus::Running | crate::aws::ExecutionStatus::PendingRedrive
            )
        });
        let mut changes = entry.backup.on_execution(&detail, now);
        let running = detail.status == crate::aws::ExecutionStatus::Running;
        let closed_now =
            !was_closed && !running && detail.status != crate::aws::ExecutionStatus::PendingRedrive;
        if closed_now && entry.backup.hooks {
            // Before the summary: the hooks' lines come first when the execution ends last.
            self.report_hooks(&arn, key).await;
        }
        let entry = self.entries.get_mut(key).expect("present");
        let outlives_job = entry.backup.hooks || entry.backup.copy_plan.is_some();
        if running && entry.backup.awaits_job() && (outlives_job || own_record) {
            // The hook and copy variants run as long as the backup: read the job from history.
            if let Some(id) = self.job_id_from_history(&arn, key).await {
                let entry = self.entries.get_mut(key).expect("present");
                changes.extend(entry.backup.on_job_id(id));
            }
        }
        self.report(key, changes, changed);
    }

    /// Reads a closed hook execution's history and logs one `hook_finished` line per phase,
    /// the post line with the application's downtime.
    async fn report_hooks(&self, arn: &str, key: &str) {
        let mut events = Vec::new();
        let mut token = None;
        for _ in 0..MAX_LIST_PAGES {
            if !self.may_call() {
                return;
            }
            self.describe_bucket.acquire().await;
            match self.sfn.execution_history(arn, token).await {
                Ok(page) => {
                    self.call_ok();
                    events.extend(page.items);
                    token = page.next_token;
                    if token.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    // The backup itself is still followed; only the hook lines are lost.
                    self.call_failed(&e);
                    log_api_error(&self.entries[key].backup, &e);
                    return;
                }
            }
        }
        let b = &self.entries[key].backup;
        let report = hooks::read_history(&events);
        let downtime = report.downtime();
        for run in [&report.pre, &report.post].into_iter().flatten() {
            let downtime_seconds = (run.phase == hooks::Phase::Post)
                .then_some(downtime)
                .flatten()
                .map(|d| d.as_secs_f64());
            let job_state = (run.phase == hooks::Phase::Post)
                .then(|| report.job_state_at_post.clone())
                .flatten();
            if run.phase == hooks::Phase::Post && report.post_before_job_started() {
                warn!(
                    event = event::HOOK_FINISHED,
                    target = %b.target,
                    execution_arn = arn,
                    phase = run.phase.as_str(),
                    status = %run.status,
                    command_id = run.command_id.as_deref().unwrap_or(""),
                    duration_seconds = run.duration().as_secs_f64(),
                    downtime_seconds,
                    job_state = job_state.as_deref().unwrap_or(""),
                    crash_consistent = true,
                    "post hook ran before the backup job started (hook_max_downtime): the backup goes on crash-consistent"
                );
            } else if run.succeeded() {
                info!(
                    event = event::HOOK_FINISHED,
                    target = %b.target,
                    execution_arn = arn,
                    phase = run.phase.as_str(),
                    status = %run.status,
                    command_id = run.command_id.as_deref().unwrap_or(""),
                    duration_seconds = run.duration().as_secs_f64(),
                    downtime_seconds,
                    "hook finished"
                );
            } else {
                warn!(
                    event = event::HOOK_FINISHED,
                    target = %b.target,
                    execution_arn = arn,
                    phase = run.phase.as_str(),
                    status = %run.status,
                    command_id = run.command_id.as_deref().unwrap_or(""),
                    duration_seconds = run.duration().as_secs_f64(),
                    downtime_seconds,
                    "hook did not succeed"
                );
            }
        }
        if let Some(d) = downtime {
            self.metrics.hook_downtime(&b.target, d.as_secs_f64());
        }
    }

    async fn job_id_from_history(&self, arn: &str, key: &str) -> Option<String> {
        let mut token = None;
        for _ in 0..MAX_LIST_PAGES {
            if !self.may_call() {
                return None;
            }
            self.describe_bucket.acquire().await;
            match self.sfn.execution_history(arn, token).await {
                Ok(page) => {
                    self.call_ok();
                    let found = page.items.iter().find_map(|ev| {
                        (ev.kind == "TaskSucceeded"
                            && ev.resource.as_deref() == Some("startBackupJob"))
                        .then(|| ev.output.as_deref().and_then(job_id_from_output))
                        .flatten()
                    });
                    if found.is_some() {
                        return found;
                    }
                    token = page.next_token;
                    token.as_ref()?;
                }
                Err(e) => {
                    self.call_failed(&e);
                    log_api_error(&self.entries[key].backup, &e);
                    return None;
                }
            }
        }
        None
    }

    async fn poll_job(&mut self, key: &str, changed: &mut HashSet<Arc<str>>) {
        let b = &self.entries[key].backup;
        let (region, Some(job_id)) = (b.region.clone(), b.job_id.clone()) else {
            return;
        };
        if !self.may_call() {
            return;
        }
        self.backup_bucket.acquire().await;
        match self.backup.describe_backup_job(&region, &job_id).await {
            Ok(j) => {
                self.call_ok();
                let now = self.clock.now();
                let changes = self
                    .entries
                    .get_mut(key)
                    .expect("present")
                    .backup
                    .on_job(&j, now);
                self.report(key, changes, changed);
            }
            Err(e) => {
                self.call_failed(&e);
                log_api_error(&self.entries[key].backup, &e);
            }
        }
    }

    /// Lists jobs created since the oldest of `keys` began, per region, page by page, and keeps
    /// those `keep` wants (a page holds every job of the account: 1000 of them at a time).
    async fn list_jobs_since(
        &self,
        keys: &[Arc<str>],
        since: impl Fn(&Backup) -> DateTime<Utc>,
        keep: impl Fn(&JobDetail) -> bool,
    ) -> Vec<JobDetail> {
        let oldest = oldest_per_region(keys.iter().map(|k| {
            let b = &self.entries[k].backup;
            (b.region.as_str(), since(b))
        }));
        let backup = &self.backup;
        self.list_pages(
            oldest,
            "listing backup jobs failed; retried at the next poll",
            |region, after, token| async move {
                let filter = JobFilter {
                    created_after: Some(after),
                    ..JobFilter::default()
                };
                backup.list_backup_jobs(&region, &filter, token).await
            },
            keep,
        )
        .await
    }

    /// One listing per region from its instant in `oldest`, page by page (paced, and stopped by
    /// a failure streak), keeping the rows `keep` wants; a failed page is logged with `failed`.
    async fn list_pages<T, Fut>(
        &self,
        oldest: HashMap<String, DateTime<Utc>>,
        failed: &'static str,
        list: impl Fn(String, DateTime<Utc>, Option<String>) -> Fut,
        keep: impl Fn(&T) -> bool,
    ) -> Vec<T>
    where
        Fut: std::future::Future<Output = Result<crate::aws::Page<T>, ApiError>>,
    {
        let mut rows = Vec::new();
        for (region, after) in oldest {
            let mut token = None;
            for _ in 0..MAX_LIST_PAGES {
                if !self.may_call() {
                    break;
                }
                self.backup_bucket.acquire().await;
                match list(region.clone(), after, token).await {
                    Ok(page) => {
                        self.call_ok();
                        rows.extend(page.items.into_iter().filter(|j| keep(j)));
                        token = page.next_token;
                        if token.is_none() {
                            break;
                        }
                    }
                    Err(e) => {
                        self.call_failed(&e);
                        warn!(
                            event = event::AWS_CALL_FAILED,
                            operation = e.operation,
                            error_kind = e.kind.as_str(),
                            request_id = e.request_id.as_deref().unwrap_or(""),
                            error = %e,
                            "{failed}"
                        );
                        break;
                    }
                }
            }
        }
        rows
    }

    /// Finds the jobs of executions that have not told us theirs, by resource and creation time.
    async fn discover_jobs_by_listing(
        &mut self,
        keys: &[Arc<str>],
        changed: &mut HashSet<Arc<str>>,
        described: &mut HashSet<Arc<str>>,
    ) {
        let mut jobs = {
            let waiting: HashSet<&str> = keys
                .iter()
                .map(|k| self.entries[k].backup.resource_arn.as_str())
                .collect();
            let claimed: HashSet<&str> = self
                .entries
                .values()
                .filter_map(|e| e.backup.job_id.as_deref())
                .collect();
            self.list_jobs_since(
                keys,
                |b| b.started_at,
                |j| {
                    j.resource_arn
                        .as_deref()
                        .is_some_and(|r| waiting.contains(r))
                        && !claimed.contains(j.job_id.as_str())
                },
            )
            .await
        };
        jobs.sort_by_key(|j| j.creation_date);
        // Indexes into `jobs`, oldest first, by resource.
        let mut by_resource: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, j) in jobs.iter().enumerate() {
            if let Some(r) = j.resource_arn.as_deref() {
                by_resource.entry(r).or_default().push(i);
            }
        }
        let mut ordered: Vec<&Arc<str>> = keys.iter().collect();
        ordered.sort_by_key(|k| self.entries[*k].backup.started_at);
        let now = self.clock.now();
        let mut reports = Vec::new();
        for k in ordered {
            let b = &self.entries[k].backup;
            let Some(candidates) = by_resource.get_mut(b.resource_arn.as_str()) else {
                continue;
            };
            let earliest = b.started_at - CREATION_SKEW;
            let Some(pos) = candidates
                .iter()
                .position(|&i| jobs[i].creation_date.is_none_or(|c| c >= earliest))
            else {
                continue;
            };
            let job = &jobs[candidates.remove(pos)];
            let entry = self.entries.get_mut(k).expect("present");
            let mut changes = entry.backup.on_job_id(job.job_id.clone());
            changes.extend(entry.backup.on_job(job, now));
            described.insert(k.clone());
            reports.push((k.clone(), changes));
        }
        for (k, changes) in reports {
            self.report(&k, changes, changed);
        }
    }

    /// Updates every followed job that a listing reports; marks the due ones it saw.
    async fn sweep_jobs_by_listing(
        &mut self,
        keys: &[Arc<str>],
        changed: &mut HashSet<Arc<str>>,
        described: &mut HashSet<Arc<str>>,
    ) {
        let jobs = {
            let followed: HashSet<&str> = keys
                .iter()
                .filter_map(|k| self.entries[k].backup.job_id.as_deref())
                .collect();
            self.list_jobs_since(
                keys,
                |b| {
                    b.job
                        .as_ref()
                        .and_then(|j| j.creation_date)
                        .unwrap_or(b.started_at)
                },
                |j| followed.contains(j.job_id.as_str()),
            )
            .await
        };
        let by_id: HashMap<&str, &JobDetail> =
            jobs.iter().map(|j| (j.job_id.as_str(), j)).collect();
        let now = self.clock.now();
        let mut reports = Vec::new();
        for k in keys {
            let entry = self.entries.get_mut(k).expect("present");
            let Some(j) = entry.backup.job_id.as_deref().and_then(|id| by_id.get(id)) else {
                continue;
            };
            described.insert(k.clone());
            reports.push((k.clone(), entry.backup.on_job(j, now)));
        }
        for (k, changes) in reports {
            self.report(&k, changes, changed);
        }
    }

    /// Polls every due copy once. A copy waiting for its job learns it from a ListCopyJobs row
    /// naming its backup's recovery point and its destination (when many wait), else from its
    /// execution's record (which also tells a refused StartCopyJob); a copy with a job asks
    /// about it, batched with ListCopyJobs when many are due.
    async fn poll_copies(&mut self) {
        let due = due_keys(&self.copies, |e| e.next_poll);
        if due.is_empty() {
            return;
        }
        let mut changed: HashSet<Arc<str>> = HashSet::new();
        let awaiting: Vec<Arc<str>> = due
            .iter()
            .filter(|k| self.copies[*k].copy.awaits_job())
            .cloned()
            .collect();
        let batch = awaiting.len() > BATCH_THRESHOLD;
        if batch {
            self.discover_copies_by_listing(&awaiting, &mut changed)
                .await;
        }
        // One DescribeExecution answers for every destination of that execution.
        let mut asked: HashSet<String> = HashSet::new();
        for k in &awaiting {
            let Some(e) = self.copies.get(k) else {
                continue;
            };
            // In batch mode the record is read only once listing has not found the job for a
            // while (a refused StartCopyJob makes no job): refusals are rare, listing is cheap.
            if !e.copy.awaits_job() || (batch && e.interval < self.settings.max_poll_interval) {
                continue;
            }
            let Some(arn) = e.copy.execution_arn.clone() else {
                continue;
            };
            if asked.insert(arn.clone()) {
                self.copy_outcomes_from_execution(k, &arn, &mut changed)
                    .await;
            }
        }
        let following: Vec<Arc<str>> = due
            .iter()
            .filter(|k| !changed.contains(*k))
            .filter(|k| self.copies.get(*k).is_some_and(|e| e.copy.needs_job()))
            .cloned()
            .collect();
        let mut seen: HashSet<Arc<str>> = HashSet::new();
        if following.len() > BATCH_THRESHOLD {
            self.sweep_copies_by_listing(&following, &mut changed, &mut seen)
                .await;
        }
        for k in &following {
            if !seen.contains(k) {
                self.poll_copy_job(k, &mut changed).await;
            }
        }
        let now = Instant::now();
        for k in &due {
            let Some(e) = self.copies.get_mut(k) else {
                continue;
            };
            if e.copy.is_finished() {
                self.copies.remove(k);
                continue;
            }
            e.interval = next_interval(&self.settings, e.interval, changed.contains(k));
            e.next_poll = now + e.interval;
        }
        if self.copies.capacity() > 64 && self.copies.len() < self.copies.capacity() / 4 {
            self.copies.shrink_to_fit();
        }
        self.metrics.set_copies_in_flight(self.copies.len());
    }

    /// Reads a copy's execution: once it has closed, its output names each destination's copy
    /// job, or why none was started.
    async fn copy_outcomes_from_execution(
        &mut self,
        key: &Arc<str>,
        arn: &str,
        changed: &mut HashSet<Arc<str>>,
    ) {
        if !self.may_call() {
            return;
        }
        self.describe_bucket.acquire().await;
        let detail = match self.sfn.describe_execution(arn).await {
            Ok(d) => {
                self.call_ok();
                d
            }
            Err(e) => {
                self.call_failed(&e);
                log_copy_api_error(&self.copies[key].copy, &e);
                return;
            }
        };
        if matches!(
            detail.status,
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive
        ) {
            return;
        }
        let now = self.clock.now();
        let keys: Vec<Arc<str>> = self
            .copies
            .iter()
            .filter(|(_, e)| e.copy.execution_arn.as_deref() == Some(arn) && e.copy.awaits_job())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            let e = self.copies.get_mut(&k).expect("present");
            let outcome = copies::outcome(detail.output.as_deref(), &e.copy.destination_vault);
            let changes = e.copy.on_outcome(outcome, now);
            self.report_copy(&k, changes, changed);
        }
    }

    async fn poll_copy_job(&mut self, key: &Arc<str>, changed: &mut HashSet<Arc<str>>) {
        let c = &self.copies[key].copy;
        let (region, Some(id)) = (c.region.clone(), c.copy_job_id.clone()) else {
            return;
        };
        if !self.may_call() {
            return;
        }
        self.backup_bucket.acquire().await;
        match self.backup.describe_copy_job(&region, &id).await {
            Ok(j) => {
                self.call_ok();
                let now = self.clock.now();
                let e = self.copies.get_mut(key).expect("present");
                let changes = e.copy.on_job(&j, now);
                self.report_copy(key, changes, changed);
            }
            Err(e) => {
                self.call_failed(&e);
                log_copy_api_error(&self.copies[key].copy, &e);
            }
        }
    }

    /// Lists copy jobs created since the oldest of `keys` began waiting, per region, page by
    /// page, and keeps those `keep` wants.
    async fn list_copy_jobs_since(
        &self,
        keys: &[Arc<str>],
        keep: impl Fn(&CopyJobDetail) -> bool,
    ) -> Vec<CopyJobDetail> {
        let oldest = oldest_per_region(keys.iter().map(|k| {
            let c = &self.copies[k].copy;
            (c.region.as_str(), c.since)
        }));
        let backup = &self.backup;
        self.list_pages(
            oldest,
            "listing copy jobs failed; retried at the next poll",
            |region, after, token| async move {
                let filter = CopyJobFilter {
                    created_after: Some(after),
                    ..CopyJobFilter::default()
                };
                backup.list_copy_jobs(&region, &filter, token).await
            },
            keep,
        )
        .await
    }

    /// Finds the copy jobs of copies waiting for theirs: a row whose source is the backup's
    /// recovery point and whose destination is the copy's is that copy's job (unambiguous, unlike
    /// a backup job found by resource and time).
    async fn discover_copies_by_listing(
        &mut self,
        keys: &[Arc<str>],
        changed: &mut HashSet<Arc<str>>,
    ) {
        let wanted: HashMap<(String, String), Arc<str>> = keys
            .iter()
            .filter_map(|k| {
                let c = &self.copies[k].copy;
                Some((
                    (
                        c.source_recovery_point_arn.clone()?,
                        c.destination_vault.to_string(),
                    ),
                    k.clone(),
                ))
            })
            .collect();
        let jobs = self
            .list_copy_jobs_since(keys, |j| {
                match (&j.source_recovery_point_arn, &j.destination_vault_arn) {
                    (Some(rp), Some(d)) => wanted.contains_key(&(rp.clone(), d.clone())),
                    _ => false,
                }
            })
            .await;
        let now = self.clock.now();
        for j in jobs {
            let (Some(rp), Some(d)) = (&j.source_recovery_point_arn, &j.destination_vault_arn)
            else {
                continue;
            };
            let k = wanted[&(rp.clone(), d.clone())].clone();
            let e = self.copies.get_mut(&k).expect("present");
            let mut changes = e.copy.on_job_id(j.copy_job_id.clone());
            changes.extend(e.copy.on_job(&j, now));
            self.report_copy(&k, changes, changed);
        }
    }

    /// Updates every followed copy job a listing reports; marks the ones it saw.
    async fn sweep_copies_by_listing(
        &mut self,
        keys: &[Arc<str>],
        changed: &mut HashSet<Arc<str>>,
        seen: &mut HashSet<Arc<str>>,
    ) {
        let by_id: HashMap<String, Arc<str>> = keys
            .iter()
            .filter_map(|k| Some((self.copies[k].copy.copy_job_id.clone()?, k.clone())))
            .collect();
        let jobs = self
            .list_copy_jobs_since(keys, |j| by_id.contains_key(&j.copy_job_id))
            .await;
        let now = self.clock.now();
        for j in jobs {
            let k = by_id[&j.copy_job_id].clone();
            seen.insert(k.clone());
            let e = self.copies.get_mut(&k).expect("present");
            let changes = e.copy.on_job(&j, now);
            self.report_copy(&k, changes, changed);
        }
    }

    fn report_copy(
        &self,
        key: &Arc<str>,
        changes: Vec<CopyChange>,
        changed: &mut HashSet<Arc<str>>,
    ) {
        if changes.is_empty() {
            return;
        }
        changed.insert(key.clone());
        let c = &self.copies[key].copy;
        for change in &changes {
            log_copy_change(c, change);
            if let CopyChange::Finished(s) = change {
                self.metrics
                    .copy_finished(&c.target, &c.destination_vault, &s.state);
            }
        }
    }

    fn report(&self, key: &str, changes: Vec<Change>, changed: &mut HashSet<Arc<str>>) {
        if changes.is_empty() {
            return;
        }
        let (k, e) = self.entries.get_key_value(key).expect("present");
        changed.insert(k.clone());
        let b = &e.backup;
        for c in &changes {
            log_change(b, c);
            self.metrics.backup_change(b, c);
            if let (Change::Finished(summary), Some(tx)) = (c, &self.finished_tx) {
                let _ = tx.send((b.clone(), summary.clone()));
            }
        }
    }
}

/// The first interval again after a change, else double the last (up to the ceiling).
fn next_interval(settings: &TrackerSettings, last: Duration, changed: bool) -> Duration {
    if changed {
        settings.poll_interval
    } else {
        (last * 2).min(settings.max_poll_interval)
    }
}

/// The keys of `m` whose next poll (`next`) has come.
fn due_keys<E>(m: &HashMap<Arc<str>, Box<E>>, next: impl Fn(&E) -> Instant) -> Vec<Arc<str>> {
    let now = Instant::now();
    m.iter()
        .filter(|(_, e)| next(e) <= now)
        .map(|(k, _)| k.clone())
        .collect()
}

/// Per region, the earliest of `items`' instants, less the allowed clock skew.
fn oldest_per_region<'a>(
    items: impl Iterator<Item = (&'a str, DateTime<Utc>)>,
) -> HashMap<String, DateTime<Utc>> {
    let mut oldest: HashMap<String, DateTime<Utc>> = HashMap::new();
    for (region, t) in items {
        let t = t - CREATION_SKEW;
        oldest
            .entry(region.to_string())
            .and_modify(|o| *o = (*o).min(t))
            .or_insert(t);
    }
    oldest
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn log_copy_api_error(c: &Copy, e: &ApiError) {
    warn!(
        event = event::AWS_CALL_FAILED,
        target = %c.target,
        destination_vault = %c.destination_vault,
        operation = e.operation,
        error_kind = e.kind.as_str(),
        request_id = e.request_id.as_deref().unwrap_or(""),
        error = %e,
        "copy tracking call failed; retried at the next poll"
    );
}

/// The log line of one copy change; field names are stable (README: "Log events").
pub fn log_copy_change(c: &Copy, change: &CopyChange) {
    let id = c.copy_job_id.as_deref().unwrap_or("");
    let exec = c.execution_arn.as_deref().unwrap_or("");
    match change {
        CopyChange::Created => info!(
            event = event::COPY_JOB_CREATED,
            target = %c.target,
            rule = %c.rule,
            destination_vault = %c.destination_vault,
            copy_job_id = id,
            execution_arn = exec,
            source_recovery_point_arn = c.source_recovery_point_arn.as_deref().unwrap_or(""),
            "copy job created"
        ),
        CopyChange::Finished(s) => {
            // A failed copy is its own ERROR line; the backup's own line stays as it was.
            macro_rules! finished {
                ($level:ident) => {
                    $level!(
                        event = event::COPY_FINISHED,
                        target = %c.target,
                        rule = %c.rule,
                        destination_vault = %c.destination_vault,
                        copy_job_id = id,
                        execution_arn = exec,
                        state = %s.state,
                        success = s.success,
                        duration_seconds = s.duration_seconds,
                        destination_recovery_point_arn =
                            s.destination_recovery_point_arn.as_deref().unwrap_or(""),
                        error = s.error.as_deref().unwrap_or(""),
                        "copy finished"
                    )
                };
            }
            if s.success {
                finished!(info);
            } else {
                finished!(error);
            }
        }
    }
}

fn scheduled(b: &Backup) -> String {
    b.scheduled_for.map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// The log line of one change; field names are stable (README: "Log events").
pub fn log_change(b: &Backup, c: &Change) {
    let exec = b.execution_arn.as_deref().unwrap_or("");
    let job = b.job_id.as_deref().unwrap_or("");
    match c {
        Change::JobCreated { job_id } => info!(
            event = event::BACKUP_JOB_CREATED,
            target = %b.target,
            resource_arn = %b.resource_arn,
            scheduled_for = %scheduled(b),
            execution_arn = exec,
            backup_job_id = %job_id,
            "backup job created"
        ),
        Change::JobState {
            state,
            percent_done,
        } => info!(
            event = event::BACKUP_JOB_STATE,
            target = %b.target,
            resource_arn = %b.resource_arn,
            scheduled_for = %scheduled(b),
            execution_arn = exec,
            backup_job_id = job,
            state = state.as_str(),
            percent_done = percent_done.unwrap_or(0.0),
            "backup job state changed"
        ),
        Change::Progress { percent_done } => info!(
            event = event::BACKUP_JOB_PROGRESS,
            target = %b.target,
            backup_job_id = job,
            execution_arn = exec,
            percent_done = *percent_done,
            "backup job progress"
        ),
        Change::ExecutionFailed {
            status,
            error,
            cause,
        } => error!(
            event = event::EXECUTION_FAILED,
            target = %b.target,
            resource_arn = %b.resource_arn,
            scheduled_for = %scheduled(b),
            execution_arn = exec,
            backup_job_id = job,
            state = status.as_str(),
            error = %error,
            cause = %cause,
            "execution failed"
        ),
        Change::Finished(s) => {
            // One field list, two levels: a failed backup is an ERROR line operators alert on.
            macro_rules! finished {
                ($level:ident) => {
                    $level!(
                        event = event::BACKUP_FINISHED,
                        target = %b.target,
                        resource_arn = %b.resource_arn,
                        scheduled_for = %scheduled(b),
                        execution_arn = exec,
                        backup_job_id = job,
                        state = %s.state,
                        success = s.success,
                        duration_seconds = s.duration_seconds,
                        backup_size_bytes = s.backup_size_bytes.unwrap_or(0),
                        recovery_point_arn = s.recovery_point_arn.as_deref().unwrap_or(""),
                        error = s.error.as_deref().unwrap_or(""),
                        "backup finished"
                    )
                };
            }
            if s.success {
                finished!(info);
            } else {
                finished!(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::StartRequest;
    use crate::aws::fake::FakeAws;
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
            tracker.insert(b);
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
            tracker.entries.capacity() < 64,
            "room for the burst is given back"
        );
        assert!(handle.in_flight.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn executions_find_their_jobs_by_listing_when_many_are_waiting() {
        let fake = Arc::new(FakeAws::new());
        let (mut tracker, handle) = setup(&fake);
        let sm = crate::arn::StateMachineArn::parse(
            "arn:aws:states:us-east-1:123456789012:stateMachine:b",
        )
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
        for e in tracker.entries.values() {
            let i: usize = e.backup.target[1..].parse().unwrap();
            assert_eq!(
                e.backup.job_id.as_deref(),
                Some(format!("job-{i}").as_str())
            );
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
        let sm = crate::arn::StateMachineArn::parse(
            "arn:aws:states:us-east-1:123456789012:stateMachine:b",
        )
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
        for e in tracker.entries.values() {
            let i: usize = e.backup.target[1..].parse().unwrap();
            assert_eq!(
                e.backup.job_id.as_deref(),
                Some(format!("job-{i}").as_str()),
                "{}",
                e.backup.target
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
        assert!(
            tracker
                .copies
                .values()
                .all(|e| e.copy.copy_job_id.is_some())
        );
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

    /// A backup that did not complete waits for no copy; a refused copy ends FAILED from the
    /// execution's output.
    #[tokio::test(start_paused = true)]
    async fn only_completed_backups_wait_for_copies_and_a_refusal_ends_the_copy() {
        let fake = Arc::new(FakeAws::new());
        let (mut tracker, handle) = setup(&fake);
        let sm = crate::arn::StateMachineArn::parse(
            "arn:aws:states:us-east-1:123456789012:stateMachine:b",
        )
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
        tokio::time::advance(Duration::from_secs(1)).await;
        tracker.poll_due().await;
        assert_eq!(tracker.copies_len(), 1, "the execution still runs");
        fake.finish_execution(
            &arns[0],
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
}
