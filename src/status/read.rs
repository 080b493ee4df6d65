//! The AWS reads of `status`: ListBackupJobs over the last 30 days, by region or by resource as
//! [`super::plan`] decides, paced by a token bucket and retried on throttling and transient
//! faults. Nothing here judges; [`super::report`] does. The daemon seeds its last-success
//! gauges through the same reads ([`read_folded`], [`read_copies`]; see [`crate::coverage`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{LOOKBACK_DAYS, PAGE_SIZE, Plan, plan, rules_of, slots_between};
use crate::aws::{ApiError, BackupJobs, CopyJobFilter, JobDetail, JobFilter, Page};
use crate::model::Rule;
use crate::pacing::TokenBucket;

/// Attempts of one call before `status` gives up (exit 2).
const ATTEMPTS: u32 = 5;
/// The first wait after a retryable failure; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Pages one listing by resource may read (1,000,000 jobs).
const MAX_PAGES_PER_RESOURCE: u64 = 1000;
/// Jobs a target is estimated to make, counted up to this (the plan only needs pages).
const ESTIMATE_CAP: u64 = 100 * PAGE_SIZE;

/// What the reads found.
#[derive(Debug, Default)]
pub struct Reading {
    /// Jobs in the lookback, by resource ARN (only the config's instances).
    pub jobs: HashMap<String, Vec<JobDetail>>,
    /// ListBackupJobs calls made (pages, retries included).
    pub calls: u64,
    /// Per region: the plan, and whether a region listing ran over its budget and was replaced.
    pub plans: Vec<(String, Plan, bool)>,
}

/// Reads the jobs of `targets`' instances in the last [`LOOKBACK_DAYS`] days.
pub async fn read<B: BackupJobs>(
    backup: &B,
    targets: &[Arc<Rule>],
    now: DateTime<Utc>,
    bucket: &TokenBucket,
) -> Result<Reading, ApiError> {
    read_folded(backup, targets, now, bucket, |jobs, j| jobs.push(j)).await
}

/// [`read`], keeping of each instance's jobs what `fold` keeps (the daemon's seed keeps only
/// the newest COMPLETED one: a fleet's 30 days of jobs are never held at once).
pub async fn read_folded<B: BackupJobs>(
    backup: &B,
    targets: &[Arc<Rule>],
    now: DateTime<Utc>,
    bucket: &TokenBucket,
    fold: impl Fn(&mut Vec<JobDetail>, JobDetail),
) -> Result<Reading, ApiError> {
    let since = now - chrono::Duration::days(LOOKBACK_DAYS);
    let mut by_region: Vec<(String, Vec<&Arc<Rule>>)> = Vec::new();
    for t in targets {
        let region = &t.settings.state_machine.region;
        match by_region.iter_mut().find(|(r, _)| r == region) {
            Some((_, v)) => v.push(t),
            None => by_region.push((region.clone(), vec![t])),
        }
    }
    let mut out = Reading::default();
    let mut estimates: HashMap<String, u64> = HashMap::new();
    for (region, targets) in by_region {
        let counts: Vec<u64> = targets
            .iter()
            .map(|t| {
                let rules = rules_of(t);
                let key = rules
                    .iter()
                    .map(|r| r.schedule.group_key())
                    .collect::<Vec<_>>()
                    .join("|");
                *estimates
                    .entry(key)
                    .or_insert_with(|| slots_between(&rules, since, now, ESTIMATE_CAP))
            })
            .collect();
        let chosen = plan(&counts);
        let mut fell_back = false;
        if let Plan::Region { budget } = chosen {
            let filter = JobFilter {
                created_after: Some(since),
                resource_type: Some("EC2".into()),
                ..JobFilter::default()
            };
            let ours: HashSet<String> =
                targets.iter().map(|t| t.resource_arn.to_string()).collect();
            let mut found: HashMap<String, Vec<JobDetail>> = HashMap::new();
            let complete = list_all(
                |token| backup.list_backup_jobs(&region, &filter, token),
                budget,
                bucket,
                &mut out.calls,
                |j: JobDetail| {
                    if let Some(r) = j.resource_arn.as_ref().filter(|r| ours.contains(*r)) {
                        fold(found.entry(r.clone()).or_default(), j);
                    }
                },
            )
            .await?;
            if complete {
                out.jobs.extend(found);
            } else {
                fell_back = true;
            }
        }
        if chosen == Plan::PerResource || fell_back {
            for t in &targets {
                let filter = JobFilter {
                    created_after: Some(since),
                    resource_arn: Some(t.resource_arn.to_string()),
                    ..JobFilter::default()
                };
                let mut found = Vec::new();
                list_all(
                    |token| backup.list_backup_jobs(&region, &filter, token),
                    MAX_PAGES_PER_RESOURCE,
                    bucket,
                    &mut out.calls,
                    |j| fold(&mut found, j),
                )
                .await?;
                out.jobs.insert(t.resource_arn.to_string(), found);
            }
        }
        out.plans.push((region, chosen, fell_back));
    }
    Ok(out)
}

