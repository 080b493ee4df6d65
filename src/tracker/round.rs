//! One poll round, the same for every kind: the due ones; above the batch threshold a listing
//! finds the jobs of those waiting for theirs; their records (executions) are read; the known
//! jobs are asked about (one listing sweep when many, else one describe each); the finished
//! leave, the others back off while quiet.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::warn;

use crate::aws::{BackupJobs, StepFunctions};
use crate::telemetry::event;

use super::Tracker;
use super::backups::Backups;
use super::calls::{BATCH_THRESHOLD, FollowsJob, follow_jobs};
use super::copies::Copies;
use super::kind::Kind;

impl<S: StepFunctions, B: BackupJobs> Tracker<S, B> {
    /// Polls every due backup and copy once (batched where that saves calls).
    pub async fn poll_due(&mut self) {
        self.calls.start_round();
        poll_round::<Backups, S, B>(self).await;
        poll_round::<Copies, S, B>(self).await;
        let held = self.calls.held();
        if held > 0 {
            warn!(
                event = event::AWS_CALL_FAILED,
                calls_held = held,
                "tracking calls kept failing; the other backups due are asked about at the next poll"
            );
        }
        self.next_due = [self.backups.next_due(), self.copies.next_due()]
            .into_iter()
            .flatten()
            .min();
    }
}

/// One round of kind `K`.
async fn poll_round<K: Kind<S, B>, S: StepFunctions, B: BackupJobs>(t: &mut Tracker<S, B>) {
    let due = K::followed(t).due();
    if due.is_empty() {
        return;
    }
    let mut changed: HashSet<Arc<str>> = HashSet::new();
    let awaiting: Vec<Arc<str>> = due
        .iter()
        .filter(|k| K::awaits_job(K::followed(t).item(k)))
        .cloned()
        .collect();
    let batch = awaiting.len() > BATCH_THRESHOLD;
    // Jobs a listing already reported this round are not asked about again.
    let mut seen: HashSet<Arc<str>> = HashSet::new();
    if batch {
        K::discover(t, &awaiting, &mut changed, &mut seen).await;
    }
    K::read_records(t, &due, batch, &mut changed, &mut seen).await;
    let following: Vec<Arc<str>> = due
        .iter()
        .filter(|k| !seen.contains(*k))
        .filter(|k| K::followed(t).get(k).is_some_and(|e| e.item.needs_job()))
        .cloned()
        .collect();
    let reports = {
        let (followed, calls, backup, clock) = K::parts(t);
        follow_jobs(followed, calls, backup, clock, &following).await
    };
    for (k, changes) in reports {
        K::report(t, &k, changes, &mut changed);
    }
    K::after_jobs(t, &due, &mut changed).await;
    let backoff = t.backoff;
    let finished =
        K::followed_mut(t).settle(&due, &changed, backoff, K::is_finished, K::max_interval);
    for item in finished {
        K::finished(t, item);
    }
    K::set_gauge(t);
}
