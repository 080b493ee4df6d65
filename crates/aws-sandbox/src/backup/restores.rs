//! AWS Backup's restore side over `restJson1`: `GET /resources/{arn}/recovery-points`
//! (ListRecoveryPointsByResource), `GET /backup-vaults/{name}/recovery-points`
//! (ListRecoveryPointsByBackupVault), `GET /backup-vaults/{name}/recovery-points/{arn}`
//! (DescribeRecoveryPoint) and `…/restore-metadata` (GetRecoveryPointRestoreMetadata),
//! `PUT /restore-jobs` (StartRestoreJob), `GET /restore-jobs/{id}` (DescribeRestoreJob),
//! `GET /restore-jobs` (ListRestoreJobs), `PUT /restore-jobs/{id}/validations`
//! (PutRestoreValidationResult, HTTP 204).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::basics::{ApiError, Millis};
use super::super::listing::Listing;
use super::super::rest::{body_object, page, seconds};
use super::super::restores::{RestoreFilter, RestoreJobRecord, RestoreRequest};
use super::super::world::{Place, PointFilter, RecoveryPointRecord, World};
use super::{Caller, Operation};

/// Answers the restore side's operations that have a JSON answer.
pub(super) fn handle(
    operation: &Operation,
    query: &str,
    body: &[u8],
    world: &mut World,
    caller: Caller<'_>,
    now: Millis,
) -> Result<Value, ApiError> {
    let region = caller.region.unwrap_or(world.region()).to_string();
    match operation {
        Operation::StartRestoreJob => start_restore_job(body, world, now),
        Operation::DescribeRestoreJob(id) => {
            world.describe_restore_job(id, now).map(|r| restore_job(&r))
        }
        Operation::ListRestoreJobs => list_restore_jobs(query, world, now),
        Operation::ListRecoveryPointsByResource(arn) => {
            let listing = Listing::parse(query, |_, _| {})?;
            let account = world.account_id().to_string();
            let place = Place {
                region: &region,
                account: &account,
            };
            let (points, next) = world.list_points_by_resource(arn, &place, &listing, now)?;
            Ok(page(
                "RecoveryPoints",
                points.iter().map(point_by_resource).collect(),
                next,
            ))
        }
        Operation::ListRecoveryPointsByBackupVault(vault) => {
            list_points_by_vault(vault, query, world, &region, now)
        }
        Operation::DescribeRecoveryPoint(vault, arn) => {
            let account = vault_account(query, world);
            let place = Place {
                region: &region,
                account: &account,
            };
            let point = world.describe_recovery_point(vault, arn, &place, now)?;
            let mut v = point_by_vault(&point);
            v["StorageClass"] = json!("WARM");
            Ok(v)
        }
        Operation::GetRecoveryPointRestoreMetadata(vault, arn) => {
            let account = vault_account(query, world);
            let place = Place {
                region: &region,
                account: &account,
            };
            let (point, metadata) = world.restore_metadata(vault, arn, &place, now)?;
            Ok(json!({
                "BackupVaultArn": point.backup_vault_arn,
                "RecoveryPointArn": point.arn,
                "ResourceType": point.resource_type,
                "RestoreMetadata": metadata,
            }))
        }
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("{} is not a restore operation", other.name()),
        )),
    }
}

/// `backupVaultAccountId` when the query has one, else the sandbox's account.
fn vault_account(query: &str, world: &World) -> String {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == "backupVaultAccountId")
        .map_or_else(|| world.account_id().to_string(), |(_, v)| v.to_string())
}

fn start_restore_job(body: &[u8], world: &mut World, now: Millis) -> Result<Value, ApiError> {
    let request = body_object(body)?;
    let text = |m: &str| request.get(m).and_then(Value::as_str).map(str::to_string);
    let metadata = match request.get("Metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(
            m.iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| (k.clone(), s.to_string()))
                        .ok_or_else(|| {
                            ApiError::new(
                                "InvalidParameterValueException",
                                format!("Metadata value of {k} must be a string"),
                            )
                        })
                })
                .collect::<Result<BTreeMap<String, String>, ApiError>>()?,
        ),
        Some(_) => {
            return Err(ApiError::new(
                "InvalidParameterValueException",
                "Metadata must be a map of strings",
            ));
        }
    };
    let id = world.start_restore_job(
        RestoreRequest {
            recovery_point_arn: text("RecoveryPointArn"),
            metadata,
            iam_role_arn: text("IamRoleArn"),
            idempotency_token: text("IdempotencyToken"),
            resource_type: text("ResourceType"),
        },
        now,
    )?;
    Ok(json!({ "RestoreJobId": id }))
}

/// PutRestoreValidationResult (no output: HTTP 204).
pub(super) fn put_validation(
    id: &str,
    body: &[u8],
    world: &mut World,
    now: Millis,
) -> Result<(), ApiError> {
    let request = body_object(body)?;
    let status = request.get("ValidationStatus").and_then(Value::as_str);
    let message = request
        .get("ValidationStatusMessage")
        .and_then(Value::as_str)
        .map(str::to_string);
    world.put_restore_validation_result(id, status, message, now)
}

