//! Restore jobs and the EC2 instances they launch: what StartRestoreJob creates (from the wire
//! or the restore machine), PENDING → RUNNING → COMPLETED (or FAILED) by time, the instance's
//! life (pending → running → both status checks ok, or impaired), its tags, its termination,
//! and the validation result put on the job.
//!
//! No I/O and no clock: every method takes `now`. Each restore job holds the one instance it
//! launches, whose state follows from timestamps as the job's does. Knobs (`POST
//! /_sandbox/restore-rules`, first match on the source instance or recovery point ARN): a
//! restore that fails (and may leave an instance behind), a slow one, an instance whose status
//! checks end impaired or take long, a termination that fails.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::basics::{ApiError, Millis, duration_ms, to_datetime};
use super::listing::Listing;

/// How far a restore meant to fail gets before it does, in percent of its running time.
const FAILING_RESTORE_SHARE: f64 = 0.5;

/// How restores and restored instances behave by default, and how often the restore machine
/// polls (the template's 60 s and 15 s rounds).
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreSettings {
    /// A restore job's time in PENDING before RUNNING.
    pub job_pending: Duration,
    /// A restore job's time in RUNNING before it ends (its instance is launched then).
    pub job_running: Duration,
    /// A restored instance's time in `pending` before `running`.
    pub instance_pending: Duration,
    /// From `running` until both status checks are `ok` (`initializing` meanwhile).
    pub status_checks: Duration,
    /// A terminated instance's time in `shutting-down`.
    pub shutting_down: Duration,
    /// The restore machine's `WaitForRestoreJob` (60 s in the template).
    pub job_poll: Duration,
    /// The restore machine's `WaitForInstance` (15 s in the template).
    pub instance_poll: Duration,
    /// False: PutRestoreValidationResult answers `InvalidRequestException` for every job (as
    /// AWS may for a job that no restore testing plan started).
    pub accept_validation_results: bool,
}

impl Default for RestoreSettings {
    fn default() -> Self {
        Self {
            job_pending: Duration::from_secs(1),
            job_running: Duration::from_secs(3),
            instance_pending: Duration::from_secs(1),
            status_checks: Duration::from_secs(2),
            shutting_down: Duration::from_secs(1),
            job_poll: Duration::from_secs(60),
            instance_poll: Duration::from_secs(15),
            accept_validation_results: true,
        }
    }
}

/// How restores matching it behave (`POST /_sandbox/restore-rules`); the first match wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRule {
    /// A part of the source instance ARN or of the recovery point ARN; empty matches all.
    #[serde(default)]
    pub resource: String,
    /// The restore job ends FAILED half way through its running time.
    #[serde(default)]
    pub fail: bool,
    /// With `fail`: the failed job still launched an instance (`CreatedResourceArn`).
    #[serde(default)]
    pub leaves_instance: bool,
    /// Milliseconds in PENDING (a slow restore), instead of the configured time.
    #[serde(default)]
    pub pending_ms: Option<u64>,
    /// Milliseconds in RUNNING, instead of the configured time.
    #[serde(default)]
    pub running_ms: Option<u64>,
    /// The restored instance's status checks end `impaired` instead of `ok`.
    #[serde(default)]
    pub impaired: bool,
    /// Milliseconds from `running` to the checks' verdict, instead of the configured time
    /// (a large value: an instance that never passes within MaxRestoreSeconds).
    #[serde(default)]
    pub checks_ms: Option<u64>,
    /// The first N TerminateInstances calls on the restored instance fail (the restore
    /// machine's task, retries included, counts as one call).
    #[serde(default)]
    pub terminate_failures: u32,
}