/// What [`read_copies`] found.
#[derive(Debug, Default)]
pub struct CopyReading {
    /// The newest completion of a COMPLETED copy job in the lookback, by (resource ARN,
    /// destination vault ARN); only the config's instances and destinations.
    pub newest: HashMap<(String, String), DateTime<Utc>>,
    /// ListCopyJobs calls made (pages, retries included).
    pub calls: u64,
}

/// Reads the COMPLETED copy jobs of `targets`' instances to their `copy_to` vaults in the last
/// [`LOOKBACK_DAYS`] days: one listing per region (where the copies start) and destination
/// vault, paced and retried as [`read`]'s.
pub async fn read_copies<B: BackupJobs>(
    backup: &B,
    targets: &[Arc<Rule>],
    now: DateTime<Utc>,
    bucket: &TokenBucket,
) -> Result<CopyReading, ApiError> {
    let since = now - chrono::Duration::days(LOOKBACK_DAYS);
    let mut wanted: std::collections::BTreeMap<(String, String), HashSet<String>> =
        std::collections::BTreeMap::new();
    for t in targets {
        for d in t.settings.copy_to.iter() {
            wanted
                .entry((t.settings.state_machine.region.clone(), d.vault.to_string()))
                .or_default()
                .insert(t.resource_arn.to_string());
        }
    }
    let mut out = CopyReading::default();
    for ((region, destination), ours) in wanted {
        let filter = CopyJobFilter {
            created_after: Some(since),
            destination_vault_arn: Some(destination.clone()),
            state: Some("COMPLETED".into()),
        };
        let newest = &mut out.newest;
        list_all(
            |token| backup.list_copy_jobs(&region, &filter, token),
            MAX_PAGES_PER_RESOURCE,
            bucket,
            &mut out.calls,
            |c| {
                let Some(r) = c.resource_arn.filter(|r| ours.contains(r)) else {
                    return;
                };
                let Some(at) = c.completion_date.or(c.creation_date) else {
                    return;
                };
                let e = newest.entry((r, destination.clone())).or_insert(at);
                *e = (*e).max(at);
            },
        )
        .await?;
    }
    Ok(out)
}

