//! Turns a fire into a started execution: overlap rule, jitter, pacing, retries until the slot's
//! deadline. The execution name comes from (target, slot), so a retry, a restart or a second
//! replica can never start the same slot twice: Step Functions refuses the name.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::time::DelayQueue;
use tracing::{debug, error, info, warn};

use crate::aws::{ApiError, ErrorKind, StartRequest, StepFunctions};
use crate::clock::Clock;
use crate::execution::{self, ExecutionInput, Trigger};
use crate::in_flight::Hold;
use crate::lifecycle::Backup;
use crate::metrics::Metrics;
use crate::model::{Concurrency, Rule};
use crate::pacing::TokenBucket;
use crate::telemetry::event;
use crate::tracker::TrackerHandle;

/// First retry delay of a failed StartExecution.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// StartExecution calls in flight at once (each holds a connection).
const MAX_CALLS_IN_FLIGHT: usize = 32;
/// Fires being started at once, including those waiting to retry; the rest queue.
const MAX_FIRES_IN_PROGRESS: usize = 1024;
/// Longest retry delay.
const RETRY_CAP: Duration = Duration::from_secs(60);

/// One slot of one target, due now.
#[derive(Debug, Clone)]
pub struct Fire {
    /// The target, as configured when the slot fired.
    pub target: Arc<Rule>,
    /// The slot (for manual runs: when it was asked for).
    pub slot: DateTime<Utc>,
    /// Why.
    pub trigger: Trigger,
}

impl Fire {
    /// The execution name of this fire (`nonce` only matters for manual runs).
    pub fn execution_name(&self, nonce: u16) -> String {
        match self.trigger {
            Trigger::Manual => execution::manual_name(&self.target.slot_key(), self.slot, nonce),
            Trigger::Schedule | Trigger::CatchUp => self.target.scheduled_name(self.slot),
        }
    }

    /// The input of this fire's execution.
    pub fn input(&self) -> ExecutionInput {
        let t = &self.target;
        ExecutionInput {
            resource_arn: t.resource_arn.to_string(),
            target: t.name.to_string(),
            scheduled_for: self.slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            trigger: self.trigger,
            start_window_minutes: t.settings.start_window_minutes,
            complete_window_minutes: t.settings.complete_window_minutes,
            delete_after_days: t.settings.delete_after_days,
            pre_command: t.settings.pre_command.as_deref().map(str::to_string),
            post_command: t.settings.post_command.as_deref().map(str::to_string),
            pre_document: t.settings.pre_document.as_deref().map(Into::into),
            post_document: t.settings.post_document.as_deref().map(Into::into),
            post_hook_when: t
                .settings
                .has_post_hook()
                .then_some(t.settings.post_hook_when),
            hook_max_downtime_seconds: t
                .settings
                .has_post_hook()
                .then(|| t.settings.hook_max_downtime.as_secs()),
            on_pre_hook_failure: (t.settings.pre_command.is_some()
                || t.settings.pre_document.is_some())
            .then_some(t.settings.on_pre_hook_failure),
            backup_options: t
                .settings
                .windows_vss
                .then(|| BTreeMap::from([("WindowsVSS".to_string(), "enabled".to_string())])),
        }
    }

    /// What this fire's backup holds on its instance while in flight.
    pub fn hold(&self) -> Hold {
        Hold {
            rule: self.target.slot_key().into(),
            delete_after_days: self.target.settings.delete_after_days,
        }
    }

