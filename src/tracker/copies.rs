//! The copy kind: the copy of one COMPLETED backup to one destination vault. A copy learns its
//! copy job from the record of the execution that starts it (which also tells a refused
//! StartCopyJob), or (when many wait) from a ListCopyJobs row naming the backup's recovery point
//! and the destination; then the copy job is followed to its end.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::aws::{
    ApiError, BackupJobs, CopyJobDetail, CopyJobFilter, ExecutionStatus, Page, StepFunctions,
};
use crate::clock::Clock;
use crate::copies::{self, Copy, CopyChange};

use super::Tracker;
use super::calls::{Calls, FollowsJob};
use super::followed::Followed;
use super::kind::Kind;
use super::log::{log_copy_api_error, log_copy_change};

/// The copy kind of [`Kind`].
pub(super) struct Copies;

impl FollowsJob for Copy {
    type Job = CopyJobDetail;
    type Change = CopyChange;
    const LIST_FAILED: &'static str = "listing copy jobs failed; retried at the next poll";

    fn region(&self) -> &str {
        &self.region
    }

    fn job_id(&self) -> Option<&str> {
        self.copy_job_id.as_deref()
    }

    fn needs_job(&self) -> bool {
        Copy::needs_job(self)
    }

    fn listed_since(&self) -> DateTime<Utc> {
        self.since
    }

    fn on_job(&mut self, job: &CopyJobDetail, now: DateTime<Utc>) -> Vec<CopyChange> {
        Copy::on_job(self, job, now)
    }

    fn log_call_failed(&self, e: &ApiError) {
        log_copy_api_error(self, e);
    }

    fn id_of(job: &CopyJobDetail) -> &str {
        &job.copy_job_id
    }

    async fn describe<B: BackupJobs>(
        backup: &B,
        region: &str,
        id: &str,
    ) -> Result<CopyJobDetail, ApiError> {
        backup.describe_copy_job(region, id).await
    }

    async fn list<B: BackupJobs>(
        backup: &B,
        region: &str,
        after: DateTime<Utc>,
        token: Option<String>,
    ) -> Result<Page<CopyJobDetail>, ApiError> {
        let filter = CopyJobFilter {
            created_after: Some(after),
            ..CopyJobFilter::default()
        };
        backup.list_copy_jobs(region, &filter, token).await
    }
}

impl<S: StepFunctions, B: BackupJobs> Kind<S, B> for Copies {
    type Item = Copy;

    fn followed(t: &Tracker<S, B>) -> &Followed<Copy> {
        &t.copies
    }

    fn followed_mut(t: &mut Tracker<S, B>) -> &mut Followed<Copy> {
        &mut t.copies
    }

    fn parts(t: &mut Tracker<S, B>) -> (&mut Followed<Copy>, &Calls, &B, &dyn Clock) {
        (&mut t.copies, &t.calls, &*t.backup, &*t.clock)
    }

    fn awaits_job(c: &Copy) -> bool {
        c.awaits_job()
    }

    fn is_finished(c: &Copy) -> bool {
        c.is_finished()
    }

    async fn discover(
        t: &mut Tracker<S, B>,
        awaiting: &[Arc<str>],
        changed: &mut HashSet<Arc<str>>,
        seen: &mut HashSet<Arc<str>>,
    ) {
        t.discover_copies_by_listing(awaiting, changed).await;
        // A copy that learnt its job here is asked about at the next round.
        seen.extend(changed.iter().cloned());
    }

    async fn read_records(
        t: &mut Tracker<S, B>,
        due: &[Arc<str>],
        batch: bool,
        changed: &mut HashSet<Arc<str>>,
        seen: &mut HashSet<Arc<str>>,
    ) {
        let max = t.backoff.max;
        // One DescribeExecution answers for every destination of that execution.
        let mut asked: HashSet<String> = HashSet::new();
        for k in due {
            let Some(e) = t.copies.get(k) else {
                continue;
            };
            // In batch mode the record is read only once listing has not found the job for a
            // while (a refused StartCopyJob makes no job): refusals are rare, listing is cheap.
            if !e.item.awaits_job() || (batch && e.interval < max) {
                continue;
            }
            let Some(arn) = e.item.execution_arn.clone() else {
                continue;
            };
            if asked.insert(arn.clone()) {
                t.copy_outcomes_from_execution(k, &arn, changed).await;
            }
        }
        seen.extend(changed.iter().cloned());
    }

