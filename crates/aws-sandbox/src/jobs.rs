//! Backup jobs: what StartBackupJob creates (from the wire, or from the modelled machine's
//! task), and their states over time, computed from timestamps when somebody reads them.
//!
//! No I/O and no clock: every method takes `now` (epoch milliseconds). A job holds a few
//! interned strings and numbers, so 100,000 jobs cost no timers and little memory. Knobs: the
//! resources whose jobs fail (`SandboxConfig::fail_resources`) and per-resource durations
//! (`/_sandbox/job-timings`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::basics::{
    ApiError, Millis, ec2_image_arn, job_id_text, looks_like_arn, resource_service, resource_type,
    stable_size, to_datetime,
};
use super::listing::Listing;

/// AWS Backup's start window when StartBackupJob does not set one (8 hours).
const DEFAULT_START_WINDOW_MINUTES: u64 = 480;
/// How far a job meant to fail gets before it does, in percent.
const FAILING_JOB_PROGRESS: f64 = 50.0;

/// The state of a backup job, as DescribeBackupJob spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Accepted, not yet started.
    Created,
    /// Copying data.
    Running,
    /// Done; the recovery point exists.
    Completed,
    /// Ended without a usable recovery point.
    Failed,
}

impl JobState {
    /// The wire spelling: `CREATED`, `RUNNING`, `COMPLETED`, `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    /// True for states a job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for JobState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One backup job as the sandbox sees it at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// The BackupJobId.
    pub id: String,
    /// The resource backed up.
    pub resource_arn: String,
    /// `EC2`, `EBS`, ... (from the resource ARN).
    pub resource_type: String,
    /// The vault the recovery point goes to.
    pub backup_vault_name: String,
    /// The role AWS Backup assumes.
    pub iam_role_arn: String,
    /// Its state now.
    pub state: JobState,
    /// Progress, a decimal string as AWS Backup sends it (`"42.0"`).
    pub percent_done: String,
    /// Size of the backup so far.
    pub backup_size_in_bytes: i64,
    /// Bytes copied so far.
    pub bytes_transferred: i64,
    /// Why it failed, when FAILED.
    pub status_message: Option<String>,
    /// When it was created.
    pub creation_date: DateTime<Utc>,
    /// The end of its start window.
    pub start_by: DateTime<Utc>,
    /// When it is expected to end.
    pub expected_completion_date: DateTime<Utc>,
    /// When it ended.
    pub completion_date: Option<DateTime<Utc>>,
    /// The recovery point it makes.
    pub recovery_point_arn: String,
    /// The StartBackupJob IdempotencyToken, if one was sent.
    pub idempotency_token: Option<String>,
    /// The execution whose task created it, if any.
    pub execution_name: Option<String>,
    /// StartBackupJob `BackupOptions`, as sent.
    pub backup_options: Option<Value>,
}

/// CREATED and RUNNING durations of the jobs of matching resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTiming {
    /// A substring of the resource ARN.
    pub resource: String,
    /// Milliseconds in CREATED.
    pub created_ms: u64,
    /// Milliseconds in RUNNING.
    pub running_ms: u64,
}

/// The result of StartBackupJob.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobStarted {
    pub record: JobRecord,
    /// The RecoveryPointArn the response carries (not for every resource type).
    pub recovery_point_arn: Option<String>,
    /// False when an earlier call with the same IdempotencyToken created the job.
    pub new: bool,
}

/// The StartBackupJob request members the sandbox uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobRequest {
    pub backup_vault_name: Option<String>,
    pub resource_arn: Option<String>,
    pub iam_role_arn: Option<String>,
    pub idempotency_token: Option<String>,
    pub start_window_minutes: Option<u64>,
    pub backup_options: Option<Value>,
    /// `Lifecycle.DeleteAfterDays`, the recovery point's retention.
    pub delete_after_days: Option<u64>,
}

/// The ListBackupJobs filters the sandbox honours besides the shared ones ([`Listing`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct JobFilter {
    pub resource_arn: Option<String>,
    pub state: Option<String>,
    pub backup_vault_name: Option<String>,
    pub resource_type: Option<String>,
}

/// How jobs behave by default, from [`super::SandboxConfig`] (durations in milliseconds).
#[derive(Debug, Clone)]
pub(crate) struct JobSettings {
    pub account_id: String,
    pub region: String,
    pub pending: Millis,
    pub running: Millis,
    pub fail_resources: Vec<String>,
}