    /// A delay in [0, jitter) that is the same for every replica and restart.
    pub fn jitter_delay(&self) -> Duration {
        let j = self.target.settings.jitter.as_millis() as u64;
        if j == 0 || self.trigger == Trigger::Manual {
            return Duration::ZERO;
        }
        // FNV-1a: stable across processes and Rust versions, unlike DefaultHasher's seed.
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        // The slot key is the target's name in today's form: today's delays do not move.
        self.target.slot_key().hash(&mut h);
        self.slot.timestamp().hash(&mut h);
        Duration::from_millis(h.0 % j)
    }
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// How a fire ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new execution.
    Started(String),
    /// The slot's execution existed already; it is followed.
    AlreadyStarted(String),
    /// Not started, on purpose (overlap rule, dry run, shutdown).
    Skipped(&'static str),
    /// Not started: a permanent error or the deadline passed.
    Failed(String),
}

/// Starts executions.
pub struct Launcher<S> {
    sfn: Arc<S>,
    clock: Arc<dyn Clock>,
    tracker: TrackerHandle,
    bucket: Arc<TokenBucket>,
    metrics: Arc<Metrics>,
    dry_run: bool,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Woken by any successful start: retries waiting out a backoff go at once (still paced by
    /// the bucket), so an outage's backlog clears when the endpoint is back, not a minute later.
    recovered: Arc<tokio::sync::Notify>,
    in_flight_calls: Arc<tokio::sync::Semaphore>,
    /// Fires waiting to be started; `None` in the dispatcher's own copy, so that the queue
    /// closes when every other copy is gone.
    queue: Option<mpsc::UnboundedSender<Fire>>,
    /// Fires launched and not yet done (queued, waiting out jitter, or starting).
    pending: Arc<Pending>,
}

/// A count that can be waited on until it is zero.
#[derive(Debug, Default)]
struct Pending {
    count: std::sync::atomic::AtomicUsize,
    zero: tokio::sync::Notify,
}

impl Pending {
    fn add(&self) {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn done(&self, n: usize) {
        if n > 0 && self.count.fetch_sub(n, std::sync::atomic::Ordering::SeqCst) == n {
            self.zero.notify_waiters();
        }
    }

    async fn wait_zero(&self) {
        loop {
            let notified = self.zero.notified();
            if self.count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl<S> Clone for Launcher<S> {
    fn clone(&self) -> Self {
        Launcher {
            sfn: self.sfn.clone(),
            clock: self.clock.clone(),
            tracker: self.tracker.clone(),
            bucket: self.bucket.clone(),
            metrics: self.metrics.clone(),
            dry_run: self.dry_run,
            tasks: self.tasks.clone(),
            shutdown: self.shutdown.clone(),
            recovered: self.recovered.clone(),
            in_flight_calls: self.in_flight_calls.clone(),
            queue: self.queue.clone(),
            pending: self.pending.clone(),
        }
    }
}

impl<S: StepFunctions> Launcher<S> {
    /// A launcher; `shutdown` cuts retry waits short.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sfn: Arc<S>,
        clock: Arc<dyn Clock>,
        tracker: TrackerHandle,
        bucket: Arc<TokenBucket>,
        metrics: Arc<Metrics>,
        dry_run: bool,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let dispatcher = Launcher {
            sfn,
            clock,
            tracker,
            bucket,
            metrics,
            dry_run,
            tasks: TaskTracker::new(),
            shutdown,
            recovered: Arc::default(),
            in_flight_calls: Arc::new(tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT)),
            queue: None,
            pending: Arc::default(),
        };
        let launcher = Launcher {
            queue: Some(tx),
            ..dispatcher.clone()
        };
        tokio::spawn(dispatcher.dispatch(rx));
        launcher
    }

    /// Starts `fire` in the background (after its jitter).
    pub fn launch(&self, fire: Fire) {
        if let Some(queue) = &self.queue {
            // Fails only once the dispatcher stopped at shutdown: the slot is caught up later.
            if queue.send(fire).is_ok() {
                self.pending.add();
            }
        }
    }

    /// Runs fires from the queue: at most [`MAX_FIRES_IN_PROGRESS`] at once, each after its
    /// jitter. A same-second storm of 100,000 targets is then a queue of small records, not
    /// 100,000 tasks with a request each.
    async fn dispatch(self, mut rx: mpsc::UnboundedReceiver<Fire>) {
        let room = Arc::new(tokio::sync::Semaphore::new(MAX_FIRES_IN_PROGRESS));
        let mut ready: VecDeque<Fire> = VecDeque::new();
        let mut jittered: DelayQueue<Fire> = DelayQueue::new();
        let mut open = true;
        loop {
            while !ready.is_empty() {
                let Ok(permit) = room.clone().try_acquire_owned() else {
                    break;
                };
                let fire = ready.pop_front().expect("not empty");
                let this = self.clone();
                self.tasks.spawn(async move {
                    let nonce: u16 = rand::random();
                    this.start(&fire, nonce).await;
                    drop(permit);
                    this.pending.done(1);
                });
            }
            if !open && ready.is_empty() && jittered.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                fire = rx.recv(), if open => match fire {
                    Some(fire) => {
                        let delay = fire.jitter_delay();
                        if delay.is_zero() {
                            ready.push_back(fire);
                        } else {
                            jittered.insert(fire, delay);
                        }
                    }
                    None => open = false,
                },
                Some(expired) = std::future::poll_fn(|cx| jittered.poll_expired(cx)), if !jittered.is_empty() => {
                    ready.push_back(expired.into_inner());
                }
                permit = room.clone().acquire_owned(), if !ready.is_empty() => drop(permit),
            }
        }
        rx.close();
        let mut left = ready.len() + jittered.len();
        while rx.try_recv().is_ok() {
            left += 1;
        }
        self.pending.done(left);
        if left > 0 {
            warn!(
                event = event::EXECUTION_START_FAILED,
                reason = "shutdown",
                count = left,
                "fires not started at shutdown; the next start catches up each target's latest missed slot"
            );
        }
    }

    /// Waits until every launched fire is done: started, skipped or given up.
    pub async fn settle(&self) {
        self.pending.wait_zero().await;
    }

    /// Waits for started calls to finish, at most `grace`; true if all did.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }

    /// Starts `fire` now and hands the execution to the tracker.
    pub async fn start(&self, fire: &Fire, nonce: u16) -> Outcome {
        let t = &fire.target;
        let name = fire.execution_name(nonce);
        let slot = fire.slot.to_rfc3339();
        let resource = t.resource_arn.to_string();
        if fire.trigger != Trigger::Manual && t.settings.concurrency == Concurrency::Forbid {
            let holds = self.tracker.in_flight.holds(&resource);
            match busy(&fire.hold(), &holds) {
                None => {}
                Some(Busy::Wait) => return self.wait_for_instance(fire),
                Some(Busy::Skip(reason)) => {
                    warn!(
                        event = event::SLOT_SKIPPED,
                        target = %t.name,
                        rule = %t.rule_name(),
                        resource_arn = %resource,
                        scheduled_for = %slot,
                        reason,
                        "slot skipped: a backup of this resource is still running (concurrency = \"forbid\")"
                    );
                    self.metrics.slot_skipped(&t.name, reason);
                    return Outcome::Skipped(reason);
                }
            }
        }
        let input = fire.input().to_json();
        if self.dry_run {
            info!(
                event = event::DRY_RUN_START,
                target = %t.name,
                resource_arn = %resource,
                scheduled_for = %slot,
                execution_name = %name,
                state_machine_arn = %t.settings.state_machine,
                input = %input,
                "dry run: would start execution"
            );
            return Outcome::Skipped("dry_run");
        }
        self.tracker.in_flight.add(&resource, fire.hold());
        let req = StartRequest {
            state_machine: t.settings.state_machine.clone(),
            name: name.clone(),
            input,
        };
        let outcome = self.start_with_retries(fire, &req).await;
        if !matches!(outcome, Outcome::Started(_) | Outcome::AlreadyStarted(_)) {
            self.tracker.in_flight.remove(&resource, &fire.hold());
        }
        outcome
    }

    /// StartExecution of `req` for `fire`, retried with backoff while the error is retryable,
    /// the slot's starting deadline allows and no shutdown came; a name taken already (a retry,
    /// a restart or another replica started it) is followed.
    async fn start_with_retries(&self, fire: &Fire, req: &StartRequest) -> Outcome {
        let t = &fire.target;
        let deadline = match fire.trigger {
            Trigger::Manual => self.clock.now(),
            _ => fire.slot,
        } + chrono::Duration::from_std(t.settings.starting_deadline)
            .unwrap_or_default();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.call_start(req).await {
                Ok(started) => {
                    self.metrics.api_ok();
                    self.recovered.notify_waiters();
                    info!(
                        event = event::EXECUTION_STARTED,
                        target = %t.name,
                        resource_arn = %t.resource_arn,
                        scheduled_for = %fire.slot.to_rfc3339(),
                        execution_arn = %started.execution_arn,
                        trigger = %fire.trigger,
                        attempt,
                        "backup execution started"
                    );
                    self.follow(fire, started.execution_arn.clone(), started.start_date);
                    return Outcome::Started(started.execution_arn);
                }
                Err(e) if e.kind == ErrorKind::AlreadyExists && fire.trigger != Trigger::Manual => {
                    return self.name_taken(fire, req).await;
                }
                Err(e) => {
                    self.metrics.api_error(&e);
                    if let Some(outcome) =
                        self.after_failure(fire, req, &e, attempt, deadline).await
                    {
                        return outcome;
                    }
                }
            }
        }
    }

