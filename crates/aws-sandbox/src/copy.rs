//! Copy jobs: what StartCopyJob creates (from the wire, or from the modelled machine's copy
//! branch), and their states over time, computed lazily from timestamps as backup jobs' are.
//!
//! No I/O and no clock: every method takes `now` (epoch milliseconds). Knobs (`POST
//! /_sandbox/copy-rules`, first match on the destination vault ARN wins): a destination that
//! refuses (StartCopyJob answers `AccessDeniedException`, as AWS does without the destination
//! vault's access policy or the Organizations setting), a copy that fails half way, and its
//! CREATED/RUNNING durations.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::basics::{ApiError, Millis, ec2_image_arn, resource_type, stable_size, to_datetime};
use super::listing::Listing;

/// How far a copy meant to fail gets before it does, in percent of its running time.
const FAILING_COPY_SHARE: f64 = 0.5;

/// How copies to a destination behave (`POST /_sandbox/copy-rules`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct CopyRule {
    /// The destination vault ARN, or a part of it; empty matches every destination.
    #[serde(default)]
    pub destination: String,
    /// StartCopyJob to it is refused with `AccessDeniedException`.
    #[serde(default)]
    pub refuse: bool,
    /// Its copies fail half way through their running time.
    #[serde(default)]
    pub fail: bool,
    /// Time in CREATED, milliseconds (default: the sandbox's `copy_pending`).
    #[serde(default)]
    pub created_ms: Option<u64>,
    /// Time in RUNNING, milliseconds (default: the sandbox's `copy_running`).
    #[serde(default)]
    pub running_ms: Option<u64>,
}

/// StartCopyJob's members, as sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct CopyRequest {
    pub recovery_point_arn: Option<String>,
    pub source_backup_vault_name: Option<String>,
    pub destination_backup_vault_arn: Option<String>,
    pub iam_role_arn: Option<String>,
    pub idempotency_token: Option<String>,
    pub delete_after_days: Option<i64>,
}

/// What the source recovery point is: found by the world from its backup job.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub resource_arn: String,
    pub vault_arn: String,
}

/// The ListCopyJobs filters the sandbox honours besides the shared ones ([`Listing`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct CopyFilter {
    pub resource_arn: Option<String>,
    pub state: Option<String>,
    pub destination_vault_arn: Option<String>,
    pub source_recovery_point_arn: Option<String>,
}

/// One copy job as the sandbox sees it at the moment of the snapshot (`/_sandbox/copy-jobs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyJobRecord {
    /// The CopyJobId.
    pub id: String,
    /// The resource whose recovery point is copied.
    pub resource_arn: String,
    /// `EC2`, `EBS`, ...
    pub resource_type: String,
    /// The recovery point copied.
    pub source_recovery_point_arn: String,
    /// Its vault.
    pub source_backup_vault_arn: String,
    /// Where it is copied to.
    pub destination_backup_vault_arn: String,
    /// The copy.
    pub destination_recovery_point_arn: String,
    /// The role AWS Backup assumes.
    pub iam_role_arn: String,
    /// CREATED, RUNNING, COMPLETED or FAILED.
    pub state: &'static str,
    /// Why it failed.
    pub status_message: Option<String>,
    /// When StartCopyJob created it.
    pub creation_date: DateTime<Utc>,
    /// When it ended.
    pub completion_date: Option<DateTime<Utc>>,
    /// The copy's `Lifecycle.DeleteAfterDays`, as sent.
    pub delete_after_days: Option<i64>,
    /// The IdempotencyToken, as sent.
    pub idempotency_token: Option<String>,
    /// The size copied.
    pub backup_size_in_bytes: i64,
    /// The account that started it.
    pub account_id: String,
}

#[derive(Debug)]
struct CopyJob {
    id: Uuid,
    resource: Arc<str>,
    source_rp: Arc<str>,
    source_vault: Arc<str>,
    destination: Arc<str>,
    role: Arc<str>,
    token: Option<Arc<str>>,
    delete_after_days: Option<i64>,
    created: Millis,
    pending: Millis,
    running: Millis,
    fails: bool,
}