    fn report(
        t: &Tracker<S, B>,
        key: &Arc<str>,
        changes: Vec<CopyChange>,
        changed: &mut HashSet<Arc<str>>,
    ) {
        if changes.is_empty() {
            return;
        }
        changed.insert(key.clone());
        let c = t.copies.item(key);
        for change in &changes {
            log_copy_change(c, change);
            if let CopyChange::Finished(s) = change {
                t.metrics
                    .copy_finished(&c.target, &c.destination_vault, &s.state);
            }
        }
    }

    fn finished(_: &mut Tracker<S, B>, _: Copy) {}

    fn set_gauge(t: &Tracker<S, B>) {
        t.metrics.set_copies_in_flight(t.copies.len());
    }
}

impl<S: StepFunctions, B: BackupJobs> Tracker<S, B> {
    /// Follows copy `c` until it ends; one followed already is ignored.
    pub(super) fn insert_copy(&mut self, c: Copy) {
        let key: Arc<str> = format!(
            "{}|{}",
            c.execution_arn
                .as_deref()
                .or(c.copy_job_id.as_deref())
                .unwrap_or(&c.target),
            c.destination_vault
        )
        .into();
        if let Some(at) = self.copies.insert(key, c, self.backoff.first) {
            self.next_due = Some(self.next_due.map_or(at, |n| n.min(at)));
            self.metrics.set_copies_in_flight(self.copies.len());
        }
    }

    /// Reads a copy's execution: once it has closed, its output names each destination's copy
    /// job, or why none was started.
    async fn copy_outcomes_from_execution(
        &mut self,
        key: &Arc<str>,
        arn: &str,
        changed: &mut HashSet<Arc<str>>,
    ) {
        if !self.calls.may_call() {
            return;
        }
        self.calls.describe_token().await;
        let detail = self.sfn.describe_execution(arn).await;
        self.calls.record(&detail);
        let detail = match detail {
            Ok(d) => d,
            Err(e) => {
                log_copy_api_error(self.copies.item(key), &e);
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
            .filter(|(_, c)| c.execution_arn.as_deref() == Some(arn) && c.awaits_job())
            .map(|(k, _)| k.clone())
            .collect();
        // A copy execution that failed as a whole (its input refused, its source unreadable)
        // says why for every destination.
        let failed = (detail.status != ExecutionStatus::Succeeded).then(|| {
            format!(
                "copy execution {}: {}: {}",
                detail.status.as_str(),
                detail.error.as_deref().unwrap_or(""),
                detail.cause.as_deref().unwrap_or("")
            )
        });
        for k in keys {
            let c = self.copies.item_mut(&k).expect("followed");
            let outcome = match (&failed, detail.output.as_deref()) {
                (Some(why), None) => copies::Outcome::Refused(why.clone()),
                (_, output) => copies::outcome(output, &c.destination_vault),
            };
            let changes = c.on_outcome(outcome, now);
            Copies::report(self, &k, changes, changed);
        }
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
                let c = self.copies.item(k);
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
            .calls
            .list_jobs_since::<Copy, B>(
                &self.backup,
                keys.iter().map(|k| {
                    let c = self.copies.item(k);
                    (c.region.as_str(), c.since)
                }),
                |j| match (&j.source_recovery_point_arn, &j.destination_vault_arn) {
                    (Some(rp), Some(d)) => wanted.contains_key(&(rp.clone(), d.clone())),
                    _ => false,
                },
            )
            .await;
        let now = self.clock.now();
        for j in jobs {
            let (Some(rp), Some(d)) = (&j.source_recovery_point_arn, &j.destination_vault_arn)
            else {
                continue;
            };
            let k = wanted[&(rp.clone(), d.clone())].clone();
            let c = self.copies.item_mut(&k).expect("followed");
            let mut changes = c.on_job_id(j.copy_job_id.clone());
            changes.extend(c.on_job(&j, now));
            Copies::report(self, &k, changes, changed);
        }
    }
}
