//! The data the world's executions are decided into, and the recovery points they read: a
//! copy execution's source and items, a restore run's steps, a sweep, and the recovery point
//! records with the keys that list them. Plain data and the methods that need no `World`, so
//! that `world.rs` and the machines in `world/` both take them from here (a leaf: it imports
//! nothing from the world).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::basics::{ApiError, Millis};
use crate::ssm::CommandRecord;

/// A copy execution, decided when its DescribeCopySource task runs.
#[derive(Debug)]
pub(crate) struct CopyRun {
    pub source: CopySource,
    pub items: Vec<CopyItem>,
}

/// What DescribeCopySource and CheckCopySource made of the job to copy.
#[derive(Debug)]
pub(crate) enum CopySource {
    /// DescribeBackupJob failed (`CopySourceUnavailable`, the cause is its error as JSON).
    Unavailable(Box<str>),
    /// The job is not a COMPLETED job of the stack's vault for the input's instance
    /// (`InputRefused`); the job, when there is one, for the history's DescribeBackupJob.
    Refused { job: u32, cause: Box<str> },
    /// Copied: each element's result.
    Found(u32),
}

/// One `CopyTo` element's result, as the Map state's iteration ended.
#[derive(Debug)]
pub(crate) struct CopyItem {
    /// The iteration's output: `{DestinationBackupVaultArn, CopyJobId}` or `{…, Error, Cause}`.
    pub output: Value,
    pub step: ItemStep,
}

/// Which way an element went through the Map's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemStep {
    /// `CheckCopyDestination` refused it (`CopyRefused`).
    Refused,
    /// StartCopyJob answered a copy job.
    Started,
    /// StartCopyJob failed (its Catch: `CopyNotStarted`).
    NotStarted,
}

/// What `Validate` made of an input.
#[derive(Debug)]
pub(crate) struct Judged {
    /// The input the machine goes on with (the stack's defaults filled in when they were).
    pub input: Value,
    /// True when `Explain` sent it through `ApplyDefaults`.
    pub defaulted: bool,
    /// The `InputRefused` cause, for a refused input.
    pub problem: Option<String>,
}

impl Judged {
    /// True for a copy execution.
    pub(crate) fn is_copy(&self) -> bool {
        self.input["Action"] == "copy"
    }
}

/// A task's error as a Catch records it.
#[derive(Debug, Clone)]
pub(crate) struct TaskError {
    pub error: String,
    pub cause: String,
}

impl TaskError {
    pub(super) fn of(service: &str, e: &ApiError) -> Self {
        Self {
            error: format!("{service}.{}", e.code),
            cause: e.message.clone(),
        }
    }
}

/// When the instance was polled and what the last poll decided.
#[derive(Debug, Clone)]
pub(crate) struct Checks {
    /// The `DescribeInstanceStatus` that decided.
    pub at: Millis,
    /// `passed`, `impaired` or `timed-out`.
    pub verdict: &'static str,
    /// The first poll that saw the instance running, if any did before the verdict.
    pub running_at: Option<Millis>,
    /// What that poll answered (state, instance check, system check).
    pub seen: (&'static str, &'static str),
}

/// A restore test or an on-demand restore, decided at `at`.
#[derive(Debug)]
pub(crate) struct RestoreRun {
    pub at: Millis,
    /// DescribeRecoveryPoint's answer (an error: `RecoveryPointRefused`).
    pub point: Result<RecoveryPointRecord, TaskError>,
    /// `RecoveryPointNotUsable`'s cause, when CheckRecoveryPoint refused the point.
    pub refusal: Option<String>,
    /// GetRestoreMetadata's answer, once asked.
    pub original: Option<BTreeMap<String, String>>,
    /// StartRestoreJob's request metadata and its answer (the restore job's index).
    pub started: Option<(BTreeMap<String, String>, Result<u32, TaskError>)>,
    /// The DescribeRestoreJob that saw the job end, what it saw, and the instance it created.
    pub seen: Option<(Millis, &'static str, Option<String>)>,
    /// The CreateTags state (`TagRestored`, `TagFailedRestore`, `TagOnDemandRestore`) and when.
    pub tagged: Option<(&'static str, Millis)>,
    pub checks: Option<Checks>,
    pub validation: Option<CommandRecord>,
    /// PutRestoreValidationResult: when, and whether AWS took it.
    pub reported: Option<(Millis, Result<(), TaskError>)>,
    /// KeepRestored: from, to.
    pub keep: Option<(Millis, Millis)>,
    /// TerminateRestored: when, and how it went.
    pub termination: Option<(Millis, Result<(), TaskError>)>,
    /// When the execution closes.
    pub end: Millis,
    /// The report (output, or the failure's cause).
    pub report: Value,
    /// None: `Passed`; else the error (`RestoreTestFailed`, `RestoreFailed`, `InputRefused`).
    pub error: Option<&'static str>,
}

/// The sweep of one instance, decided at `at`.
#[derive(Debug)]
pub(crate) struct SweepRun {
    pub at: Millis,
    /// The restore job whose instance it is, when the instance exists.
    pub found: Option<u32>,
    /// How far it went: `NotARestoredResource`, `NotExpired`, `Swept`, `SweepFailed`.
    pub outcome: &'static str,
    /// After CheckSweep: whether the instance was already terminated, and whether the
    /// recovery point check passed.
    pub already_terminated: bool,
    pub point_ok: Option<bool>,
    /// TerminateExpired's result, when called.
    pub termination: Option<Result<(), TaskError>>,
    pub cause: String,
}

/// One recovery point as the sandbox sees it at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveryPointRecord {
    /// The recovery point (for EC2, the AMI ARN).
    pub arn: String,
    /// Its vault's name.
    pub backup_vault_name: String,
    /// Its vault.
    pub backup_vault_arn: String,
    /// For a copy: the vault it was copied from.
    pub source_backup_vault_arn: Option<String>,
    /// The resource it was taken of.
    pub resource_arn: String,
    /// `EC2`, `EBS`, ...
    pub resource_type: String,
    /// The role that made it.
    pub iam_role_arn: String,
    /// `COMPLETED`.
    pub status: &'static str,
    /// When its job was created.
    pub creation_date: DateTime<Utc>,
    /// When its job ended.
    pub completion_date: DateTime<Utc>,
    /// Its size.
    pub backup_size_in_bytes: i64,
    /// Its `Lifecycle.DeleteAfterDays`, when set.
    pub delete_after_days: Option<i64>,
    /// The region it lives in.
    pub region: String,
    /// The account it lives in.
    pub account_id: String,
    /// The backup job that made it, or (for a copy) the copy job.
    pub job_id: String,
}

/// Where a listing looks: the caller's region and account.
#[derive(Debug, Clone)]
pub(crate) struct Place<'a> {
    pub region: &'a str,
    pub account: &'a str,
}

/// The ListRecoveryPointsByBackupVault filters the sandbox honours.
#[derive(Debug, Clone, Default)]
pub(crate) struct PointFilter {
    pub resource_arn: Option<String>,
    pub resource_type: Option<String>,
}