/// Every copy job, in creation order, and the indexes that find them.
#[derive(Debug)]
pub(crate) struct CopyJobs {
    jobs: Vec<CopyJob>,
    ids: HashMap<Uuid, u32>,
    tokens: HashMap<Arc<str>, u32>,
    rules: Vec<CopyRule>,
    pending: Millis,
    running: Millis,
    last_created: Millis,
}

impl CopyJobs {
    /// No copy jobs; new ones stay `pending` in CREATED and `running` in RUNNING.
    pub fn new(pending: Millis, running: Millis) -> Self {
        Self {
            jobs: Vec::new(),
            ids: HashMap::new(),
            tokens: HashMap::new(),
            rules: Vec::new(),
            pending,
            running,
            last_created: Millis::MIN,
        }
    }

    /// Replaces the per-destination rules (first match wins; for copies started later).
    pub fn set_rules(&mut self, rules: Vec<CopyRule>) {
        self.rules = rules;
    }

    fn rule(&self, destination: &str) -> Option<&CopyRule> {
        self.rules
            .iter()
            .find(|r| r.destination.is_empty() || destination.contains(r.destination.as_str()))
    }

    /// Checks StartCopyJob's members apart from the recovery point (the world checks that).
    pub fn check(request: &CopyRequest) -> Result<(), ApiError> {
        for (member, value) in [
            ("RecoveryPointArn", &request.recovery_point_arn),
            ("SourceBackupVaultName", &request.source_backup_vault_name),
            (
                "DestinationBackupVaultArn",
                &request.destination_backup_vault_arn,
            ),
            ("IamRoleArn", &request.iam_role_arn),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError {
                    code: "MissingParameterValueException",
                    message: format!("{member} is required"),
                });
            }
        }
        let destination = request
            .destination_backup_vault_arn
            .as_deref()
            .unwrap_or_default();
        if vault_parts(destination).is_none() {
            return Err(ApiError {
                code: "InvalidParameterValueException",
                message: format!("Invalid backup vault ARN: {destination}"),
            });
        }
        if let Some(days) = request.delete_after_days
            && days < 1
        {
            return Err(ApiError {
                code: "InvalidParameterValueException",
                message: format!("Lifecycle.DeleteAfterDays must be at least 1, got {days}"),
            });
        }
        Ok(())
    }

    /// StartCopyJob of a checked request from `source`: a new copy job, or the one an earlier
    /// call with the same token created (`false`).
    pub fn start(
        &mut self,
        request: CopyRequest,
        source: Source,
        at: Millis,
    ) -> Result<(u32, bool), ApiError> {
        if let Some(token) = &request.idempotency_token
            && let Some(&existing) = self.tokens.get(token.as_str())
        {
            return Ok((existing, false));
        }
        let destination = request
            .destination_backup_vault_arn
            .clone()
            .unwrap_or_default();
        let rule = self.rule(&destination).cloned().unwrap_or_default();
        if rule.refuse {
            return Err(ApiError {
                code: "AccessDeniedException",
                message: format!(
                    "Insufficient privileges to perform backup:CopyIntoBackupVault on {destination} \
                     (the destination vault's access policy does not allow this account)"
                ),
            });
        }
        let created = at.max(self.last_created);
        self.last_created = created;
        let id = Uuid::new_v4();
        let index = u32::try_from(self.jobs.len()).expect("fewer than 2^32 copy jobs");
        let ms = |v: Option<u64>, default: Millis| {
            v.map_or(default, |v| Millis::try_from(v).unwrap_or(Millis::MAX))
        };
        let token: Option<Arc<str>> = request.idempotency_token.as_deref().map(Arc::from);
        self.jobs.push(CopyJob {
            id,
            resource: source.resource_arn.into(),
            source_rp: request.recovery_point_arn.unwrap_or_default().into(),
            source_vault: source.vault_arn.into(),
            destination: destination.into(),
            role: request.iam_role_arn.unwrap_or_default().into(),
            token: token.clone(),
            delete_after_days: request.delete_after_days,
            created,
            pending: ms(rule.created_ms, self.pending),
            running: ms(rule.running_ms, self.running),
            fails: rule.fail,
        });
        self.ids.insert(id, index);
        if let Some(token) = token {
            self.tokens.insert(token, index);
        }
        Ok((index, true))
    }

    /// The CopyJobId of copy job `index`.
    pub fn id_of(&self, index: u32) -> String {
        self.jobs[index as usize].id.to_string()
    }

    fn times(job: &CopyJob) -> (Millis, Millis) {
        let running_from = job.created.saturating_add(job.pending);
        let running = if job.fails {
            (job.running as f64 * FAILING_COPY_SHARE) as Millis
        } else {
            job.running
        };
        (running_from, running_from.saturating_add(running))
    }

    fn state(job: &CopyJob, now: Millis) -> &'static str {
        let (running_from, ends) = Self::times(job);
        if now < running_from {
            "CREATED"
        } else if now < ends {
            "RUNNING"
        } else if job.fails {
            "FAILED"
        } else {
            "COMPLETED"
        }
    }

    /// Copy job `index` at `now`; `account` is the source account.
    pub fn record(&self, index: u32, now: Millis, account: &str) -> CopyJobRecord {
        let job = &self.jobs[index as usize];
        let state = Self::state(job, now);
        let (_, ends) = Self::times(job);
        let (region, dest_account) = vault_parts(&job.destination).unwrap_or_default();
        let destination_recovery_point_arn = if job.resource.starts_with("arn:aws:ec2:") {
            ec2_image_arn(&region, job.id)
        } else {
            format!(
                "arn:aws:backup:{region}:{dest_account}:recovery-point:{}",
                job.id
            )
        };
        let size = stable_size(job.id);
        CopyJobRecord {
            id: job.id.to_string(),
            resource_arn: job.resource.to_string(),
            resource_type: resource_type(&job.resource),
            source_recovery_point_arn: job.source_rp.to_string(),
            source_backup_vault_arn: job.source_vault.to_string(),
            destination_backup_vault_arn: job.destination.to_string(),
            destination_recovery_point_arn,
            iam_role_arn: job.role.to_string(),
            state,
            status_message: (state == "FAILED").then(|| {
                format!(
                    "Copy job failed: the sandbox is configured to fail copies to {}",
                    job.destination
                )
            }),
            creation_date: to_datetime(job.created),
            completion_date: matches!(state, "COMPLETED" | "FAILED").then(|| to_datetime(ends)),
            delete_after_days: job.delete_after_days,
            idempotency_token: job.token.as_deref().map(str::to_string),
            backup_size_in_bytes: size as i64,
            account_id: account.to_string(),
        }
    }

    /// DescribeCopyJob.
    pub fn describe(
        &self,
        id: &str,
        now: Millis,
        account: &str,
    ) -> Result<CopyJobRecord, ApiError> {
        let index = Uuid::parse_str(id)
            .ok()
            .and_then(|u| self.ids.get(&u).copied())
            .ok_or_else(|| ApiError {
                code: "ResourceNotFoundException",
                message: format!("Cannot find copy job with ID {id}"),
            })?;
        Ok(self.record(index, now, account))
    }

    /// ListCopyJobs: newest first, a page of `listing`.
    pub fn list(
        &self,
        filter: &CopyFilter,
        listing: &Listing,
        now: Millis,
        account: &str,
    ) -> Result<(Vec<CopyJobRecord>, Option<String>), ApiError> {
        let (page, next) = listing.page(
            self.jobs.len(),
            "c",
            account,
            |i| self.jobs[i].created,
            |i| self.matches(&self.jobs[i], filter, listing, now),
        )?;
        let records = page
            .into_iter()
            .map(|i| self.record(i as u32, now, account))
            .collect();
        Ok((records, next))
    }

    fn matches(&self, job: &CopyJob, f: &CopyFilter, listing: &Listing, now: Millis) -> bool {
        let state = Self::state(job, now);
        let completed = matches!(state, "COMPLETED" | "FAILED").then(|| Self::times(job).1);
        f.resource_arn
            .as_deref()
            .is_none_or(|r| *job.resource == *r)
            && f.state.as_deref().is_none_or(|s| s == state)
            && f.destination_vault_arn
                .as_deref()
                .is_none_or(|d| *job.destination == *d)
            && f.source_recovery_point_arn
                .as_deref()
                .is_none_or(|rp| *job.source_rp == *rp)
            && listing.completed_in_window(completed)
    }

    /// Every copy job, oldest first.
    pub fn all(&self, now: Millis, account: &str) -> Vec<CopyJobRecord> {
        (0..self.jobs.len() as u32)
            .map(|i| self.record(i, now, account))
            .collect()
    }
}

