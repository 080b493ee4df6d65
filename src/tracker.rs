//! Follows executions and their jobs to their end, and logs each change once.
//!
//! One loop ([`Tracker::run`]) and one poll round for every kind of thing it follows
//! ([`round`]): backups ([`backups`]: an execution, then its backup job) and copies ([`copies`]:
//! the copy of a COMPLETED backup to one vault). What the kinds share is generic: the followed
//! entries and their backoff ([`followed`]), the calls, their pacing and failure streak, and
//! asking about known jobs ([`calls`]). A kind is the few steps of a round that are its own
//! ([`kind`]).
//!
//! Polling is paced: each thing is asked about after `poll_interval`, doubling while nothing
//! changes (up to `max_poll_interval`), and every call takes a token from its API's bucket.
//! When many are due at once the tracker batches: one listing page reports up to 1000 jobs, so
//! calls per poll grow with pages, not with jobs (DescribeExecution refills at only 10-15/s).

mod backups;
mod calls;
mod copies;
mod followed;
mod kind;
mod log;
mod round;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws::{BackupJobs, StepFunctions};
use crate::clock::Clock;
use crate::copies::Copy;
use crate::in_flight::InFlight;
use crate::lifecycle::{Backup, Summary};
use crate::metrics::Metrics;

pub use calls::BATCH_THRESHOLD;
use calls::Calls;
use followed::{Backoff, Followed};

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
    /// Backups, keyed by execution ARN (or job id).
    backups: Followed<Backup>,
    /// Copies of completed backups, keyed by execution ARN (or copy job id) and destination.
    copies: Followed<Copy>,
    backoff: Backoff,
    calls: Calls,
    in_flight: InFlight,
    metrics: Arc<Metrics>,
    finished_tx: Option<mpsc::UnboundedSender<(Backup, Summary)>>,
    /// The earliest next poll, kept as entries come and go: recomputing it on every insert
    /// made a 10,000-backup burst quadratic.
    next_due: Option<Instant>,
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
        let tracker = Tracker {
            sfn,
            backup,
            clock,
            rx,
            copy_rx,
            backups: Followed::default(),
            copies: Followed::default(),
            backoff: Backoff {
                first: settings.poll_interval,
                max: settings.max_poll_interval,
            },
            calls: Calls::new(
                settings.describe_rate,
                settings.backup_read_rate,
                metrics.clone(),
            ),
            in_flight: in_flight.clone(),
            metrics,
            finished_tx: None,
            next_due: None,
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
            if !open && self.backups.is_empty() && self.copies.is_empty() {
                break;
            }
            let next = self.next_due;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                b = self.rx.recv(), if open => match b {
                    Some(b) => self.insert_backup(b),
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

    /// Copies followed right now.
    pub fn copies_len(&self) -> usize {
        self.copies.len()
    }

    /// Paces the copy executions' StartExecution with `bucket` (the launcher's), so that
    /// starts of backups and copies share one quota.
    pub fn share_start_pacing(&mut self, bucket: Arc<crate::pacing::TokenBucket>) {
        self.calls.starts = bucket;
    }

    /// Also sends each backup's summary to `tx` when it ends (`run-now` waits on these).
    pub fn report_finished_to(&mut self, tx: mpsc::UnboundedSender<(Backup, Summary)>) {
        self.finished_tx = Some(tx);
    }

    /// Backups followed right now.
    pub fn len(&self) -> usize {
        self.backups.len()
    }

    /// True when nothing is followed.
    pub fn is_empty(&self) -> bool {
        self.backups.is_empty()
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