/// Lists every page (up to `max_pages`) that `page` fetches, handing each item to `each`;
/// false if pages remained.
async fn list_all<T, F>(
    page: impl Fn(Option<String>) -> F,
    max_pages: u64,
    bucket: &TokenBucket,
    calls: &mut u64,
    mut each: impl FnMut(T),
) -> Result<bool, ApiError>
where
    F: Future<Output = Result<Page<T>, ApiError>>,
{
    let mut token = None;
    for _ in 0..max_pages {
        let page = call(&page, token, bucket, calls).await?;
        page.items.into_iter().for_each(&mut each);
        token = page.next_token;
        if token.is_none() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One page, paced; retried with backoff while the error is retryable.
async fn call<T, F>(
    page: &impl Fn(Option<String>) -> F,
    token: Option<String>,
    bucket: &TokenBucket,
    calls: &mut u64,
) -> Result<Page<T>, ApiError>
where
    F: Future<Output = Result<Page<T>, ApiError>>,
{
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        bucket.acquire().await;
        *calls += 1;
        match page(token.clone()).await {
            Ok(page) => return Ok(page),
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::FakeAws;
    use crate::aws::{ErrorKind, JobState};

    fn targets(n: usize, schedule: &str) -> Vec<Arc<Rule>> {
        let mut text = String::from(
            "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n",
        );
        for i in 0..n {
            text.push_str(&format!(
                "[[backup]]\nname = \"t{i}\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-{i:08x}\"\nschedule = \"{schedule}\"\n"
            ));
        }
        crate::config::parse(&text, "t.toml").unwrap().rules
    }

    fn job(id: usize, resource: &str, now: DateTime<Utc>) -> JobDetail {
        JobDetail {
            job_id: format!("j{id}"),
            resource_arn: Some(resource.to_string()),
            state: JobState::Completed,
            percent_done: None,
            backup_size_bytes: None,
            status_message: None,
            recovery_point_arn: None,
            creation_date: Some(now - chrono::Duration::hours(1)),
            completion_date: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn many_daily_targets_cost_one_listing_and_few_cost_one_call_each() {
        let now = Utc::now();
        let bucket = TokenBucket::new(1000.0, 1000);
        let fake = FakeAws::new();
        let many = targets(1000, "0 3 * * *");
        for (i, t) in many.iter().enumerate() {
            fake.set_job(job(i, &t.resource_arn.to_string(), now));
        }
        let r = read(&fake, &many, now, &bucket).await.unwrap();
        // The fake answers in one page: one call for 1,000 targets.
        assert_eq!((r.calls, fake.calls("ListBackupJobs")), (1, 1));
        assert!(matches!(r.plans[0].1, Plan::Region { budget: 1000 }));
        assert_eq!(r.jobs.len(), 1000);

        let fake = FakeAws::new();
        let few = targets(3, "* * * * * *");
        let r = read(&fake, &few, now, &bucket).await.unwrap();
        assert_eq!(r.plans[0].1, Plan::PerResource);
        assert_eq!(r.calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_region_full_of_other_jobs_falls_back_to_listing_by_resource() {
        let now = Utc::now();
        let bucket = TokenBucket::new(1000.0, 1000);
        let fake = FakeAws::new();
        fake.page_jobs(10);
        let ours = targets(3, "0 3 * * *");
        for (i, t) in ours.iter().enumerate() {
            fake.set_job(job(i, &t.resource_arn.to_string(), now));
        }
        // 40 newer jobs of instances not in the config: 5 pages of 10 before ours.
        for i in 0..40 {
            let mut j = job(
                100 + i,
                &format!("arn:aws:ec2:us-east-1:123456789012:instance/i-f{i:07x}"),
                now,
            );
            j.creation_date = Some(now - chrono::Duration::minutes(1));
            fake.set_job(j);
        }
        let r = read(&fake, &ours, now, &bucket).await.unwrap();
        // The region listing may take 3 pages (what 3 targets cost by resource), then 3 calls.
        assert_eq!(
            r.plans[0],
            ("us-east-1".to_string(), Plan::Region { budget: 3 }, true)
        );
        assert_eq!(r.calls, 6);
        for t in &ours {
            assert_eq!(r.jobs[&t.resource_arn.to_string()].len(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_is_retried_and_access_denied_is_returned() {
        let now = Utc::now();
        let bucket = TokenBucket::new(1000.0, 1000);
        let fake = FakeAws::new();
        fake.fail_next("ListBackupJobs", ErrorKind::Throttled);
        let r = read(&fake, &targets(1, "0 3 * * *"), now, &bucket)
            .await
            .unwrap();
        assert_eq!(r.calls, 2);
        fake.fail_next("ListBackupJobs", ErrorKind::AccessDenied);
        let e = read(&fake, &targets(1, "0 3 * * *"), now, &bucket)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDenied);
    }
}