fn list_restore_jobs(query: &str, world: &mut World, now: Millis) -> Result<Value, ApiError> {
    let mut filter = RestoreFilter::default();
    let listing = Listing::parse(query, |key, value| match key {
        "status" => filter.status = Some(value),
        "resourceType" => filter.resource_type = Some(value),
        // restoreTestingPlanArn and parentJobId: no job of the sandbox has them.
        "restoreTestingPlanArn" | "parentJobId" => filter.status = Some(String::new()),
        _ => {}
    })?;
    let (records, next) = world.list_restore_jobs(&filter, &listing, now)?;
    Ok(page(
        "RestoreJobs",
        records.iter().map(restore_job).collect(),
        next,
    ))
}

fn list_points_by_vault(
    vault: &str,
    query: &str,
    world: &mut World,
    region: &str,
    now: Millis,
) -> Result<Value, ApiError> {
    let mut filter = PointFilter::default();
    let mut account = world.account_id().to_string();
    let listing = Listing::parse(query, |key, value| match key {
        "resourceArn" => filter.resource_arn = Some(value),
        "resourceType" => filter.resource_type = Some(value),
        "backupVaultAccountId" => account = value,
        // backupPlanId, parentRecoveryPointArn: no point of the sandbox has them.
        "backupPlanId" | "parentRecoveryPointArn" => {
            filter.resource_type = Some(String::new());
        }
        _ => {}
    })?;
    let place = Place {
        region,
        account: &account,
    };
    let (points, next) = world.list_points_by_vault(vault, &filter, &place, &listing, now)?;
    Ok(page(
        "RecoveryPoints",
        points.iter().map(point_by_vault).collect(),
        next,
    ))
}

/// A recovery point in ListRecoveryPointsByResource's shape.
fn point_by_resource(p: &RecoveryPointRecord) -> Value {
    json!({
        "RecoveryPointArn": p.arn,
        "CreationDate": seconds(p.creation_date),
        "Status": p.status,
        "BackupSizeBytes": p.backup_size_in_bytes,
        "BackupVaultName": p.backup_vault_name,
        "IsParent": false,
        "VaultType": "BACKUP_VAULT",
    })
}

/// A recovery point in ListRecoveryPointsByBackupVault's (and DescribeRecoveryPoint's) shape.
fn point_by_vault(p: &RecoveryPointRecord) -> Value {
    let mut v = json!({
        "RecoveryPointArn": p.arn,
        "BackupVaultName": p.backup_vault_name,
        "BackupVaultArn": p.backup_vault_arn,
        "ResourceArn": p.resource_arn,
        "ResourceType": p.resource_type,
        "IamRoleArn": p.iam_role_arn,
        "Status": p.status,
        "CreationDate": seconds(p.creation_date),
        "CompletionDate": seconds(p.completion_date),
        "BackupSizeInBytes": p.backup_size_in_bytes,
        "IsEncrypted": false,
        "IsParent": false,
        "VaultType": "BACKUP_VAULT",
    });
    if let Some(source) = &p.source_backup_vault_arn {
        v["SourceBackupVaultArn"] = json!(source);
    }
    if let Some(days) = p.delete_after_days {
        v["Lifecycle"] = json!({ "DeleteAfterDays": days });
        let delete_at = p.creation_date + chrono::Duration::days(days);
        v["CalculatedLifecycle"] = json!({ "DeleteAt": seconds(delete_at) });
    }
    v
}

/// A restore job in DescribeRestoreJob's shape (ListRestoreJobs rows are the same).
fn restore_job(r: &RestoreJobRecord) -> Value {
    let mut v = json!({
        "AccountId": r.account_id,
        "RestoreJobId": r.id,
        "RecoveryPointArn": r.recovery_point_arn,
        "SourceResourceArn": r.source_resource_arn,
        "BackupVaultArn": r.backup_vault_arn,
        "CreationDate": seconds(r.creation_date),
        "Status": r.status,
        "PercentDone": r.percent_done,
        "BackupSizeInBytes": r.backup_size_in_bytes,
        "IamRoleArn": r.iam_role_arn,
        "ExpectedCompletionTimeMinutes": r.expected_completion_time_minutes,
        "ResourceType": r.resource_type,
        "RecoveryPointCreationDate": seconds(r.recovery_point_creation_date),
        "IsParent": false,
    });
    let optional = [
        ("StatusMessage", r.status_message.as_ref()),
        ("CreatedResourceArn", r.created_resource_arn.as_ref()),
        ("ValidationStatus", r.validation_status.as_ref()),
        (
            "ValidationStatusMessage",
            r.validation_status_message.as_ref(),
        ),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            v[key] = json!(value);
        }
    }
    if let Some(done) = r.completion_date {
        v["CompletionDate"] = json!(seconds(done));
    }
    v
}