/// One restore job as the sandbox sees it at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreJobRecord {
    /// The RestoreJobId.
    pub id: String,
    /// The account that started it.
    pub account_id: String,
    /// The recovery point restored.
    pub recovery_point_arn: String,
    /// The instance the recovery point was taken of.
    pub source_resource_arn: String,
    /// The recovery point's vault.
    pub backup_vault_arn: String,
    /// `EC2`.
    pub resource_type: String,
    /// The role AWS Backup assumed.
    pub iam_role_arn: String,
    /// PENDING, RUNNING, COMPLETED or FAILED.
    pub status: &'static str,
    /// Why it failed.
    pub status_message: Option<String>,
    /// Progress, a decimal string (`"50.0"`).
    pub percent_done: String,
    /// The size restored.
    pub backup_size_in_bytes: i64,
    /// When StartRestoreJob created it.
    pub creation_date: DateTime<Utc>,
    /// When it ended.
    pub completion_date: Option<DateTime<Utc>>,
    /// When the recovery point was created.
    pub recovery_point_creation_date: DateTime<Utc>,
    /// Minutes it was expected to take.
    pub expected_completion_time_minutes: i64,
    /// The instance it launched, once it has.
    pub created_resource_arn: Option<String>,
    /// StartRestoreJob `Metadata`, as sent.
    pub metadata: BTreeMap<String, String>,
    /// The IdempotencyToken, as sent.
    pub idempotency_token: Option<String>,
    /// PutRestoreValidationResult's status, once put.
    pub validation_status: Option<String>,
    /// PutRestoreValidationResult's message.
    pub validation_status_message: Option<String>,
}

/// One restored instance as the sandbox sees it at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoredInstance {
    /// `arn:aws:ec2:REGION:ACCOUNT:instance/i-…`.
    pub arn: String,
    /// `i-…`.
    pub instance_id: String,
    /// The recovery point (AMI) it was launched from.
    pub image_arn: String,
    /// The restore job that launched it.
    pub restore_job_id: String,
    /// `pending`, `running`, `shutting-down` or `terminated`.
    pub state: &'static str,
    /// Both status checks: `initializing`, `ok` or `impaired` (`not-applicable` when not
    /// running).
    pub status_checks: &'static str,
    /// Its tags now.
    pub tags: BTreeMap<String, String>,
    /// The instance type it was launched with.
    pub instance_type: Option<String>,
    /// The subnet it was launched into.
    pub subnet_id: Option<String>,
    /// When it was launched.
    pub launched_at: DateTime<Utc>,
    /// When its termination was requested (successfully).
    pub terminated_at: Option<DateTime<Utc>>,
    /// TerminateInstances calls that failed.
    pub failed_terminations: u32,
}

/// A validation result put on a restore job (PutRestoreValidationResult).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationResult {
    /// The restore job.
    pub restore_job_id: String,
    /// FAILED, SUCCESSFUL, TIMED_OUT or VALIDATING.
    pub status: String,
    /// The message, when one was put.
    pub message: Option<String>,
}

impl RestoredInstance {
    /// True until it is terminated (shutting down still counts).
    pub fn alive(&self) -> bool {
        self.state != "terminated"
    }
}

/// The StartRestoreJob request members the sandbox uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestoreRequest {
    pub recovery_point_arn: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub iam_role_arn: Option<String>,
    pub idempotency_token: Option<String>,
    pub resource_type: Option<String>,
}

/// What the world knows about the recovery point a restore starts from.
#[derive(Debug, Clone)]
pub(crate) struct RestoreSource {
    pub recovery_point_arn: String,
    pub resource_arn: String,
    pub vault_arn: String,
    pub created: Millis,
    pub size: u64,
    /// Where the instance is launched (the recovery point's region) and for whom.
    pub region: String,
    pub account: String,
    /// The original instance profile (the only one AWS Backup lets a restore attach).
    pub original_profile: Option<String>,
}

/// The ListRestoreJobs filters the sandbox honours besides the shared ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestoreFilter {
    pub status: Option<String>,
    pub resource_type: Option<String>,
}

#[derive(Debug)]
struct Instance {
    tags: BTreeMap<String, String>,
    /// When the first CreateTags happened (tags are invisible before).
    tagged_at: Millis,
    terminated_at: Option<Millis>,
    failures_left: u32,
    failed: u32,
}

#[derive(Debug)]
struct RestoreJob {
    id: Uuid,
    source: RestoreSource,
    role: String,
    metadata: BTreeMap<String, String>,
    token: Option<String>,
    created: Millis,
    pending: Millis,
    running: Millis,
    rule: RestoreRule,
    instance: Instance,
    /// PutRestoreValidationResult: when, the status and the message.
    validation: Option<(Millis, String, Option<String>)>,
}

