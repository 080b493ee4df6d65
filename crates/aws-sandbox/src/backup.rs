//! AWS Backup over `restJson1`: backup jobs (`PUT /backup-jobs`, `GET /backup-jobs/{id}`,
//! `GET /backup-jobs`), copy jobs (the same three under `/copy-jobs`), and (`backup/restores.rs`)
//! recovery points and restores. PascalCase JSON, epoch-second timestamps in bodies, ISO-8601 in
//! query strings, errors named by the `X-Amzn-Errortype` header (`rest.rs`).

mod restores;

use serde_json::{Value, json};

use super::basics::{ApiError, Millis, percent_decode};
use super::copy::{CopyFilter, CopyJobRecord, CopyRequest};
use super::jobs::{JobFilter, JobRecord, JobRequest};
use super::listing::Listing;
use super::reply::Reply;
use super::rest::{body_object, error, page, seconds};
use super::world::World;

/// An AWS Backup operation and the path parameters it carries (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    StartBackupJob,
    DescribeBackupJob(String),
    ListBackupJobs,
    StartCopyJob,
    DescribeCopyJob(String),
    ListCopyJobs,
    StartRestoreJob,
    DescribeRestoreJob(String),
    ListRestoreJobs,
    PutRestoreValidationResult(String),
    ListRecoveryPointsByResource(String),
    ListRecoveryPointsByBackupVault(String),
    DescribeRecoveryPoint(String, String),
    GetRecoveryPointRestoreMetadata(String, String),
}

impl Operation {
    /// The operation a method and path name, if any. Path parameters are whole segments
    /// (the SDK escapes `/` and `:` in ARNs), decoded here.
    pub(crate) fn route(method: &hyper::Method, path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let d = |s: &str| percent_decode(s);
        let op = match (method.as_str(), segments.as_slice()) {
            ("PUT", ["backup-jobs"]) => Self::StartBackupJob,
            ("GET", ["backup-jobs"]) => Self::ListBackupJobs,
            ("GET", ["backup-jobs", id]) => Self::DescribeBackupJob(d(id)),
            ("PUT", ["copy-jobs"]) => Self::StartCopyJob,
            ("GET", ["copy-jobs"]) => Self::ListCopyJobs,
            ("GET", ["copy-jobs", id]) => Self::DescribeCopyJob(d(id)),
            ("PUT", ["restore-jobs"]) => Self::StartRestoreJob,
            ("GET", ["restore-jobs"]) => Self::ListRestoreJobs,
            ("GET", ["restore-jobs", id]) => Self::DescribeRestoreJob(d(id)),
            ("PUT", ["restore-jobs", id, "validations"]) => Self::PutRestoreValidationResult(d(id)),
            ("GET", ["resources", arn, "recovery-points"]) => {
                Self::ListRecoveryPointsByResource(d(arn))
            }
            ("GET", ["backup-vaults", vault, "recovery-points"]) => {
                Self::ListRecoveryPointsByBackupVault(d(vault))
            }
            ("GET", ["backup-vaults", vault, "recovery-points", arn]) => {
                Self::DescribeRecoveryPoint(d(vault), d(arn))
            }
            (
                "GET",
                [
                    "backup-vaults",
                    vault,
                    "recovery-points",
                    arn,
                    "restore-metadata",
                ],
            ) => Self::GetRecoveryPointRestoreMetadata(d(vault), d(arn)),
            _ => return None,
        };
        Some(op)
    }

    /// The operation name, as the SDK and the stats call it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::StartBackupJob => "StartBackupJob",
            Self::DescribeBackupJob(_) => "DescribeBackupJob",
            Self::ListBackupJobs => "ListBackupJobs",
            Self::StartCopyJob => "StartCopyJob",
            Self::DescribeCopyJob(_) => "DescribeCopyJob",
            Self::ListCopyJobs => "ListCopyJobs",
            Self::StartRestoreJob => "StartRestoreJob",
            Self::DescribeRestoreJob(_) => "DescribeRestoreJob",
            Self::ListRestoreJobs => "ListRestoreJobs",
            Self::PutRestoreValidationResult(_) => "PutRestoreValidationResult",
            Self::ListRecoveryPointsByResource(_) => "ListRecoveryPointsByResource",
            Self::ListRecoveryPointsByBackupVault(_) => "ListRecoveryPointsByBackupVault",
            Self::DescribeRecoveryPoint(..) => "DescribeRecoveryPoint",
            Self::GetRecoveryPointRestoreMetadata(..) => "GetRecoveryPointRestoreMetadata",
        }
    }
}

/// Who asked: the region the request was signed for (SigV4's credential scope), which decides
/// where recovery points are looked for; the sandbox's region when unsigned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub region: Option<&'a str>,
}