#[derive(Debug)]
struct Job {
    id: Uuid,
    resource: Arc<str>,
    vault: Arc<str>,
    role: Arc<str>,
    created: Millis,
    start_window_minutes: u64,
    token: Option<Arc<str>>,
    /// True when an execution's task created it: its token is then the execution's name.
    by_execution: bool,
    fails: bool,
    pending: Millis,
    running: Millis,
    backup_options: Option<Box<Value>>,
    delete_after_days: Option<u32>,
}

/// The phases of a job's life, from its creation time and its durations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobTimes {
    pub running_from: Millis,
    pub ends: Millis,
}

/// Every backup job, in creation order, and the indexes that find them.
#[derive(Debug)]
pub(crate) struct BackupJobs {
    settings: JobSettings,
    jobs: Vec<Job>,
    ids: HashMap<Uuid, u32>,
    tokens: HashMap<Arc<str>, u32>,
    /// Resource, vault and role ARNs repeat across jobs: held once.
    strings: HashSet<Arc<str>>,
    last_created: Millis,
    /// `/_sandbox/job-timings`: CREATED/RUNNING durations per resource.
    timings: Vec<JobTiming>,
}

impl BackupJobs {
    /// No jobs yet.
    pub fn new(settings: JobSettings) -> Self {
        Self {
            settings,
            jobs: Vec::new(),
            ids: HashMap::new(),
            tokens: HashMap::new(),
            strings: HashSet::new(),
            last_created: Millis::MIN,
            timings: Vec::new(),
        }
    }

    /// Replaces the per-resource job durations (first match wins; for jobs created later).
    pub fn set_timings(&mut self, timings: Vec<JobTiming>) {
        self.timings = timings;
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let arc: Arc<str> = Arc::from(s);
        self.strings.insert(arc.clone());
        arc
    }

