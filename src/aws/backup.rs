//! [`BackupJobs`] with aws-sdk-backup: one client per region, made on first use.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_backup::Client;
use aws_sdk_backup::config::Region;
use aws_sdk_backup::types::{BackupJobState, CopyJobState};
use aws_types::SdkConfig;
use chrono::{DateTime, Utc};

use super::sdk_error::classify;
use super::{
    ApiError, BackupJobs, CopyJobDetail, CopyJobFilter, JobDetail, JobFilter, JobState, Page,
    RecoveryPoint, RegionalClients,
};

/// AWS Backup through the AWS SDK.
#[derive(Clone)]
pub struct SdkBackupJobs {
    clients: Arc<RegionalClients<Client>>,
}

/// Largest page ListBackupJobs returns.
const MAX_PAGE: i32 = 1000;

impl SdkBackupJobs {
    /// Uses `base` (credentials, endpoint, timeouts) with each call's region.
    pub fn new(base: SdkConfig) -> Self {
        let make = |base: &SdkConfig, region: &str| {
            Client::from_conf(
                aws_sdk_backup::config::Builder::from(base)
                    .region(Region::new(region.to_string()))
                    .build(),
            )
        };
        SdkBackupJobs {
            clients: Arc::new(RegionalClients::new(base, make)),
        }
    }

    fn client(&self, region: &str) -> Client {
        self.clients.get(region)
    }
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}