    /// The slot's name is taken. An execution asking for this slot's backup is ours (a retry, a
    /// restart or another replica started it): it is followed. One asking for anything else was
    /// started by someone else — whoever may start executions can pre-create tomorrow's names —
    /// and must not stand for the slot: an ERROR line, and the slot is started under its second
    /// name, which every replica derives alike (so they still agree). When the second name is
    /// taken with other input too, the slot is not backed up: an ERROR and a skipped slot.
    async fn name_taken(&self, fire: &Fire, req: &StartRequest) -> Outcome {
        let t = &fire.target;
        let arn = t.settings.state_machine.execution_arn(&req.name);
        let found = self.found_input(&arn).await;
        let ours = fire.input();
        let agrees = found.as_deref().is_none_or(|input| ours.same_backup(input));
        if agrees {
            if found.is_none() {
                warn!(
                    event = event::EXECUTION_ALREADY_STARTED,
                    target = %t.name,
                    execution_arn = %arn,
                    "the execution under this slot's name could not be read; followed as this slot's"
                );
            }
            info!(
                event = event::EXECUTION_ALREADY_STARTED,
                target = %t.name,
                resource_arn = %t.resource_arn,
                scheduled_for = %fire.slot.to_rfc3339(),
                execution_arn = %arn,
                "this slot's execution exists already (a retry, a restart or another replica started it); following it"
            );
            self.follow(fire, arn.clone(), self.clock.now());
            return Outcome::AlreadyStarted(arn);
        }
        let second = execution::second_name(&t.slot_key(), fire.slot);
        let is_second = req.name == second;
        error!(
            event = event::EXECUTION_INPUT_MISMATCH,
            target = %t.name,
            resource_arn = %t.resource_arn,
            scheduled_for = %fire.slot.to_rfc3339(),
            execution_arn = %arn,
            found_input = found.as_deref().unwrap_or(""),
            next = if is_second { "skipped" } else { second.as_str() },
            "an execution under this slot's name asks for another backup (not started by the orchestrator): the slot is started under its second name"
        );
        self.metrics.execution_input_mismatch(&t.name);
        if is_second {
            self.metrics.slot_skipped(&t.name, "name_taken");
            return Outcome::Skipped("name_taken");
        }
        let req = StartRequest {
            name: second,
            ..req.clone()
        };
        Box::pin(self.start_with_retries(fire, &req)).await
    }

