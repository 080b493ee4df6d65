//! What the daemon exports about each target's coverage, judged as `orchestrator status`
//! judges it, so that an alert rule can be as exact as `status`:
//!
//! - every enabled target of the running config is *covered* ([`Metrics::cover`]): its series
//!   exist from the start (last success 0 = never, failure counters at 0);
//! - each recurring target's expected interval: the longest gap between the slots of its
//!   enabled rules + its jitter ([`crate::status::longest_gap`], what `status` adds its margin
//!   to), computed on the blocking pool and cached by schedule, since 100,000 targets share a
//!   few schedules;
//! - the last successes, seeded from AWS Backup through `status`'s own reads
//!   ([`crate::status::read`]: ListBackupJobs over its listing window, ListCopyJobs of each
//!   `copy_to` vault), paced at the config's `backup_read_rate`; a failed read is retried with
//!   backoff and never delays a slot.
//!
//! [`run`] does this at start and again for each config the daemon applies (a reload, a tag
//! selection's refresh), seeding only targets not seeded before. It runs on the replica that
//! works: with `[ha]` a standby exports no per-target series, and a replica that takes over
//! seeds afresh (its [`crate::app`] phases start it when the lease is won).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aws::{BackupJobs, JobDetail, JobState};
use crate::metrics::{Cover, Metrics};
use crate::model::{Config, Rule};
use crate::pacing::TokenBucket;
use crate::schedule::Schedule;
use crate::status::{self, NamedSchedule};
use crate::telemetry::event;

/// The first wait after a failed seed; doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(15);
/// The longest wait between two seed attempts.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// The enabled rules of each target, in config order (a target's rules are consecutive).
fn targets(config: &Config) -> Vec<&[Arc<Rule>]> {
    let mut out = Vec::new();
    let rules = &config.rules;
    let mut i = 0;
    while i < rules.len() {
        let mut j = i + 1;
        while j < rules.len() && rules[j].name == rules[i].name {
            j += 1;
        }
        let run = &rules[i..j];
        if run.iter().any(|r| r.settings.enabled) {
            out.push(run);
        }
        i = j;
    }
    out
}

/// The schedules of a target's enabled rules, and the cache key of their merged longest gap.
fn schedules_of(rules: &[Arc<Rule>]) -> (String, Vec<Arc<Schedule>>) {
    let enabled: Vec<Arc<Schedule>> = rules
        .iter()
        .filter(|r| r.settings.enabled)
        .map(|r| r.settings.schedule.clone())
        .collect();
    let key = enabled
        .iter()
        .map(|s| s.group_key())
        .collect::<Vec<_>>()
        .join("\n");
    (key, enabled)
}

/// Longest gaps by the key of [`schedules_of`]: computed once per distinct set of schedules.
#[derive(Debug, Default)]
pub struct Gaps(HashMap<String, Option<Duration>>);