/// Answers one AWS Backup operation.
pub(crate) fn handle(
    operation: &Operation,
    query: Option<&str>,
    body: &[u8],
    world: &mut World,
    caller: Caller<'_>,
    now: Millis,
) -> Reply {
    let query = query.unwrap_or_default();
    let result = match operation {
        Operation::StartBackupJob => start_backup_job(body, world, now),
        Operation::DescribeBackupJob(id) => world
            .describe_job(id, now)
            .map(|record| describe(&record, world)),
        Operation::ListBackupJobs => list_backup_jobs(query, world, now),
        Operation::StartCopyJob => start_copy_job(body, world, now),
        Operation::DescribeCopyJob(id) => world
            .describe_copy_job(id, now)
            .map(|r| json!({ "CopyJob": copy_job(&r) })),
        Operation::ListCopyJobs => list_copy_jobs(query, world, now),
        Operation::PutRestoreValidationResult(id) => {
            return match restores::put_validation(id, body, world, now) {
                Ok(()) => Reply::empty(204),
                Err(e) => error(&e),
            };
        }
        restore => restores::handle(restore, query, body, world, caller, now),
    };
    match result {
        Ok(body) => Reply::json(200, &body),
        Err(e) => error(&e),
    }
}

fn start_backup_job(body: &[u8], world: &mut World, now: Millis) -> Result<Value, ApiError> {
    let request = body_object(body)?;
    let text = |member: &str| {
        request
            .get(member)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let started = world.start_backup_job(
        JobRequest {
            backup_vault_name: text("BackupVaultName"),
            resource_arn: text("ResourceArn"),
            iam_role_arn: text("IamRoleArn"),
            idempotency_token: text("IdempotencyToken"),
            start_window_minutes: request.get("StartWindowMinutes").and_then(Value::as_u64),
            backup_options: request.get("BackupOptions").cloned(),
            delete_after_days: request
                .get("Lifecycle")
                .and_then(|l| l.get("DeleteAfterDays"))
                .and_then(Value::as_u64),
        },
        now,
    )?;
    let mut response = json!({
        "BackupJobId": started.record.id,
        "CreationDate": seconds(started.record.creation_date),
        "IsParent": false,
    });
    if let Some(arn) = started.recovery_point_arn {
        response["RecoveryPointArn"] = json!(arn);
    }
    Ok(response)
}

fn start_copy_job(body: &[u8], world: &mut World, now: Millis) -> Result<Value, ApiError> {
    let request = body_object(body)?;
    let text = |member: &str| {
        request
            .get(member)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (_, _, record) = world.start_copy_job(
        CopyRequest {
            recovery_point_arn: text("RecoveryPointArn"),
            source_backup_vault_name: text("SourceBackupVaultName"),
            destination_backup_vault_arn: text("DestinationBackupVaultArn"),
            iam_role_arn: text("IamRoleArn"),
            idempotency_token: text("IdempotencyToken"),
            delete_after_days: request
                .get("Lifecycle")
                .and_then(|l| l.get("DeleteAfterDays"))
                .and_then(Value::as_i64),
        },
        now,
    )?;
    Ok(json!({
        "CopyJobId": record.id,
        "CreationDate": seconds(record.creation_date),
        "IsParent": false,
    }))
}

fn list_copy_jobs(query: &str, world: &mut World, now: Millis) -> Result<Value, ApiError> {
    let mut filter = CopyFilter::default();
    let listing = Listing::parse(query, |key, value| match key {
        "resourceArn" => filter.resource_arn = Some(value),
        "state" => filter.state = Some(value),
        "destinationVaultArn" => filter.destination_vault_arn = Some(value),
        "sourceRecoveryPointArn" => filter.source_recovery_point_arn = Some(value),
        // Filters the sandbox does not model (resourceType, parentJobId, messageCategory)
        // match everything.
        _ => {}
    })?;
    let (records, next) = world.list_copy_jobs(&filter, &listing, now)?;
    Ok(page(
        "CopyJobs",
        records.iter().map(copy_job).collect(),
        next,
    ))
}

/// A copy job in DescribeCopyJob's `CopyJob` shape (ListCopyJobs rows are the same).
fn copy_job(r: &CopyJobRecord) -> Value {
    let mut job = json!({
        "AccountId": r.account_id,
        "CopyJobId": r.id,
        "SourceBackupVaultArn": r.source_backup_vault_arn,
        "SourceRecoveryPointArn": r.source_recovery_point_arn,
        "DestinationBackupVaultArn": r.destination_backup_vault_arn,
        "ResourceArn": r.resource_arn,
        "ResourceType": r.resource_type,
        "CreationDate": seconds(r.creation_date),
        "State": r.state,
        "BackupSizeInBytes": r.backup_size_in_bytes,
        "IamRoleArn": r.iam_role_arn,
        "IsParent": false,
    });
    if r.state == "COMPLETED" {
        job["DestinationRecoveryPointArn"] = json!(r.destination_recovery_point_arn);
    }
    if let Some(days) = r.delete_after_days {
        job["DestinationRecoveryPointLifecycle"] = json!({ "DeleteAfterDays": days });
    }
    if let Some(completed) = r.completion_date {
        job["CompletionDate"] = json!(seconds(completed));
    }
    if let Some(message) = &r.status_message {
        job["StatusMessage"] = json!(message);
    }
    job
}

fn list_backup_jobs(query: &str, world: &mut World, now: Millis) -> Result<Value, ApiError> {
    let mut filter = JobFilter::default();
    let listing = Listing::parse(query, |key, value| match key {
        "resourceArn" => filter.resource_arn = Some(value),
        "state" => filter.state = Some(value),
        "backupVaultName" => filter.backup_vault_name = Some(value),
        "resourceType" => filter.resource_type = Some(value),
        // Filters the sandbox does not model (parentJobId, messageCategory) match everything.
        _ => {}
    })?;
    let (records, next) = world.list_jobs(&filter, &listing, now)?;
    let rows = records.iter().map(|r| describe(r, world)).collect();
    Ok(page("BackupJobs", rows, next))
}

/// A job in DescribeBackupJob's shape (ListBackupJobs uses the same members).
fn describe(record: &JobRecord, world: &World) -> Value {
    let account = world.account_id();
    let region = world.region();
    let mut job = json!({
        "AccountId": account,
        "BackupJobId": record.id,
        "BackupVaultName": record.backup_vault_name,
        "BackupVaultArn": format!(
            "arn:aws:backup:{region}:{account}:backup-vault:{}",
            record.backup_vault_name
        ),
        "RecoveryPointArn": record.recovery_point_arn,
        "ResourceArn": record.resource_arn,
        "ResourceType": record.resource_type,
        "CreationDate": seconds(record.creation_date),
        "State": record.state.as_str(),
        "PercentDone": record.percent_done,
        "BackupSizeInBytes": record.backup_size_in_bytes,
        "BytesTransferred": record.bytes_transferred,
        "IamRoleArn": record.iam_role_arn,
        "StartBy": seconds(record.start_by),
        "ExpectedCompletionDate": seconds(record.expected_completion_date),
        "IsParent": false,
    });
    if let Some(completed) = record.completion_date {
        job["CompletionDate"] = json!(seconds(completed));
    }
    if let Some(message) = &record.status_message {
        job["StatusMessage"] = json!(message);
    }
    if let Some(options) = &record.backup_options {
        job["BackupOptions"] = options.clone();
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;

    #[test]
    fn routes_follow_the_sdk_paths() {
        assert_eq!(
            Operation::route(&Method::PUT, "/backup-jobs"),
            Some(Operation::StartBackupJob)
        );
        assert_eq!(
            Operation::route(&Method::GET, "/backup-jobs/"),
            Some(Operation::ListBackupJobs)
        );
        assert_eq!(
            Operation::route(&Method::GET, "/backup-jobs/AB-12"),
            Some(Operation::DescribeBackupJob("AB-12".into()))
        );
        assert_eq!(Operation::route(&Method::GET, "/backup-jobsx"), None);
        assert_eq!(Operation::route(&Method::DELETE, "/backup-jobs/x"), None);
        let rp = "arn%3Aaws%3Aec2%3Aus-east-1%3A%3Aimage%2Fami-0123456789abcdef0";
        assert_eq!(
            Operation::route(
                &Method::GET,
                &format!("/backup-vaults/orchestrator/recovery-points/{rp}/restore-metadata")
            ),
            Some(Operation::GetRecoveryPointRestoreMetadata(
                "orchestrator".into(),
                "arn:aws:ec2:us-east-1::image/ami-0123456789abcdef0".into()
            ))
        );
        assert_eq!(
            Operation::route(&Method::PUT, "/restore-jobs/R-1/validations"),
            Some(Operation::PutRestoreValidationResult("R-1".into()))
        );
        assert_eq!(
            Operation::route(
                &Method::GET,
                "/resources/arn%3Aaws%3Aec2%3Aus-east-1%3A1%3Ainstance%2Fi-1/recovery-points"
            ),
            Some(Operation::ListRecoveryPointsByResource(
                "arn:aws:ec2:us-east-1:1:instance/i-1".into()
            ))
        );
    }
}