    /// The input of the execution `arn`; `None` when it cannot be read.
    async fn found_input(&self, arn: &str) -> Option<String> {
        self.bucket.acquire().await;
        match self.sfn.describe_execution(arn).await {
            Ok(d) => {
                self.metrics.api_ok();
                d.input
            }
            Err(e) => {
                self.metrics.api_error(&e);
                None
            }
        }
    }

    /// One StartExecution call, holding a call permit and a token. A bounded number of calls in
    /// flight: a 10,000-target same-second storm then reuses a few connections instead of
    /// opening one each (memory, file descriptors, CPU).
    async fn call_start(&self, req: &StartRequest) -> Result<crate::aws::Started, ApiError> {
        let _permit = self.in_flight_calls.acquire().await.expect("never closed");
        self.bucket.acquire().await;
        // Boxed: the SDK's future is large, and the 1,024 fires in progress would each carry
        // one inline while they wait for a permit (measured: +50 MiB in a 10,000-fire burst).
        Box::pin(self.sfn.start_execution(req)).await
    }

    /// After a failed StartExecution: `None` once the wait before the next attempt is over
    /// (retryable, in time, no shutdown), else the outcome (logged).
    async fn after_failure(
        &self,
        fire: &Fire,
        req: &StartRequest,
        e: &ApiError,
        attempt: u32,
        deadline: DateTime<Utc>,
    ) -> Option<Outcome> {
        let t = &fire.target;
        let slot = fire.slot.to_rfc3339();
        let wait = backoff(attempt);
        let in_time =
            self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default() < deadline;
        if e.is_retryable() && in_time && !self.shutdown.is_cancelled() {
            warn!(
                event = event::EXECUTION_START_RETRY,
                target = %t.name,
                scheduled_for = %slot,
                attempt,
                retry_in_ms = wait.as_millis() as u64,
                error_kind = e.kind.as_str(),
                request_id = e.request_id.as_deref().unwrap_or(""),
                error = %e,
                "StartExecution failed; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => return None,
                () = self.recovered.notified() => return None,
                () = self.shutdown.cancelled() => {
                    warn!(
                        event = event::EXECUTION_START_FAILED,
                        target = %t.name,
                        scheduled_for = %slot,
                        reason = "shutdown",
                        error = %e,
                        "start abandoned at shutdown; the next start catches this slot up"
                    );
                    return Some(Outcome::Skipped("shutdown"));
                }
            }
        }
        let reason = if e.is_retryable() {
            "deadline"
        } else {
            "permanent"
        };
        error!(
            event = event::EXECUTION_START_FAILED,
            target = %t.name,
            resource_arn = %t.resource_arn,
            scheduled_for = %slot,
            execution_name = %req.name,
            attempt,
            reason,
            error_kind = e.kind.as_str(),
            request_id = e.request_id.as_deref().unwrap_or(""),
            error = %e,
            "could not start the backup execution"
        );
        self.metrics.execution_failed(&t.name);
        Some(Outcome::Failed(e.to_string()))
    }