impl Gaps {
    /// Computes the gaps of `config`'s targets not known yet, on the blocking pool.
    pub async fn learn(&mut self, config: &Config) {
        let mut todo: HashMap<String, Vec<Arc<Schedule>>> = HashMap::new();
        for rules in targets(config) {
            let (key, schedules) = schedules_of(rules);
            if !self.0.contains_key(&key) {
                todo.entry(key).or_insert(schedules);
            }
        }
        if todo.is_empty() {
            return;
        }
        let from = Utc::now() - chrono::Duration::days(1);
        let learnt = tokio::task::spawn_blocking(move || {
            todo.into_iter()
                .map(|(key, schedules)| {
                    let named: Vec<NamedSchedule<'_>> = schedules
                        .iter()
                        .map(|s| NamedSchedule {
                            name: "",
                            schedule: s,
                        })
                        .collect();
                    (key, status::longest_gap(&named, from))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        self.0.extend(learnt);
    }

    /// What [`Metrics::cover`] needs for `config`'s enabled targets (gaps learnt first).
    pub fn covers(&self, config: &Config) -> Vec<Cover> {
        targets(config)
            .into_iter()
            .map(|rules| {
                let (key, _) = schedules_of(rules);
                let enabled = rules.iter().filter(|r| r.settings.enabled);
                let jitter = enabled
                    .clone()
                    .map(|r| r.settings.jitter)
                    .max()
                    .unwrap_or_default();
                let mut destinations: Vec<Arc<str>> = enabled
                    .flat_map(|r| r.settings.copy_to.iter())
                    .map(|d| Arc::from(d.vault.to_string()))
                    .collect();
                destinations.sort();
                destinations.dedup();
                Cover {
                    target: rules[0].name.clone(),
                    expected_interval: self
                        .0
                        .get(&key)
                        .copied()
                        .flatten()
                        .map(|g| (g + jitter).as_secs_f64()),
                    destinations,
                }
            })
            .collect()
    }
}

/// Keeps the newest COMPLETED job of an instance, nothing else.
fn newest_completed(kept: &mut Vec<JobDetail>, j: JobDetail) {
    if j.state == JobState::Completed
        && kept
            .first()
            .is_none_or(|k| k.creation_date < j.creation_date)
    {
        kept.clear();
        kept.push(j);
    }
}

/// What has been seeded: (target, instance) and (target, destination vault).
#[derive(Debug, Default)]
pub struct Seeded {
    backups: HashSet<(Arc<str>, String)>,
    copies: HashSet<(Arc<str>, String)>,
}

/// What one seed did, for its log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Targets seeded.
    pub targets: usize,
    /// Of those, with a COMPLETED backup in the listing window.
    pub with_success: usize,
    /// (Target, destination) pairs seeded.
    pub copies: usize,
    /// Of those, with a COMPLETED copy in the listing window.
    pub copies_with_success: usize,
    /// ListBackupJobs and ListCopyJobs calls.
    pub calls: u64,
}

impl Seeded {
    /// Reads AWS Backup for `config`'s enabled targets not seeded yet and raises their
    /// last-success gauges; `Ok(None)` when every one was seeded before.
    pub async fn seed<B: BackupJobs>(
        &mut self,
        config: &Config,
        backup: &B,
        bucket: &TokenBucket,
        metrics: &Metrics,
    ) -> Result<Option<SeedReport>, crate::aws::ApiError> {
        let enabled: Vec<&Arc<Rule>> = config.enabled_rules().collect();
        let new_backups: Vec<&Arc<Rule>> = enabled
            .iter()
            .copied()
            .filter(|r| {
                !self
                    .backups
                    .contains(&(r.name.clone(), r.resource_arn.to_string()))
            })
            .collect();
        let new_copies: Vec<(&Arc<Rule>, String)> = enabled
            .iter()
            .flat_map(|r| {
                r.settings
                    .copy_to
                    .iter()
                    .map(move |d| (*r, d.vault.to_string()))
            })
            .filter(|(r, d)| !self.copies.contains(&(r.name.clone(), d.clone())))
            .collect();
        if new_backups.is_empty() && new_copies.is_empty() {
            return Ok(None);
        }
        let now = Utc::now();
        let mut report = SeedReport::default();
        // One listing per instance is enough, whatever number of targets and rules name it.
        let mut instances: Vec<Arc<Rule>> = Vec::new();
        let mut listed = HashSet::new();
        for r in &new_backups {
            if listed.insert(r.resource_arn.to_string()) {
                instances.push((*r).clone());
            }
        }
        let read =
            status::read::read_folded(backup, &instances, now, bucket, newest_completed).await?;
        report.calls += read.calls;
        let copy_rules: Vec<Arc<Rule>> = new_copies.iter().map(|(r, _)| (*r).clone()).collect();
        let copies = if copy_rules.is_empty() {
            status::read::CopyReading::default()
        } else {
            status::read::read_copies(backup, &copy_rules, now, bucket).await?
        };
        report.calls += copies.calls;
        let mut done = HashSet::new();
        for r in new_backups {
            let key = (r.name.clone(), r.resource_arn.to_string());
            if !done.insert(key.clone()) {
                continue;
            }
            let created: Option<DateTime<Utc>> = read
                .jobs
                .get(&key.1)
                .and_then(|jobs| jobs.first())
                .and_then(|j| j.creation_date);
            if let Some(created) = created {
                metrics.seed_last_success(&r.name, created);
                report.with_success += 1;
            }
            report.targets += 1;
            self.backups.insert(key);
        }
        for (r, destination) in new_copies {
            let key = (r.name.clone(), destination);
            if !done.insert(key.clone()) {
                continue;
            }
            let found = copies
                .newest
                .get(&(r.resource_arn.to_string(), key.1.clone()));
            if let Some(at) = found {
                metrics.seed_last_copy(&r.name, &key.1, *at);
                report.copies_with_success += 1;
            }
            report.copies += 1;
            self.copies.insert(key);
        }
        Ok(Some(report))
    }
}

/// Keeps the coverage series of the config `configs` carries current until `stop`: covers each
/// config's enabled targets with their expected intervals, and seeds (`seed`: false in a dry
/// run, which calls no AWS) the last successes of targets not seeded before.
pub async fn run<B: BackupJobs>(
    mut configs: watch::Receiver<Arc<Config>>,
    backup: Arc<B>,
    metrics: Arc<Metrics>,
    seed: bool,
    stop: CancellationToken,
) {
    let mut gaps = Gaps::default();
    let mut seeded = Seeded::default();
    let mut retry: Option<Duration> = None;
    loop {
        let config = configs.borrow_and_update().clone();
        gaps.learn(&config).await;
        metrics.cover(&gaps.covers(&config));
        let bucket = TokenBucket::new(config.pacing.backup_read_rate, 1);
        if seed {
            let started = Instant::now();
            match seeded.seed(&config, &*backup, &bucket, &metrics).await {
                Ok(report) => {
                    retry = None;
                    if let Some(r) = report {
                        metrics.api_ok();
                        info!(
                            event = event::COVERAGE_SEEDED,
                            targets = r.targets,
                            with_success = r.with_success,
                            copies = r.copies,
                            copies_with_success = r.copies_with_success,
                            calls = r.calls,
                            took_ms = started.elapsed().as_millis() as u64,
                            "last successes read from AWS Backup"
                        );
                    }
                }
                Err(e) => {
                    metrics.api_error(&e);
                    let wait = retry.map_or(FIRST_RETRY, |w| (w * 2).min(MAX_RETRY));
                    retry = Some(wait);
                    warn!(
                        event = event::COVERAGE_SEED_FAILED,
                        operation = e.operation,
                        error_kind = e.kind.as_str(),
                        error = %e,
                        retry_in_seconds = wait.as_secs(),
                        "cannot read last successes from AWS Backup; their gauges stay as they are"
                    );
                }
            }
        }
        let again = async {
            match retry {
                Some(w) => tokio::time::sleep(w).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            changed = configs.changed() => if changed.is_err() { return },
            () = again => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::FakeAws;

    fn config(text: &str) -> Config {
        crate::config::parse(
            &format!(
                "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n{text}"
            ),
            "t.toml",
        )
        .unwrap()
    }

    fn target(name: &str, n: u32, extra: &str) -> String {
        format!(
            "[[backup]]\nname = \"{name}\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-{n:08x}\"\n{extra}\n"
        )
    }

    #[tokio::test]
    async fn expected_intervals_are_the_longest_gap_plus_jitter_of_enabled_recurring_targets() {
        let c = config(&[
            target("daily", 1, "schedule = \"0 3 * * *\"\njitter = \"10m\""),
            target("weekdays", 2, "schedule = \"cron(0 3 ? * MON-FRI *)\""),
            target("off", 3, "schedule = \"0 3 * * *\"\nenabled = false"),
            target(
                "plan",
                4,
                "[[backup.rule]]\nname = \"d\"\nschedule = \"0 3 * * *\"\n[[backup.rule]]\nname = \"h\"\nschedule = \"0 */6 * * *\"",
            ),
        ]
        .concat());
        let mut gaps = Gaps::default();
        gaps.learn(&c).await;
        let covers = gaps.covers(&c);
        let by: HashMap<&str, Option<f64>> = covers
            .iter()
            .map(|c| (&*c.target, c.expected_interval))
            .collect();
        assert_eq!(by.len(), 3, "{covers:?}");
        assert_eq!(by["daily"], Some(86_400.0 + 600.0));
        assert_eq!(by["weekdays"], Some(3.0 * 86_400.0));
        // Two rules: the longest gap of their merged slots.
        assert_eq!(by["plan"], Some(6.0 * 3600.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_seed_reads_each_instance_once_and_keeps_the_newest_completed_job() {
        let c = config(
            &[
                target("a", 1, "schedule = \"0 3 * * *\""),
                target("a-again", 1, "schedule = \"0 4 * * *\""),
                target("never", 2, "schedule = \"0 3 * * *\""),
            ]
            .concat(),
        );
        let fake = FakeAws::new();
        let now = Utc::now();
        let arn = c.rules[0].resource_arn.to_string();
        let job = |id: &str, state, hours| JobDetail {
            job_id: id.into(),
            resource_arn: Some(arn.clone()),
            state,
            percent_done: None,
            backup_size_bytes: None,
            status_message: None,
            recovery_point_arn: None,
            creation_date: Some(now - chrono::Duration::hours(hours)),
            completion_date: None,
        };
        fake.set_job(job("old", JobState::Completed, 30));
        fake.set_job(job("new", JobState::Completed, 5));
        fake.set_job(job("failed", JobState::Failed, 1));
        let metrics = Metrics::new();
        let mut gaps = Gaps::default();
        gaps.learn(&c).await;
        metrics.cover(&gaps.covers(&c));
        let mut seeded = Seeded::default();
        let bucket = TokenBucket::new(1000.0, 1000);
        let r = seeded
            .seed(&c, &fake, &bucket, &metrics)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.targets, r.with_success), (3, 2));
        let text = metrics.encode();
        let want = (now - chrono::Duration::hours(5)).timestamp_millis() as f64 / 1000.0;
        for t in ["a", "a-again"] {
            let line = text
                .lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "orchestrator_last_success_timestamp_seconds{{target=\"{t}\"}}"
                    ))
                })
                .unwrap();
            let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!((v - want).abs() < 0.01, "{line} vs {want}");
        }
        assert!(text.contains("orchestrator_last_success_timestamp_seconds{target=\"never\"} 0.0"));
        // Nothing new: no call.
        let calls = fake.calls("ListBackupJobs");
        assert_eq!(
            seeded.seed(&c, &fake, &bucket, &metrics).await.unwrap(),
            None
        );
        assert_eq!(fake.calls("ListBackupJobs"), calls);
    }
}