/// Region and account of `arn:PARTITION:backup:REGION:ACCOUNT:backup-vault:NAME`.
fn vault_parts(arn: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    (parts.len() == 7
        && parts[0] == "arn"
        && parts[2] == "backup"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[5] == "backup-vault"
        && !parts[6].is_empty())
    .then(|| (parts[3].to_string(), parts[4].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DR: &str = "arn:aws:backup:us-west-2:123456789012:backup-vault:dr";

    fn request(token: &str) -> CopyRequest {
        CopyRequest {
            recovery_point_arn: Some("arn:aws:ec2:us-east-1::image/ami-1".into()),
            source_backup_vault_name: Some("orchestrator".into()),
            destination_backup_vault_arn: Some(DR.into()),
            iam_role_arn: Some("arn:aws:iam::123456789012:role/b".into()),
            idempotency_token: Some(token.into()),
            delete_after_days: Some(90),
        }
    }

    fn source() -> Source {
        Source {
            resource_arn: "arn:aws:ec2:us-east-1:123456789012:instance/i-12345678".into(),
            vault_arn: "arn:aws:backup:us-east-1:123456789012:backup-vault:orchestrator".into(),
        }
    }

    #[test]
    fn a_copy_moves_through_its_states_and_a_token_starts_it_once() {
        let mut c = CopyJobs::new(1_000, 3_000);
        let (i, new) = c.start(request("t"), source(), 10_000).unwrap();
        assert!(new);
        assert_eq!(c.start(request("t"), source(), 11_000).unwrap(), (i, false));
        let at = |ms| c.record(i, ms, "123456789012").state;
        assert_eq!(
            (at(10_500), at(12_000), at(14_000)),
            ("CREATED", "RUNNING", "COMPLETED")
        );
        let r = c.record(i, 14_000, "123456789012");
        assert!(r.destination_recovery_point_arn.contains("us-west-2"));
        assert_eq!(r.delete_after_days, Some(90));
    }

    #[test]
    fn knobs_refuse_a_destination_or_fail_its_copies_half_way() {
        let mut c = CopyJobs::new(0, 4_000);
        c.set_rules(vec![CopyRule {
            destination: "us-west-2".into(),
            fail: true,
            ..CopyRule::default()
        }]);
        let (i, _) = c.start(request("a"), source(), 0).unwrap();
        assert_eq!(c.record(i, 1_999, "1").state, "RUNNING");
        let r = c.record(i, 2_000, "1");
        assert_eq!(r.state, "FAILED");
        assert!(r.status_message.is_some());
        c.set_rules(vec![CopyRule {
            destination: DR.into(),
            refuse: true,
            ..CopyRule::default()
        }]);
        let e = c.start(request("b"), source(), 0).unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
    }

    #[test]
    fn requests_are_checked_like_aws_backup() {
        assert!(CopyJobs::check(&request("t")).is_ok());
        let mut r = request("t");
        r.iam_role_arn = None;
        assert_eq!(
            CopyJobs::check(&r).unwrap_err().code,
            "MissingParameterValueException"
        );
        let mut r = request("t");
        r.destination_backup_vault_arn = Some("dr".into());
        assert_eq!(
            CopyJobs::check(&r).unwrap_err().code,
            "InvalidParameterValueException"
        );
        let mut r = request("t");
        r.delete_after_days = Some(0);
        assert!(CopyJobs::check(&r).is_err());
    }
}