    /// A slot that must not lose to the shorter-retention backup running on its instance: it
    /// waits (without holding a start permit) for that backup to end, then is launched again,
    /// which checks again; at its starting deadline it is skipped.
    fn wait_for_instance(&self, fire: &Fire) -> Outcome {
        let t = &fire.target;
        let deadline = fire.slot
            + chrono::Duration::from_std(t.settings.starting_deadline).unwrap_or_default();
        info!(
            event = event::SLOT_WAITING,
            target = %t.name,
            rule = %t.rule_name(),
            resource_arn = %t.resource_arn,
            scheduled_for = %fire.slot.to_rfc3339(),
            delete_after_days = t.settings.delete_after_days,
            starting_deadline = %deadline.to_rfc3339(),
            "slot waits for the running backup of this resource, which keeps its recovery point for a shorter time, to end"
        );
        let this = self.clone();
        let fire = fire.clone();
        tokio::spawn(async move {
            let resource = fire.target.resource_arn.to_string();
            loop {
                let freed = this.tracker.in_flight.freed();
                let holds = this.tracker.in_flight.holds(&resource);
                if busy(&fire.hold(), &holds) != Some(Busy::Wait) {
                    this.launch(fire);
                    return;
                }
                let left = (deadline - this.clock.now()).to_std().unwrap_or_default();
                tokio::select! {
                    () = freed => {}
                    () = tokio::time::sleep(left) => {
                        let t = &fire.target;
                        warn!(
                            event = event::SLOT_SKIPPED,
                            target = %t.name,
                            rule = %t.rule_name(),
                            resource_arn = %resource,
                            scheduled_for = %fire.slot.to_rfc3339(),
                            reason = "past_starting_deadline",
                            "slot skipped: the backup it waited for still ran at its starting deadline"
                        );
                        this.metrics.slot_skipped(&t.name, "past_starting_deadline");
                        return;
                    }
                    () = this.shutdown.cancelled() => return,
                }
            }
        });
        Outcome::Skipped("waiting")
    }