/// The phases of a restore and of its instance, from the creation time and the durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestoreTimes {
    pub running_from: Millis,
    /// When the job ends (and its instance, if any, is launched).
    pub ends: Millis,
    /// When the instance turns `running`.
    pub instance_running: Millis,
    /// When both status checks reach their verdict.
    pub checks_done: Millis,
}

/// Every restore job, in creation order, and the indexes that find them.
#[derive(Debug)]
pub(crate) struct RestoreJobs {
    settings: RestoreSettings,
    jobs: Vec<RestoreJob>,
    ids: HashMap<Uuid, u32>,
    tokens: HashMap<String, u32>,
    rules: Vec<RestoreRule>,
    last_created: Millis,
}

impl RestoreJobs {
    /// No restores yet.
    pub fn new(settings: RestoreSettings) -> Self {
        Self {
            settings,
            jobs: Vec::new(),
            ids: HashMap::new(),
            tokens: HashMap::new(),
            rules: Vec::new(),
            last_created: Millis::MIN,
        }
    }

    /// How the restores and the machine behave.
    pub fn settings(&self) -> &RestoreSettings {
        &self.settings
    }

    /// Replaces the rules (first match wins; for restores started later).
    pub fn set_rules(&mut self, rules: Vec<RestoreRule>) {
        self.rules = rules;
    }

    /// The restore job an IdempotencyToken already started, if any.
    pub fn by_token(&self, token: &str) -> Option<u32> {
        self.tokens.get(token).copied()
    }

