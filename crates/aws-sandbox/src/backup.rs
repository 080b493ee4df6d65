//! AWS Backup over `restJson1`: `PUT /backup-jobs`, `GET /backup-jobs/{id}`, `GET /backup-jobs`,
//! and the same three for `/copy-jobs` (StartCopyJob, DescribeCopyJob, ListCopyJobs);
//! PascalCase JSON, epoch-second timestamps in bodies, ISO-8601 in query strings, errors named
//! by the `X-Amzn-Errortype` header.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::basics::{ApiError, Millis, epoch_seconds, percent_decode};
use super::copy::{CopyFilter, CopyJobRecord, CopyRequest};
use super::jobs::{JobFilter, JobRecord, JobRequest};
use super::listing::Listing;
use super::reply::Reply;
use super::world::World;

/// An AWS Backup operation and the path parameter it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    StartBackupJob,
    DescribeBackupJob(String),
    ListBackupJobs,
    StartCopyJob,
    DescribeCopyJob(String),
    ListCopyJobs,
}

impl Operation {
    /// The operation a method and path name, if any.
    pub(crate) fn route(method: &hyper::Method, path: &str) -> Option<Self> {
        if let Some(rest) = path.strip_prefix("/copy-jobs") {
            return match (method.as_str(), rest) {
                ("PUT", "" | "/") => Some(Self::StartCopyJob),
                ("GET", "" | "/") => Some(Self::ListCopyJobs),
                ("GET", id) => {
                    let id = id.strip_prefix('/')?;
                    (!id.contains('/')).then(|| Self::DescribeCopyJob(percent_decode(id)))
                }
                _ => None,
            };
        }
        let rest = path.strip_prefix("/backup-jobs")?;
        match (method.as_str(), rest) {
            ("PUT", "" | "/") => Some(Self::StartBackupJob),
            ("GET", "" | "/") => Some(Self::ListBackupJobs),
            ("GET", id) => {
                let id = id.strip_prefix('/')?;
                (!id.contains('/')).then(|| Self::DescribeBackupJob(percent_decode(id)))
            }
            _ => None,
        }
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
        }
    }
}

/// Answers one AWS Backup operation.
pub(crate) fn handle(
    operation: &Operation,
    query: Option<&str>,
    body: &[u8],
    world: &mut World,
    now: Millis,
) -> Reply {
    let result = match operation {
        Operation::StartBackupJob => start_backup_job(body, world, now),
        Operation::DescribeBackupJob(id) => world
            .describe_job(id, now)
            .map(|record| describe(&record, world)),
        Operation::ListBackupJobs => list_backup_jobs(query.unwrap_or_default(), world, now),
        Operation::StartCopyJob => start_copy_job(body, world, now),
        Operation::DescribeCopyJob(id) => world
            .describe_copy_job(id, now)
            .map(|r| json!({ "CopyJob": copy_job(&r) })),
        Operation::ListCopyJobs => list_copy_jobs(query.unwrap_or_default(), world, now),
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

/// A request body that must be a JSON object.
fn body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::new(
            "InvalidRequestException",
            "the request body is not a JSON object",
        )),
    }
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

/// A List*Jobs answer: the page's rows under `key`, and the token of the next page if any.
fn page(key: &str, rows: Vec<Value>, next: Option<String>) -> Value {
    let mut body = json!({ key: rows });
    if let Some(next) = next {
        body["NextToken"] = json!(next);
    }
    body
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

fn seconds(date: DateTime<Utc>) -> f64 {
    epoch_seconds(date.timestamp_millis())
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

/// A restJson1 error: the status, `X-Amzn-Errortype`, and a `{"Code", "Message"}` body.
pub(crate) fn error(e: &ApiError) -> Reply {
    let status = match e.code {
        "ResourceNotFoundException" | "UnknownOperationException" => 404,
        "AccessDeniedException" => 403,
        "ThrottlingException" => 429,
        "ServiceUnavailableException" => 503,
        _ => 400,
    };
    Reply::json(status, &json!({ "Code": e.code, "Message": e.message })).error_type(e.code)
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
            Operation::route(&Method::GET, "/backup-jobs"),
            Some(Operation::ListBackupJobs)
        );
        assert_eq!(
            Operation::route(&Method::GET, "/backup-jobs/AB-12"),
            Some(Operation::DescribeBackupJob("AB-12".into()))
        );
        assert_eq!(Operation::route(&Method::GET, "/backup-jobsx"), None);
        assert_eq!(Operation::route(&Method::DELETE, "/backup-jobs/x"), None);
    }
}