    fn follow(&self, fire: &Fire, execution_arn: String, started_at: DateTime<Utc>) {
        let t = &fire.target;
        self.metrics.execution_started(&t.name);
        debug!(target = %t.name, execution_arn = %execution_arn, "tracking");
        let mut backup = Backup::started(
            t.name.to_string(),
            t.resource_arn.to_string(),
            t.settings.state_machine.region.clone(),
            (fire.trigger != Trigger::Manual).then_some(fire.slot),
            Some(execution_arn),
            t.settings.has_hooks(),
            started_at,
        );
        backup.hold = fire.hold();
        backup.copy_plan = t.copy_plan();
        self.tracker.track(backup);
    }
}

/// Why a slot cannot start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Skip it, for this reason.
    Skip(&'static str),
    /// Wait for the running backups to end (they keep their recovery points for less time).
    Wait,
}

/// Pure: what a slot holding `mine` does while backups holding `running` are in flight on its
/// instance (`concurrency = "forbid"`). Its own rule's previous backup still running: skipped,
/// as always (`previous_backup_running`). Another rule's backup that keeps its recovery point at
/// least as long: skipped (`covered_by_running_backup`). Only shorter ones: it waits.
pub fn busy(mine: &Hold, running: &[Hold]) -> Option<Busy> {
    if running.is_empty() {
        None
    } else if running.iter().any(|h| h.rule == mine.rule) {
        Some(Busy::Skip("previous_backup_running"))
    } else if running
        .iter()
        .any(|h| h.delete_after_days >= mine.delete_after_days)
    {
        Some(Busy::Skip("covered_by_running_backup"))
    } else {
        Some(Busy::Wait)
    }
}

/// Exponential backoff with full jitter.
fn backoff(attempt: u32) -> Duration {
    let exp = RETRY_BASE.saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
    let cap = exp.min(RETRY_CAP);
    let ms = rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64);
    Duration::from_millis(ms)
}

/// A launcher wired as the daemon wires it, over the in-memory fake (this module's tests and
/// recovery's).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::aws::fake::FakeAws;
    use crate::clock::TokioClock;
    use crate::tracker::{Tracker, TrackerSettings};

    /// The parts, each shared as the daemon shares them.
    pub(crate) struct Rig {
        pub clock: Arc<dyn Clock>,
        pub metrics: Arc<Metrics>,
        pub handle: TrackerHandle,
        /// Not running: tests poll it themselves, or not at all.
        pub tracker: Tracker<FakeAws, FakeAws>,
        pub launcher: Launcher<FakeAws>,
    }

    /// A rig whose clock starts at `now`; calls paced at 100/s.
    pub(crate) fn rig(fake: &Arc<FakeAws>, now: DateTime<Utc>) -> Rig {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(now));
        let metrics = Arc::new(Metrics::new());
        let settings = TrackerSettings {
            poll_interval: Duration::from_secs(1),
            max_poll_interval: Duration::from_secs(10),
            describe_rate: 100.0,
            backup_read_rate: 100.0,
        };
        let (tracker, handle) = Tracker::new(
            fake.clone(),
            fake.clone(),
            clock.clone(),
            settings,
            metrics.clone(),
        );
        let launcher = Launcher::new(
            fake.clone(),
            clock.clone(),
            handle.clone(),
            Arc::new(TokenBucket::new(100.0, 10)),
            metrics.clone(),
            false,
            CancellationToken::new(),
        );
        Rig {
            clock,
            metrics,
            handle,
            tracker,
            launcher,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::FakeAws;
    use crate::config;
    use crate::tracker::Tracker;
    use chrono::TimeZone;

    fn allow() -> Arc<Rule> {
        let mut t = (*target(Duration::ZERO)).clone();
        t.settings_mut().concurrency = Concurrency::Allow;
        Arc::new(t)
    }

    fn target(jitter: Duration) -> Arc<Rule> {
        let text = "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n[[backup]]\nname = \"web\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-12345678\"\nschedule = \"0 3 * * *\"\n";
        let mut t = (*config::parse(text, "t.toml").unwrap().rules.remove(0)).clone();
        t.settings_mut().jitter = jitter;
        Arc::new(t)
    }

    fn slot() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap()
    }

