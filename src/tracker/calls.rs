//! The calls every kind of followed thing makes, and their limits: token buckets, the failure
//! streak that stops a round during an outage, paged listings, and the generic step that asks
//! about known jobs (one listing sweep when many are due, else one describe each).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::aws::{ApiError, BackupJobs, Page};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::pacing::TokenBucket;
use crate::telemetry::event;

use super::followed::Followed;

/// Above this many due things of one kind in one phase, the tracker lists instead of
/// describing each.
pub const BATCH_THRESHOLD: usize = 8;
/// Clock skew allowed between an execution's start and its job's creation date.
pub(super) const CREATION_SKEW: chrono::Duration = chrono::Duration::minutes(5);
/// Pages one listing sweep may read.
pub(super) const MAX_LIST_PAGES: usize = 100;
/// Failed calls in a row after which a poll round stops calling: the rest wait for the next
/// round. Without it an outage turned one round into a call per backup (10,000 failing calls
/// at 5/s: half an hour, and as many log lines).
pub(super) const MAX_FAILURE_STREAK: u32 = 3;

/// The tracker's calls: paced per API, and stopped for the round by a failure streak.
pub(super) struct Calls {
    /// DescribeExecution / GetExecutionHistory.
    describe: TokenBucket,
    /// DescribeBackupJob / ListBackupJobs / their copy twins.
    backup_read: TokenBucket,
    /// StartExecution of copy executions: the launcher's bucket when shared
    /// ([`super::Tracker::share_start_pacing`]), so starts of both stay within one quota.
    pub(super) starts: Arc<TokenBucket>,
    /// Calls failed in a row in this poll round; atomic only because the polling futures
    /// borrow the tracker shared.
    failure_streak: AtomicU32,
    /// Calls this round did not make because of the streak.
    held: AtomicU32,
    pub(super) metrics: Arc<Metrics>,
}

impl Calls {
    /// Calls paced at `describe_rate` and `backup_read_rate` per second.
    pub(super) fn new(describe_rate: f64, backup_read_rate: f64, metrics: Arc<Metrics>) -> Self {
        let burst = |rate: f64| (rate.ceil() as u32).max(1);
        Calls {
            describe: TokenBucket::new(describe_rate, burst(describe_rate)),
            backup_read: TokenBucket::new(backup_read_rate, burst(backup_read_rate)),
            starts: Arc::new(TokenBucket::new(
                crate::config::DEFAULT_START_RATE,
                crate::config::DEFAULT_START_BURST,
            )),
            failure_streak: AtomicU32::new(0),
            held: AtomicU32::new(0),
            metrics,
        }
    }

    /// A new round: no streak, nothing held.
    pub(super) fn start_round(&self) {
        self.failure_streak.store(0, Ordering::Relaxed);
        self.held.store(0, Ordering::Relaxed);
    }

    /// Calls this round held back by the failure streak.
    pub(super) fn held(&self) -> u32 {
        self.held.load(Ordering::Relaxed)
    }