    /// StartBackupJob from the wire: checks the request as AWS Backup does, then creates the
    /// job (or finds the one an earlier call with the same token created).
    pub fn start(&mut self, request: JobRequest, now: Millis) -> Result<JobStarted, ApiError> {
        for (member, value) in [
            ("BackupVaultName", &request.backup_vault_name),
            ("ResourceArn", &request.resource_arn),
            ("IamRoleArn", &request.iam_role_arn),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::new(
                    "MissingParameterValueException",
                    format!("{member} is required"),
                ));
            }
        }
        let resource = request.resource_arn.as_deref().unwrap_or_default();
        if !looks_like_arn(resource) {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                format!("Invalid ARN: {resource}"),
            ));
        }
        check_backup_options(request.backup_options.as_ref(), resource)?;
        if let Some(minutes) = request.start_window_minutes
            && minutes < 60
        {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                format!("StartWindowMinutes must be at least 60, got {minutes}"),
            ));
        }
        let (job, new) = self.create(request, None, now);
        Ok(JobStarted {
            record: self.record(job, now),
            recovery_point_arn: self.start_response_recovery_point(job),
            new,
        })
    }

    /// Creates a job at `at` without checks (the machine has made them), or returns the one
    /// its token already names (`false`). `execution`: the name of the execution whose task
    /// creates it, which is also its token (shared, not copied).
    pub fn create(
        &mut self,
        request: JobRequest,
        execution: Option<&Arc<str>>,
        at: Millis,
    ) -> (u32, bool) {
        if let Some(token) = &request.idempotency_token
            && let Some(&existing) = self.tokens.get(token.as_str())
        {
            return (existing, false);
        }
        let resource = self.intern(request.resource_arn.as_deref().unwrap_or_default());
        let vault = self.intern(request.backup_vault_name.as_deref().unwrap_or_default());
        let role = self.intern(request.iam_role_arn.as_deref().unwrap_or_default());
        let by_execution =
            execution.is_some_and(|name| request.idempotency_token.as_deref() == Some(&**name));
        let token = match (request.idempotency_token.as_deref(), execution) {
            (Some(_), Some(name)) if by_execution => Some(name.clone()),
            (Some(t), _) => Some(Arc::from(t)),
            (None, _) => None,
        };
        // Jobs stay in creation order so that list pages and `createdAfter` can stop early.
        let created = at.max(self.last_created);
        self.last_created = created;
        let id = Uuid::new_v4();
        let fails = self
            .settings
            .fail_resources
            .iter()
            .any(|pattern| !pattern.is_empty() && resource.contains(pattern.as_str()));
        let index = u32::try_from(self.jobs.len()).expect("fewer than 2^32 jobs");
        let (pending, running) = self.durations(&resource);
        self.jobs.push(Job {
            id,
            resource,
            vault,
            role,
            created,
            start_window_minutes: request
                .start_window_minutes
                .unwrap_or(DEFAULT_START_WINDOW_MINUTES),
            token: token.clone(),
            by_execution,
            fails,
            pending,
            running,
            backup_options: request.backup_options.map(Box::new),
            delete_after_days: request
                .delete_after_days
                .map(|d| u32::try_from(d).unwrap_or(u32::MAX)),
        });
        self.ids.insert(id, index);
        if let Some(token) = token {
            self.tokens.insert(token, index);
        }
        (index, true)
    }

    /// CREATED and RUNNING durations of a new job of `resource`: the first matching timing
    /// knob, else the configured ones.
    fn durations(&self, resource: &str) -> (Millis, Millis) {
        let timing = self
            .timings
            .iter()
            .find(|t| !t.resource.is_empty() && resource.contains(t.resource.as_str()));
        timing.map_or((self.settings.pending, self.settings.running), |t| {
            (
                Millis::try_from(t.created_ms).unwrap_or(Millis::MAX),
                Millis::try_from(t.running_ms).unwrap_or(Millis::MAX),
            )
        })
    }

    /// When job `index` starts running and ends.
    pub fn times(&self, index: u32) -> JobTimes {
        let job = &self.jobs[index as usize];
        let running_from = job.created.saturating_add(job.pending);
        JobTimes {
            running_from,
            ends: running_from.saturating_add(job.running),
        }
    }

    /// Job `index`'s state at `now`.
    pub fn state(&self, index: u32, now: Millis) -> JobState {
        let times = self.times(index);
        if now < times.running_from {
            JobState::Created
        } else if now < times.ends {
            JobState::Running
        } else if self.jobs[index as usize].fails {
            JobState::Failed
        } else {
            JobState::Completed
        }
    }

    /// The BackupJobId of job `index`.
    pub fn id(&self, index: u32) -> String {
        job_id_text(self.jobs[index as usize].id)
    }

    /// The resource job `index` backs up.
    pub fn resource(&self, index: u32) -> &str {
        &self.jobs[index as usize].resource
    }

    /// The vault job `index` writes to.
    pub fn vault(&self, index: u32) -> &str {
        &self.jobs[index as usize].vault
    }

    /// How many jobs there are.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// The role job `index` runs with.
    pub fn role(&self, index: u32) -> &str {
        &self.jobs[index as usize].role
    }

    /// The recovery point's retention, as StartBackupJob set it.
    pub fn delete_after_days(&self, index: u32) -> Option<u32> {
        self.jobs[index as usize].delete_after_days
    }

    /// A stable size of job `index`'s backup.
    pub fn size(&self, index: u32) -> u64 {
        stable_size(self.jobs[index as usize].id)
    }

    /// When job `index` was created.
    pub fn created(&self, index: u32) -> Millis {
        self.jobs[index as usize].created
    }

    /// The recovery point job `index` makes: an AMI for EC2, a Backup ARN otherwise.
    pub fn recovery_point_arn(&self, index: u32) -> String {
        let job = &self.jobs[index as usize];
        let region = &self.settings.region;
        if resource_service(&job.resource) == "ec2" {
            ec2_image_arn(region, job.id)
        } else {
            format!(
                "arn:aws:backup:{region}:{}:recovery-point:{}",
                self.settings.account_id,
                job_id_text(job.id)
            )
        }
    }

    /// The newest job whose recovery point is `arn`.
    pub fn find_by_recovery_point(&self, arn: &str) -> Option<u32> {
        (0..self.jobs.len() as u32)
            .rev()
            .find(|&i| self.recovery_point_arn(i) == arn)
    }

    /// StartBackupJob returns a RecoveryPointArn only for some resource types (not EC2).
    pub fn start_response_recovery_point(&self, index: u32) -> Option<String> {
        (resource_service(&self.jobs[index as usize].resource) != "ec2")
            .then(|| self.recovery_point_arn(index))
    }

    /// Job `index` at `now`.
    pub fn record(&self, index: u32, now: Millis) -> JobRecord {
        let job = &self.jobs[index as usize];
        let times = self.times(index);
        let state = self.state(index, now);
        let ceiling = if job.fails {
            FAILING_JOB_PROGRESS
        } else {
            100.0
        };
        let fraction = if job.running <= 0 || now >= times.ends {
            1.0
        } else {
            ((now - times.running_from) as f64 / job.running as f64).clamp(0.0, 1.0)
        };
        let percent = (fraction * ceiling * 10.0).floor() / 10.0;
        let size = stable_size(job.id);
        let transferred = (size as f64 * percent / 100.0) as i64;
        JobRecord {
            id: job_id_text(job.id),
            resource_arn: job.resource.to_string(),
            resource_type: resource_type(&job.resource),
            backup_vault_name: job.vault.to_string(),
            iam_role_arn: job.role.to_string(),
            state,
            percent_done: format!("{percent:.1}"),
            backup_size_in_bytes: if state == JobState::Completed {
                size as i64
            } else {
                transferred
            },
            bytes_transferred: transferred,
            status_message: (state == JobState::Failed).then(|| {
                format!(
                    "Backup job failed: the sandbox is configured to fail backups of {}",
                    job.resource
                )
            }),
            creation_date: to_datetime(job.created),
            start_by: to_datetime(job.created + job.start_window_minutes as Millis * 60_000),
            expected_completion_date: to_datetime(times.ends),
            completion_date: state.is_terminal().then(|| to_datetime(times.ends)),
            recovery_point_arn: self.recovery_point_arn(index),
            idempotency_token: job.token.as_deref().map(str::to_string),
            execution_name: job
                .by_execution
                .then(|| job.token.as_deref().unwrap_or_default().to_string()),
            backup_options: job.backup_options.as_deref().cloned(),
        }
    }

    /// The job a BackupJobId names.
    pub fn find(&self, id: &str) -> Option<u32> {
        let uuid = Uuid::parse_str(id).ok()?;
        self.ids.get(&uuid).copied()
    }

    /// DescribeBackupJob.
    pub fn describe(&self, id: &str, now: Millis) -> Result<JobRecord, ApiError> {
        let index = self.find(id).ok_or_else(|| {
            ApiError::new(
                "ResourceNotFoundException",
                format!("Cannot find backup job with ID {id}"),
            )
        })?;
        Ok(self.record(index, now))
    }

    /// ListBackupJobs: newest first, a page of `listing`.
    pub fn list(
        &self,
        filter: &JobFilter,
        listing: &Listing,
        now: Millis,
    ) -> Result<(Vec<JobRecord>, Option<String>), ApiError> {
        let (page, next) = listing.page(
            self.jobs.len(),
            "j",
            &self.settings.account_id,
            |i| self.jobs[i].created,
            |i| self.matches(i as u32, filter, listing, now),
        )?;
        let records = page
            .into_iter()
            .map(|i| self.record(i as u32, now))
            .collect();
        Ok((records, next))
    }

    fn matches(&self, index: u32, filter: &JobFilter, listing: &Listing, now: Millis) -> bool {
        let job = &self.jobs[index as usize];
        let state = self.state(index, now);
        let completed = state.is_terminal().then(|| self.times(index).ends);
        filter
            .resource_arn
            .as_deref()
            .is_none_or(|arn| *job.resource == *arn)
            && filter.state.as_deref().is_none_or(|s| state == s)
            && filter
                .backup_vault_name
                .as_deref()
                .is_none_or(|v| *job.vault == *v)
            && filter
                .resource_type
                .as_deref()
                .is_none_or(|t| resource_type(&job.resource) == t)
            && listing.completed_in_window(completed)
    }

    /// Every job, oldest first.
    pub fn all(&self, now: Millis) -> Vec<JobRecord> {
        (0..self.jobs.len() as u32)
            .map(|i| self.record(i, now))
            .collect()
    }
}