    fn setup(fake: Arc<FakeAws>) -> (Launcher<FakeAws>, Tracker<FakeAws, FakeAws>) {
        let rig = testing::rig(&fake, slot());
        (rig.launcher, rig.tracker)
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_starts_once_even_when_fired_twice() {
        let fake = Arc::new(FakeAws::new());
        let (launcher, _tracker) = setup(fake.clone());
        let fire = Fire {
            target: allow(),
            slot: slot(),
            trigger: Trigger::Schedule,
        };
        let first = launcher.start(&fire, 0).await;
        assert!(matches!(first, Outcome::Started(_)), "{first:?}");
        // The same input while RUNNING is idempotent: same ARN, no second execution.
        let second = launcher
            .start(
                &Fire {
                    trigger: Trigger::Schedule,
                    ..fire.clone()
                },
                0,
            )
            .await;
        assert_eq!(second, first);
        assert_eq!(fake.execution_names(), vec!["web-20261129T030000Z"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_slot_is_already_started_not_an_error() {
        let fake = Arc::new(FakeAws::new());
        let (launcher, _tracker) = setup(fake.clone());
        let fire = Fire {
            target: allow(),
            slot: slot(),
            trigger: Trigger::Schedule,
        };
        let Outcome::Started(arn) = launcher.start(&fire, 0).await else {
            panic!()
        };
        fake.finish_execution(
            &arn,
            crate::aws::ExecutionStatus::Succeeded,
            Some("{}"),
            None,
        );
        let again = Fire {
            trigger: Trigger::CatchUp,
            ..fire
        };
        assert_eq!(
            launcher.start(&again, 0).await,
            Outcome::AlreadyStarted(arn)
        );
    }

    /// Someone started the slot's name with another input first: the slot goes to its second
    /// name, once (a second fire finds that one with its own input and follows it); when the
    /// second name is taken with another input too, the slot is skipped, not started a third way.
    #[tokio::test(start_paused = true)]
    async fn a_name_taken_with_another_input_moves_the_slot_to_its_second_name() {
        let fake = Arc::new(FakeAws::new());
        let (launcher, _tracker) = setup(fake.clone());
        let fire = Fire {
            target: allow(),
            slot: slot(),
            trigger: Trigger::Schedule,
        };
        let theirs = ExecutionInput {
            delete_after_days: 1,
            ..fire.input()
        };
        let sm = fire.target.settings.state_machine.clone();
        fake.start_execution(&StartRequest {
            state_machine: sm.clone(),
            name: "web-20261129T030000Z".into(),
            input: theirs.to_json(),
        })
        .await
        .unwrap();
        let out = launcher.start(&fire, 0).await;
        assert_eq!(
            out,
            Outcome::Started(sm.execution_arn("web-20261129T030000Z-2"))
        );
        // A replica's fire of the same slot: the second name holds our input: followed.
        let again = launcher.start(&fire, 0).await;
        assert!(
            matches!(&again, Outcome::Started(a) | Outcome::AlreadyStarted(a) if a.ends_with("-2")),
            "{again:?}"
        );
        assert_eq!(fake.execution_names().len(), 2);

        // Both names of the next slot taken with other input: skipped, said as such.
        let next = Fire {
            slot: slot() + chrono::Duration::days(1),
            ..fire.clone()
        };
        for name in ["web-20261130T030000Z", "web-20261130T030000Z-2"] {
            fake.start_execution(&StartRequest {
                state_machine: sm.clone(),
                name: name.into(),
                input: theirs.to_json(),
            })
            .await
            .unwrap();
        }
        assert_eq!(
            launcher.start(&next, 0).await,
            Outcome::Skipped("name_taken")
        );
        assert_eq!(
            fake.execution_names().len(),
            4,
            "nothing started a third way"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_is_retried_and_access_denied_is_not() {
        let fake = Arc::new(FakeAws::new());
        let (launcher, _tracker) = setup(fake.clone());
        fake.fail_next("StartExecution", ErrorKind::Throttled);
        fake.fail_next("StartExecution", ErrorKind::Transient);
        let fire = Fire {
            target: allow(),
            slot: slot(),
            trigger: Trigger::Schedule,
        };
        assert!(matches!(
            launcher.start(&fire, 0).await,
            Outcome::Started(_)
        ));
        assert_eq!(fake.calls("StartExecution"), 3);

        fake.fail_next("StartExecution", ErrorKind::AccessDenied);
        let other = Fire {
            slot: slot() + chrono::Duration::days(1),
            ..fire
        };
        let out = launcher.start(&other, 0).await;
        assert!(matches!(out, Outcome::Failed(_)), "{out:?}");
        assert_eq!(
            fake.calls("StartExecution"),
            4,
            "a permanent error is not retried"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn forbid_skips_a_slot_while_the_resource_is_busy() {
        let fake = Arc::new(FakeAws::new());
        let (launcher, _tracker) = setup(fake.clone());
        let fire = Fire {
            target: target(Duration::ZERO),
            slot: slot(),
            trigger: Trigger::Schedule,
        };
        assert!(matches!(
            launcher.start(&fire, 0).await,
            Outcome::Started(_)
        ));
        let next = Fire {
            slot: slot() + chrono::Duration::hours(1),
            ..fire
        };
        assert_eq!(
            launcher.start(&next, 0).await,
            Outcome::Skipped("previous_backup_running")
        );
    }

    #[test]
    fn a_busy_instance_skips_covered_slots_and_holds_longer_ones_back() {
        let h = |rule: &str, d: u32| Hold {
            rule: rule.into(),
            delete_after_days: d,
        };
        assert_eq!(busy(&h("daily", 35), &[]), None);
        assert_eq!(
            busy(&h("daily", 35), &[h("daily", 35)]),
            Some(Busy::Skip("previous_backup_running"))
        );
        assert_eq!(
            busy(&h("daily", 35), &[h("monthly", 365)]),
            Some(Busy::Skip("covered_by_running_backup"))
        );
        assert_eq!(
            busy(&h("monthly", 365), &[h("daily", 35)]),
            Some(Busy::Wait)
        );
        assert_eq!(busy(&h("monthly", 365), &[h("", 0)]), Some(Busy::Wait));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retention_slot_waits_for_a_short_one_and_starts_after_it() {
        let fake = Arc::new(FakeAws::new());
        let (launcher, _tracker) = setup(fake.clone());
        let daily = target(Duration::ZERO);
        let mut monthly = (*daily).clone();
        monthly.name = "web-monthly".into();
        monthly.settings_mut().delete_after_days = 365;
        let monthly = Arc::new(monthly);
        let first = Fire {
            target: daily.clone(),
            slot: slot(),
            trigger: Trigger::Schedule,
        };
        assert!(matches!(
            launcher.start(&first, 0).await,
            Outcome::Started(_)
        ));
        let long = Fire {
            target: monthly,
            slot: slot() + chrono::Duration::minutes(10),
            trigger: Trigger::Schedule,
        };
        assert_eq!(launcher.start(&long, 0).await, Outcome::Skipped("waiting"));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(fake.execution_names().len(), 1, "still waiting");
        // The daily backup ends (the tracker would do this at its end).
        launcher
            .tracker
            .in_flight
            .remove(&daily.resource_arn.to_string(), &first.hold());
        for _ in 0..100 {
            if fake.execution_names().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            fake.execution_names(),
            vec!["web-20261129T030000Z", "web-monthly-20261129T031000Z"]
        );
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let fire = Fire {
            target: target(Duration::from_secs(300)),
            slot: slot(),
            trigger: Trigger::Schedule,
        };
        let d = fire.jitter_delay();
        assert!(d < Duration::from_secs(300));
        assert_eq!(d, fire.jitter_delay());
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|h| {
                Fire {
                    slot: slot() + chrono::Duration::hours(h),
                    ..fire.clone()
                }
                .jitter_delay()
            })
            .collect();
        assert!(delays.len() > 10, "spread: {delays:?}");
    }
}