    /// False once this round saw [`MAX_FAILURE_STREAK`] failed calls in a row (counted as held).
    pub(super) fn may_call(&self) -> bool {
        if self.failure_streak.load(Ordering::Relaxed) < MAX_FAILURE_STREAK {
            return true;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Waits for a Step Functions read token.
    pub(super) async fn describe_token(&self) {
        self.describe.acquire().await;
    }

    /// Waits for an AWS Backup read token.
    pub(super) async fn backup_read_token(&self) {
        self.backup_read.acquire().await;
    }

    /// Counts the outcome of a call made.
    pub(super) fn record<T>(&self, result: &Result<T, ApiError>) {
        match result {
            Ok(_) => {
                self.failure_streak.store(0, Ordering::Relaxed);
                self.metrics.api_ok();
            }
            Err(e) => {
                self.failure_streak.fetch_add(1, Ordering::Relaxed);
                self.metrics.api_error(e);
            }
        }
    }

    /// One listing per region from its instant in `oldest`, page by page (paced, and stopped by
    /// a failure streak), keeping the rows `keep` wants; a failed page is logged with `failed`.
    pub(super) async fn list_pages<T, Fut>(
        &self,
        oldest: HashMap<String, DateTime<Utc>>,
        failed: &'static str,
        list: impl Fn(String, DateTime<Utc>, Option<String>) -> Fut,
        keep: impl Fn(&T) -> bool,
    ) -> Vec<T>
    where
        Fut: Future<Output = Result<Page<T>, ApiError>>,
    {
        let mut rows = Vec::new();
        for (region, after) in oldest {
            let mut token = None;
            for _ in 0..MAX_LIST_PAGES {
                if !self.may_call() {
                    break;
                }
                self.backup_read_token().await;
                let page = list(region.clone(), after, token).await;
                self.record(&page);
                match page {
                    Ok(page) => {
                        rows.extend(page.items.into_iter().filter(|j| keep(j)));
                        token = page.next_token;
                        if token.is_none() {
                            break;
                        }
                    }
                    Err(e) => {
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

    /// Every job of `T`'s kind created since the earliest of `since` in each region (less the
    /// allowed skew), that `keep` wants.
    pub(super) async fn list_jobs_since<'a, T: FollowsJob, B: BackupJobs>(
        &self,
        backup: &B,
        since: impl Iterator<Item = (&'a str, DateTime<Utc>)>,
        keep: impl Fn(&T::Job) -> bool,
    ) -> Vec<T::Job> {
        self.list_pages(
            oldest_per_region(since),
            T::LIST_FAILED,
            |region, after, token| async move { T::list(backup, &region, after, token).await },
            keep,
        )
        .await
    }
}

/// A followed thing that has an AWS Backup job of its own once known (a backup job, a copy
/// job): the calls that describe and list its kind of job, and what it learns from one.
pub(super) trait FollowsJob {
    /// The job as AWS Backup describes and lists it.
    type Job;
    /// A change worth a log line.
    type Change;
    /// How a failed listing of this kind is logged.
    const LIST_FAILED: &'static str;

    /// The region its job lives in.
    fn region(&self) -> &str;
    /// Its job, once known.
    fn job_id(&self) -> Option<&str>;
    /// True while its job is known and not yet over.
    fn needs_job(&self) -> bool;
    /// Where a listing that looks for its job starts.
    fn listed_since(&self) -> DateTime<Utc>;
    /// What a description of its job changes.
    fn on_job(&mut self, job: &Self::Job, now: DateTime<Utc>) -> Vec<Self::Change>;
    /// Logs a failed call about it.
    fn log_call_failed(&self, e: &ApiError);
    /// The id of a listed job.
    fn id_of(job: &Self::Job) -> &str;
    /// Describes one job.
    fn describe<B: BackupJobs>(
        backup: &B,
        region: &str,
        id: &str,
    ) -> impl Future<Output = Result<Self::Job, ApiError>>;
    /// One page of the jobs created since `after`.
    fn list<B: BackupJobs>(
        backup: &B,
        region: &str,
        after: DateTime<Utc>,
        token: Option<String>,
    ) -> impl Future<Output = Result<Page<Self::Job>, ApiError>>;
}

/// Asks about the known jobs of `keys`: above [`BATCH_THRESHOLD`] one listing sweep reports
/// them all (a page holds 1000), then each job the sweep did not see is described. Returns the
/// changes of every key that has some.
pub(super) async fn follow_jobs<T: FollowsJob, B: BackupJobs>(
    followed: &mut Followed<T>,
    calls: &Calls,
    backup: &B,
    clock: &dyn Clock,
    keys: &[Arc<str>],
) -> Vec<(Arc<str>, Vec<T::Change>)> {
    let mut out = Vec::new();
    let mut seen: HashSet<Arc<str>> = HashSet::new();
    if keys.len() > BATCH_THRESHOLD {
        let by_id: HashMap<String, Arc<str>> = keys
            .iter()
            .filter_map(|k| Some((followed.item(k).job_id()?.to_string(), k.clone())))
            .collect();
        let jobs = calls
            .list_jobs_since::<T, B>(
                backup,
                keys.iter().map(|k| {
                    let item = followed.item(k);
                    (item.region(), item.listed_since())
                }),
                |j| by_id.contains_key(T::id_of(j)),
            )
            .await;
        let now = clock.now();
        for j in jobs {
            let k = by_id[T::id_of(&j)].clone();
            seen.insert(k.clone());
            let changes = followed.item_mut(&k).expect("followed").on_job(&j, now);
            out.push((k, changes));
        }
    }
    for k in keys.iter().filter(|k| !seen.contains(*k)) {
        let item = followed.item(k);
        let (Some(id), region) = (item.job_id().map(str::to_string), item.region().to_string())
        else {
            continue;
        };
        if !calls.may_call() {
            continue;
        }
        calls.backup_read_token().await;
        let job = T::describe(backup, &region, &id).await;
        calls.record(&job);
        match job {
            Ok(j) => {
                let now = clock.now();
                let changes = followed.item_mut(k).expect("followed").on_job(&j, now);
                out.push((k.clone(), changes));
            }
            Err(e) => followed.item(k).log_call_failed(&e),
        }
    }
    out
}

/// Per region, the earliest of `items`' instants, less the allowed clock skew.
pub(super) fn oldest_per_region<'a>(
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