/// StartBackupJob's `BackupOptions`: `WindowsVSS` = `enabled` | `disabled`, for EC2 only.
pub(crate) fn check_backup_options(
    options: Option<&Value>,
    resource: &str,
) -> Result<(), ApiError> {
    let Some(options) = options else {
        return Ok(());
    };
    let Some(map) = options.as_object() else {
        return Err(ApiError::new(
            "InvalidParameterValueException",
            "BackupOptions must be a map of strings",
        ));
    };
    for (key, value) in map {
        match (key.as_str(), value.as_str()) {
            ("WindowsVSS", Some("enabled" | "disabled")) => {
                if resource_type(resource) != "EC2" {
                    return Err(ApiError::new(
                        "InvalidParameterValueException",
                        format!(
                            "BackupOptions WindowsVSS is supported for EC2 instances only, not {resource}"
                        ),
                    ));
                }
            }
            ("WindowsVSS", _) => {
                return Err(ApiError::new(
                    "InvalidParameterValueException",
                    format!(
                        "BackupOptions WindowsVSS must be \"enabled\" or \"disabled\", got {value}"
                    ),
                ));
            }
            (other, _) => {
                return Err(ApiError::new(
                    "InvalidParameterValueException",
                    format!("Unsupported BackupOptions key {other:?} (expected WindowsVSS)"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EC2: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
    const T0: Millis = 1_800_000_000_000;

    fn jobs() -> BackupJobs {
        BackupJobs::new(JobSettings {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            pending: 1_000,
            running: 3_000,
            fail_resources: vec!["i-bad".into()],
        })
    }

    fn request(arn: &str) -> JobRequest {
        JobRequest {
            backup_vault_name: Some("Default".into()),
            resource_arn: Some(arn.into()),
            iam_role_arn: Some("arn:aws:iam::123456789012:role/r".into()),
            idempotency_token: None,
            start_window_minutes: Some(60),
            backup_options: None,
            delete_after_days: Some(35),
        }
    }

    #[test]
    fn job_state_follows_time_and_fail_resources() {
        let mut j = jobs();
        let ok = j.start(request(EC2), T0).unwrap().record;
        let bad_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-bad";
        let bad = j.start(request(bad_arn), T0).unwrap().record;
        let at = |j: &BackupJobs, id: &str, t| j.describe(id, t).unwrap();
        assert_eq!(at(&j, &ok.id, T0 + 999).state, JobState::Created);
        let half = at(&j, &ok.id, T0 + 2_500);
        assert_eq!(
            (half.state, half.percent_done.as_str()),
            (JobState::Running, "50.0")
        );
        let done = at(&j, &ok.id, T0 + 4_000);
        assert_eq!(
            (done.state, done.percent_done.as_str()),
            (JobState::Completed, "100.0")
        );
        assert_eq!(done.completion_date, Some(to_datetime(T0 + 4_000)));
        let failed = at(&j, &bad.id, T0 + 4_000);
        assert_eq!(failed.state, JobState::Failed);
        assert!(failed.status_message.is_some());
        assert_eq!(
            j.describe("00000000-0000-0000-0000-000000000000", T0)
                .unwrap_err()
                .code,
            "ResourceNotFoundException"
        );
    }

    #[test]
    fn the_same_token_returns_the_same_job() {
        let mut j = jobs();
        let mut r = request(EC2);
        r.idempotency_token = Some("tok".into());
        let a = j.start(r.clone(), T0).unwrap();
        let b = j.start(r, T0 + 5).unwrap();
        assert!(a.new && !b.new);
        assert_eq!(a.record.id, b.record.id);
        assert_eq!(j.all(T0 + 5).len(), 1);
    }

    #[test]
    fn backup_options_are_validated() {
        assert!(check_backup_options(Some(&json!({"WindowsVSS": "enabled"})), EC2).is_ok());
        assert!(check_backup_options(None, EC2).is_ok());
        let bad = check_backup_options(Some(&json!({"WindowsVSS": "on"})), EC2).unwrap_err();
        assert_eq!(bad.code, "InvalidParameterValueException");
        let ebs = "arn:aws:ec2:us-east-1:123456789012:volume/vol-1";
        assert!(check_backup_options(Some(&json!({"WindowsVSS": "enabled"})), ebs).is_err());
        assert!(check_backup_options(Some(&json!({"Other": "x"})), EC2).is_err());
    }

    #[test]
    fn jobs_filter_by_creation_date_and_state() {
        let mut j = jobs();
        for i in 0..4 {
            j.start(request(&format!("{EC2}{i}")), T0 + i * 1_000)
                .unwrap();
        }
        let listing = Listing {
            created_after: Some(T0 + 1_000),
            ..Listing::default()
        };
        let (found, _) = j.list(&JobFilter::default(), &listing, T0 + 3_500).unwrap();
        assert_eq!(found.len(), 3);
        let filter = JobFilter {
            state: Some("RUNNING".into()),
            ..JobFilter::default()
        };
        let (running, _) = j.list(&filter, &Listing::default(), T0 + 3_500).unwrap();
        // Created at T0 (+1s pending: running from T0+1000 to T0+4000), T0+1000, T0+2000.
        assert_eq!(running.len(), 3);
    }
}