fn from_chrono(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

/// DescribeBackupJob's output and ListBackupJobs' rows share these accessors.
macro_rules! job_detail {
    ($j:expr) => {{
        let j = $j;
        JobDetail {
            job_id: j.backup_job_id().unwrap_or_default().to_string(),
            resource_arn: j.resource_arn().map(str::to_string),
            state: j
                .state()
                .map_or(JobState::Other(String::new()), |s: &BackupJobState| {
                    JobState::parse(s.as_str())
                }),
            percent_done: j.percent_done().and_then(|p| p.parse().ok()),
            backup_size_bytes: j.backup_size_in_bytes(),
            status_message: j.status_message().map(str::to_string),
            recovery_point_arn: j.recovery_point_arn().map(str::to_string),
            creation_date: j.creation_date().map(to_chrono),
            completion_date: j.completion_date().map(to_chrono),
        }
    }};
}

fn copy_detail(j: &aws_sdk_backup::types::CopyJob) -> CopyJobDetail {
    CopyJobDetail {
        copy_job_id: j.copy_job_id().unwrap_or_default().to_string(),
        state: j
            .state()
            .map_or(JobState::Other(String::new()), |s: &CopyJobState| {
                JobState::parse(s.as_str())
            }),
        status_message: j.status_message().map(str::to_string),
        resource_arn: j.resource_arn().map(str::to_string),
        source_recovery_point_arn: j.source_recovery_point_arn().map(str::to_string),
        destination_vault_arn: j.destination_backup_vault_arn().map(str::to_string),
        destination_recovery_point_arn: j.destination_recovery_point_arn().map(str::to_string),
        creation_date: j.creation_date().map(to_chrono),
        completion_date: j.completion_date().map(to_chrono),
    }
}

/// The rows of both recovery point listings share these accessors; `$vault` when the row
/// names none, `$resource` the instance.
macro_rules! recovery_point {
    ($p:expr, $vault:expr, $resource:expr) => {{
        let p = $p;
        RecoveryPoint {
            arn: p.recovery_point_arn().unwrap_or_default().to_string(),
            vault_name: p.backup_vault_name().unwrap_or($vault).to_string(),
            resource_arn: $resource,
            status: p
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            created: p.creation_date().map(to_chrono).unwrap_or_default(),
        }
    }};
}

impl super::RecoveryPoints for SdkBackupJobs {
    async fn recovery_points(
        &self,
        region: &str,
        resource_arn: &str,
        vault: Option<&str>,
    ) -> Result<Vec<RecoveryPoint>, ApiError> {
        let client = self.client(region);
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let next = match vault {
                None => {
                    let page = client
                        .list_recovery_points_by_resource()
                        .resource_arn(resource_arn)
                        .max_results(100)
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| classify("ListRecoveryPointsByResource", e))?;
                    out.extend(
                        page.recovery_points()
                            .iter()
                            .map(|p| recovery_point!(p, "", resource_arn.to_string())),
                    );
                    page.next_token().map(str::to_string)
                }
                Some(vault) => {
                    let page = client
                        .list_recovery_points_by_backup_vault()
                        .backup_vault_name(vault)
                        .by_resource_arn(resource_arn)
                        .max_results(MAX_PAGE)
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| classify("ListRecoveryPointsByBackupVault", e))?;
                    out.extend(page.recovery_points().iter().map(|p| {
                        recovery_point!(
                            p,
                            vault,
                            p.resource_arn().unwrap_or(resource_arn).to_string()
                        )
                    }));
                    page.next_token().map(str::to_string)
                }
            };
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    async fn restore_metadata(
        &self,
        region: &str,
        vault_name: &str,
        recovery_point_arn: &str,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let out = self
            .client(region)
            .get_recovery_point_restore_metadata()
            .backup_vault_name(vault_name)
            .recovery_point_arn(recovery_point_arn)
            .send()
            .await
            .map_err(|e| classify("GetRecoveryPointRestoreMetadata", e))?;
        Ok(out
            .restore_metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }
}

impl BackupJobs for SdkBackupJobs {
    async fn describe_copy_job(
        &self,
        region: &str,
        copy_job_id: &str,
    ) -> Result<CopyJobDetail, ApiError> {
        let out = self
            .client(region)
            .describe_copy_job()
            .copy_job_id(copy_job_id)
            .send()
            .await
            .map_err(|e| classify("DescribeCopyJob", e))?;
        out.copy_job().map(copy_detail).ok_or_else(|| {
            ApiError::from_code(
                "DescribeCopyJob",
                None,
                None,
                "the answer has no CopyJob".into(),
                None,
            )
        })
    }

    async fn list_copy_jobs(
        &self,
        region: &str,
        filter: &CopyJobFilter,
        next_token: Option<String>,
    ) -> Result<Page<CopyJobDetail>, ApiError> {
        let out = self
            .client(region)
            .list_copy_jobs()
            .set_by_created_after(filter.created_after.map(from_chrono))
            .set_by_destination_vault_arn(filter.destination_vault_arn.clone())
            .set_by_state(filter.state.as_deref().map(CopyJobState::from))
            .max_results(MAX_PAGE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| classify("ListCopyJobs", e))?;
        Ok(Page {
            items: out.copy_jobs().iter().map(copy_detail).collect(),
            next_token: out.next_token().map(str::to_string),
        })
    }

    async fn describe_backup_job(&self, region: &str, job_id: &str) -> Result<JobDetail, ApiError> {
        let out = self
            .client(region)
            .describe_backup_job()
            .backup_job_id(job_id)
            .send()
            .await
            .map_err(|e| classify("DescribeBackupJob", e))?;
        Ok(job_detail!(&out))
    }

    async fn list_backup_jobs(
        &self,
        region: &str,
        filter: &JobFilter,
        next_token: Option<String>,
    ) -> Result<Page<JobDetail>, ApiError> {
        let out = self
            .client(region)
            .list_backup_jobs()
            .set_by_created_after(filter.created_after.map(from_chrono))
            .set_by_resource_arn(filter.resource_arn.clone())
            .set_by_state(filter.state.as_deref().map(BackupJobState::from))
            .set_by_resource_type(filter.resource_type.clone())
            .max_results(MAX_PAGE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| classify("ListBackupJobs", e))?;
        Ok(Page {
            items: out.backup_jobs().iter().map(|j| job_detail!(j)).collect(),
            next_token: out.next_token().map(str::to_string),
        })
    }
}