    /// Checks StartRestoreJob's members apart from the recovery point.
    pub fn check(request: &RestoreRequest, source: &RestoreSource) -> Result<(), ApiError> {
        if request.metadata.is_none() {
            return Err(ApiError::new(
                "MissingParameterValueException",
                "Metadata is required",
            ));
        }
        if let Some(t) = &request.resource_type
            && t != "EC2"
        {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                format!("ResourceType {t} does not match the recovery point's type EC2"),
            ));
        }
        let metadata = request.metadata.as_ref().expect("checked");
        if let Some(profile) = metadata.get("IamInstanceProfileName")
            && !profile.is_empty()
            && source.original_profile.as_deref() != Some(profile.as_str())
        {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                format!(
                    "IamInstanceProfileName {profile} is not the instance profile the recovery \
                     point was taken with; AWS Backup restores the original one or none"
                ),
            ));
        }
        if let Some(groups) = metadata.get("SecurityGroupIds")
            && serde_json::from_str::<Vec<String>>(groups).is_err()
        {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                "SecurityGroupIds must be a JSON array of strings",
            ));
        }
        Ok(())
    }

    /// StartRestoreJob of a checked request: a new restore job at `at`, or the one its token
    /// already started (`false`).
    pub fn start(
        &mut self,
        request: RestoreRequest,
        source: RestoreSource,
        at: Millis,
    ) -> (u32, bool) {
        if let Some(token) = &request.idempotency_token
            && let Some(&existing) = self.tokens.get(token)
        {
            return (existing, false);
        }
        let rule = self
            .rules
            .iter()
            .find(|r| {
                r.resource.is_empty()
                    || source.resource_arn.contains(&r.resource)
                    || source.recovery_point_arn.contains(&r.resource)
            })
            .cloned()
            .unwrap_or_default();
        let created = at.max(self.last_created);
        self.last_created = created;
        let ms = |v: Option<u64>, d: Duration| {
            v.map_or(duration_ms(d), |v| {
                Millis::try_from(v).unwrap_or(Millis::MAX)
            })
        };
        let id = Uuid::new_v4();
        let index = u32::try_from(self.jobs.len()).expect("fewer than 2^32 restore jobs");
        self.jobs.push(RestoreJob {
            id,
            role: request.iam_role_arn.unwrap_or_default(),
            metadata: request.metadata.unwrap_or_default(),
            token: request.idempotency_token.clone(),
            created,
            pending: ms(rule.pending_ms, self.settings.job_pending),
            running: ms(rule.running_ms, self.settings.job_running),
            instance: Instance {
                tags: BTreeMap::new(),
                tagged_at: Millis::MAX,
                terminated_at: None,
                failures_left: rule.terminate_failures,
                failed: 0,
            },
            rule,
            source,
            validation: None,
        });
        self.ids.insert(id, index);
        if let Some(token) = request.idempotency_token {
            self.tokens.insert(token, index);
        }
        (index, true)
    }

    /// The restore job a RestoreJobId names.
    pub fn find(&self, id: &str) -> Option<u32> {
        self.ids.get(&Uuid::parse_str(id).ok()?).copied()
    }

    /// The RestoreJobId of job `index`.
    pub fn id(&self, index: u32) -> String {
        self.jobs[index as usize].id.to_string()
    }

    /// When job `index` and its instance go through their phases.
    pub fn times(&self, index: u32) -> RestoreTimes {
        let j = &self.jobs[index as usize];
        let running_from = j.created.saturating_add(j.pending);
        let running = if j.rule.fail {
            (j.running as f64 * FAILING_RESTORE_SHARE) as Millis
        } else {
            j.running
        };
        let ends = running_from.saturating_add(running);
        let instance_running = ends.saturating_add(duration_ms(self.settings.instance_pending));
        let checks = j
            .rule
            .checks_ms
            .map_or(duration_ms(self.settings.status_checks), |c| {
                Millis::try_from(c).unwrap_or(Millis::MAX)
            });
        RestoreTimes {
            running_from,
            ends,
            instance_running,
            checks_done: instance_running.saturating_add(checks),
        }
    }

    /// Job `index`'s status at `now`.
    pub fn status(&self, index: u32, now: Millis) -> &'static str {
        let times = self.times(index);
        if now < times.running_from {
            "PENDING"
        } else if now < times.ends {
            "RUNNING"
        } else if self.jobs[index as usize].rule.fail {
            "FAILED"
        } else {
            "COMPLETED"
        }
    }

    /// True when job `index` launches an instance (when it ends).
    fn launches(&self, index: u32) -> bool {
        let rule = &self.jobs[index as usize].rule;
        !rule.fail || rule.leaves_instance
    }

    /// The instance job `index` has launched by `now`, if any.
    pub fn created_resource(&self, index: u32, now: Millis) -> Option<String> {
        (self.launches(index) && now >= self.times(index).ends).then(|| self.instance_arn(index))
    }

    fn instance_id(&self, index: u32) -> String {
        format!("i-{:017x}", self.jobs[index as usize].id.as_u128() >> 60)
    }

    fn instance_arn(&self, index: u32) -> String {
        let s = &self.jobs[index as usize].source;
        format!(
            "arn:aws:ec2:{}:{}:instance/{}",
            s.region,
            s.account,
            self.instance_id(index)
        )
    }

    /// The restore job whose instance is `instance` (an ARN or an id), if any.
    pub fn by_instance(&self, instance: &str) -> Option<u32> {
        let id = instance.rsplit('/').next().unwrap_or(instance);
        (0..self.jobs.len() as u32)
            .rev()
            .find(|&i| self.launches(i) && self.instance_id(i) == id)
    }

    /// The instance's EC2 state at `now` (`None` before it is launched).
    pub fn instance_state(&self, index: u32, now: Millis) -> Option<&'static str> {
        let times = self.times(index);
        if !self.launches(index) || now < times.ends {
            return None;
        }
        let shutting = duration_ms(self.settings.shutting_down);
        Some(match self.jobs[index as usize].instance.terminated_at {
            Some(t) if now >= t.saturating_add(shutting) => "terminated",
            Some(t) if now >= t => "shutting-down",
            _ if now < times.instance_running => "pending",
            _ => "running",
        })
    }

    /// Both status checks at `now`: `initializing`, `ok`, `impaired`, or `not-applicable`
    /// when the instance is not running.
    pub fn status_checks(&self, index: u32, now: Millis) -> &'static str {
        if self.instance_state(index, now) != Some("running") {
            return "not-applicable";
        }
        if now < self.times(index).checks_done {
            "initializing"
        } else if self.jobs[index as usize].rule.impaired {
            "impaired"
        } else {
            "ok"
        }
    }

    /// CreateTags on job `index`'s instance at `at` (adds or overwrites).
    pub fn tag(&mut self, index: u32, tags: &BTreeMap<String, String>, at: Millis) {
        let instance = &mut self.jobs[index as usize].instance;
        instance.tagged_at = instance.tagged_at.min(at);
        for (k, v) in tags {
            instance.tags.insert(k.clone(), v.clone());
        }
    }

    /// The instance's tags at `now`.
    pub fn tags(&self, index: u32, now: Millis) -> BTreeMap<String, String> {
        let instance = &self.jobs[index as usize].instance;
        if now >= instance.tagged_at {
            instance.tags.clone()
        } else {
            BTreeMap::new()
        }
    }

    /// TerminateInstances on job `index`'s instance at `at`: Err when a knob fails it.
    /// Terminating a terminated instance succeeds and changes nothing.
    pub fn terminate(&mut self, index: u32, at: Millis) -> Result<(), ApiError> {
        let id = self.instance_id(index);
        let instance = &mut self.jobs[index as usize].instance;
        if instance.failures_left > 0 {
            instance.failures_left -= 1;
            instance.failed += 1;
            return Err(ApiError::new(
                "UnauthorizedOperation",
                format!(
                    "You are not authorized to perform this operation on {id} (the sandbox's \
                     terminate_failures knob)"
                ),
            ));
        }
        if instance.terminated_at.is_none_or(|t| t > at) {
            instance.terminated_at = Some(at);
        }
        Ok(())
    }

    /// PutRestoreValidationResult.
    pub fn put_validation(
        &mut self,
        index: u32,
        status: &str,
        message: Option<String>,
        now: Millis,
    ) -> Result<(), ApiError> {
        if !matches!(status, "FAILED" | "SUCCESSFUL" | "TIMED_OUT" | "VALIDATING") {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                format!(
                    "ValidationStatus must be FAILED, SUCCESSFUL, TIMED_OUT or VALIDATING, got {status}"
                ),
            ));
        }
        let job_status = self.status(index, now);
        if !self.settings.accept_validation_results {
            return Err(ApiError::new(
                "InvalidRequestException",
                "Validation results are accepted only for restore jobs of restore testing plans",
            ));
        }
        if job_status != "COMPLETED" {
            return Err(ApiError::new(
                "InvalidRequestException",
                format!(
                    "Restore job {} is {job_status}, not COMPLETED",
                    self.id(index)
                ),
            ));
        }
        let job = &mut self.jobs[index as usize];
        match &job.validation {
            Some((_, old, _)) if old != status && old != "VALIDATING" => Err(ApiError::new(
                "InvalidRequestException",
                format!(
                    "The validation status of restore job {} is already {old}",
                    job.id
                ),
            )),
            _ => {
                job.validation = Some((now, status.to_string(), message));
                Ok(())
            }
        }
    }

    /// Job `index` at `now`.
    pub fn record(&self, index: u32, now: Millis) -> RestoreJobRecord {
        let j = &self.jobs[index as usize];
        let times = self.times(index);
        let status = self.status(index, now);
        let fraction = if now >= times.ends {
            1.0
        } else if now < times.running_from || j.running <= 0 {
            0.0
        } else {
            (now - times.running_from) as f64 / j.running as f64
        };
        let ceiling = if j.rule.fail { 50.0 } else { 100.0 };
        let validation = j.validation.as_ref().filter(|(at, ..)| *at <= now);
        let percent = (fraction * ceiling * 10.0).floor() / 10.0;
        RestoreJobRecord {
            id: j.id.to_string(),
            account_id: j.source.account.clone(),
            recovery_point_arn: j.source.recovery_point_arn.clone(),
            source_resource_arn: j.source.resource_arn.clone(),
            backup_vault_arn: j.source.vault_arn.clone(),
            resource_type: "EC2".to_string(),
            iam_role_arn: j.role.clone(),
            status,
            status_message: (status == "FAILED").then(|| {
                format!(
                    "Restore failed: the sandbox is configured to fail restores of {}",
                    j.source.resource_arn
                )
            }),
            percent_done: format!("{percent:.1}"),
            backup_size_in_bytes: j.source.size as i64,
            creation_date: to_datetime(j.created),
            completion_date: matches!(status, "COMPLETED" | "FAILED")
                .then(|| to_datetime(times.ends)),
            recovery_point_creation_date: to_datetime(j.source.created),
            expected_completion_time_minutes: ((times.ends - j.created) / 60_000).max(1),
            created_resource_arn: self.created_resource(index, now),
            metadata: j.metadata.clone(),
            idempotency_token: j.token.clone(),
            validation_status: validation.map(|(_, s, _)| s.clone()),
            validation_status_message: validation.and_then(|(_, _, m)| m.clone()),
        }
    }

    /// DescribeRestoreJob.
    pub fn describe(&self, id: &str, now: Millis) -> Result<RestoreJobRecord, ApiError> {
        let index = self.find(id).ok_or_else(|| not_found(id))?;
        Ok(self.record(index, now))
    }

    /// ListRestoreJobs: newest first, a page of `listing`.
    pub fn list(
        &self,
        filter: &RestoreFilter,
        listing: &Listing,
        account: &str,
        now: Millis,
    ) -> Result<(Vec<RestoreJobRecord>, Option<String>), ApiError> {
        let (page, next) = listing.page(
            self.jobs.len(),
            "r",
            account,
            |i| self.jobs[i].created,
            |i| {
                let status = self.status(i as u32, now);
                let ended =
                    matches!(status, "COMPLETED" | "FAILED").then(|| self.times(i as u32).ends);
                filter.status.as_deref().is_none_or(|s| s == status)
                    && filter.resource_type.as_deref().is_none_or(|t| t == "EC2")
                    && listing.completed_in_window(ended)
            },
        )?;
        Ok((
            page.into_iter()
                .map(|i| self.record(i as u32, now))
                .collect(),
            next,
        ))
    }

    /// Every restore job, oldest first.
    pub fn all(&self, now: Millis) -> Vec<RestoreJobRecord> {
        (0..self.jobs.len() as u32)
            .map(|i| self.record(i, now))
            .collect()
    }

    /// Job `index`'s instance at `now`, once launched.
    pub fn instance(&self, index: u32, now: Millis) -> Option<RestoredInstance> {
        let state = self.instance_state(index, now)?;
        let j = &self.jobs[index as usize];
        Some(RestoredInstance {
            arn: self.instance_arn(index),
            instance_id: self.instance_id(index),
            image_arn: j.source.recovery_point_arn.clone(),
            restore_job_id: j.id.to_string(),
            state,
            status_checks: self.status_checks(index, now),
            tags: self.tags(index, now),
            instance_type: j.metadata.get("InstanceType").cloned(),
            subnet_id: j.metadata.get("SubnetId").cloned(),
            launched_at: to_datetime(self.times(index).ends),
            terminated_at: j
                .instance
                .terminated_at
                .filter(|t| *t <= now)
                .map(to_datetime),
            failed_terminations: j.instance.failed,
        })
    }

    /// Every instance launched by `now`, oldest first, terminated ones included.
    pub fn instances(&self, now: Millis) -> Vec<RestoredInstance> {
        (0..self.jobs.len() as u32)
            .filter_map(|i| self.instance(i, now))
            .collect()
    }

    /// The tagged instances not yet terminated at `now`, as the Tagging API lists them.
    pub fn tagged_alive(&self, now: Millis) -> Vec<(String, BTreeMap<String, String>)> {
        (0..self.jobs.len() as u32)
            .filter(|&i| {
                now >= self.jobs[i as usize].instance.tagged_at
                    && self
                        .instance_state(i, now)
                        .is_some_and(|s| s != "terminated")
            })
            .map(|i| (self.instance_arn(i), self.tags(i, now)))
            .collect()
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        "ResourceNotFoundException",
        format!("Cannot find restore job with ID {id}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;

    fn source() -> RestoreSource {
        RestoreSource {
            recovery_point_arn: "arn:aws:ec2:us-east-1::image/ami-0123456789abcdef0".into(),
            resource_arn: "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0".into(),
            vault_arn: "arn:aws:backup:us-east-1:123456789012:backup-vault:orchestrator".into(),
            created: T0 - 86_400_000,
            size: 8 << 30,
            region: "us-east-1".into(),
            account: "123456789012".into(),
            original_profile: Some("app".into()),
        }
    }

    fn request(token: &str) -> RestoreRequest {
        RestoreRequest {
            recovery_point_arn: Some(source().recovery_point_arn),
            metadata: Some(BTreeMap::from([(
                "SubnetId".to_string(),
                "subnet-0123456789abcdef0".to_string(),
            )])),
            iam_role_arn: Some("arn:aws:iam::123456789012:role/restore".into()),
            idempotency_token: Some(token.into()),
            resource_type: Some("EC2".into()),
        }
    }

    #[test]
    fn a_restore_runs_by_time_and_launches_an_instance_that_passes_its_checks() {
        let mut r = RestoreJobs::new(RestoreSettings::default());
        let (i, new) = r.start(request("t"), source(), T0);
        assert!(new);
        assert_eq!(r.start(request("t"), source(), T0 + 5), (i, false));
        assert_eq!(r.status(i, T0 + 999), "PENDING");
        assert_eq!(r.status(i, T0 + 1_000), "RUNNING");
        assert_eq!(r.created_resource(i, T0 + 3_999), None);
        assert_eq!(r.status(i, T0 + 4_000), "COMPLETED");
        let arn = r.created_resource(i, T0 + 4_000).unwrap();
        assert!(arn.starts_with("arn:aws:ec2:us-east-1:123456789012:instance/i-"));
        assert_eq!(r.instance_state(i, T0 + 4_500), Some("pending"));
        assert_eq!(r.status_checks(i, T0 + 5_000), "initializing");
        assert_eq!(r.status_checks(i, T0 + 7_000), "ok");
        assert_eq!(r.by_instance(&arn), Some(i));
        r.terminate(i, T0 + 8_000).unwrap();
        assert_eq!(r.instance_state(i, T0 + 8_500), Some("shutting-down"));
        assert_eq!(r.instance_state(i, T0 + 9_000), Some("terminated"));
    }

    #[test]
    fn knobs_fail_a_restore_impair_its_instance_and_refuse_a_termination_once() {
        let mut r = RestoreJobs::new(RestoreSettings::default());
        r.set_rules(vec![
            RestoreRule {
                resource: "instance/i-0123".into(),
                impaired: true,
                terminate_failures: 1,
                ..RestoreRule::default()
            },
            RestoreRule {
                fail: true,
                ..RestoreRule::default()
            },
        ]);
        let (i, _) = r.start(request("a"), source(), T0);
        assert_eq!(r.status_checks(i, T0 + 7_000), "impaired");
        assert_eq!(
            r.terminate(i, T0 + 8_000).unwrap_err().code,
            "UnauthorizedOperation"
        );
        r.terminate(i, T0 + 9_000).unwrap();
        let mut other = source();
        other.resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-99999999".into();
        let (f, _) = r.start(request("b"), other, T0);
        assert_eq!(r.status(f, T0 + 2_500), "FAILED");
        assert!(r.record(f, T0 + 2_500).status_message.is_some());
        assert_eq!(r.created_resource(f, T0 + 10_000), None);
    }

    #[test]
    fn a_validation_result_is_put_once() {
        let mut r = RestoreJobs::new(RestoreSettings::default());
        let (i, _) = r.start(request("a"), source(), T0);
        let early = r
            .put_validation(i, "SUCCESSFUL", None, T0 + 100)
            .unwrap_err();
        assert_eq!(early.code, "InvalidRequestException");
        r.put_validation(i, "SUCCESSFUL", Some("ok".into()), T0 + 5_000)
            .unwrap();
        r.put_validation(i, "SUCCESSFUL", Some("ok".into()), T0 + 5_001)
            .unwrap();
        let again = r.put_validation(i, "FAILED", None, T0 + 5_002).unwrap_err();
        assert_eq!(again.code, "InvalidRequestException");
        let bad = r.put_validation(i, "MAYBE", None, T0 + 5_002).unwrap_err();
        assert_eq!(bad.code, "InvalidParameterValueException");
        assert_eq!(
            r.record(i, T0 + 6_000).validation_status.as_deref(),
            Some("SUCCESSFUL")
        );
    }

    #[test]
    fn a_different_instance_profile_is_refused() {
        let mut req = request("a");
        req.metadata
            .as_mut()
            .unwrap()
            .insert("IamInstanceProfileName".into(), "admin".into());
        let e = RestoreJobs::check(&req, &source()).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValueException");
        req.metadata
            .as_mut()
            .unwrap()
            .insert("IamInstanceProfileName".into(), String::new());
        assert!(RestoreJobs::check(&req, &source()).is_ok());
    }
}
